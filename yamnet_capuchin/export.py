"""One exported model: YAMNet and the head in a single graph, waveform in, frame scores out.

``yamcap export --model M --format savedmodel|tflite --out DIR`` writes:

* ``savedmodel``: DIR is a TensorFlow SavedModel. ``tf.saved_model.load(DIR)`` gives a module
  whose ``__call__(waveform)`` takes a float32 16 kHz waveform of any length, shape (n,), and
  returns ``{"scores": (F,), "embeddings": (F, 1024), "start_s": (F,)}`` (also the
  ``serving_default`` signature); ``metadata()`` returns the JSON below as a string. Nothing
  from this package is needed to run it.
* ``tflite``: ``DIR/model.tflite`` takes one fixed block of ``block_samples`` samples
  (``block_frames`` frames: ``(block_frames - 1) * 7680 + 15600`` samples) and returns its
  ``block_frames`` frame scores; longer audio goes block after block (:class:`ExportedDetector`
  does it), the last block zero-padded.

Both write YAMNet's licence notice (``YAMNET-NOTICE.txt``, ``APACHE-2.0.txt``) and
``DIR/yamcap_export.json``: the format, the clip threshold, pooling, the event
parameters of the model's configuration, the frame window and hop (samples, at 16 kHz), the
block size (TFLite) and provenance (source model fingerprint, backbone identity, package
version, date). ``yamcap count/predict --model DIR`` run an exported model directly.

Heads with ``context`` > 0 are exported; heads that read the spectral shape, and attention
pooling, are not (one-line error).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .backbones import (YAMNET_HOP, YAMNET_WINDOW, default_threads, frame_times, import_tensorflow,
                        quiet_native_stderr, tflite_interpreter, yamnet_frame_count)
from .config import DEFAULT_BLOCK_FRAMES, DEFAULT_CALIBRATION_BLOCKS, Config
from .audio import load_audio
from .errors import AudioError, ModelError
from .fileio import atomic_write_json, expand_audio_paths, staging_dir
from .identity import weights_fingerprint

EXPORT_FORMAT = "yamcap-export/1"
EXPORT_FORMATS = ("savedmodel", "tflite")
META_NAME = "yamcap_export.json"
TFLITE_NAME = "model.tflite"
# written beside every export: the graph holds YAMNet's weights (Apache-2.0)
LICENCE_FILES = ("YAMNET-NOTICE.txt", "APACHE-2.0.txt")
LICENCE_DIR = Path(__file__).parent / "licenses"
SAMPLE_RATE = 16000


def is_exported(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds an exported model (``yamcap_export.json``)."""
    return (Path(model_dir) / META_NAME).is_file()


def block_samples(block_frames: int) -> int:
    """Samples of a TFLite block of ``block_frames`` frames."""
    return (block_frames - 1) * YAMNET_HOP + YAMNET_WINDOW


def _check_exportable(detector) -> None:
    if getattr(detector, "kind", None) != "yamnet":
        raise ModelError(f"only YAMNet-head models can be exported (this one is '{getattr(detector, 'kind', '?')}')")
    head = detector.head
    if head.inputs != "embeddings":
        raise ModelError(f"heads that read '{head.inputs}' cannot be exported yet (only 'embeddings')")
    if head.pooling == "attention":
        raise ModelError("heads with attention pooling cannot be exported yet (mean or max)")
    if detector.backbone.runtime != "savedmodel":
        raise ModelError("export needs YAMNet as a SavedModel (the TFLite file cannot be merged with the head): "
                         "pass --yamnet with a SavedModel folder or the TF-Hub URL")


