"""Faults on the output and model side: each gives one clear line, and outputs stay usable.

Covers docs/reliability.md: umask-following atomic writes, outputs checked before the first
file is read, output errors that name the output (never the input), damaged and mismatched
models, the output-folder lock, exact NaN positions, progress by seconds of audio, broken
links, sources.csv, TFLite's silenced log line, the help text, Raven tables that other
readers accept, streamed `predict`, and kill / Ctrl-C mid-run then resume.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from synth import SR, call, soundscape, write
from yamnet_capuchin import count as count_mod
from yamnet_capuchin import fileio
from yamnet_capuchin.audio import AudioError, load_audio
from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.cli import app
from yamnet_capuchin.config import Config
from yamnet_capuchin.errors import ModelError, YamcapError
from yamnet_capuchin.fileio import atomic_write_text, expand_audio_paths
from yamnet_capuchin.head import FrameHead
from yamnet_capuchin.detectors import load_model
from yamnet_capuchin.model import YamnetDetector

ROOT = Path(__file__).resolve().parents[1]
TFLITE = Path(os.environ.get("YAMCAP_YAMNET_TFLITE") or ROOT.parent / "shared" / "models" / "yamnet.tflite")


def random_head(dim=1024, hidden=16, seed=0, context=0, pooling="max", inputs="embeddings"):
    rng = np.random.default_rng(seed)
    head = FrameHead(hidden_units=hidden, pooling=pooling, context=context, inputs=inputs)
    width = (dim + (64 if inputs != "embeddings" else 0)) * (2 if context else 1)
    head.weights_ = {"w1": rng.standard_normal((width, hidden)).astype(np.float32) * 0.05,
                     "b1": np.zeros(hidden, np.float32),
                     "w2": rng.standard_normal(hidden).astype(np.float32), "b2": np.zeros(1, np.float32)}
    if pooling == "attention":
        head.weights_["wa"] = rng.standard_normal(hidden).astype(np.float32)
        head.weights_["ba"] = np.zeros(1, np.float32)
    return head


@pytest.fixture(scope="module")
def model_dir(tiny_yamnet, tmp_path_factory) -> Path:
    """A saved YAMNet model (random head, threshold 0.5) on the tiny YAMNet."""
    out = tmp_path_factory.mktemp("model") / "m"
    YamnetDetector(random_head(), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet))).save(out)
    return out


@pytest.fixture
def env(tiny_yamnet, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def recs(tmp_path) -> Path:
    d = tmp_path / "rec"
    write(d / "a.wav", soundscape(20.0, [5.0]))
    write(d / "b.flac", soundscape(12.0, []))
    return d


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *needles):
    """The command failed with exit 2 and said so in one line (no traceback) naming ``needles``."""
    text = result.output.strip()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for n in needles:
        assert str(n) in text, text
    return text


def no_scoring(monkeypatch):
    """Make reading or scoring any file fail the test: outputs must be checked first."""
    def boom(*a, **k):
        raise AssertionError("a file was processed before the outputs were checked")

    monkeypatch.setattr("yamnet_capuchin.count.score_and_detect", boom)
    monkeypatch.setattr("yamnet_capuchin.predict.streamed_clip_score", boom)


# -- 1. outputs follow the umask --------------------------------------------------------------

@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_writes_follow_the_umask(tmp_path):
    with umask(0o022):
        atomic_write_text(tmp_path / "a.txt", "x")
    with umask(0o077):
        atomic_write_text(tmp_path / "b.txt", "x")
    with umask(0o002):
        atomic_write_text(tmp_path / "c.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c.txt").stat().st_mode & 0o777 == 0o664


def test_count_outputs_are_644_under_umask_022(env, model_dir, recs, tmp_path):
    with umask(0o022):
        r = invoke("count", recs, "--out", tmp_path / "o", "-m", model_dir, "-q")
    assert r.exit_code == 0, r.output
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert len(files) > 8
    assert {p.stat().st_mode & 0o777 for p in files} == {0o644}


# -- 2, 3. outputs checked before the first file; output errors name the output ----------------

def test_count_out_naming_a_file_fails_fast(env, model_dir, recs, tmp_path, monkeypatch):
    no_scoring(monkeypatch)
    (tmp_path / "taken").write_text("x")
    one_line_error(invoke("count", recs, "--out", tmp_path / "taken", "-m", model_dir, "-q"),
                   "taken", "is a file, not a folder")


def test_predict_out_naming_a_folder_fails_fast(env, model_dir, recs, tmp_path, monkeypatch):
    no_scoring(monkeypatch)
    (tmp_path / "scores").mkdir()
    one_line_error(invoke("predict", recs, "--out", tmp_path / "scores", "-m", model_dir, "-q"),
                   "scores", "is a directory")


def test_output_below_a_file_fails_fast(env, model_dir, recs, tmp_path, monkeypatch):
    no_scoring(monkeypatch)
    (tmp_path / "plain").write_text("x")
    one_line_error(invoke("count", recs, "--out", tmp_path / "plain" / "out", "-m", model_dir, "-q"),
                   "plain is a file, not a folder")
    one_line_error(invoke("predict", recs, "--out", tmp_path / "plain" / "s.csv", "-m", model_dir, "-q"),
                   "plain is a file, not a folder")
    assert not (tmp_path / "out").exists()


def _refuse_writes_in(monkeypatch, folder: Path):
    """Simulate a folder without write permission (the tests run as root, which ignores modes)."""
    real = fileio.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)


def test_unwritable_output_folder_fails_fast(env, model_dir, recs, tmp_path, monkeypatch):
    no_scoring(monkeypatch)
    out = tmp_path / "ro"
    out.mkdir()
    _refuse_writes_in(monkeypatch, out)
    one_line_error(invoke("count", recs, "--out", out, "-m", model_dir, "-q"), "ro", "not writable")
    one_line_error(invoke("predict", recs, "--out", out / "s.csv", "-m", model_dir, "-q"), "not writable")
    # a folder that does not exist yet is probed at its nearest existing parent
    one_line_error(invoke("count", recs, "--out", out / "new" / "deeper", "-m", model_dir, "-q"), "not writable")


def test_read_only_raven_folder_is_reported_against_the_output(env, model_dir, recs, tmp_path, monkeypatch):
    out = tmp_path / "o"
    (out / "raven").mkdir(parents=True)
    _refuse_writes_in(monkeypatch, out / "raven")
    text = one_line_error(invoke("count", recs, "--out", out, "-m", model_dir, "-q"), "raven", "not writable")
    assert "a.wav" not in text and not (out / "errors.csv").exists()


def test_output_failing_mid_run_names_the_output_never_the_input(tiny_yamnet, model_dir, recs, tmp_path,
                                                                  monkeypatch):
    """If a write fails after the check (disk full, permissions changed), the run stops with the
    output's name; the input is not listed as unreadable."""
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    detector = load_model(model_dir)
    out = tmp_path / "o"
    real = fileio.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).name == "raven":
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(count_mod, "check_outputs", lambda out_dir: None, raising=False)
    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    with pytest.raises(YamcapError) as info:
        count_mod.count_files(detector, sorted(recs.iterdir()), out, Config(), progress=False)
    message = str(info.value)
    assert "raven" in message and "Permission denied" in message and "cannot read" not in message
    assert "\n" not in message
    assert not (out / "errors.csv").exists() and not (out / fileio.LOCK_NAME).exists()


