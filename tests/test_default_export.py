"""The shipped model as one packaged TFLite file, and counting with TensorFlow not installed.

The unit tests need neither ../shared nor TensorFlow's YAMNet: they read the packaged files and
run yamcap in a fresh interpreter where TensorFlow, TF-Hub, Keras, scikit-learn, SciPy and librosa
cannot be imported (as after ``pip install yamnet-capuchin`` without ``[train]``). The last test
compares the packaged file with the shipped head on YAMNet's SavedModel, on ../shared.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from synth import SR, soundscape, write
from yamnet_capuchin.config import Config
from yamnet_capuchin.detectors import DEFAULT_EXPORT_DIR, DEFAULT_MODEL_DIR, load_model
from yamnet_capuchin.errors import missing_extra
from yamnet_capuchin.export import LICENCE_FILES, META_NAME, TFLITE_NAME, ExportedDetector, head_fingerprint
from yamnet_capuchin.head import FrameHead

# what the [train] extra installs: none of it may be needed to count
TRAIN_ONLY = ("tensorflow", "tensorflow_hub", "keras", "sklearn", "scipy", "librosa")


def test_the_packaged_file_is_the_shipped_head_exported():
    """Fails when the default head is retrained and not re-exported (the release step does both,
    docs/model_card.md): the export records the head's fingerprint, its threshold and events."""
    meta = json.loads((DEFAULT_EXPORT_DIR / META_NAME).read_text())
    shipped = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    head = FrameHead.load(DEFAULT_MODEL_DIR / "head.npz", **shipped["head_params"])
    assert meta["provenance"]["head_fingerprint"] == head_fingerprint(shipped["kind"], shipped["threshold"], head.weights_)
    assert meta["threshold"] == shipped["threshold"] and meta["pooling"] == shipped["pooling"]
    events = Config.load(DEFAULT_MODEL_DIR / "config.toml").events
    assert meta["events"] == {k: getattr(events, k) for k in meta["events"]}
    assert meta["provenance"]["backbone"]["fingerprint"] == shipped["backbone"]["fingerprint"]
    assert "quantization" not in meta, "the shipped export is float32 (docs/export.md: float16 moved scores by 0.022)"
    for name in LICENCE_FILES:
        assert (DEFAULT_EXPORT_DIR / name).stat().st_size > 1000
    assert "YAMNet" in (DEFAULT_EXPORT_DIR / "YAMNET-NOTICE.txt").read_text()


def test_no_model_means_the_packaged_file_and_a_yamnet_means_the_head(monkeypatch):
    """No --model: the packaged TFLite file, whatever $YAMCAP_YAMNET says; asking for a YAMNet
    or a runtime runs the head on it (here an unloadable one, to show which path was taken)."""
    monkeypatch.setenv("YAMCAP_YAMNET", "/nowhere/yamnet")
    det = load_model()
    assert isinstance(det, ExportedDetector) and det.model_dir == DEFAULT_EXPORT_DIR
    assert det.threshold == json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["threshold"]
    with pytest.raises(Exception, match="nowhere"):
        load_model(None, runtime="savedmodel")


def _without_training_packages(code: str) -> str:
    """``code`` run after making TRAIN_ONLY unimportable, then a check that none was imported."""
    return textwrap.dedent(f"""
        import sys
        for name in {TRAIN_ONLY!r}:
            sys.modules[name] = None  # import raises ModuleNotFoundError, as when not installed
    """) + textwrap.dedent(code) + textwrap.dedent(f"""
        loaded = [m for m in {TRAIN_ONLY!r} if sys.modules.get(m) is not None]
        assert not loaded, loaded
        print("ok")
    """)