def _module(detector, metadata: str):
    """A tf.Module: YAMNet + the head's weights as constants; ``scores(waveform)``."""
    tf = import_tensorflow()
    detector.backbone.load()
    yamnet = detector.backbone._model
    w = detector.head.weights_
    context = int(detector.head.context)

    class Exported(tf.Module):
        def __init__(self):
            super().__init__()
            self.yamnet = yamnet
            self.w1 = tf.constant(w["w1"]) if "w1" in w else None
            self.b1 = tf.constant(w["b1"]) if "b1" in w else None
            self.w2 = tf.constant(np.asarray(w["w2"], np.float32).reshape(-1, 1))
            self.b2 = tf.constant(np.asarray(w["b2"], np.float32).reshape(-1))
            self._metadata = tf.constant(metadata)

        def scores(self, waveform):
            return self.head(self.yamnet(waveform)[1])

        def head(self, emb):
            """(F,) scores and the (F, 1024) embeddings they came from."""
            x = emb
            if context > 0:  # each frame, then the mean of its 2c neighbours (end frames repeat)
                n = tf.shape(emb)[0]
                idx = tf.range(n)
                neighbours = tf.add_n([tf.gather(emb, tf.clip_by_value(idx + o, 0, n - 1))
                                       for o in range(-context, context + 1) if o != 0])
                x = tf.concat([emb, neighbours / (2.0 * context)], axis=1)
            h = x if self.w1 is None else tf.nn.relu(tf.matmul(x, self.w1) + self.b1)
            return tf.sigmoid(tf.squeeze(tf.matmul(h, self.w2), -1) + self.b2), emb

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
        def __call__(self, waveform):
            scores, emb = self.scores(waveform)
            start = tf.cast(tf.range(tf.shape(scores)[0]), tf.float64) * (YAMNET_HOP / SAMPLE_RATE)
            return {"scores": scores, "embeddings": emb, "start_s": start}

        @tf.function(input_signature=[])
        def metadata(self):
            return self._metadata

    return Exported()


MATMUL_FFT_MAX = 2048  # longer FFTs stay FFTs: the matrices grow as the square (YAMNet's is 512)