def test_predict_write_failure_is_one_line(env, model_dir, recs, tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("yamnet_capuchin.fileio.os.replace", full)
    one_line_error(invoke("predict", recs, "--out", tmp_path / "s.csv", "-m", model_dir, "-q"),
                   "s.csv", "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["rec"]


# -- 4, 16. damaged or mismatched models --------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif how == "flipped":  # the zip directory is intact, a member's data is not: "Bad CRC-32"
        b = bytearray(data)
        for i in range(len(b) // 2, len(b) // 2 + 64):
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "random", "flipped", "empty"])
def test_damaged_head_is_one_line_naming_the_file(env, model_dir, recs, tmp_path, how):
    m = tmp_path / "m"
    shutil.copytree(model_dir, m)
    _damage(m / "head.npz", how)
    with pytest.raises(ModelError) as info:
        FrameHead.load(m / "head.npz", hidden_units=16, pooling="max")
    assert "head.npz" in str(info.value) and "\n" not in str(info.value)
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "-m", m, "-q"), m / "head.npz")
    one_line_error(invoke("predict", recs, "--out", tmp_path / "s.csv", "-m", m, "-q"), m / "head.npz")


@pytest.mark.parametrize("name", ["model.json", "config.toml"])
def test_damaged_model_files_are_one_line(env, model_dir, recs, tmp_path, name):
    m = tmp_path / "m"
    shutil.copytree(model_dir, m)
    _damage(m / name, "random")
    one_line_error(invoke("predict", recs, "--out", tmp_path / "s.csv", "-m", m, "-q"), name)


