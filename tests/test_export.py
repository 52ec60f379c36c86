"""`yamcap export`: one graph from waveform to frame scores that agrees with the two-stage model.

Tiny YAMNet and random heads (no ../shared); the real shipped model in the last test when
../shared is present.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synth import SR, build_tiny_yamnet, soundscape, write
from test_reliability import one_line_error, random_head
from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.cli import app
from yamnet_capuchin.config import Config
from yamnet_capuchin.export import META_NAME, ExportedDetector, block_samples, export_model
from yamnet_capuchin.detectors import load_model
from yamnet_capuchin.errors import ModelError
from yamnet_capuchin.model import YamnetDetector

SAVEDMODEL_TOL = 1e-4  # the bound; measured here ~1e-7
TFLITE_TOL = 1e-4  # float32 TFLite, measured ~1e-7 (tiny) and 1.6e-7 (real, docs/export.md)


@pytest.fixture(scope="module")
def tiny_yamnet(tmp_path_factory) -> Path:
    """The tiny YAMNet with power-of-two FFTs, which TFLite can convert."""
    return build_tiny_yamnet(tmp_path_factory.mktemp("tiny-tflite") / "yamnet", tflite_ready=True)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def detector(tiny_yamnet, **head):
    return YamnetDetector(random_head(**head), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet)))


@pytest.fixture(scope="module")
def wave():
    return soundscape(23.3, [4.0, 15.0]).astype(np.float32)  # not a whole number of frames or blocks


@pytest.mark.parametrize("fmt,tol", [("savedmodel", SAVEDMODEL_TOL), ("tflite", TFLITE_TOL)])
def test_exported_scores_agree_with_the_two_stage_model(tiny_yamnet, tmp_path, wave, fmt, tol):
    det = detector(tiny_yamnet)
    meta = export_model(det, tmp_path / fmt, fmt, block_frames=8)
    exported = load_model(tmp_path / fmt)
    assert isinstance(exported, ExportedDetector) and exported.kind == f"exported-{fmt}"
    t0, s0 = det.frame_scores(wave)
    t1, s1 = exported.frame_scores(wave)
    assert s1.shape == s0.shape and np.array_equal(t1, t0)
    assert np.abs(s1 - s0).max() <= tol
    assert exported.clip_score(wave) == pytest.approx(det.clip_score(wave), abs=tol)
    assert meta["threshold"] == 0.5 and meta["hop_samples"] == 7680 and meta["window_samples"] == 15600
    assert meta["provenance"]["source_fingerprint"] == det.fingerprint()
    assert json.loads((tmp_path / fmt / META_NAME).read_text()) == meta
    if fmt == "tflite":
        assert meta["block_frames"] == 8 and meta["block_samples"] == block_samples(8) == 7 * 7680 + 15600


def test_float16_export_halves_the_file_and_carries_the_yamnet_notice(tiny_yamnet, tmp_path, wave):
    """float16 weights: about half the bytes, scores close to float32 (the runtime widens the
    weights at load); every export carries YAMNet's licence notice; float16 is TFLite-only."""
    det = detector(tiny_yamnet)
    full = export_model(det, tmp_path / "f32", "tflite", block_frames=8)
    half = export_model(det, tmp_path / "f16", "tflite", block_frames=8, float16=True)
    assert "quantization" not in full and half["quantization"] == {"weights": "float16", "activations": "float32"}
    size = {d: (tmp_path / d / "model.tflite").stat().st_size for d in ("f32", "f16")}
    assert size["f16"] < 0.6 * size["f32"], size
    s32, s16 = load_model(tmp_path / "f32").frame_scores(wave)[1], load_model(tmp_path / "f16").frame_scores(wave)[1]
    assert 0 < np.abs(s16 - s32).max() < 0.05
    for d in ("f32", "f16"):
        notice = (tmp_path / d / "YAMNET-NOTICE.txt").read_text()
        assert "YAMNet" in notice and "Apache License, Version 2.0" in notice
        assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in (tmp_path / d / "APACHE-2.0.txt").read_text()
    assert full["provenance"]["head_fingerprint"] == half["provenance"]["head_fingerprint"]
    with pytest.raises(ModelError, match="tflite only"):
        export_model(det, tmp_path / "sm", "savedmodel", float16=True)


def test_context_head_exports_as_savedmodel_only(tiny_yamnet, tmp_path, wave):
    det = detector(tiny_yamnet, context=2)
    export_model(det, tmp_path / "sm", "savedmodel")
    assert np.abs(load_model(tmp_path / "sm").frame_scores(wave)[1] - det.frame_scores(wave)[1]).max() <= SAVEDMODEL_TOL
    with pytest.raises(Exception, match="SavedModel"):
        export_model(det, tmp_path / "tfl", "tflite")


