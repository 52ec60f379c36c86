"""Recorder clock time, sites and calling activity (yamnet_capuchin.clock, .activity; count's
recordings.csv, activity.csv/png, clock columns in events.csv and Raven tables; yamcap activity).

Metadata is written by the real libraries: a GUANO chunk by ``guano``, an AudioMoth-style
header comment (WAV ICMT) by libsndfile. Counting uses a fake detector that fires where the
synthetic audio is loud, so the expected calls are known by construction.
"""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from yamnet_capuchin.activity import Recording, activity_table, counted_spans, split_by_hour
from yamnet_capuchin.cli import app
from yamnet_capuchin.clock import (UTC, audiomoth_comment_time, parse_timezone, pattern_regex, recording_clock,
                                   time_from_name)
from yamnet_capuchin.config import Config
from yamnet_capuchin.count import count_files
from yamnet_capuchin.errors import ConfigError
from yamnet_capuchin.outputs import RAVEN_CLOCK_COLUMNS

SR = 16000
MANAUS = dt.timezone(dt.timedelta(hours=-4))


def t(*args, tz=UTC):
    return dt.datetime(*args, tzinfo=tz)


# -- start times from names ------------------------------------------------------------------

@pytest.mark.parametrize("name,tz,expected", [
    ("20240301_053000.WAV", "UTC", t(2024, 3, 1, 5, 30)),                          # AudioMoth
    ("SMU04213_20240301_053000.wav", "-04:00", t(2024, 3, 1, 5, 30, tz=MANAUS)),  # Song Meter, local time
    ("207isr_20200409_173257.wav", "UTC", t(2020, 4, 9, 17, 32, 57)),             # Raven's template example
    ("5E0B2F1C.WAV", "-04:00", t(2019, 12, 31, 11, 21)),                            # old AudioMoth: UNIX s, UTC
    ("recording_01.mp3", "UTC", None),
    ("20241341_250000.wav", "UTC", None),                                           # no such date
    ("x_120240301_053000.wav", "UTC", None),                                        # inside a longer number
])
def test_times_in_file_names(name, tz, expected):
    assert time_from_name(name, tz=parse_timezone(tz)) == expected


def test_a_time_pattern_of_ones_own_and_zones():
    assert pattern_regex("REC%y%m%d-%H%M").search("siteA_REC240301-0530_x").group(0) == "REC240301-0530"
    assert time_from_name("siteA_REC240301-0530_x.flac", "REC%y%m%d-%H%M", parse_timezone("America/Manaus")) == \
        t(2024, 3, 1, 5, 30, tz=MANAUS)
    with pytest.raises(ConfigError, match="%Q"):
        pattern_regex("%Y%Q")
    assert parse_timezone("+05:30").utcoffset(None) == dt.timedelta(hours=5, minutes=30)
    with pytest.raises(ConfigError, match="unknown"):
        parse_timezone("Mars/Olympus")


def test_daylight_saving_local_names():
    """A local name in a DST zone: the offset of that date; an ambiguous hour reads as the first."""
    ny = parse_timezone("America/New_York")
    assert time_from_name("20240701_120000.wav", tz=ny).utcoffset() == dt.timedelta(hours=-4)
    assert time_from_name("20240101_120000.wav", tz=ny).utcoffset() == dt.timedelta(hours=-5)
    ambiguous = time_from_name("20241103_013000.wav", tz=ny)
    assert ambiguous.astimezone(UTC) == t(2024, 11, 3, 5, 30)


# -- start times from metadata -----------------------------------------------------------------