def _run(code: str, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("YAMCAP_")}  # no YAMNet handle
    return subprocess.run([sys.executable, "-c", _without_training_packages(code)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env=env)


def test_count_and_predict_run_without_tensorflow(tmp_path):
    """The base install's job: `yamcap count` / `predict` with no --model and no environment,
    TensorFlow and the rest of [train] unimportable: outputs written, scores from LiteRT equal
    to the packaged detector's in this process (TensorFlow's interpreter or LiteRT)."""
    pytest.importorskip("ai_edge_litert")
    wave = soundscape(40.0, [6.0, 25.0]).astype(np.float32)
    write(tmp_path / "rec" / "a.wav", wave)
    write(tmp_path / "rec" / "b.wav", np.zeros(SR // 2, np.float32))
    (tmp_path / "rec" / "broken.wav").write_bytes(b"RIFF not audio")
    proc = _run("""
        from yamnet_capuchin.cli import app
        for args in (["count", "rec", "--out", "counts", "-q"], ["predict", "rec/a.wav", "--out", "p.csv", "-q"]):
            try:
                app(args)
            except SystemExit as exc:
                print("exit", args[0], exc.code)
    """, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "exit count 1" in proc.stdout  # broken.wav: listed in errors.csv, exit 1, the others counted
    counts = {r["clip_name"]: r for r in csv.DictReader(open(tmp_path / "counts" / "counts.csv"))}
    assert set(counts) == {"a.wav", "b.wav"}
    errors = list(csv.DictReader(open(tmp_path / "counts" / "errors.csv")))
    assert [os.path.basename(r["file"]) for r in errors] == ["broken.wav"]
    score = float(next(csv.DictReader(open(tmp_path / "p.csv")))["score"])
    assert score == pytest.approx(load_model().clip_score(wave), abs=1e-4)


@pytest.mark.parametrize("args", [["train", "--data", "d", "--out", "m"], ["export", "--out", "x"],
                                  ["predict", "rec.wav", "--out", "p.csv", "--runtime", "savedmodel"]])
def test_commands_that_need_tensorflow_say_which_pip_install(tmp_path, args):
    write(tmp_path / "rec.wav", np.zeros(SR, np.float32))
    (tmp_path / "d").mkdir()
    proc = _run(f"""
        from yamnet_capuchin.cli import app
        try:
            app({args!r})
        except SystemExit as exc:
            assert exc.code == 2, exc.code
    """, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: yamcap {args[0]} needs 'tensorflow', which is not installed: "
                     "pip install 'yamnet-capuchin[train]'"], proc.stderr[-2000:]


def test_missing_extra_names_only_optional_packages():
    assert "yamnet-capuchin[review]" in missing_extra(ModuleNotFoundError("x", name="starlette"), "yamcap review")
    assert "yamnet-capuchin[train]" in missing_extra(ModuleNotFoundError("x", name="sklearn.metrics"))
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert missing_extra(ImportError("x")) is None


@pytest.mark.realdata
def test_the_packaged_file_agrees_with_the_head_on_yamnet(real_yamnet, real_data):
    """Frame scores on a whole forest recording within 1e-4 of the shipped head on YAMNet's
    SavedModel (measured 1.2e-5 over all 40), and identical counts on every forest recording."""
    from yamnet_capuchin.audio import load_audio
    from yamnet_capuchin.count import score_and_detect
    from yamnet_capuchin.dataset import find_forest_dir

    packaged, head = load_model(), load_model(None, yamnet=str(real_yamnet), runtime="savedmodel")
    assert isinstance(packaged, ExportedDetector) and packaged.model_dir == DEFAULT_EXPORT_DIR
    assert (DEFAULT_EXPORT_DIR / TFLITE_NAME).is_file()
    recordings = sorted(p for p in find_forest_dir(real_data).iterdir() if p.suffix == ".mp3")
    wave = load_audio(recordings[0])
    t0, s0 = head.frame_scores(wave)
    t1, s1 = packaged.frame_scores(wave)
    assert np.array_equal(t0, t1) and np.abs(s1 - s0).max() <= 1e-4
    cfg = Config()
    differ = [p.name for p in recordings
              if len(score_and_detect(packaged, p, cfg).events) != len(score_and_detect(head, p, cfg).events)]
    assert recordings and not differ, differ


def test_the_numpy_spectrogram_is_librosas():
    """Panels and plots draw without librosa (a [train] package): the same power in dB as
    librosa's centred STFT and power_to_db (top_db 80), the same time and frequency axes."""
    librosa = pytest.importorskip("librosa")
    from yamnet_capuchin.spectrogram import log_spectrogram

    wave = soundscape(3.3, [1.0]).astype(np.float32)
    wave[:4000] *= 1e-4  # a quiet stretch, where the 80 dB floor applies
    for n_fft, hop in ((1024, 160), (512, 256)):
        times, freqs, db = log_spectrogram(wave, n_fft=n_fft, hop=hop, fmax=4000.0)
        power = np.abs(librosa.stft(wave, n_fft=n_fft, hop_length=hop, center=True)) ** 2
        all_freqs = librosa.fft_frequencies(sr=SR, n_fft=n_fft)
        keep = all_freqs <= 4000.0
        assert np.array_equal(freqs, all_freqs[keep])
        assert np.allclose(times, librosa.frames_to_time(np.arange(power.shape[1]), sr=SR, hop_length=hop))
        assert np.abs(db - librosa.power_to_db(power[keep], ref=1.0, amin=1e-10)).max() < 0.01
