"""End to end through the CLI, with the tiny YAMNet stand-in and synthetic data."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synth import call, soundscape, tfio_loads, write
from yamnet_capuchin.cli import app

FAST = ["--set", "head.hidden_units=32", "--set", "head.max_epochs=40", "--set", "augment.copies=1", "-q"]


@pytest.fixture(scope="module")
def trained(tiny_yamnet, tiny_data, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    mp.setenv("YAMCAP_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("runs") / "y"
    result = CliRunner().invoke(app, ["train", "--backbone", "yamnet", "--data", str(tiny_data), "--out", str(out), *FAST])
    yield out, result
    mp.undo()


def test_train_writes_a_complete_model_dir(trained):
    out, result = trained
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output
    for name in ("model.json", "head.npz", "config.toml", "metrics.json", "manifest.csv", "training_curve.png"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "model.json").read_text())
    assert meta["kind"] == "yamnet" and meta["backbone"]["runtime"] == "savedmodel"
    assert meta["audio_backend"] == "soundfile" and 0 < meta["threshold"] < 1
    assert len(meta["manifest_sha256"]) == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["roc_auc"] > 0.9  # synthetic calls are easy
    assert not any(p.name.endswith(".part") for p in out.parent.iterdir())


def _split_of_sources(model_dir: Path) -> dict[str, str]:
    with open(model_dir / "manifest.csv", newline="") as fh:
        return {r["source"]: r["split"] for r in csv.DictReader(fh)}


def test_train_leaves_out_unreadable_files_and_exits_1(trained, tiny_data, tiny_yamnet, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "Parsed_Capuchinbird_Clips" / "XC1000-9.wav").write_bytes(b"")
    (data / "Parsed_Not_Capuchinbird_Clips" / "noise-0-9.wav").write_text("not audio\n")
    # a source whose only file is unreadable: left out before the split is drawn
    (data / "Parsed_Not_Capuchinbird_Clips" / "broken-1.wav").write_text("not audio\n")
    out = tmp_path / "y"
    result = CliRunner().invoke(app, ["train", "--backbone", "yamnet", "--data", str(data), "--out", str(out), *FAST])
    assert result.exit_code == 1, result.output
    assert "XC1000-9.wav: empty file" in result.output and "noise-0-9.wav:" in result.output
    assert "3 file(s) could not be read" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert {Path(f["path"]).name for f in metrics["failures"]} == {"XC1000-9.wav", "noise-0-9.wav", "broken-1.wav"}
    assert (out / "head.npz").is_file() and (out / "model.json").is_file()
    # the bad files change nothing else: every source lands where it does without them
    assert _split_of_sources(out) == _split_of_sources(trained[0])


def test_predict_scores_good_files_and_reports_bad_ones(trained, tmp_path, monkeypatch, tiny_yamnet):
    out, _ = trained
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    d = tmp_path / "clips"
    write(d / "call.wav", call(2.5))
    write(d / "sub" / "call2.flac", call(3.0), sr=44100 // 2)
    mp3 = write(tmp_path / "long.mp3", call(3.0, sr=48000), sr=48000)
    (d / "truncated.mp3").write_bytes(mp3.read_bytes()[:2000])
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("not audio at all\n" * 10)
    write(d / "zero.wav", np.zeros(0, np.float32))
    scores = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["predict", "--model", str(out), str(d), "--out", str(scores), "-q"])
    assert result.exit_code == 1
    for name in ("truncated.mp3", "empty.wav", "text.wav", "zero.wav"):
        assert f"{name}:" in result.output
    rows = list(csv.DictReader(open(scores)))
    assert {r["path"].split("/")[-1] for r in rows} == {"call.wav", "call2.flac"}
    assert all(r["label"] == "1" for r in rows)


def test_model_runs_with_its_own_audio_backend_unless_told_otherwise(trained, tmp_path, monkeypatch, tiny_yamnet):
    """A model trained on tensorflow-io audio is run with tensorflow-io, not silently with the
    default backend; --set audio.backend=... overrides that, with a warning."""
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    model = tmp_path / "m"
    shutil.copytree(trained[0], model)
    for name, old, new in (("model.json", '"audio_backend": "soundfile"', '"audio_backend": "tfio"'),
                           ("config.toml", 'backend = "soundfile"', 'backend = "tfio"')):
        text = (model / name).read_text()
        assert old in text
        (model / name).write_text(text.replace(old, new))
    clip = write(tmp_path / "clips" / "call.wav", call(2.5))
    r = CliRunner().invoke(app, ["count", "-m", str(model), str(clip), "--out", str(tmp_path / "c"), "-q"])
    assert "now 'soundfile'" not in r.output
    if not tfio_loads():  # here the model's backend cannot run, and says so
        assert r.exit_code == 2 and "tensorflow-io" in r.output, r.output
    r = CliRunner().invoke(app, ["predict", "-m", str(model), str(clip), "--out", str(tmp_path / "a.csv"), "-q",
                                 "--set", "audio.backend=soundfile"])
    assert r.exit_code == 0, r.output
    assert "trained with audio backend 'tfio', now 'soundfile'" in r.output
    assert (tmp_path / "a.csv").read_text().startswith("path,score,label")


def test_predict_leaves_no_file_when_nothing_scores(trained, tmp_path, monkeypatch, tiny_yamnet):
    out, _ = trained
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    (tmp_path / "bad.wav").write_text("nope")
    result = CliRunner().invoke(app, ["predict", "-m", str(out), str(tmp_path / "bad.wav"), "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 1 and not (tmp_path / "s.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.wav"]


def test_count_outputs_resume_and_failures(trained, tmp_path, monkeypatch, tiny_yamnet):
    out, _ = trained
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    rec = tmp_path / "rec"
    write(rec / "a.flac", soundscape(60.0, [5.0, 20.0, 40.0]))
    write(rec / "b.wav", soundscape(30.0, []))
    (rec / "broken.wav").write_text("garbage")
    res_dir = tmp_path / "out"
    # the tiny model is not calibrated like the real one: use its own clip threshold
    args = ["count", "--model", str(out), str(rec), "--out", str(res_dir), "-q",
            "--set", "events.threshold=-1", "--set", "events.off_threshold=-1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    counts = dict(csv.reader(open(res_dir / "counts.csv")))
    assert counts.pop("clip_name") == "call_count"
    assert counts == {"a.flac": "3", "b.wav": "0"}
    errors = list(csv.DictReader(open(res_dir / "errors.csv")))
    assert [e["file"].split("/")[-1] for e in errors] == ["broken.wav"]
    events = list(csv.DictReader(open(res_dir / "events.csv")))
    assert len(events) == 3
    starts = sorted(float(e["start_s"]) for e in events)
    assert np.allclose(starts, [5.0, 20.0, 40.0], atol=1.0)
    raven = (res_dir / "raven" / "a.Table.1.selections.txt").read_text().splitlines()
    assert raven[0].startswith("Selection\tView\tChannel\tBegin Time (s)") and len(raven) == 4
    assert (res_dir / "audacity" / "a.txt").read_text().count("\n") == 3
    assert (res_dir / "counts.png").stat().st_size > 0
    assert "total calls: 3" in result.output
    again = CliRunner().invoke(app, args)
    assert "resumed: 2" in again.output
    summary = json.loads((res_dir / "summary.json").read_text())
    assert summary["resumed"] == 2 and summary["failed"] == 1
    # changing a counting parameter invalidates the resume state
    third = CliRunner().invoke(app, args + ["--min-gap", "0.1"])
    assert "resumed: 0" in third.output


def test_help_teaches():
    for cmd in ("train", "predict", "count"):
        result = CliRunner().invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output


def test_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["predict", "-m", str(tmp_path), str(tmp_path), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2


def test_synth_then_evaluate(trained, tiny_data, tmp_path, monkeypatch, tiny_yamnet):
    out, _ = trained
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    listing = tmp_path / "bg.txt"
    listing.write_text("recording_01\n")
    sc = tmp_path / "sc"
    r = CliRunner().invoke(app, ["synth", "--data", str(tiny_data), "--out", str(sc), "--n", "3", "--seed", "1",
                                 "--duration", "20", "--calls-per-file", "1", "3", "--snr-range", "10", "20",
                                 "--density", "sparse", "--background-list", str(listing), "-q"])
    assert r.exit_code == 0, r.output
    rep = tmp_path / "rep"
    r = CliRunner().invoke(app, ["evaluate", str(sc), "--truth", str(sc / "truth.csv"), "--model", str(out),
                                 "--out", str(rep), "-q", "--set", "events.threshold=-1",
                                 "--set", "events.off_threshold=-1", "--tune"])
    assert r.exit_code == 0, r.output
    report = json.loads((rep / "report.json").read_text())
    for key in ("event_precision", "event_recall", "event_f1", "count_mae", "count_rmse", "count_bias",
                "count_exact_rate", "sweep", "best_f1_threshold_on_this_data"):
        assert key in report
    assert report["files"] == 3 and report["event_f1"] > 0.6
    assert (rep / "report.md").read_text().startswith("# Event and count evaluation")
    # the same truth read from the Raven tables synth wrote
    assert (rep / "tuned_events.toml").read_text().count("\n") == 7
    assert report["tuning"]["top"][0]["event_f1"] >= report["event_f1"]
    r = CliRunner().invoke(app, ["evaluate", str(sc), "--truth", str(sc), "--model", str(out), "--out",
                                 str(tmp_path / "rep2"), "-q", "--set", "events.threshold=-1",
                                 "--set", "events.off_threshold=-1"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert again["event_f1"] == report["event_f1"] and again["true_total"] == report["true_total"]


@pytest.mark.parametrize("command", [[], ["count"], ["train"], ["review"], ["panels"], ["families"]])
def test_help_does_not_import_heavy_libraries(command):
    """`yamcap [command] --help` answers without TensorFlow, Keras, librosa, NumPy or matplotlib."""
    import subprocess
    import sys

    code = ("import sys\nfrom yamnet_capuchin.cli import app\ntry:\n    app(%r)\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('tensorflow', 'keras', 'librosa', 'numpy', 'matplotlib') "
            "if m in sys.modules))" % ([*command, "--help"],))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "Usage" in out and out.strip().endswith("HEAVY []"), out[-300:]
