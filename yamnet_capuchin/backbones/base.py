"""What every backbone gives: :class:`Frames`, and the :class:`Backbone` contract.

A backbone turns a 16 kHz waveform into frames: fixed windows (``window_samples``) every
``hop_samples``, frame ``i`` starting at ``i * hop_samples``, the last one zero-padded. Frame
``i`` depends only on its own window, so a long file can be embedded block by block with the
same result as a whole-file pass (:mod:`yamnet_capuchin.streaming` relies on that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ModelError


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
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.mel_profile is None:
            self.mel_profile = np.zeros((len(self), 0), np.float32)

    def __len__(self) -> int:
        return int(self.start_s.shape[0])

    def select(self, keep: np.ndarray, shift_s: float = 0.0) -> Frames:
        """The frames where ``keep`` (boolean or index array), start times moved by ``-shift_s``."""
        return Frames(self.start_s[keep] - shift_s, self.embeddings[keep], self.class_scores[keep],
                      self.mel_profile[keep], {k: v[keep] for k, v in self.extra.items()})


@runtime_checkable
class Backbone(Protocol):
    """A frozen embedding model.

    name / version: the family and its version (a head trained on one refuses another);
    runtime: how it runs ("savedmodel", "tflite", ...); window_samples / hop_samples: framing at
    16 kHz; embedding_dim: D of :attr:`Frames.embeddings`.
    """

    name: str
    runtime: str
    window_samples: int
    hop_samples: int
    embedding_dim: int

    @property
    def version(self) -> str: ...

    def load(self) -> "Backbone":
        """Load the weights (once); returns itself."""

    def embed(self, waveform: np.ndarray) -> Frames:
        """Frames of a float32 16 kHz waveform, shape (n_samples,)."""

    def frame_count(self, n_samples: int) -> int:
        """Frames :meth:`embed` returns for ``n_samples`` samples."""

    def identity(self) -> dict:
        """What a head trained on it depends on: name, version, runtime, handle, fingerprint (and
        whatever else changes the frames); cache keys and model records are made from it."""

    def fingerprint(self) -> str:
        """A short hash of the weights."""


def frame_times(n_frames: int, hop_samples: int, sample_rate: int = 16000) -> np.ndarray:
    """Start times (s) of ``n_frames`` frames ``hop_samples`` apart: ``i * hop / rate``."""
    return np.arange(n_frames, dtype=np.float64) * hop_samples / sample_rate


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
