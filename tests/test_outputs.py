import csv

from yamnet_capuchin.events import Event
from yamnet_capuchin.outputs import (
    RAVEN_COLUMNS, audacity_labels, high_freq_hz, raven_table, write_counts_csv, write_raven_table,
    write_sources_csv,
)

EVENTS = [Event(1.5, 4.25, 0.97, 0.9), Event(10.0, 12.5, 0.8, 0.7)]


def test_raven_header_and_row():
    lines = raven_table(EVENTS, "/data/rec 1.wav", high_freq=4000.0).splitlines()
    # BirdNET-Analyzer's layout, with yamcap's label (Annotation) and peak score (Score)
    assert lines[0].split("\t") == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                                    "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Score", "Begin Path",
                                    "File Offset (s)"]
    assert lines[0].split("\t") == list(RAVEN_COLUMNS)
    row = dict(zip(RAVEN_COLUMNS, lines[1].split("\t")))
    assert [row["Selection"], row["View"], row["Channel"]] == ["1", "Spectrogram 1", "1"]
    assert float(row["Begin Time (s)"]) == 1.5 and float(row["End Time (s)"]) == 4.25
    assert float(row["Score"]) == 0.97 and row["Annotation"] == "Capuchinbird"
    assert row["Begin Path"] == "/data/rec 1.wav" and float(row["File Offset (s)"]) == 1.5
    assert float(row["High Freq (Hz)"]) == 4000.0 and float(row["Low Freq (Hz)"]) == 0.0
    assert len(lines) == 3


def test_high_freq_is_the_band_or_the_nyquist_frequency():
    assert high_freq_hz(8000) == 4000.0 and high_freq_hz(11025) == 5512.5
    assert high_freq_hz(16000) == high_freq_hz(48000) == high_freq_hz(None) == 8000.0


def test_sources_csv(tmp_path):
    write_sources_csv(tmp_path / "s.csv", {"r_ab12cd": "b/r.wav", "r_0f0f0f": "a/r.wav"})
    assert (tmp_path / "s.csv").read_text() == "name,path\nr_0f0f0f,a/r.wav\nr_ab12cd,b/r.wav\n"


def test_raven_roundtrip(tmp_path):
    write_raven_table(tmp_path / "a.Table.1.selections.txt", EVENTS)
    from yamnet_capuchin.annotations import calls, read_table

    assert calls(read_table(tmp_path / "a.Table.1.selections.txt")) == [(1.5, 4.25), (10.0, 12.5)]


def test_counts_csv_is_challenge_format_sorted(tmp_path):
    write_counts_csv(tmp_path / "c.csv", {"recording_10.mp3": 2, "recording_02.mp3": 0})
    rows = list(csv.reader(open(tmp_path / "c.csv")))
    assert rows == [["clip_name", "call_count"], ["recording_02.mp3", "0"], ["recording_10.mp3", "2"]]


def test_audacity_labels():
    text = audacity_labels(EVENTS)
    first = text.splitlines()[0].split("\t")
    assert float(first[0]) == 1.5 and float(first[1]) == 4.25 and first[2].startswith("capuchinbird")