def test_model_of_another_yamnet_is_refused(env, model_dir, recs, tmp_path):
    m = tmp_path / "m"
    shutil.copytree(model_dir, m)
    meta = json.loads((m / "model.json").read_text())
    meta["backbone"]["version"] = "2"
    (m / "model.json").write_text(json.dumps(meta))
    one_line_error(invoke("count", recs, "--out", tmp_path / "o", "-m", m, "-q"), "version 2")
    # a head trained on embeddings of another width (another backbone) is refused at load
    m2 = tmp_path / "m2"
    YamnetDetector(random_head(dim=512), 0.5, Config(), {}, YamnetBackbone(os.environ["YAMCAP_YAMNET"])).save(m2)
    one_line_error(invoke("predict", recs, "--out", tmp_path / "s.csv", "-m", m2, "-q"), "512-wide", "1024")


# -- 5. the output-folder lock -------------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_held_by_a_live_run_refuses(env, model_dir, recs, tmp_path, monkeypatch):
    no_scoring(monkeypatch)
    out = tmp_path / "o"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".yamcap-lock").write_text(f"{live.pid} {socket.gethostname()}\n")
        one_line_error(invoke("count", recs, "--out", out, "-m", model_dir, "-q"), f"PID {live.pid}", "in use")
        assert (out / ".yamcap-lock").exists()  # not ours to remove
    finally:
        live.kill()
        live.wait()


def test_stale_lock_is_taken_over_and_removed_at_the_end(env, model_dir, recs, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".yamcap-lock").write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    r = invoke("count", recs, "--out", out, "-m", model_dir, "-q")
    assert r.exit_code == 0, r.output
    assert not (out / ".yamcap-lock").exists()


def test_lock_is_exclusive_reentrant_and_released_on_ctrl_c(tmp_path):
    from yamnet_capuchin.fileio import output_lock

    out = tmp_path / "o"
    with output_lock(out) as lock:
        assert lock.read_text().split() == [str(os.getpid()), socket.gethostname()]
        with output_lock(out):  # the same process may nest
            pass
        assert lock.exists()
    assert not lock.exists()
    with pytest.raises(KeyboardInterrupt):
        with output_lock(out):
            raise KeyboardInterrupt
    assert not (out / ".yamcap-lock").exists()