def block_embedder(yamnet, n_samples: int):
    """YAMNet (the loaded SavedModel) on a block of ``n_samples``, its FFT done as matrix
    products: a function to call in a ``tf.function``, from the (n_samples,) float32 waveform to
    the (F, 1024) embeddings. Where YAMNet's graph is not the expected one (one RFFT whose
    magnitude is taken), YAMNet as it is.

    TFLite's RFFT2D kernel is slow and single-threaded: 2.9 of the 7.5 ms a 16-frame int8 block
    took. Here the windowed frames, (F, W) with W = 400 samples, are multiplied by a (W, 257)
    cosine and a sine matrix (the 512-point DFT of the frame zero-padded, as YAMNet's RFFT does),
    and the magnitude is taken: the same |STFT|, rounded differently (max |Δ embedding| 4e-6), as
    two FULLY_CONNECTED ops that XNNPACK runs on every thread. The rest of YAMNet's graph is
    imported as it is."""
    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([n_samples], tf.float32, name="waveform")

    def as_is(waveform):
        return yamnet(waveform)[1]

    frozen = convert_variables_to_constants_v2(
        tf.function(as_is, input_signature=[spec], autograph=False).get_concrete_function())
    graph = frozen.graph.as_graph_def()
    nodes = {n.name: n for n in graph.node}
    ffts = [n for n in graph.node if n.op == "RFFT"]
    magnitudes = [n for n in graph.node if n.op == "ComplexAbs" and ffts and n.input[0] == ffts[0].name]
    length = nodes.get(ffts[0].input[1]) if len(ffts) == 1 else None
    if len(magnitudes) != 1 or length is None or length.op != "Const":
        return as_is
    fft_length = int(tf.make_ndarray(length.attr["value"].tensor).reshape(-1)[0])
    source = nodes[ffts[0].input[0]]
    frames = source.input[0] if source.op == "Pad" else source.name  # frames before zero-padding
    width = frozen.graph.get_tensor_by_name(f"{frames}:0").shape[-1]
    if width is None or width > fft_length or fft_length > MATMUL_FFT_MAX:
        return as_is
    angle = 2 * np.pi * np.outer(np.arange(width), np.arange(fft_length // 2 + 1)) / fft_length
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    waveform_in, embeddings_out = frozen.inputs[0].name, frozen.outputs[0].name

    def embed(waveform):
        framed, = tf.graph_util.import_graph_def(graph, input_map={waveform_in: waveform},
                                                  return_elements=[f"{frames}:0"], name="frames")
        re, im = tf.matmul(framed, cos), tf.matmul(framed, sin)
        emb, = tf.graph_util.import_graph_def(
            graph, input_map={waveform_in: waveform, f"{magnitudes[0].name}:0": tf.sqrt(re * re + im * im)},
            return_elements=[embeddings_out], name="yamnet")
        return emb

    return tf.compat.v1.wrap_function(embed, [spec])


# TFLite ops left in float32 by an int8 export: YAMNet's front end (waveform framing, window,
# DFT products and magnitude, mel matrix, log: an int8 waveform or int8 magnitudes lose quiet
# sounds) and the head (its matrix products, bias adds and sigmoid: its scores saturate near 0
# and 1, where the event threshold sits). The convolution stack runs in int8.
FLOAT_OPS = ("GATHER", "MUL", "PAD", "RESHAPE", "FULLY_CONNECTED", "SQRT", "LOG", "ADD", "LOGISTIC", "SQUEEZE")


def calibration_blocks(paths, block_frames: int, n_blocks: int = DEFAULT_CALIBRATION_BLOCKS,
                       audio_backend: str = "soundfile", seed: int | None = None,
                       failures: list | None = None) -> list[np.ndarray]:
    """Up to ``n_blocks`` TFLite input blocks cut from ``paths`` (audio files or folders, read
    one file after the other; ``seed``: in a shuffled order): the activations an int8 export is
    calibrated on. No labels are read; use audio like the audio the model will meet (its
    training clips, site recordings). Unreadable files are skipped and, with ``failures``,
    appended to it as (path, reason)."""
    files = expand_audio_paths([Path(p) for p in paths])
    if seed is not None:
        random.Random(seed).shuffle(files)
    size, blocks, carry = block_samples(block_frames), [], np.zeros(0, np.float32)
    for path in files:
        try:
            wave = load_audio(path, audio_backend)
        except AudioError as exc:
            if failures is not None:
                failures.append((str(path), exc.reason))
            continue
        carry = np.concatenate([carry, wave])
        while carry.size >= size and len(blocks) < n_blocks:
            blocks.append(np.ascontiguousarray(carry[:size], np.float32))
            carry = carry[size:]
        if len(blocks) >= n_blocks:
            break
    if not blocks:
        raise ModelError(f"calibration needs at least {size / SAMPLE_RATE:.1f} s of audio (found {len(files)} files)")
    return blocks


def quantize_int8(converter, calibration: list[np.ndarray]) -> bytes:
    """The TFLite ``converter``'s model with int8 convolutions (calibrated on ``calibration``) and
    FLOAT_OPS in float32 (what ``--int8`` writes; also used by experiments/int8_head.py)."""
    tf = import_tensorflow()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([b] for b in calibration)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([b] for b in calibration[:2]), debug_options=options)
    return debugger.get_nondebug_quantized_model()


def head_fingerprint(kind: str, threshold: float, weights: dict) -> str:
    """sha256 (16 hex digits) of a head's weights and clip threshold, without the backbone."""
    return weights_fingerprint(kind, float(threshold), weights)


def export_metadata(detector, fmt: str, block_frames: int | None) -> dict:
    ev = detector.config.events
    meta = {
        "format": EXPORT_FORMAT,
        "export": fmt,
        "threshold": float(detector.threshold),
        "pooling": detector.head.pooling,
        "context_frames": int(detector.head.context),
        "events": {"threshold": ev.threshold, "off_threshold": ev.off_threshold, "min_gap_s": ev.min_gap_s,
                   "min_duration_s": ev.min_duration_s, "max_duration_s": ev.max_duration_s},
        "sample_rate": SAMPLE_RATE,
        "window_samples": YAMNET_WINDOW,
        "hop_samples": YAMNET_HOP,
        "outputs": {"scores": "(F,) frame scores in [0, 1]", "embeddings": "(F, 1024) YAMNet embeddings",
                    "start_s": "(F,) frame start times, s"},
        "provenance": {
            "source_fingerprint": detector.fingerprint(),
            # the head alone (no machine path in it): what ties an export to its model directory
            "head_fingerprint": head_fingerprint(detector.kind, detector.threshold, detector.head.weights_),
            "backbone": {k: v for k, v in detector.backbone.identity().items() if k != "handle"},
            "package_version": __version__,
            "exported": datetime.date.today().isoformat(),
        },
    }
    if fmt == "tflite":  # one output: the block's frame scores
        meta.update(block_frames=block_frames, block_samples=block_samples(block_frames),
                    outputs={"scores": f"({block_frames},) frame scores in [0, 1] of one block"})
    return meta


def export_model(detector, out_dir: str | Path, fmt: str = "savedmodel",
                 block_frames: int = DEFAULT_BLOCK_FRAMES, calibration: list[np.ndarray] | None = None,
                 float16: bool = False) -> dict:
    """Write ``detector`` (a YAMNet-head model) as one SavedModel or TFLite file into ``out_dir``
    (replaced if it exists, written in a staging folder first); returns the metadata written.

    ``calibration`` (TFLite only; blocks from :func:`calibration_blocks`): an int8 TFLite, its
    convolutions in int8 calibrated on these blocks, front end and head in float32.
    ``float16`` (TFLite only): weights stored as float16, half the file; the runtime widens
    them to float32 once, at load, so every product is still computed in float32."""
    if fmt not in EXPORT_FORMATS:
        raise ModelError(f"unknown export format '{fmt}' (one of: {', '.join(EXPORT_FORMATS)})")
    if (calibration is not None or float16) and fmt != "tflite":
        raise ModelError("int8 and float16 weights are for --format tflite only")
    if calibration is not None and float16:
        raise ModelError("choose int8 or float16 weights, not both")
    if block_frames < 1:
        raise ModelError(f"--block-frames must be at least 1, got {block_frames}")
    _check_exportable(detector)
    if fmt == "tflite" and detector.head.context:
        raise ModelError("a head with context (neighbouring frames) cannot be cut into TFLite blocks yet: "
                         "export it as a SavedModel")
    tf = import_tensorflow()
    meta = export_metadata(detector, fmt, block_frames if fmt == "tflite" else None)
    if calibration is not None:
        meta["quantization"] = {"weights_and_activations": "int8", "float_ops": list(FLOAT_OPS),
                                "calibration_blocks": len(calibration)}
    elif float16:
        meta["quantization"] = {"weights": "float16", "activations": "float32"}
    module = _module(detector, json.dumps(meta, sort_keys=True))
    with staging_dir(out_dir) as tmp:
        if fmt == "savedmodel":
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.__call__})
        else:
            spec = tf.TensorSpec([block_samples(block_frames)], tf.float32, name="waveform")
            embed = block_embedder(module.yamnet, block_samples(block_frames))
            fn = tf.function(lambda waveform: module.head(embed(waveform))[0], input_signature=[spec],
                             autograph=False).get_concrete_function()
            converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
            if float16:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            with warnings.catch_warnings(), quiet_native_stderr():
                warnings.simplefilter("ignore")
                model = converter.convert() if calibration is None else quantize_int8(converter, calibration)
            (tmp / TFLITE_NAME).write_bytes(model)
        for name in LICENCE_FILES:
            (tmp / name).write_bytes((LICENCE_DIR / name).read_bytes())
        atomic_write_json(tmp / META_NAME, meta)
    return meta


