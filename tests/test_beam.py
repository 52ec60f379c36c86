"""`yamcap count --runner`: the Apache Beam pipeline gives local `count`'s outputs.

Tiny YAMNet and a random head (no ../shared); Beam's DirectRunner in one process and in
multi-process mode, and the DaskRunner on a local cluster of two worker processes and on a
running cluster joined by address. Timings (summary.json, state records) are the only allowed
differences. The local Dask cluster listens on loopback: the tests try to reach it as a web page
or a stranger would.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
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


# what a run may print on stderr (the runner's worker processes included): yamcap's own lines only
YAMCAP_LINE = re.compile(r"(failed: |warning: |\s*$)")


def assert_same_as_local(r, out: Path, local_run: Path, runner: str, capfd=None) -> None:
    """The run ``r`` into ``out`` wrote local ``count``'s files and, with ``capfd``, nothing on stderr but
    yamcap's own lines (the workers' included, where they are this run's)."""
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
    assert summary["runner"] == runner and summary["counted"] == 3 and summary["failed"] == 1
    assert not (out / ".yamcap-lock").exists()
    if capfd is not None:  # quiet: no Beam or Dask log line, from this process or its workers
        chatter = [line for line in capfd.readouterr().err.splitlines() if not YAMCAP_LINE.match(line)]
        assert chatter == []


@pytest.mark.parametrize("workers", [None, 2], ids=["in-memory", "2-processes"])
def test_direct_runner_outputs_equal_local_count(env, model_dir, recs, tmp_path, local_run, workers,  # noqa: F811
                                                 capfd):
    out = tmp_path / "beam"
    args = ["count", recs, "--out", out, "--model", model_dir, "--runner", "direct"]
    capfd.readouterr()
    r = invoke(*args, *(["--workers", workers] if workers else []))
    assert_same_as_local(r, out, local_run, "DirectRunner", capfd)


def test_dask_runner_on_a_local_cluster_equals_local_count(env, model_dir, recs, tmp_path, local_run,  # noqa: F811
                                                           capfd):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    out = tmp_path / "dask"
    capfd.readouterr()
    r = invoke("count", recs, "--out", out, "--model", model_dir, "--runner", "dask", "--workers", 2)
    assert "on DaskRunner" in r.output and "2 worker threads" in r.output, r.output
    assert_same_as_local(r, out, local_run, "DaskRunner", capfd)
    again = invoke("count", recs, "--out", out, "--model", model_dir, "--runner", "dask", "--workers", 2)
    assert "resumed: 3" in again.output, again.output


def test_dask_runner_joins_a_running_cluster(env, model_dir, recs, tmp_path, local_run):  # noqa: F811
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    out = tmp_path / "dask"
    # one worker process with two threads (Beam's DaskRunner shares its output lists between the
    # tasks of an in-process, processes=False, worker: such clusters are not supported)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:  # its workers log to the test's stderr
        scheduler_file = tmp_path / "scheduler.json"  # as `dask scheduler --scheduler-file` writes it
        scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": cluster.scheduler_address}))
        r = invoke("count", recs, "--out", out, "--model", model_dir, "--runner", "dask",
                   "--dask-scheduler", scheduler_file)
        assert "2 worker threads" in r.output, r.output
        assert_same_as_local(r, out, local_run, "DaskRunner")
        one_line_error(invoke("count", recs, "--out", out, "--runner", "dask", "--workers", 2,
                              "--dask-scheduler", cluster.scheduler_address), "--workers", "--dask-scheduler")


