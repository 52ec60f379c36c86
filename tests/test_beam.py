"""`yamcap count --runner`: the Apache Beam pipeline gives local `count`'s outputs.

Tiny YAMNet and a random head (no ../shared); Beam's DirectRunner in one process and in
multi-process mode. Timings (summary.json, state records) are the only allowed differences.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth import soundscape, write
from test_reliability import env, model_dir, one_line_error  # noqa: F401  (env, model_dir: fixtures)
from yamnet_capuchin import beam as beam_mod
from yamnet_capuchin.cli import app
from yamnet_capuchin.errors import YamcapError

pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")


@pytest.fixture
def recs(tmp_path) -> Path:
    """Three short recordings (two share a stem, in different folders) and one bad file."""
    d = tmp_path / "rec"
    write(d / "a.wav", soundscape(20.0, [5.0]))
    write(d / "b.flac", soundscape(12.0, [2.0, 8.0]))
    write(d / "sub" / "a.wav", soundscape(9.0, []))
    (d / "broken.wav").write_bytes(b"RIFF not really audio")
    return d


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes, without timings: summary.json's and the state records'
    measured seconds (and the runner's name) are left out; everything else must be equal."""
    files = {}
    for f in sorted(out.rglob("*")):
        if not f.is_file() or f.name == ".yamcap-lock":
            continue
        data = f.read_bytes()
        if f.name == "summary.json" or ".yamcap-state" in f.parts:
            d = json.loads(data)
            for key in ("wall_seconds", "realtime_factor", "seconds", "runner"):
                d.pop(key, None)
            data = json.dumps(d, sort_keys=True).encode()
        files[str(f.relative_to(out))] = data
    return files


@pytest.fixture
def local_run(env, model_dir, recs, tmp_path):  # noqa: F811
    out = tmp_path / "local"
    r = invoke("count", recs, "--out", out, "--model", model_dir, "-q")
    assert r.exit_code == 1, r.output  # the broken file
    return out


@pytest.mark.parametrize("workers", [None, 2], ids=["in-memory", "2-processes"])
def test_direct_runner_outputs_equal_local_count(env, model_dir, recs, tmp_path, local_run, workers):  # noqa: F811
    out = tmp_path / "beam"
    args = ["count", recs, "--out", out, "--model", model_dir, "--runner", "direct"]
    r = invoke(*args, *(["--workers", workers] if workers else []))
    assert r.exit_code == 1, r.output
    assert "failed:" in r.output and "broken.wav" in r.output
    local, on_beam = outputs(local_run), outputs(out)
    assert sorted(on_beam) == sorted(local)
    assert {k for k in local if local[k] != on_beam[k]} == set()
    rows = list(csv.DictReader(open(out / "errors.csv")))
    assert [Path(r["file"]).name for r in rows] == ["broken.wav"]
    counts = list(csv.DictReader(open(out / "counts.csv")))
    assert len(counts) == 3  # the two a.wav are told apart by their paths
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runner"] == "DirectRunner" and summary["counted"] == 3 and summary["failed"] == 1
    assert not (out / ".yamcap-lock").exists()


def test_rerun_resumes_every_finished_file(env, model_dir, recs, tmp_path):  # noqa: F811
    out = tmp_path / "beam"
    invoke("count", recs, "--out", out, "--model", model_dir, "--runner", "direct")
    first = outputs(out)
    r = invoke("count", recs, "--out", out, "--model", model_dir, "--runner", "direct")
    assert "resumed: 3" in r.output, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == 3 and summary["audio_seconds_processed"] == 0
    again = outputs(out)
    assert {k for k in first if k != "summary.json" and first[k] != again[k]} == set()


def test_remote_output_is_staged_then_copied(env, model_dir, recs, tmp_path, local_run, monkeypatch):  # noqa: F811
    """An OUT (and a model) on another file system go through local staging folders and
    FileSystems (the local file system standing in for gs://); the files are those of local count."""
    out = tmp_path / "remote"
    local_only = beam_mod.is_local
    fetched = []
    local_model_dir = beam_mod._local_model_dir
    monkeypatch.setattr(beam_mod, "_local_model_dir", lambda m, t: fetched.append(m) or local_model_dir(m, t))
    monkeypatch.setattr(beam_mod, "is_local", lambda p: local_only(p) and not str(p).startswith((str(out),
                                                                                                  str(model_dir))))
    from apache_beam.io.filesystems import FileSystems

    created = []
    create = FileSystems.create
    monkeypatch.setattr(FileSystems, "create", staticmethod(
        lambda path, *a, **k: (created.append(str(Path(path).relative_to(out))), create(path, *a, **k))[1]))
    r = invoke("count", recs, "--out", out, "--model", model_dir, "--runner", "direct")
    assert r.exit_code == 1, r.output
    assert outputs(out) == outputs(local_run)
    assert fetched[0] == str(model_dir)  # the driver's copy (the workers' are made in their pickled copies)
    states = [i for i, p in enumerate(created) if p.startswith(".yamcap-state")]
    assert len(states) == 3
    for i in states:  # each file's state record comes after its table and labels
        assert sorted(p.split("/")[0] for p in created[i - 2:i]) == ["audacity", "raven"]


