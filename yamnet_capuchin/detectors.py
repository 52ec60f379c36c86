"""What a detector is, and how a model directory becomes one.

A detector turns a 16 kHz waveform into frame scores and a clip score. Every detector has the
same small surface (:class:`Detector`), whichever backbone it uses, so counting, prediction,
evaluation and the benchmarks need not know which one they hold.

A model directory holds ``model.json`` (format, kind, threshold, what the kind needs), the
resolved ``config.toml`` and the weights; training adds ``metrics.json``, ``manifest.csv`` and
``training_curve.png``. :func:`load_model` reads ``model.json`` and hands the directory to the
class registered for its ``kind`` in :data:`DETECTORS`. An exported model (``yamcap export``:
``yamcap_export.json``) is one graph and opens as
:class:`~yamnet_capuchin.export.ExportedDetector`.

Registered kinds are named by module path and imported when a model of that kind is opened, so
this module imports none of them and they import from it: one way only.
"""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .config import Config
from .errors import ModelError
from .export import ExportedDetector, is_exported
from .identity import weights_fingerprint  # noqa: F401 - the model kinds import it from here

MODEL_FORMAT = "yamcap-model/1"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"  # the trained head: weights, config, metrics
# the same model exported as one TFLite file (YAMNet and the head): what runs when no model is given
DEFAULT_EXPORT_DIR = Path(__file__).parent / "default_export"
# kind in model.json -> "module:class"; the class has REQUIRED_META (keys model.json must hold)
# and from_dir(model_dir, meta, config, yamnet=None, runtime=None)
DETECTORS = {
    "yamnet": "yamnet_capuchin.model:YamnetDetector",
    "birdnet": "yamnet_capuchin.model:YamnetDetector",  # the same head, on BirdNET's embeddings
    "cnn": "yamnet_capuchin.cnn:CNNDetector",
}


class YamcapWarning(UserWarning):
    """Something works but may not give the numbers a model was validated with."""


@runtime_checkable
class Detector(Protocol):
    """The surface every detector has.

    kind: "yamnet", "cnn", "exported-savedmodel", ...; threshold: clip threshold (best F1 on
    validation clips); window_samples / hop_samples: one frame's span and the step between
    frames, in samples at 16 kHz; context_frames: neighbouring frames on each side that a
    frame's score depends on (streaming overlaps blocks by that much); config: the resolved
    configuration it runs with.
    """

    kind: str
    threshold: float
    config: Config

    @property
    def window_samples(self) -> int: ...

    @property
    def hop_samples(self) -> int: ...

    @property
    def context_frames(self) -> int: ...

    def frame_count(self, n_samples: int) -> int:
        """Frames of a waveform of ``n_samples`` samples."""

    def frame_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F,) frame start times in seconds and (F,) scores in [0, 1] of a float32 16 kHz waveform."""

    def clip_score(self, waveform: np.ndarray) -> float:
        """One score in [0, 1] for a whole clip."""

    def fingerprint(self) -> str:
        """Identifies what the scores depend on (weights, threshold, backbone)."""

    def parameters(self) -> dict:
        """{"trainable": weights learned for this task, "frozen": backbone weights}; None where unknown."""


def detector_class(kind: str | None, where: Path | str = "model"):
    """The class registered for ``kind`` (one-line :class:`ModelError` for an unknown kind)."""
    if kind not in DETECTORS:
        raise ModelError(f"{where}: unknown model kind {kind!r} (known: {', '.join(DETECTORS)})")
    module, name = DETECTORS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def read_model_meta(model_dir: str | Path) -> dict:
    """``model.json`` of ``model_dir``, checked to be a yamcap model record."""
    model_dir = Path(model_dir)
    path = model_dir / "model.json"
    if not path.is_file():
        raise ModelError(f"{model_dir}: not a yamcap model directory (no model.json)")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ModelError(f"{path}: corrupt ({str(exc).splitlines()[0][:200]})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: corrupt (not a JSON object)")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: unknown model format {meta.get('format')!r} (expected {MODEL_FORMAT})")
    return meta


def load_model(
    model_dir: str | Path | None = None,
    yamnet: str | None = None,
    runtime: str | None = None,
    audio_backend: str | None = None,
    expect_kind: str | None = None,
):
    """Load a detector from ``model_dir`` (default: the model shipped with the package).

    yamnet / runtime: the YAMNet handle and runtime to run a YAMNet head with (see
    :meth:`~yamnet_capuchin.model.YamnetDetector.from_dir`). audio_backend: warn when it is not
    the one the model was trained with. expect_kind: refuse a model of another kind.

    With no ``model_dir``, the shipped model runs as its packaged TFLite export
    (:data:`DEFAULT_EXPORT_DIR`: no TensorFlow, no download); asking for a YAMNet (``yamnet``,
    ``runtime``) or a kind runs the shipped head (:data:`DEFAULT_MODEL_DIR`) on that YAMNet.
    """
    if not model_dir and not (yamnet or runtime or expect_kind) and is_exported(DEFAULT_EXPORT_DIR):
        model_dir = DEFAULT_EXPORT_DIR
    model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    if is_exported(model_dir):  # one graph: YAMNet and the head are inside it
        if expect_kind:
            raise ModelError(f"{model_dir}: an exported model, but a trained '{expect_kind}' model directory was asked for")
        return ExportedDetector.from_dir(model_dir)
    meta = read_model_meta(model_dir)
    kind = meta.get("kind")
    if expect_kind and kind != expect_kind:
        raise ModelError(f"{model_dir}: a '{kind}' model, but a '{expect_kind}' model was asked for")
    cls = detector_class(kind, model_dir)
    try:
        config = Config.load(model_dir / "config.toml") if (model_dir / "config.toml").exists() else Config()
    except (UnicodeDecodeError, OSError) as exc:
        raise ModelError(f"{model_dir / 'config.toml'}: cannot read ({exc})") from None
    if audio_backend and audio_backend != meta.get("audio_backend", "soundfile"):
        warnings.warn(
            f"{model_dir}: trained with audio backend '{meta.get('audio_backend')}', now '{audio_backend}'; "
            "resampling differences shift the embeddings", YamcapWarning, stacklevel=2)
        config.audio.backend = audio_backend
    missing = [k for k in cls.REQUIRED_META if k not in meta]
    if missing:
        raise ModelError(f"{model_dir / 'model.json'}: incomplete (no {', '.join(missing)})")
    return cls.from_dir(model_dir, meta, config, yamnet=yamnet, runtime=runtime)