def _wav(path, seconds=1.0, comment=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", SR, 1, "PCM_16") as fh:
        if comment:
            fh.comment = comment
        fh.write(np.zeros(int(seconds * SR), np.float32))
    return path


def _guano(path, stamp, serial="SN-42", seconds=1.0):
    import guano

    _wav(path, seconds)
    g = guano.GuanoFile(str(path))
    g["Timestamp"] = stamp
    g["Serial"] = serial
    g.write(make_backup=False)
    return path


def test_guano_timestamp_comes_first_and_gives_the_serial(tmp_path):
    pytest.importorskip("guano")
    path = _guano(tmp_path / "siteX" / "20200101_000000.wav", t(2024, 3, 1, 5, 30, 15, tz=MANAUS))
    clock = recording_clock(path, "metadata")
    assert (clock.start, clock.source, clock.site, clock.serial) == (t(2024, 3, 1, 5, 30, 15, tz=MANAUS), "guano", "SN-42", "SN-42")
    assert recording_clock(path, "folder").site == "siteX" and recording_clock(path, "none").site == ""


def test_a_corrupt_guano_chunk_falls_back_to_the_name_with_a_note(tmp_path):
    pytest.importorskip("guano")
    path = _guano(tmp_path / "s" / "20240301_053000.wav", t(2024, 3, 1, 9, 0))
    raw = bytearray(path.read_bytes())
    at = raw.find(b"guan")
    raw[at + 8: at + 48] = b"\xff\xfe" * 20  # the chunk's text garbled
    path.write_bytes(bytes(raw))
    clock = recording_clock(path)
    assert (clock.start, clock.source) == (t(2024, 3, 1, 5, 30), "name") and "GUANO" in clock.note


def test_audiomoth_header_comment(tmp_path):
    comment = ("Recorded at 23:30:00 31/12/2023 (UTC-4) by AudioMoth 24526B065D325E0C at medium gain while "
               "battery was 4.2V and temperature was 21.0C.")
    assert audiomoth_comment_time(comment) == (t(2023, 12, 31, 23, 30, tz=MANAUS), "24526B065D325E0C")
    assert audiomoth_comment_time("Recorded at 10:00:00 01/02/2024 (UTC) by AudioMoth 0123456789ABCDEF")[0] == \
        t(2024, 2, 1, 10)
    path = _wav(tmp_path / "m" / "NOTIME.WAV", comment=comment)  # written into the WAV by libsndfile
    clock = recording_clock(path, "metadata")
    assert (clock.start, clock.source, clock.site) == (t(2023, 12, 31, 23, 30, tz=MANAUS), "audiomoth", "24526B065D325E0C")


# -- activity ---------------------------------------------------------------------------------

def test_effort_and_calls_are_split_by_the_clock():
    """A file crossing midnight and an hour: effort split by clock hour, calls by begin time;
    an hour with effort and no call is a row of 0."""
    recs = [Recording("a/1.wav", "a", t(2024, 3, 1, 23, 50), 1800.0),     # 23:50-00:20
            Recording("a/2.wav", "a", t(2024, 3, 2, 1, 0), 3600.0)]       # 01:00-02:00, silent
    rows, summary = activity_table(recs, [("a/1.wav", 60.0), ("a/1.wav", 700.0), ("a/1.wav", 1700.0)])
    got = [(r.site, r.date.isoformat(), r.hour, r.recorded_s, r.calls) for r in rows]
    assert got == [("a", "2024-03-01", 23, 600.0, 1), ("a", "2024-03-02", 0, 1200.0, 2), ("a", "2024-03-02", 1, 3600.0, 0)]
    assert [r.calls_per_hour for r in rows] == [6.0, 6.0, 0.0]
    assert summary == {"untimed": [], "overlapping": [], "calls_left_out": 0}


def test_overlaps_gaps_duplicate_names_and_untimed_files():
    recs = [Recording("a/x.wav", "a", t(2024, 3, 1, 10, 0), 1800.0),   # 10:00-10:30
            Recording("a/y.wav", "a", t(2024, 3, 1, 10, 20), 1800.0),  # 10:20-10:50, overlaps x by 10 min
            Recording("b/x.wav", "b", t(2024, 3, 1, 10, 20), 600.0),   # same name, other site: no overlap
            Recording("a/z.wav", "a", t(2024, 3, 1, 14, 0), 600.0),    # after a gap
            Recording("a/u.wav", "a", None, 600.0)]
    assert counted_spans(recs)["a/y.wav"] == (t(2024, 3, 1, 10, 30), t(2024, 3, 1, 10, 50))
    events = [("a/y.wav", 60.0), ("a/y.wav", 900.0), ("b/x.wav", 60.0), ("a/u.wav", 10.0)]
    rows, summary = activity_table(recs, events)
    got = {(r.site, r.hour): (r.recorded_s, r.calls) for r in rows}
    assert got == {("a", 10): (3000.0, 1), ("a", 14): (600.0, 0), ("b", 10): (600.0, 1)}
    assert summary == {"untimed": ["a/u.wav"], "overlapping": ["a/y.wav"], "calls_left_out": 2}


def test_hours_across_daylight_saving_changes():
    ny = parse_timezone("America/New_York")
    spring = split_by_hour(t(2024, 3, 10, 6, 30), t(2024, 3, 10, 8, 30), ny)   # 01:30 EST -> 04:30 EDT
    assert spring == [(dt.date(2024, 3, 10), 1, 1800.0), (dt.date(2024, 3, 10), 3, 3600.0), (dt.date(2024, 3, 10), 4, 1800.0)]
    rows, _ = activity_table([Recording("f", "s", t(2024, 11, 3, 5, 0), 7200.0)], [], ny)  # 01:00 EDT, then 01:00 EST
    assert [(r.hour, r.recorded_s) for r in rows] == [(1, 7200.0)]
    half = split_by_hour(t(2024, 3, 1, 4, 0), t(2024, 3, 1, 5, 0), parse_timezone("+05:30"))
    assert half == [(dt.date(2024, 3, 1), 9, 1800.0), (dt.date(2024, 3, 1), 10, 1800.0)]


# -- count writes it all ------------------------------------------------------------------------

class Loud:
    """A detector whose frame score is 1 where the audio is loud: calls where the test puts them."""

    kind, threshold, window_samples, hop_samples, context_frames = "fake", 0.5, 8000, 8000, 0
    config = Config()

    def frame_count(self, n):
        return max(1, -(-n // 8000))

    def frame_scores(self, wave):
        n = self.frame_count(wave.size)
        padded = np.zeros(n * 8000, np.float32)
        padded[: wave.size] = wave
        scores = (np.abs(padded.reshape(n, 8000)).max(axis=1) > 0.2).astype(np.float32)
        return np.arange(n) * 0.5, scores

    def clip_score(self, wave):
        return float(self.frame_scores(wave)[1].max())

    def fingerprint(self):
        return "loud"

    def parameters(self):
        return {"trainable": 0, "frozen": 0}


def _with_calls(path, seconds, calls_at):
    wave = np.zeros(int(seconds * SR), np.float32)
    for c in calls_at:
        wave[int(c * SR): int((c + 2.0) * SR)] = 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, SR)
    return path


def _events_config(**outputs):
    cfg = Config()
    cfg.events.threshold, cfg.events.min_duration_s, cfg.events.min_gap_s = 0.5, 0.5, 0.5
    for k, v in outputs.items():
        setattr(cfg.outputs, k, v)
    return cfg


def test_a_folder_of_audiomoth_named_files_matches_a_hand_count(tmp_path):
    """Two sites of AudioMoth-named files (UTC), reported in Manaus time: the activity table is
    the hand count; events.csv, recordings.csv and Raven tables carry the clock times."""
    rec = tmp_path / "rec"
    # site A: 21:59:30-22:00:30 UTC (17:59:30-18:00:30 in Manaus), calls at +5 s (17h) and +40 s (18h)
    _with_calls(rec / "A" / "20240301_215930.WAV", 60.0, [5.0, 40.0])
    # site A again at 23:00 UTC, no call: effort with zero calls; site B: the same name, another site
    _with_calls(rec / "A" / "20240301_230000.WAV", 30.0, [])
    _with_calls(rec / "B" / "20240301_215930.WAV", 60.0, [10.0])
    _with_calls(rec / "B" / "untimed.wav", 20.0, [3.0])
    out = tmp_path / "out"
    run = count_files(Loud(), sorted(rec.rglob("*.*")), out, _events_config(timezone="America/Manaus"), progress=False)
    assert sum(len(r.events) for r in run.results) == 4
    rows = list(csv.DictReader(open(out / "activity.csv")))
    assert [(r["site"], r["date"], r["hour"], r["recorded_s"], r["calls"], r["calls_per_hour"]) for r in rows] == [
        ("A", "2024-03-01", "17", "30.0", "1", "120.00"), ("A", "2024-03-01", "18", "30.0", "1", "120.00"),
        ("A", "2024-03-01", "19", "30.0", "0", "0.00"),
        ("B", "2024-03-01", "17", "30.0", "1", "120.00"), ("B", "2024-03-01", "18", "30.0", "0", "0.00")]
    assert (out / "activity.png").stat().st_size > 1000
    assert any("no start time" in n and "untimed.wav" in n for n in run.notes)
    events = {(r["site"], r["begin_datetime"]) for r in csv.DictReader(open(out / "events.csv"))}
    assert ("A", "2024-03-01T18:00:10.000-04:00") in events and ("B", "") in events
    recs = {r["file"].split("rec/")[1]: r for r in csv.DictReader(open(out / "recordings.csv"))}
    assert recs["A/20240301_215930.WAV"]["start_datetime"] == "2024-03-01T17:59:30.000-04:00"
    assert recs["A/20240301_215930.WAV"]["time_source"] == "name" and recs["B/untimed.wav"]["start_datetime"] == ""
    assert list(csv.reader(open(out / "counts.csv")))[0] == ["clip_name", "call_count"]  # the challenge's two columns
    raven = (out / "raven")
    table = next(p for p in raven.iterdir() if "/A/20240301_215930" in p.read_text())  # Begin Path names site A
    header, first = [line.split("\t") for line in table.read_text().splitlines()[:2]]
    cols = dict(zip(header, first))
    assert header[-4:] == list(RAVEN_CLOCK_COLUMNS)
    assert (cols["Begin Date"], cols["Begin Clock Time"]) == ("2024/03/01", "17:59:35.000")
    assert (cols["Low Freq (Hz)"], cols["High Freq (Hz)"]) == ("400.0", "4000.0")
    untimed = next(p for p in raven.iterdir() if p.name.startswith("untimed"))
    assert "Begin Clock Time" not in untimed.read_text()


def test_yamcap_activity_recomputes_from_the_tables(tmp_path):
    rec = tmp_path / "rec"
    _with_calls(rec / "A" / "20240301_100000.wav", 60.0, [5.0, 30.0])
    out = tmp_path / "out"
    count_files(Loud(), sorted(rec.rglob("*.wav")), out, _events_config(), progress=False)
    before = (out / "activity.csv").read_text()
    r = CliRunner().invoke(app, ["activity", str(out)])
    assert r.exit_code == 0 and (out / "activity.csv").read_text() == before, r.output
    r = CliRunner().invoke(app, ["activity", str(out), "--min-score", "2", "--timezone", "+01:00"])
    assert r.exit_code == 0, r.output
    assert list(csv.reader(open(out / "activity.csv")))[1] == ["A", "2024-03-01", "11", "60.0", "0", "0.00"]
    r = CliRunner().invoke(app, ["activity", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "recordings.csv: missing" in r.output


def test_count_refuses_a_bad_zone_or_site_source_in_one_line(tmp_path):
    _with_calls(tmp_path / "a.wav", 2.0, [])
    for args, words in ((["--timezone", "Mars/Base"], "Mars/Base"), (["--site-from", "gps"], "--site-from")):
        r = CliRunner().invoke(app, ["count", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o"), "-q", *args])
        assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "o").exists()


def test_clock_survives_a_resumed_run(tmp_path):
    """A resumed file's clock comes back from its state record: the tables are the same."""
    rec = tmp_path / "rec"
    _with_calls(rec / "A" / "20240301_100000.wav", 30.0, [5.0])
    _with_calls(rec / "A" / "20240301_110000.wav", 30.0, [5.0])
    out = tmp_path / "out"
    cfg = _events_config(timezone="-04:00")
    count_files(Loud(), sorted(rec.rglob("*.wav")), out, cfg, progress=False)
    first = {n: (out / n).read_text() for n in ("events.csv", "recordings.csv", "activity.csv")}
    run = count_files(Loud(), sorted(rec.rglob("*.wav")), out, cfg, progress=False)
    assert all(r.resumed for r in run.results)
    assert {n: (out / n).read_text() for n in first} == first


def test_raven_band_is_configurable_and_capped_by_nyquist():
    from yamnet_capuchin.outputs import high_freq_hz

    assert high_freq_hz(44100, 4000.0) == 4000.0 and high_freq_hz(6000, 4000.0) == 3000.0
    assert high_freq_hz(None, 12000.0) == 8000.0


def test_song_meter_names_in_local_time():
    """--name-time local: names read in the sites' zone; utc (the default): in UTC, then shown
    in the sites' zone."""
    from yamnet_capuchin.count import file_clock

    local = file_clock("SMU04213_20240301_053000.wav", _events_config(timezone="America/Manaus", name_time="local"))
    utc = file_clock("SMU04213_20240301_053000.wav", _events_config(timezone="America/Manaus"))
    assert local.start == t(2024, 3, 1, 5, 30, tz=MANAUS) and utc.start == t(2024, 3, 1, 5, 30)


def test_back_to_back_files_a_few_ms_long_are_not_reported_as_overlaps():
    """MP3 decoders add a few ms: 180.04 s files started 180 s apart overlap, count once, no warning."""
    recs = [Recording(f"a/{i}.mp3", "a", t(2024, 3, 1, 9, 55) + dt.timedelta(seconds=180 * i), 180.04) for i in range(3)]
    rows, summary = activity_table(recs, [])
    assert [(r.hour, r.recorded_s) for r in rows] == [(9, 300.0), (10, 240.04)]
    assert summary["overlapping"] == []


def test_a_run_without_any_start_time_says_so_once(tmp_path):
    """The challenge's recordings carry no time: one plain note, and an activity table of its header."""
    _with_calls(tmp_path / "rec" / "recording_01.wav", 10.0, [2.0])
    _with_calls(tmp_path / "rec" / "recording_02.wav", 10.0, [])
    run = count_files(Loud(), sorted((tmp_path / "rec").iterdir()), tmp_path / "out", _events_config(), progress=False)
    assert len(run.notes) == 1 and run.notes[0].startswith("no file has a start time")
    assert (tmp_path / "out" / "activity.csv").read_text().strip() == "site,date,hour,recorded_s,calls,calls_per_hour"
    assert not (tmp_path / "out" / "activity.png").exists()


def test_a_file_named_without_a_folder_takes_the_working_folder_as_its_site(tmp_path, monkeypatch):
    site = tmp_path / "north"
    _wav(site / "20240301_053000.wav")
    monkeypatch.chdir(site)
    clock = recording_clock("20240301_053000.wav")
    assert clock.site == "north" and clock.start == t(2024, 3, 1, 5, 30)
