"""Frozen embedding backbones: YAMNet (SavedModel through tensorflow_hub, or TFLite).

A backbone turns a 16 kHz waveform into frames: one 1024-d embedding, 521 AudioSet scores and
the 64-band log-mel profile per 0.96 s window (15600 samples), hop 0.48 s (7680 samples). Frame ``i`` starts at
``i * 0.48`` s; the last window is zero-padded, so a waveform of ``n`` samples gives
``1 + ceil((n - 15600) / 7680)`` frames (1 when ``n <= 15600``).

Because frame ``i`` depends only on samples ``[i*7680, i*7680 + 15600)``, a long file can be
embedded block by block (blocks overlapping by 7920 samples) with the same result as a
whole-file pass; :mod:`yamnet_capuchin.streaming` relies on that.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DEFAULT_YAMNET_HANDLE
from .errors import ModelError

YAMNET_WINDOW = 15600  # samples at 16 kHz (0.975 s: 96 log-mel frames of 10 ms + 25 ms window)
YAMNET_HOP = 7680  # samples (0.48 s)
YAMNET_EMBEDDING_DIM = 1024
YAMNET_CLASSES = 521
YAMNET_MEL_BANDS = 64  # log-mel bands, 125-7500 Hz
YAMNET_PATCH_ROWS = 96  # 10 ms spectrogram rows per frame; frames start every 48 rows
TFLITE_EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"
ENV_YAMNET = "YAMCAP_YAMNET"


@dataclass
class Frames:
    """Backbone output for one waveform.

    start_s: (F,) frame start times in seconds from the waveform start
    embeddings: (F, D) float32
    class_scores: (F, 521) float32 AudioSet scores (empty (F, 0) when not available)
    mel_profile: (F, 64) float32 mean log-mel energy per band over the frame's 96 spectrogram
        rows (YAMNet's own front end; empty (F, 0) when not available)
    """

    start_s: np.ndarray
    embeddings: np.ndarray
    class_scores: np.ndarray
    mel_profile: np.ndarray | None = None

    def __post_init__(self):
        if self.mel_profile is None:
            self.mel_profile = np.zeros((len(self), 0), np.float32)

    def __len__(self) -> int:
        return int(self.start_s.shape[0])

    def select(self, keep: np.ndarray, shift_s: float = 0.0) -> Frames:
        """The frames where ``keep`` (boolean or index array), start times moved by ``-shift_s``."""
        return Frames(self.start_s[keep] - shift_s, self.embeddings[keep], self.class_scores[keep],
                      self.mel_profile[keep])


def frame_times(n_frames: int, hop_samples: int, sample_rate: int = 16000) -> np.ndarray:
    """Start times (s) of ``n_frames`` frames ``hop_samples`` apart: ``i * hop / rate``."""
    return np.arange(n_frames, dtype=np.float64) * hop_samples / sample_rate


def patch_means(log_mel: np.ndarray, n_frames: int) -> np.ndarray:
    """(T, B) log-mel spectrogram -> (n_frames, B) mean over each frame's 96 rows (frame ``i``:
    rows ``48 i`` to ``48 i + 95``), from the means of 48-row halves (patches overlap by half)."""
    rows = YAMNET_PATCH_ROWS // 2
    if log_mel.ndim != 2 or log_mel.shape[0] < (n_frames + 1) * rows:
        return np.zeros((n_frames, 0), np.float32)
    halves = log_mel[: (n_frames + 1) * rows].reshape(n_frames + 1, rows, -1).mean(axis=1)
    return (0.5 * (halves[:-1] + halves[1:])).astype(np.float32)


def yamnet_frame_count(n_samples: int) -> int:
    """Frames YAMNet returns for ``n_samples`` samples at 16 kHz."""
    if n_samples <= YAMNET_WINDOW:
        return 1
    return 1 + math.ceil((n_samples - YAMNET_WINDOW) / YAMNET_HOP)


def resolve_yamnet_handle(handle: str | None = None) -> str:
    """The handle to load: the argument, else ``$YAMCAP_YAMNET``, else the public TF-Hub one."""
    return handle or os.environ.get(ENV_YAMNET) or DEFAULT_YAMNET_HANDLE


def public_handle(handle: str | None) -> str:
    """What a saved model or config records of a YAMNet handle: a URL as it is; a local path
    (this machine's own, meaningless elsewhere) as ""."""
    return handle if handle and re.match(r"^[a-z]+://", handle) else ""


def default_threads() -> int:
    """CPU threads for inference: ``$YAMCAP_THREADS``, else all cores."""
    env = os.environ.get("YAMCAP_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def import_tensorflow():
    """Import TensorFlow without its start-up noise on stderr (CUDA probing on CPU machines)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    _set_threads(tf, default_threads())
    return tf


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes to file descriptor 2 while the block runs (the TFLite
    runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++, past
    Python's logging and TF_CPP_MIN_LOG_LEVEL). Python-level errors still raise as usual;
    ``YAMCAP_DEBUG=1`` leaves stderr alone."""
    if os.environ.get("YAMCAP_DEBUG"):
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no fd 2 to redirect
        yield
        return
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _set_threads(tf, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # the runtime is already initialised: keep what is set
        pass


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's start-up logging and size its thread pools to the machine."""
    tf = import_tensorflow()
    _set_threads(tf, threads or default_threads())


class YamnetBackbone:
    """Frozen YAMNet.

    Parameters
    ----------
    handle : URL, SavedModel directory or ``.tflite`` file; ``None`` = ``$YAMCAP_YAMNET`` or
        the public TF-Hub handle.
    runtime : ``"auto"`` (``tflite`` for a ``.tflite`` handle, else ``savedmodel``),
        ``"savedmodel"`` or ``"tflite"``.
    threads : CPU threads for inference (default: ``$YAMCAP_THREADS``, else all cores for the
        SavedModel and all but one for TFLite, whose single-frame calls gain less from threads
        than decoding ahead gains from a core of its own).
    """

    name = "yamnet"
    window_samples = YAMNET_WINDOW
    hop_samples = YAMNET_HOP
    embedding_dim = YAMNET_EMBEDDING_DIM

    def __init__(self, handle: str | None = None, runtime: str = "auto", threads: int | None = None):
        self.handle = resolve_yamnet_handle(handle)
        if runtime == "auto":
            runtime = "tflite" if self.handle.lower().endswith(".tflite") else "savedmodel"
        if runtime not in ("savedmodel", "tflite"):
            raise ModelError(f"unknown YAMNet runtime '{runtime}' (choose savedmodel or tflite)")
        if runtime == "tflite" and not self.handle.lower().endswith(".tflite"):
            raise ModelError(f"runtime 'tflite' needs a .tflite file, got '{self.handle}'")
        self.runtime = runtime
        if threads is None and runtime == "tflite" and not os.environ.get("YAMCAP_THREADS"):
            # leave a core to the decoding thread: on 2 cores, counting ran at 909x real time
            # with 1 TFLite thread and 635x with 2 (yamcap benchmark, first 10 forest recordings)
            threads = max(1, default_threads() - 1)
        self.threads = threads or default_threads()
        self._model = None
        self._interpreter = None
        self._tfl_kernels = ""

    # -- identity -----------------------------------------------------------------------
    @property
    def version(self) -> str:
        match = re.search(r"yamnet/(\d+)", self.handle)
        return match.group(1) if match else "1"

    def identity(self) -> dict:
        """What a trained head depends on: family, version, runtime, weights fingerprint (and,
        for TFLite, which kernels run the int8 weights: see :func:`tflite_kernels`)."""
        ident = {
            "name": self.name,
            "version": self.version,
            "runtime": self.runtime,
            "handle": self.handle,
            "fingerprint": self.fingerprint(),
        }
        if self.runtime == "tflite":
            self.load()
            ident["tflite_kernels"] = self._tfl_kernels
        return ident

    def fingerprint(self) -> str:
        """A short hash of the weights files (local handles) or of the URL."""
        path = Path(self.handle)
        digest = hashlib.sha256()
        if path.is_file():
            digest.update(path.read_bytes())
        elif path.is_dir():
            for rel in ("saved_model.pb", "variables/variables.index"):
                f = path / rel
                if f.exists():
                    digest.update(f.read_bytes())
        else:
            digest.update(self.handle.encode())
        return digest.hexdigest()[:16]

    def frame_count(self, n_samples: int) -> int:
        return yamnet_frame_count(n_samples)

    # -- loading ------------------------------------------------------------------------
    def load(self) -> "YamnetBackbone":
        if self._model is not None or self._interpreter is not None:
            return self
        configure_tensorflow(self.threads)
        if self.runtime == "tflite":
            self._load_tflite()
        else:
            self._load_savedmodel()
        return self

    def _load_savedmodel(self) -> None:
        import tensorflow_hub as hub

        local = not re.match(r"^[a-z]+://", self.handle)
        if local and not Path(self.handle).exists():
            raise ModelError(
                f"YAMNet not found at '{self.handle}'. Set {ENV_YAMNET} (or --yamnet) to a YAMNet "
                "SavedModel directory, a .tflite file or a TF-Hub URL."
            )
        try:
            self._model = hub.load(self.handle)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"could not load YAMNet from '{self.handle}' ({reason}). Offline? Download YAMNet once "
                f"and set {ENV_YAMNET} (or --yamnet) to the local SavedModel directory or .tflite file."
            ) from None
        if not callable(self._model):
            raise ModelError(f"'{self.handle}' loaded, but it is not a callable YAMNet model")

    def _load_tflite(self) -> None:
        import tensorflow as tf

        if not Path(self.handle).is_file():
            raise ModelError(f"YAMNet TFLite file not found: '{self.handle}' (check {ENV_YAMNET} / --yamnet)")
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            try:
                interp = tf.lite.Interpreter(
                    model_path=self.handle, num_threads=self.threads, experimental_preserve_all_tensors=True
                )
                interp.allocate_tensors()
            except Exception as exc:
                raise ModelError(f"could not load TFLite model '{self.handle}' ({exc})") from None
        inputs = interp.get_input_details()
        if len(inputs) != 1 or list(inputs[0]["shape"]) != [1, YAMNET_WINDOW]:
            raise ModelError(f"'{self.handle}' is not YAMNet TFLite (expected one [1, {YAMNET_WINDOW}] input)")
        by_name = {d["name"]: d["index"] for d in interp.get_tensor_details()}
        if TFLITE_EMBEDDING_TENSOR not in by_name:
            raise ModelError(f"'{self.handle}' has no tensor '{TFLITE_EMBEDDING_TENSOR}' (not YAMNet?)")
        outputs = interp.get_output_details()
        scores = [d for d in outputs if list(d["shape"]) == [1, YAMNET_CLASSES]]
        log_mel = [d for d in outputs if list(d["shape"]) == [YAMNET_PATCH_ROWS, YAMNET_MEL_BANDS]]
        self._tfl_input = inputs[0]["index"]
        self._tfl_embedding = by_name[TFLITE_EMBEDDING_TENSOR]
        self._tfl_scores = scores[0]["index"] if scores else None
        self._tfl_log_mel = log_mel[0]["index"] if log_mel else None
        self._interpreter = interp
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            self._tfl_kernels = tflite_kernels(self.handle, interp, self._tfl_input, self._tfl_embedding)

    # -- inference ----------------------------------------------------------------------
    def embed(self, waveform: np.ndarray) -> Frames:
        """Frames of a float32 16 kHz waveform, shape (n_samples,)."""
        self.load()
        wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
        if self._interpreter is not None:
            scores, emb, profile = self._embed_tflite(wave)
        else:
            out = self._model(wave)
            scores, emb = np.asarray(out[0]), np.asarray(out[1])
            profile = patch_means(np.asarray(out[2]), emb.shape[0]) if len(out) > 2 else None
        n = emb.shape[0]
        start = frame_times(n, YAMNET_HOP)
        return Frames(start, emb.astype(np.float32, copy=False), scores.astype(np.float32, copy=False), profile)

    def _embed_tflite(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = yamnet_frame_count(wave.size)
        padded = np.zeros((n - 1) * YAMNET_HOP + YAMNET_WINDOW, np.float32)
        padded[: wave.size] = wave
        frames = np.lib.stride_tricks.sliding_window_view(padded, YAMNET_WINDOW)[::YAMNET_HOP]
        interp = self._interpreter
        emb = np.empty((n, YAMNET_EMBEDDING_DIM), np.float32)
        scores = np.empty((n, YAMNET_CLASSES), np.float32)
        profile = np.empty((n, YAMNET_MEL_BANDS), np.float32)
        for i in range(n):
            interp.set_tensor(self._tfl_input, frames[i][None, :])
            interp.invoke()
            emb[i] = interp.get_tensor(self._tfl_embedding)[0]
            if self._tfl_scores is not None:
                scores[i] = interp.get_tensor(self._tfl_scores)[0]
            if self._tfl_log_mel is not None:
                profile[i] = interp.get_tensor(self._tfl_log_mel).mean(axis=0)
        if self._tfl_scores is None:
            scores = np.zeros((n, 0), np.float32)
        if self._tfl_log_mel is None:
            profile = np.zeros((n, 0), np.float32)
        return scores, emb, profile

    def n_parameters(self) -> int | None:
        """Weights in the loaded SavedModel (None for the TFLite runtime or an unusual model)."""
        self.load()
        try:
            variables = self._model.signatures["serving_default"].variables
        except (AttributeError, KeyError, TypeError):
            return None
        return int(sum(int(np.prod(v.shape)) for v in variables))

    def class_names(self) -> list[str]:
        """The 521 AudioSet display names (SavedModel runtime only)."""
        import csv

        self.load()
        if self._model is None or not hasattr(self._model, "class_map_path"):
            return []
        with open(self._model.class_map_path().numpy().decode()) as fh:
            return [row["display_name"] for row in csv.DictReader(fh)]


def tflite_kernels(path: str, interp, input_index: int, embedding_index: int) -> str:
    """Which kernels this TensorFlow runs a YAMNet TFLite file's int8 weights on: ``"xnnpack"``
    or ``"reference"`` (hybrid kernels that quantise activations on the fly).

    Measured on 30 s of a forest recording: with XNNPACK (TensorFlow 2.19, 2.20, 2.21) the
    embeddings agree with the SavedModel's at cosine mean 0.997-0.998 (min 0.983-0.985); TensorFlow 2.17 and
    2.18 do not apply XNNPACK to these weights and give mean 0.984 (min 0.920). Found by running
    one frame through ``interp`` and through an interpreter without default delegates:
    identical embeddings mean that no delegate took the graph.
    """
    import tensorflow as tf

    frame = np.random.default_rng(0).uniform(-0.1, 0.1, (1, YAMNET_WINDOW)).astype(np.float32)
    plain = tf.lite.Interpreter(
        model_path=path, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    out = []
    for it in (interp, plain):
        it.set_tensor(input_index, frame)
        it.invoke()
        out.append(it.get_tensor(embedding_index).copy())
    return "reference" if np.array_equal(out[0], out[1]) else "xnnpack"


def check_compatible(stored: dict, actual: dict, what: str = "model") -> list[str]:
    """Compare a model's recorded backbone with the one in use.

    Raises :class:`ModelError` when the family or version differs; returns warnings when only
    the runtime or the weights fingerprint differ (e.g. SavedModel vs TFLite of YAMNet).
    """
    if stored.get("name") != actual.get("name"):
        raise ModelError(
            f"{what} was trained on backbone '{stored.get('name')}', not '{actual.get('name')}'"
        )
    if str(stored.get("version")) != str(actual.get("version")):
        raise ModelError(
            f"{what} was trained on {stored.get('name')} version {stored.get('version')}, "
            f"but version {actual.get('version')} is loaded ({actual.get('handle')})"
        )
    notes = []
    kernels = {stored.get("tflite_kernels") or "", actual.get("tflite_kernels") or ""}
    if stored.get("runtime") != actual.get("runtime"):
        notes.append(
            f"{what} was trained with the YAMNet {stored.get('runtime')} runtime and now runs with "
            f"{actual.get('runtime')}: same weights, slightly different embeddings"
            + ("; this TensorFlow runs TFLite's int8 weights on reference kernels, which differ more "
               "(cosine min 0.92): prefer the SavedModel, or TensorFlow >= 2.19"
               if actual.get("tflite_kernels") == "reference" else "")
        )
    elif "" not in kernels and len(kernels) == 2:
        notes.append(
            f"{what} was trained with YAMNet TFLite on {stored['tflite_kernels']} kernels, now "
            f"{actual['tflite_kernels']} kernels (another TensorFlow version): embeddings differ (cosine min 0.92)"
        )
    if stored.get("runtime") == actual.get("runtime") and stored.get("fingerprint") != actual.get("fingerprint"):
        notes.append(
            f"{what} was trained with YAMNet from '{stored.get('handle')}', now '{actual.get('handle')}' "
            "(different files of the same version)"
        )
    return notes