def test_ctrl_c_in_count_exits_130_and_removes_the_lock(env, model_dir, recs, tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("yamnet_capuchin.count.score_and_detect", interrupted)
    r = invoke("count", recs, "--out", tmp_path / "o", "-m", model_dir, "-q")
    assert r.exit_code == 130
    assert not (tmp_path / "o" / ".yamcap-lock").exists()


# -- 6. NaN position -------------------------------------------------------------------------------

@pytest.mark.parametrize("rate,index", [(16000, 0), (16000, 16000 * 20 + 5), (44100, 44100 * 7 + 3)])
def test_nan_position_is_exact(tmp_path, rate, index):
    x = np.zeros(rate * 30, np.float32)
    x[index] = np.nan
    sf.write(tmp_path / "n.wav", x, rate, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        load_audio(tmp_path / "n.wav")
    assert f"first at {index / rate:.3f} s, sample {index})" in str(info.value)


# -- 7. progress by seconds of audio ----------------------------------------------------------------

class FakeBar:
    def __init__(self):
        self.total = None
        self.advanced = []
        self.completed = None

    def add_task(self, description, total=None, completed=0):
        self.total = total
        return 0

    def advance(self, task, amount=1.0):
        self.advanced.append(amount)

    def update(self, task, total=None, completed=None):
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed


def test_count_progress_goes_by_seconds_of_audio(tiny_yamnet, model_dir, recs, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    bar = FakeBar()

    @contextmanager
    def fake_progress(enabled=True):
        yield bar

    monkeypatch.setattr(count_mod, "audio_progress", fake_progress)
    cfg = Config()
    cfg.audio.block_seconds = 5.0
    count_mod.count_files(load_model(model_dir), sorted(recs.iterdir()), tmp_path / "o", cfg)
    assert bar.total == pytest.approx(32.0, abs=0.01)  # 20 s + 12 s, from the headers
    assert len(bar.advanced) > 4  # within files, block by block
    assert sum(bar.advanced) == pytest.approx(32.0, abs=0.01)
    assert bar.completed == pytest.approx(32.0, abs=0.01)


def test_audio_progress_shows_audio_time_and_rate():
    from rich.console import Console

    from yamnet_capuchin.progress import audio_progress, format_duration

    assert format_duration(59.6) == "1:00" and format_duration(3725) == "1:02:05"
    with audio_progress(True) as bar:
        bar.console.file = open(os.devnull, "w")
        task = bar.add_task("Counting", total=600.0)
        bar.advance(task, 90.0)
        console = Console(width=200, record=True, file=open(os.devnull, "w"))
        console.print(bar.get_renderable())
        text = console.export_text()
    assert "1:30/10:00 audio" in text


# -- 8. broken links and traceable table names -------------------------------------------------------

def test_broken_links_are_failures_and_sources_csv_traces_names(env, model_dir, tmp_path):
    d = tmp_path / "rec"
    write(d / "site1" / "r.wav", soundscape(10.0, []))
    write(d / "site2" / "r.wav", soundscape(10.0, []))
    (d / "gone.mp3").symlink_to(tmp_path / "nowhere.mp3")
    assert d / "gone.mp3" in expand_audio_paths([d])
    out = tmp_path / "o"
    r = invoke("count", d, "--out", out, "-m", model_dir, "-q")
    assert r.exit_code == 1, r.output
    assert "gone.mp3: broken link" in r.output
    errors = list(csv.DictReader(open(out / "errors.csv")))
    assert [(Path(e["file"]).name, e["reason"].split(" (")[0]) for e in errors] == [("gone.mp3", "broken link")]
    sources = {row["name"]: row["path"] for row in csv.DictReader(open(out / "sources.csv"))}
    assert len(sources) == 2 and all(name.startswith("r_") for name in sources)
    assert sorted(Path(p).parent.name for p in sources.values()) == ["site1", "site2"]
    for name, path in sources.items():
        assert (out / "raven" / f"{name}.Table.1.selections.txt").is_file()
        table = list(csv.DictReader(open(out / "raven" / f"{name}.Table.1.selections.txt"), delimiter="\t"))
        assert all(Path(row["Begin Path"]) == Path(path).absolute() for row in table)


# -- 9. TFLite's log line ---------------------------------------------------------------------------

@pytest.mark.skipif(not TFLITE.is_file(), reason="the real yamnet.tflite is not available")
def test_tflite_prints_no_xnnpack_info_line():
    code = ("import numpy as np; from yamnet_capuchin.backbones import YamnetBackbone; "
            f"b = YamnetBackbone({str(TFLITE)!r}).load(); print(b.embed(np.zeros(32000, np.float32)).embeddings.shape)")
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "(4, 1024)" in r.stdout
    assert "XNNPACK" not in r.stderr and "INFO:" not in r.stderr, r.stderr


# -- 10. help and --version ----------------------------------------------------------------------------

def test_help_shows_plain_flags_usage_and_version(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    from importlib.metadata import version

    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"yamcap {version('yamnet-capuchin')}"
    for cmd in ("count", "predict", "train", "benchmark"):
        text = invoke(cmd, "--help").output
        assert "<bool>" not in text and "{paths}" not in text, text
    assert "yamcap count [OPTIONS] PATHS..." in invoke("count", "--help").output
    bench = invoke("benchmark", "--help").output
    assert "DATE-MACHINE.json" in bench and "-.json" not in bench


# -- 11. Raven and Audacity outputs that other readers take ---------------------------------------------

def test_raven_tables_read_by_yamcap_annotations_and_high_freq_follows_the_rate(env, model_dir, tmp_path):
    from yamnet_capuchin.annotations import read_table

    d = tmp_path / "rec"
    write(d / "low.wav", soundscape(20.0, [3.0, 12.0])[::2].copy(), sr=8000)
    write(d / "full.wav", soundscape(20.0, [3.0, 12.0]))
    out = tmp_path / "o"
    # the default band is a call's (400-4000 Hz); widened to the models' 8000 Hz, the file's
    # Nyquist frequency caps it (4000 Hz for the 8 kHz file)
    r = invoke("count", d, "--out", out, "-m", model_dir, "-q", "--threshold", "0", "--off-threshold", "0",
               "--set", "outputs.raven_high_hz=8000", "--set", "outputs.raven_low_hz=0")
    assert r.exit_code == 0, r.output
    for name, top in (("low", 4000.0), ("full", 8000.0)):
        table = out / "raven" / f"{name}.Table.1.selections.txt"
        rows = list(csv.DictReader(open(table), delimiter="\t"))
        assert rows, name
        assert {float(row["High Freq (Hz)"]) for row in rows} == {top}
        assert {float(row["Low Freq (Hz)"]) for row in rows} == {0.0}
        assert all(row["Annotation"] == "Capuchinbird" and row["File Offset (s)"] == row["Begin Time (s)"]
                   and Path(row["Begin Path"]) == (d / f"{name}.wav").absolute() for row in rows)
        assert {s.label for s in read_table(table)} == {"capuchin"}


def test_raven_and_audacity_outputs_read_with_crowsetta(env, model_dir, tmp_path):
    crowsetta = pytest.importorskip("crowsetta", reason="crowsetta is not installed (pip install -e '.[test]')")
    d = tmp_path / "rec"
    write(d / "a.wav", soundscape(30.0, [3.0, 12.0, 22.0]))
    out = tmp_path / "o"
    r = invoke("count", d, "--out", out, "-m", model_dir, "-q", "--threshold", "0", "--off-threshold", "0",
               "--max-duration", "3")
    assert r.exit_code == 0, r.output
    events = [(float(e["start_s"]), float(e["end_s"])) for e in csv.DictReader(open(out / "events.csv"))]
    assert events
    raven = crowsetta.Transcriber(format="raven").from_file(out / "raven" / "a.Table.1.selections.txt")
    boxes = raven.to_annot().bboxes
    assert [b.label for b in boxes] == ["Capuchinbird"] * len(events)
    assert np.allclose([(b.onset, b.offset) for b in boxes], events, atol=1e-3)
    assert {b.high_freq for b in boxes} == {4000.0} and {b.low_freq for b in boxes} == {400.0}  # a call's band
    aud = crowsetta.Transcriber(format="aud-seq").from_file(out / "audacity" / "a.txt")
    seq = aud.to_seq()
    assert np.allclose(np.c_[seq.onsets_s, seq.offsets_s], events, atol=1e-3)
    assert all(str(label).startswith("capuchinbird") for label in seq.labels)


# -- 12. predict streams long files ------------------------------------------------------------------------

@pytest.mark.parametrize("pooling,context", [("mean", 0), ("max", 1), ("attention", 2), ("attention", 0)])
def test_predict_streams_long_files_with_the_whole_file_score(tiny_yamnet, tmp_path, monkeypatch, pooling, context):
    from yamnet_capuchin import predict

    det = YamnetDetector(random_head(pooling=pooling, context=context, seed=3), 0.5, Config(), {},
                         YamnetBackbone(str(tiny_yamnet)))
    path = write(tmp_path / "long.flac", soundscape(301.3, [10.0, 100.0, 250.0]))
    whole = det.clip_score(load_audio(path))

    def no_whole_reads(*a, **k):
        raise AssertionError("predict read a whole file")

    monkeypatch.setattr(predict, "load_audio", no_whole_reads)
    for block_seconds in (7.7, 30.0, 1000.0):
        assert predict.streamed_clip_score(det, path, block_seconds) == pytest.approx(whole, abs=1e-5)
    preds, failures = predict.predict_files(det, [path], progress=False, block_seconds=20.0)
    assert not failures and preds[0].score == pytest.approx(whole, abs=1e-5)


# -- 13. the README's output folder is ignored ----------------------------------------------------------------

def test_gitignore_covers_the_readme_counts_folder():
    assert "counts/" in (ROOT / ".gitignore").read_text().split()


# -- 16. killed or interrupted mid-run, then resumed ------------------------------------------------------------

def _many_recordings(folder: Path, n: int = 8, seconds: float = 120.0) -> Path:
    for i in range(n):
        write(folder / f"r{i:02d}.wav", soundscape(seconds, [5.0 + 7 * i, 60.0], rng=np.random.default_rng(i)))
    return folder


def _count_cmd(recs: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "yamnet_capuchin.cli", "count", str(recs), "--out", str(out), "-m", str(model),
            "-q", "--set", "audio.block_seconds=10"]


# Runs the CLI with count's state writer wrapped: once the first file's state record is written,
# it touches the "ready" file named by argv[1] and waits there, so a signal always arrives between
# files, after exactly one (not after a sleep that a fast or slow machine can outrun). On SIGUSR1
# it prints every thread's stack, which the test asks for if the run does not end.
_PAUSED_COUNT = """
import faulthandler, signal, sys, time
from pathlib import Path
import yamnet_capuchin.count as count
faulthandler.register(signal.SIGUSR1)
# Ctrl-C as in a terminal, whatever the parent left: a child inherits an ignored or a blocked
# SIGINT, and Python then never raises KeyboardInterrupt (the hang in clean-clone CI, whose
# stack dump showed the run still waiting here after the signal)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
ready, save = Path(sys.argv.pop(1)), count._save_state
def paused(*args, **kwargs):
    save(*args, **kwargs)
    status = dict(line.split(":", 1) for line in open("/proc/thread-self/status") if line.startswith("Sig"))
    print("SIGINT before the signal: handler", signal.getsignal(signal.SIGINT), "blocked",
          signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []), "status",
          {k: v.strip() for k, v in status.items()}, file=sys.stderr, flush=True)
    ready.touch()
    for _ in range(6000):
        time.sleep(0.1)
count._save_state = paused
from yamnet_capuchin.cli import main
sys.argv[0] = "yamcap"
sys.exit(main())
"""


def _start_and_wait_for_first_state(cmd, out: Path, env) -> subprocess.Popen:
    ready = out.parent / f"{out.name}.ready"
    assert cmd[1:3] == ["-m", "yamnet_capuchin.cli"]
    proc = subprocess.Popen([cmd[0], "-c", _PAUSED_COUNT, str(ready), *cmd[3:]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if ready.exists():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"the first file's state was never written: {proc.communicate()}")


def _interrupt(proc: subprocess.Popen, sig, limit_s: float = 120.0) -> tuple[bytes, int]:
    """Send ``sig`` and wait for the run to end: (its stderr, how many signals it took).

    Python can lose a Ctrl-C: when its handler runs inside a finalizer, the KeyboardInterrupt is
    printed as "Exception ignored" and dropped (a clean-clone CI run once sat paused for 120 s
    after one SIGINT). A person presses Ctrl-C again, and so does this, every 5 s; a run that
    ignores Ctrl-C still fails here, with every thread's stack."""
    presses, deadline = 1, time.monotonic() + limit_s
    proc.send_signal(sig)
    while True:
        try:
            return proc.communicate(timeout=5)[1], presses
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGUSR1)  # the stacks of the run that did not end, into the failure
                time.sleep(1)
                proc.kill()
                raise AssertionError(f"the run did not end after {presses} signals: "
                                     f"{proc.communicate()[1].decode()[-6000:]}") from None
            if sig == signal.SIGINT:
                proc.send_signal(sig)
                presses += 1


def _without_lost_interrupts(stderr: bytes) -> bytes:
    """stderr without Python's reports of a KeyboardInterrupt dropped in a finalizer."""
    kept, skipping = [], False
    for line in stderr.splitlines(keepends=True):
        if line.startswith(b"Exception ignored in"):
            skipping = True
        elif skipping and not line.startswith((b" ", b"Traceback", b"KeyboardInterrupt")):
            skipping = False
        if not skipping:
            kept.append(line)
    return b"".join(kept)


def _outputs(out: Path) -> dict[str, bytes]:
    """Every output but the timings: summary.json (wall time, resumed count) and the state records."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json" and count_mod.STATE_DIR not in p.parts}


@pytest.fixture(scope="module")
def uninterrupted(tiny_yamnet, model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    recs = _many_recordings(base / "rec")
    env = {**os.environ, "YAMCAP_YAMNET": str(tiny_yamnet), "YAMCAP_THREADS": "1"}
    r = subprocess.run(_count_cmd(recs, base / "whole", model_dir), env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return recs, _outputs(base / "whole"), env


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_then_resumed_gives_identical_outputs(uninterrupted, model_dir, tmp_path, sig):
    recs, expected, env = uninterrupted
    out = tmp_path / "out"
    proc = _start_and_wait_for_first_state(_count_cmd(recs, out, model_dir), out, env)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    stderr, presses = _interrupt(proc, sig)
    states = list((out / count_mod.STATE_DIR).glob("*.json"))
    assert len(states) == 1  # interrupted between the first file and the second
    assert not list(out.rglob("*.part"))  # no half-written file
    if sig == signal.SIGINT:  # Ctrl-C: exit 130, one line, lock removed
        assert proc.returncode == 130, stderr
        assert not (out / fileio.LOCK_NAME).exists()
        assert b"Traceback" not in _without_lost_interrupts(stderr), stderr.decode()[-3000:]
        assert presses <= 3, presses
    else:
        assert (out / fileio.LOCK_NAME).exists()  # left by the killed run; the re-run takes it over
    r = subprocess.run(_count_cmd(recs, out, model_dir), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == len(states) and summary["counted"] == 8
    assert _outputs(out) == expected
    assert not (out / fileio.LOCK_NAME).exists()


def test_output_errors_are_yamcap_errors():
    from yamnet_capuchin.fileio import OutputError

    assert issubclass(OutputError, YamcapError)


# -- models carry no path of the machine they were made on ----------------------------------------

def test_saved_model_records_no_local_path_and_loading_never_uses_one(tiny_yamnet, tmp_path, monkeypatch):
    out = tmp_path / "m"
    cfg = Config()
    cfg.backbone.handle = str(tiny_yamnet)
    YamnetDetector(random_head(), 0.5, cfg, {}, YamnetBackbone(str(tiny_yamnet))).save(out)
    meta = json.loads((out / "model.json").read_text())
    assert meta["backbone"]["handle"] == "" and meta["backbone"]["fingerprint"]
    assert Config.load(out / "config.toml").backbone.handle == ""
    assert str(tiny_yamnet) not in (out / "model.json").read_text() + (out / "config.toml").read_text()
    # an old model that does hold a path: without --yamnet / $YAMCAP_YAMNET the public handle is used
    meta["backbone"]["handle"] = str(tiny_yamnet)
    (out / "model.json").write_text(json.dumps(meta))
    monkeypatch.delenv("YAMCAP_YAMNET", raising=False)
    asked = []

    class Refused(Exception):
        pass

    def backbone(handle, runtime="auto"):
        asked.append(handle)
        raise Refused

    monkeypatch.setattr("yamnet_capuchin.model.YamnetBackbone", backbone)
    with pytest.raises(Refused):
        load_model(out)
    assert asked == ["https://tfhub.dev/google/yamnet/1"]