def test_savedmodel_runs_with_tensorflow_alone(tiny_yamnet, tmp_path, wave):
    """Loaded in a fresh interpreter that imports only TensorFlow (yamnet_capuchin never loaded)."""
    det = detector(tiny_yamnet)
    export_model(det, tmp_path / "sm", "savedmodel")
    np.save(tmp_path / "wave.npy", wave)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        m = tf.saved_model.load({str(tmp_path / 'sm')!r})
        out = m(tf.constant(np.load({str(tmp_path / 'wave.npy')!r})))
        meta = json.loads(m.metadata().numpy().decode())
        sig = m.signatures["serving_default"](waveform=tf.zeros([16000]))
        assert not any(name.startswith("yamnet_capuchin") for name in sys.modules)
        np.save({str(tmp_path / 'scores.npy')!r}, out["scores"].numpy())
        print(json.dumps({{"threshold": meta["threshold"], "frames": int(out["start_s"].shape[0]),
                          "signature": sorted(sig)}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"threshold": 0.5, "frames": det.frame_count(wave.size), "signature": ["embeddings", "scores", "start_s"]}
    assert np.abs(np.load(tmp_path / "scores.npy") - det.frame_scores(wave)[1]).max() <= SAVEDMODEL_TOL


def test_tflite_runs_with_litert_alone(tiny_yamnet, tmp_path, wave):
    """docs/export.md's LiteRT example, run in a fresh interpreter that imports only LiteRT and
    NumPy (neither TensorFlow nor yamnet_capuchin), gives yamcap's frame scores."""
    pytest.importorskip("ai_edge_litert")
    doc = (Path(__file__).parents[1] / "docs" / "export.md").read_text()
    example = doc.split("## Using the TFLite file with LiteRT alone")[1].split("```python")[1].split("```")[0]
    det = detector(tiny_yamnet)
    export_model(det, tmp_path / "exported" / "tflite", "tflite", block_frames=4)
    np.save(tmp_path / "wave.npy", wave)
    example = example.replace("waveform = np.zeros(16000 * 60, np.float32)", "waveform = np.load('wave.npy')")
    script = example + textwrap.dedent("""
        import sys
        assert not any(m.startswith(("tensorflow", "yamnet_capuchin")) for m in sys.modules)
        np.save("scores.npy", scores)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.abs(np.load(tmp_path / "scores.npy") - det.frame_scores(wave)[1]).max() <= TFLITE_TOL


def test_count_and_predict_take_an_exported_model(tiny_yamnet, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    model = tmp_path / "model"
    detector(tiny_yamnet).save(model)
    recs = tmp_path / "rec"
    write(recs / "a.wav", soundscape(20.0, [5.0]))
    write(recs / "b.wav", soundscape(12.0, []))
    r = invoke("export", "--model", model, "--format", "tflite", "--out", tmp_path / "tfl", "--block-frames", 4)
    assert r.exit_code == 0, r.output
    runs = {}
    for name, m in (("two-stage", model), ("exported", tmp_path / "tfl")):
        r = invoke("count", recs, "--out", tmp_path / f"count-{name}", "--model", m, "--threshold", 0.5, "-q")
        assert r.exit_code == 0, r.output
        runs[name] = (tmp_path / f"count-{name}" / "counts.csv").read_text()
        r = invoke("predict", recs, "--out", tmp_path / f"{name}.csv", "--model", m, "-q")
        assert r.exit_code == 0, r.output
    assert runs["exported"] == runs["two-stage"]
    scores = {n: [float(row["score"]) for row in csv.DictReader(open(tmp_path / f"{n}.csv"))]
              for n in ("two-stage", "exported")}
    assert np.allclose(scores["exported"], scores["two-stage"], atol=TFLITE_TOL)
    summary = json.loads((tmp_path / "count-exported" / "summary.json").read_text())
    assert summary["model"]["kind"] == "exported-tflite"


def test_export_errors_are_one_line(tiny_yamnet, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    model = tmp_path / "model"
    YamnetDetector(random_head(pooling="attention"), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet))).save(model)
    one_line_error(invoke("export", "--model", model, "--out", tmp_path / "x"), "attention")
    detector(tiny_yamnet).save(model)
    one_line_error(invoke("export", "--model", model, "--out", tmp_path / "x", "--format", "onnx"), "onnx")
    export_model(load_model(model), tmp_path / "sm", "savedmodel")
    (tmp_path / "sm" / META_NAME).write_text("{not json")
    one_line_error(invoke("count", tmp_path / "rec.wav", "--out", tmp_path / "o", "--model", tmp_path / "sm"),
                   META_NAME, "corrupt")


def test_int8_export_quantizes_the_convolutions_only(tiny_yamnet, tmp_path, monkeypatch):
    """--int8: convolutions in int8 (calibrated on the given audio), front end and head in
    float32; scores stay close to the two-stage model's, counting runs on it, and the
    options are checked in one line."""
    import tensorflow as tf

    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    model = tmp_path / "model"
    detector(tiny_yamnet).save(model)
    cal = tmp_path / "cal"
    for k in range(3):
        write(cal / f"c{k}.wav", soundscape(15.0, [3.0 + k]))
    r = invoke("export", "--model", model, "--format", "tflite", "--int8", "--calibrate", cal,
               "--calibration-blocks", 5, "--block-frames", 4, "--out", tmp_path / "int8")
    assert r.exit_code == 0 and "int8 convolutions, calibrated on 5 blocks" in r.output, r.output
    meta = json.loads((tmp_path / "int8" / META_NAME).read_text())
    assert meta["quantization"]["calibration_blocks"] == 5 and "LOGISTIC" in meta["quantization"]["float_ops"]
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "int8" / "model.tflite"))
    kinds = {}
    for op in interp._get_ops_details():
        kinds.setdefault(op["op_name"], set()).update(
            str(interp._get_tensor_details(i, 0)["dtype"].__name__) for i in op["inputs"] if i >= 0)
    assert "int8" in kinds["CONV_2D"] and "float32" not in kinds["CONV_2D"]
    assert kinds["LOGISTIC"] == {"float32"} and "float32" in kinds["LOG"]
    wave = soundscape(20.0, [5.0]).astype(np.float32)
    exact = load_model(model).frame_scores(wave)[1]
    quantized = load_model(tmp_path / "int8").frame_scores(wave)[1]
    # a random head on the tiny model: scores spread over 0.35-0.55; int8 moved them by 0.048 at most
    assert quantized.shape == exact.shape and np.abs(quantized - exact).max() < 0.1
    write(tmp_path / "rec" / "a.wav", wave)
    r = invoke("count", tmp_path / "rec", "--out", tmp_path / "c", "--model", tmp_path / "int8", "-q")
    assert r.exit_code == 0, r.output
    (cal / "broken.wav").write_text("not audio\n")  # skipped with a line naming it; the export is still written, exit 1
    r = invoke("export", "--model", model, "--format", "tflite", "--int8", "--calibrate", cal,
               "--calibration-blocks", 100, "--block-frames", 4, "--out", tmp_path / "int8b")  # every file read
    assert r.exit_code == 1 and "broken.wav" in r.output and (tmp_path / "int8b" / "model.tflite").is_file(), r.output
    one_line_error(invoke("export", "--model", model, "--int8", "--calibrate", cal, "--out", tmp_path / "x"), "--format tflite")
    one_line_error(invoke("export", "--model", model, "--format", "tflite", "--int8", "--out", tmp_path / "x"), "--calibrate")


def build_stft_yamnet(path: Path) -> Path:
    """A SavedModel with YAMNet's front end: 25 ms Hann windows every 10 ms, the magnitude of a
    512-point RFFT, a (257, 64) band matrix and a log; then 0.96 s patches every 0.48 s, their
    mean log bands through a random (64, 1024) projection as the embeddings."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    bands = np.abs(rng.standard_normal((257, 64))).astype(np.float32) / 16
    proj = rng.standard_normal((64, 1024)).astype(np.float32) / 8

    class StftYamnet(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            spec = tf.abs(tf.signal.stft(waveform, 400, 160, 512))
            log_mel = tf.math.log(tf.matmul(spec, bands) + 1e-3)
            patches = tf.reduce_mean(tf.signal.frame(log_mel, 96, 48, axis=0), axis=1)
            emb = tf.nn.relu(tf.matmul(patches, proj))
            return tf.sigmoid(emb[:, :521]), emb, log_mel

    tf.saved_model.save(StftYamnet(), str(path))
    return path


def tflite_ops(model: bytes) -> set[str]:
    import tensorflow as tf

    return {op["op_name"] for op in tf.lite.Interpreter(model_content=model)._get_ops_details()}


def test_block_embedder_does_the_fft_as_matrix_products(tmp_path, tiny_yamnet):
    """YAMNet's 512-point RFFT becomes two matrix products with the same embeddings; a long FFT
    (the tiny model's 16384 points) is left as it is."""
    import tensorflow as tf

    from yamnet_capuchin.export import block_embedder

    n = block_samples(4)
    x = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    spec = tf.TensorSpec([n], tf.float32)
    for path, rewritten in ((build_stft_yamnet(tmp_path / "stft"), True), (tiny_yamnet, False)):
        model = tf.saved_model.load(str(path))
        fn = tf.function(block_embedder(model, n), input_signature=[spec]).get_concrete_function()
        exact = model(tf.constant(x))[1].numpy()
        assert np.abs(fn(tf.constant(x)).numpy() - exact).max() <= 1e-4 * max(1.0, np.abs(exact).max())
        ops = tflite_ops(tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert())
        assert ("RFFT2D" not in ops and "FULLY_CONNECTED" in ops) if rewritten else "RFFT2D" in ops, ops


def test_int8_export_leaves_a_core_to_the_decoder(tmp_path, monkeypatch):
    """An int8 export's interpreter uses all cores but one (count decodes on the other); float32
    exports use all; $YAMCAP_THREADS or an explicit count wins."""
    monkeypatch.delenv("YAMCAP_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    meta = {"format": "yamcap-export/1", "export": "tflite", "threshold": 0.5, "pooling": "max",
            "window_samples": 15600, "hop_samples": 7680}
    int8 = {**meta, "quantization": {"weights_and_activations": "int8"}}
    assert ExportedDetector(tmp_path, int8).inference_threads() == 3
    assert ExportedDetector(tmp_path, meta).inference_threads() == 4
    assert ExportedDetector(tmp_path, {**meta, "quantization": {"weights": "float16"}}).inference_threads() == 4
    assert ExportedDetector(tmp_path, int8, threads=2).inference_threads() == 2
    monkeypatch.setenv("YAMCAP_THREADS", "1")
    assert ExportedDetector(tmp_path, meta).inference_threads() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    monkeypatch.delenv("YAMCAP_THREADS")
    assert ExportedDetector(tmp_path, int8).inference_threads() == 1


def test_tflite_export_runs_without_tensorflow(tiny_yamnet, tmp_path, wave):
    """With LiteRT installed, counting with a TFLite export never imports TensorFlow (its
    start-up takes 3-5 s); the scores agree with TensorFlow's interpreter."""
    pytest.importorskip("ai_edge_litert")
    export_model(detector(tiny_yamnet), tmp_path / "tfl", "tflite", block_frames=4)
    write(tmp_path / "rec" / "a.wav", wave)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from yamnet_capuchin.cli import app
        sys.argv = ["yamcap", "predict", {str(tmp_path / 'rec')!r}, "--model", {str(tmp_path / 'tfl')!r},
                    "--out", {str(tmp_path / 'p.csv')!r}, "-q"]
        try:
            app()
        except SystemExit as exc:
            assert not exc.code, exc.code
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    score = float(next(csv.DictReader(open(tmp_path / "p.csv")))["score"])
    assert score == pytest.approx(load_model(tmp_path / "tfl").clip_score(wave), abs=TFLITE_TOL)


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_shipped_model_exports_and_agrees_on_a_forest_recording(real_yamnet, real_data, tmp_path, fmt):
    from yamnet_capuchin.audio import load_audio
    from yamnet_capuchin.dataset import find_forest_dir

    wave = load_audio(sorted(find_forest_dir(real_data).iterdir())[0])[: 60 * SR]
    det = load_model(None, yamnet=str(real_yamnet))
    export_model(det, tmp_path / fmt, fmt)
    diff = np.abs(load_model(tmp_path / fmt).frame_scores(wave)[1] - det.frame_scores(wave)[1]).max()
    assert diff <= (SAVEDMODEL_TOL if fmt == "savedmodel" else TFLITE_TOL), diff
    if fmt == "tflite":  # YAMNet's FFT runs as two matrix products (block_embedder)
        ops = tflite_ops((tmp_path / fmt / "model.tflite").read_bytes())
        assert "RFFT2D" not in ops and "SQRT" in ops, ops


@pytest.mark.realdata
def test_shipped_model_int8_export_stays_close_on_a_forest_recording(real_yamnet, real_data, tmp_path):
    """The measured tolerance of docs/export.md on one minute of a forest recording the
    calibration never saw: mean |score difference| small, few frames flipping across 0.5."""
    from yamnet_capuchin.audio import load_audio
    from yamnet_capuchin.dataset import find_forest_dir
    from yamnet_capuchin.export import calibration_blocks

    clips = sorted((real_data / "Parsed_Not_Capuchinbird_Clips").iterdir())[::10] + \
        sorted((real_data / "Parsed_Capuchinbird_Clips").iterdir())[::10]
    det = load_model(None, yamnet=str(real_yamnet))
    export_model(det, tmp_path / "int8", "tflite", calibration=calibration_blocks(clips, 16, 40))
    wave = load_audio(sorted(find_forest_dir(real_data).iterdir())[0])[: 60 * SR]
    exact, quantized = det.frame_scores(wave)[1], load_model(tmp_path / "int8").frame_scores(wave)[1]
    assert np.abs(quantized - exact).mean() < 0.02
    assert np.mean((quantized >= 0.5) != (exact >= 0.5)) < 0.05