class ExportedDetector:
    """An exported model behind the detector surface of :class:`yamnet_capuchin.detectors.Detector`
    (``frame_scores``, ``clip_score``, ``threshold``, ``window_samples``, ``hop_samples``, ...)."""

    def __init__(self, model_dir: Path, meta: dict, threads: int | None = None):
        self.model_dir = Path(model_dir)
        self.meta = meta
        self.kind = f"exported-{meta['export']}"
        self.threshold = float(meta["threshold"])
        self.pooling = meta["pooling"]
        self.window_samples = int(meta["window_samples"])
        self.hop_samples = int(meta["hop_samples"])
        self.context_frames = int(meta.get("context_frames", 0))
        self.config = Config()
        for key, value in meta.get("events", {}).items():
            setattr(self.config.events, key, value)
        self.config.backbone.handle = str(self.model_dir)
        self.config.backbone.runtime = meta["export"]
        self._threads = threads
        self._fn = None
        self._interp = None

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> "ExportedDetector":
        model_dir = Path(model_dir)
        path = model_dir / META_NAME
        try:
            meta = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: corrupt ({str(exc).splitlines()[0][:200]})") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or meta.get("export") not in EXPORT_FORMATS:
            raise ModelError(f"{path}: not a {EXPORT_FORMAT} file")
        missing = [k for k in ("threshold", "pooling", "window_samples", "hop_samples") if k not in meta]
        if meta["export"] == "tflite":
            missing += [k for k in ("block_frames", "block_samples") if k not in meta]
        if missing:
            raise ModelError(f"{path}: incomplete (no {', '.join(missing)})")
        detector = cls(model_dir, meta)
        detector._load()
        return detector

    def inference_threads(self) -> int:
        """Threads for the TFLite interpreter: as given, else ``$YAMCAP_THREADS``, else all cores,
        but one for an int8 export. ``count`` decodes in a background thread, and the int8 graph
        runs faster than decoding on one core: with every core, XNNPACK's threads wait for the
        one the decoder holds (2 cores, 40 recordings, ``experiments/export_speed.py``: 905x with
        2 threads, 1088x with 1). The float32 graph is the slower side and gains from every core
        (655x against 567x)."""
        return self._threads or default_threads(spare=1 if self.is_int8() else 0)

    def is_int8(self) -> bool:
        """Whether the convolutions run in int8 (``export --int8``)."""
        return self.meta.get("quantization", {}).get("weights_and_activations") == "int8"

    def _load(self) -> None:
        if self.meta["export"] == "savedmodel":
            tf = import_tensorflow()
            try:
                self._fn = tf.saved_model.load(str(self.model_dir))
            except Exception as exc:
                raise ModelError(f"{self.model_dir}: cannot load the SavedModel "
                                 f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})") from None
            return
        path = self.model_dir / TFLITE_NAME
        if not path.is_file():
            raise ModelError(f"{path}: missing (the exported model is incomplete)")
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            try:
                self._interp = tflite_interpreter()(model_path=str(path), num_threads=self.inference_threads())
                self._interp.allocate_tensors()
            except Exception as exc:
                raise ModelError(f"{path}: cannot load ({str(exc).splitlines()[0][:200]})") from None
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        if list(self._in["shape"]) != [int(self.meta["block_samples"])]:
            raise ModelError(f"{path}: input shape {list(self._in['shape'])} does not match "
                             f"{META_NAME} (block of {self.meta['block_samples']} samples)")

    def frame_count(self, n_samples: int) -> int:
        return yamnet_frame_count(n_samples)

    def frame_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F,) frame start times (s) and (F,) scores of a float32 16 kHz waveform."""
        wave = np.asarray(waveform, np.float32).reshape(-1)
        n = self.frame_count(wave.size)
        if self._fn is not None:
            scores = self._fn(wave)["scores"].numpy()
        else:
            scores = self._tflite_scores(wave, n)
        return frame_times(n, self.hop_samples), scores[:n].astype(np.float32, copy=False)

    def _tflite_scores(self, wave: np.ndarray, n: int) -> np.ndarray:
        k = int(self.meta["block_frames"])
        blocks = -(-n // k)
        padded = np.zeros(block_samples(blocks * k), np.float32)
        padded[: wave.size] = wave
        out = np.empty(blocks * k, np.float32)
        size = block_samples(k)
        for b in range(blocks):
            start = b * k * self.hop_samples
            self._interp.set_tensor(self._in["index"], padded[start:start + size])
            self._interp.invoke()
            out[b * k:(b + 1) * k] = self._interp.get_tensor(self._out["index"])
        return out

    def clip_score(self, waveform: np.ndarray) -> float:
        scores = self.frame_scores(waveform)[1]
        return float(scores.max() if self.pooling == "max" else scores.mean())

    def parameters(self) -> dict:
        """Unknown: backbone and head are one graph (the source model's record has them)."""
        return {"trainable": None, "frozen": None}

    def fingerprint(self) -> str:
        """sha256 of the exported files (metadata included), first 16 hex digits; read once."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = self._hash_files()
        return self._fingerprint

    def _hash_files(self) -> str:
        digest = hashlib.sha256()
        for f in sorted(p for p in self.model_dir.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(self.model_dir)).encode())
            digest.update(f.read_bytes())
        return digest.hexdigest()[:16]

