"""YAMNet (SavedModel through tensorflow_hub, or TFLite) as a :class:`~.base.Backbone`.

Per 0.96 s window (15600 samples), hop 0.48 s (7680 samples): one 1024-d embedding, 521
AudioSet scores and the 64-band log-mel profile. A waveform of ``n`` samples gives
``1 + ceil((n - 15600) / 7680)`` frames (1 when ``n <= 15600``). With the TFLite runtime, any
other internal tensor can ride along per frame (``tflite_tensors``, in :attr:`Frames.extra`):
research code reads YAMNet's insides through that, never by patching this class.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from ..config import DEFAULT_YAMNET_HANDLE
from ..errors import ModelError
from .base import Frames, frame_times
from .runtime import configure_tensorflow, default_threads, quiet_native_stderr

YAMNET_WINDOW = 15600  # samples at 16 kHz (0.975 s: 96 log-mel frames of 10 ms + 25 ms window)
YAMNET_HOP = 7680  # samples (0.48 s)
YAMNET_EMBEDDING_DIM = 1024
YAMNET_CLASSES = 521
YAMNET_MEL_BANDS = 64  # log-mel bands, 125-7500 Hz
YAMNET_PATCH_ROWS = 96  # 10 ms spectrogram rows per frame; frames start every 48 rows
TFLITE_EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"
ENV_YAMNET = "YAMCAP_YAMNET"


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
    tflite_tensors : ``{name: tensor name (or its prefix)}`` of internal TFLite tensors to
        return per frame in :attr:`Frames.extra` (flattened, (F, size)), e.g. the last feature
        map ``"yamnet_frames/layer14/pointwise_conv/relu/Relu"``; TFLite runtime only. They
        enter :meth:`identity`, so cached frames with and without them never mix.
    """

    name = "yamnet"
    window_samples = YAMNET_WINDOW
    hop_samples = YAMNET_HOP
    embedding_dim = YAMNET_EMBEDDING_DIM

    def __init__(self, handle: str | None = None, runtime: str = "auto", threads: int | None = None,
                 tflite_tensors: Mapping[str, str] | None = None):
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
        self.tflite_tensors = dict(tflite_tensors or {})
        if self.tflite_tensors and runtime != "tflite":
            raise ModelError("tflite_tensors need the TFLite runtime (a .tflite handle)")

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
        if self.tflite_tensors:
            ident["tensors"] = dict(sorted(self.tflite_tensors.items()))
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
        details = interp.get_tensor_details()
        self._tfl_extra = {}
        for key, wanted in self.tflite_tensors.items():
            found = [d["index"] for d in details if d["name"] == wanted] or [
                d["index"] for d in details if d["name"].startswith(wanted)]
            if not found:
                raise ModelError(f"'{self.handle}' has no tensor '{wanted}' (asked for as '{key}')")
            self._tfl_extra[key] = found[0]
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            self._tfl_kernels = tflite_kernels(self.handle, interp, self._tfl_input, self._tfl_embedding)

    # -- inference ----------------------------------------------------------------------
    def embed(self, waveform: np.ndarray) -> Frames:
        """Frames of a float32 16 kHz waveform, shape (n_samples,)."""
        self.load()
        wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
        extra = {}
        if self._interpreter is not None:
            scores, emb, profile, extra = self._embed_tflite(wave)
        else:
            out = self._model(wave)
            scores, emb = np.asarray(out[0]), np.asarray(out[1])
            profile = patch_means(np.asarray(out[2]), emb.shape[0]) if len(out) > 2 else None
        n = emb.shape[0]
        start = frame_times(n, YAMNET_HOP)
        return Frames(start, emb.astype(np.float32, copy=False), scores.astype(np.float32, copy=False), profile, extra)

    def _embed_tflite(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        n = yamnet_frame_count(wave.size)
        padded = np.zeros((n - 1) * YAMNET_HOP + YAMNET_WINDOW, np.float32)
        padded[: wave.size] = wave
        frames = np.lib.stride_tricks.sliding_window_view(padded, YAMNET_WINDOW)[::YAMNET_HOP]
        interp = self._interpreter
        emb = np.empty((n, YAMNET_EMBEDDING_DIM), np.float32)
        scores = np.empty((n, YAMNET_CLASSES), np.float32)
        profile = np.empty((n, YAMNET_MEL_BANDS), np.float32)
        extra: dict[str, list[np.ndarray]] = {k: [] for k in self._tfl_extra}
        for i in range(n):
            interp.set_tensor(self._tfl_input, frames[i][None, :])
            interp.invoke()
            emb[i] = interp.get_tensor(self._tfl_embedding)[0]
            if self._tfl_scores is not None:
                scores[i] = interp.get_tensor(self._tfl_scores)[0]
            if self._tfl_log_mel is not None:
                profile[i] = interp.get_tensor(self._tfl_log_mel).mean(axis=0)
            for key, index in self._tfl_extra.items():
                extra[key].append(interp.get_tensor(index).reshape(-1).astype(np.float32))
        if self._tfl_scores is None:
            scores = np.zeros((n, 0), np.float32)
        if self._tfl_log_mel is None:
            profile = np.zeros((n, 0), np.float32)
        return scores, emb, profile, {k: np.stack(v) for k, v in extra.items()}

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
