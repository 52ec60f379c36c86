import csv

from yamnet_capuchin.events import Event
from yamnet_capuchin.outputs import (
    RAVEN_COLUMNS, audacity_labels, raven_table, read_raven_table, write_counts_csv, write_raven_table,
)

EVENTS = [Event(1.5, 4.25, 0.97, 0.9), Event(10.0, 12.5, 0.8, 0.7)]


def test_raven_header_and_row():
    lines = raven_table(EVENTS).splitlines()
    assert lines[0].split("\t") == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                                    "Low Freq (Hz)", "High Freq (Hz)", "Score"]
    assert lines[0].split("\t") == list(RAVEN_COLUMNS)
    row = lines[1].split("\t")
    assert row[:3] == ["1", "Spectrogram 1", "1"]
    assert float(row[3]) == 1.5 and float(row[4]) == 4.25 and float(row[7]) == 0.97
    assert len(lines) == 3


def test_raven_roundtrip(tmp_path):
    write_raven_table(tmp_path / "a.Table.1.selections.txt", EVENTS)
    assert read_raven_table(tmp_path / "a.Table.1.selections.txt") == [(1.5, 4.25), (10.0, 12.5)]


def test_counts_csv_is_challenge_format_sorted(tmp_path):
    write_counts_csv(tmp_path / "c.csv", {"recording_10.mp3": 2, "recording_02.mp3": 0})
    rows = list(csv.reader(open(tmp_path / "c.csv")))
    assert rows == [["clip_name", "call_count"], ["recording_02.mp3", "0"], ["recording_10.mp3", "2"]]


def test_audacity_labels():
    text = audacity_labels(EVENTS)
    first = text.splitlines()[0].split("\t")
    assert float(first[0]) == 1.5 and float(first[1]) == 4.25 and first[2].startswith("capuchinbird")