def test_dask_options_errors(env, model_dir, recs, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    monkeypatch.setattr(beam_mod, "DASK_CONNECT_TIMEOUT_S", 1)
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--runner", "dask",
                          "--dask-scheduler", "tcp://127.0.0.1:9"), "tcp://127.0.0.1:9", "cannot connect")
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--runner", "direct",
                          "--dask-scheduler", "tcp://127.0.0.1:9"), "--runner dask")
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--dask-scheduler", "tcp://127.0.0.1:9"),
                   "--runner")
    (tmp_path / "not-a-scheduler.json").write_text("{}")
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--runner", "dask",
                          "--dask-scheduler", tmp_path / "not-a-scheduler.json"), "not a Dask scheduler file")
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "--runner", "dask"), "yamnet-capuchin[beam]")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_local_dask_cluster_turns_away_web_pages_and_strangers():
    """The loopback cluster as an attacker finds it: a web page can send HTTP to any of its
    ports, a local process can connect with Dask's own client. Every HTTP server (scheduler and
    workers) has no page at all; the scheduler's port speaks only TLS with this launch's
    credentials, so neither an HTTP request nor a client without them gets in."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with beam_mod.dask_cluster(workers=2) as (address, threads):
        assert threads == 2 and address.startswith("tls://127.0.0.1:")
        with distributed.Client(address, timeout=10) as client:  # this launch's credentials (set for the block)
            assert client.submit(sum, [1, 2]).result() == 3
            info = client.scheduler_info()
        ports = [info["services"]["dashboard"]] if "dashboard" in info.get("services", {}) else []
        ports += [w["services"]["dashboard"] for w in info["workers"].values()]
        assert len(ports) >= 2  # the workers' HTTP servers at least
        for port in ports:
            for path in ("/", "/status", "/health", "/metrics", "/info/main/workers.html", "/json/counts.json",
                         "/api/v1/retire_workers", "/statics/"):
                for host in ("127.0.0.1", "evil.example"):
                    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={
                        "Host": host, "Origin": "http://evil.example"})
                    with pytest.raises(urllib.error.HTTPError) as exc:
                        urllib.request.urlopen(req, timeout=5)
                    assert exc.value.code == 404, (port, path)
        host, port = address[len("tls://"):].rsplit(":", 1)
        with __import__("socket").create_connection((host, int(port)), timeout=5) as sock:  # a web page's POST
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
                         b"Content-Length: 2\r\n\r\n{}")
            sock.settimeout(5)
            try:
                reply = sock.recv(100)
            except (ConnectionResetError, TimeoutError):
                reply = b""
            assert b"HTTP" not in reply
        stranger = {"distributed.comm.require-encryption": False, "distributed.comm.tls.ca-file": None,
                    "distributed.comm.tls.client.cert": None, "distributed.comm.tls.client.key": None}
        with dask.config.set(stranger):
            for url in (address, address.replace("tls://", "tcp://")):
                with pytest.raises(Exception):
                    distributed.Client(url, timeout=3)


def test_runner_chatter_is_hidden_but_the_rest_passes(capfd):
    """Lines on file descriptor 2 (worker processes inherit it) that are Beam's or Dask's log
    records are dropped; everything else, a child's error included, comes through in order."""
    capfd.readouterr()
    child = ("import sys; sys.stderr.write('WARNING:root:apitools not found, and bigquery client libraries\\n"
             "INFO:__main__:Logging handler created.\\n"
             "2026-12-07 12:50:24,758 - distributed.worker - INFO - Start worker at: tcp://127.0.0.1:1\\n"
             "ERROR: the child broke\\n')")
    with beam_mod.runner_chatter_hidden():
        os.write(2, b"INFO:distributed.scheduler:State start\nkept 1\n")
        subprocess.run([sys.executable, "-c", child], check=True)
        print("kept 2", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert err.splitlines() == ["kept 1", "ERROR: the child broke", "kept 2"]
    keep = beam_mod.ChatterFilter()  # a traceback logged with a hidden record goes with it
    lines = ["2026-12-07 13:41:00,001 - distributed.batched - INFO - Batched Comm Closed <TCP>",
             "Traceback (most recent call last):", '  File "batched.py", line 115, in _background_send',
             "    nbytes = yield coro", "distributed.comm.core.CommClosedError", "warning: kept",
             "Traceback (most recent call last):", '  File "cli.py", line 1, in main',
             "ValueError: yamcap's own", "warning: no file has a start time"]
    assert [line for line in lines if keep(line)] == lines[5:]
    with beam_mod.runner_chatter_hidden(enabled=False):
        os.write(2, b"INFO:distributed.scheduler:State start\n")
    assert capfd.readouterr().err == "INFO:distributed.scheduler:State start\n"


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
    assert beam_mod.pipeline_args("dask", 2) == ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"]
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