def test_pipeline_args():
    assert beam_mod.pipeline_args("direct", 2) == [
        "--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing",
        "--default_sdk_harness_log_level=ERROR"]
    assert beam_mod.pipeline_args("dataflow", 8, ["project=p", "--region=europe-west1"]) == [
        "--runner=DataflowRunner", "--max_num_workers=8", "--project=p", "--region=europe-west1"]
    assert beam_mod.pipeline_args("flink", 4)[1] == "--parallelism=4"
    for bad, needle in ((("nope",), "unknown runner 'nope'"), (("direct", 0), "at least 1"),
                        (("spark", 2), "--beam-option"), (("direct", None, ["novalue"]), "KEY=VALUE")):
        with pytest.raises(YamcapError, match=needle):
            beam_mod.pipeline_args(*bad)


def test_match_inputs_globs_folders_and_missing(recs, tmp_path):
    found = beam_mod.match_inputs([str(recs / "*.wav"), str(recs), str(tmp_path / "missing.wav")])
    names = [str(Path(p).relative_to(recs)) if str(p).startswith(str(recs)) else p for p in found]
    assert names == ["a.wav", "broken.wav", "b.flac", "sub/a.wav", str(tmp_path / "missing.wav")]


def test_options_need_a_runner_and_remote_paths_too(env, model_dir, recs, tmp_path):  # noqa: F811
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--workers", 2), "--runner")
    one_line_error(invoke("count", "gs://bucket/x.wav", "--out", tmp_path / "o"), "gs://bucket/x.wav", "--runner")


def test_without_beam_the_error_names_the_extra(env, model_dir, recs, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--runner", "direct"), "yamnet-capuchin[beam]")


def test_direct_runner_writes_the_same_clock_times_and_activity(env, model_dir, tmp_path):  # noqa: F811
    """Recorder time on Beam: sites from the folders, start times from AudioMoth names and a
    GUANO chunk (read from the worker's copy, the name from the original path), the same
    events.csv clock columns, recordings.csv, activity.csv and Raven tables as a local run."""
    import datetime as dt

    guano = pytest.importorskip("guano")
    d = tmp_path / "pam"
    write(d / "A" / "20240301_235930.wav", soundscape(40.0, [5.0, 35.0]))
    write(d / "B" / "20240301_235930.flac", soundscape(12.0, [2.0]))
    write(d / "C" / "no_time_in_name.wav", soundscape(10.0, [3.0]))
    meta = guano.GuanoFile(str(d / "C" / "no_time_in_name.wav"))
    meta["Timestamp"] = dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    meta.write(make_backup=False)
    args = ["count", d, "--model", model_dir, "-q", "--timezone", "America/Manaus"]
    assert invoke(*args, "--out", tmp_path / "local").exit_code == 0
    r = invoke(*args, "--out", tmp_path / "beam", "--runner", "direct")
    assert r.exit_code == 0, r.output
    local, on_beam = outputs(tmp_path / "local"), outputs(tmp_path / "beam")
    assert sorted(on_beam) == sorted(local) and {k for k in local if local[k] != on_beam[k]} == set()
    recs = {Path(r["file"]).parent.name: r for r in csv.DictReader(open(tmp_path / "beam" / "recordings.csv"))}
    assert {site: (r["start_datetime"], r["time_source"]) for site, r in recs.items()} == {
        "A": ("2024-03-01T19:59:30.000-04:00", "name"), "B": ("2024-03-01T19:59:30.000-04:00", "name"),
        "C": ("2024-03-02T06:00:00.000-04:00", "guano")}
    hours = {(r["site"], r["hour"]) for r in csv.DictReader(open(tmp_path / "beam" / "activity.csv"))}
    assert hours == {("A", "19"), ("A", "20"), ("B", "19"), ("C", "6")}
