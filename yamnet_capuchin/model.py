"""Trained detectors and their model directories.

A detector turns a 16 kHz waveform into frame scores (and a clip score). Every detector
has the same small surface, whichever backbone it uses:

* ``kind``, ``threshold``, ``window_samples``, ``hop_samples``, ``frame_count(n)``
* ``frame_scores(waveform) -> (start_s, scores)``; ``clip_score(waveform) -> float``
* ``save(dir)``; :func:`load_model(dir)` returns the right class from ``model.json``.

Model directory: ``model.json`` (kind, backbone identity, audio backend, threshold, pooling,
seed, manifest hash, package version), ``config.toml``, weights, ``metrics.json``,
``manifest.csv`` and ``training_curve.png`` (the last three written by training).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .backbones import YamnetBackbone, check_compatible, resolve_yamnet_handle
from .config import Config
from .errors import ModelError
from .export import ExportedDetector, is_exported
from .fileio import atomic_write_json, staging_dir  # noqa: F401  (staging_dir: re-exported)
from .head import FrameHead

MODEL_FORMAT = "yamcap-model/1"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"


class YamcapWarning(UserWarning):
    """Something works but may not give the numbers a model was validated with."""


class YamnetDetector:
    """Frozen YAMNet + :class:`FrameHead`; frames of 0.96 s every 0.48 s."""

    kind = "yamnet"

    def __init__(self, head: FrameHead, threshold: float, config: Config, meta: dict | None = None,
                 backbone: YamnetBackbone | None = None):
        self.head = head
        self.threshold = float(threshold)
        self.config = config
        self.meta = dict(meta or {})
        self._backbone = backbone

    @property
    def backbone(self) -> YamnetBackbone:
        if self._backbone is None:
            self._backbone = YamnetBackbone(self.config.backbone.handle or None, self.config.backbone.runtime)
        return self._backbone

    @property
    def window_samples(self) -> int:
        return self.backbone.window_samples

    @property
    def hop_samples(self) -> int:
        return self.backbone.hop_samples

    def frame_count(self, n_samples: int) -> int:
        return self.backbone.frame_count(n_samples)

    @property
    def context_frames(self) -> int:
        """Neighbouring frames on each side that a frame's score depends on."""
        return self.head.context

    def frame_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = self.backbone.embed(waveform)
        return frames.start_s, self.head.frame_scores(self.head.frame_inputs(frames))

    def clip_score(self, waveform: np.ndarray) -> float:
        return self.head.clip_score(self.head.frame_inputs(self.backbone.embed(waveform)))

    def fingerprint(self) -> str:
        """Identifies what the scores depend on: head weights, threshold, backbone in use."""
        return weights_fingerprint(self.kind, self.threshold, self.head.weights_ or {}, self.backbone.identity())

    def save(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.head.save(model_dir / "head.npz")
        meta = dict(self.meta)
        meta.update({
            "format": MODEL_FORMAT,
            "kind": self.kind,
            "package_version": __version__,
            "threshold": self.threshold,
            "pooling": self.head.pooling,
            "head_params": self.head.get_params(),
            "backbone": meta.get("backbone") or self.backbone.identity(),
            "audio_backend": self.config.audio.backend,
            "seed": self.config.seed,
        })
        atomic_write_json(model_dir / "model.json", meta)
        self.config.save(model_dir / "config.toml")

    @classmethod
    def from_dir(cls, model_dir: Path, meta: dict, config: Config, backbone: YamnetBackbone) -> "YamnetDetector":
        try:
            head = FrameHead.load(model_dir / "head.npz", **meta["head_params"])
        except (TypeError, ValueError) as exc:  # head_params that FrameHead does not take
            raise ModelError(f"{model_dir / 'model.json'}: bad head parameters ({exc})") from None
        _check_head_fits(head, backbone, model_dir)
        return cls(head, meta["threshold"], config, meta, backbone)


def _check_head_fits(head: FrameHead, backbone: YamnetBackbone, model_dir: Path) -> None:
    """A head trained on another backbone's embeddings (another width) is refused here, with
    one line, instead of failing on the first file with a shape error."""
    first = head.weights_.get("w1", head.weights_.get("w2"))
    if first is None or backbone is None:
        return
    width = backbone.embedding_dim
    if head.inputs == "embeddings+spectral_shape":
        from .backbones import YAMNET_MEL_BANDS

        width += YAMNET_MEL_BANDS
    width *= 2 if head.context > 0 else 1
    if first.shape[0] != width:
        raise ModelError(
            f"{model_dir}: the head takes {first.shape[0]}-wide frame inputs, but this {backbone.name} gives "
            f"{width} (the model was trained with another backbone)")


def weights_fingerprint(kind: str, threshold: float, weights: dict, backbone: dict | None = None) -> str:
    digest = hashlib.sha256(json.dumps([kind, threshold, backbone or {}], sort_keys=True).encode())
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()[:16]


def read_model_meta(model_dir: str | Path) -> dict:
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

    yamnet / runtime: the YAMNet handle and runtime to run it with (default: ``$YAMCAP_YAMNET``,
    else the handle it was trained with if it exists here, else TF-Hub). A different YAMNet
    version fails; another runtime of the same version warns. audio_backend: warn when it is
    not the one the model was trained with.
    """
    model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    if is_exported(model_dir):  # one graph: YAMNet and the head are inside it
        return ExportedDetector.from_dir(model_dir)
    meta = read_model_meta(model_dir)
    kind = meta.get("kind")
    if expect_kind and kind != expect_kind:
        raise ModelError(f"{model_dir}: a '{kind}' model, but a '{expect_kind}' model was asked for")
    try:
        config = Config.load(model_dir / "config.toml") if (model_dir / "config.toml").exists() else Config()
    except (UnicodeDecodeError, OSError) as exc:
        raise ModelError(f"{model_dir / 'config.toml'}: cannot read ({exc})") from None
    if audio_backend and audio_backend != meta.get("audio_backend", "soundfile"):
        warnings.warn(
            f"{model_dir}: trained with audio backend '{meta.get('audio_backend')}', now '{audio_backend}'; "
            "resampling differences shift the embeddings", YamcapWarning, stacklevel=2)
        config.audio.backend = audio_backend
    missing = [k for k in ({"yamnet": ("backbone", "head_params", "threshold"), "cnn": ("selected_length", "threshold")}
                           .get(kind, ())) if k not in meta]
    if missing:
        raise ModelError(f"{model_dir / 'model.json'}: incomplete (no {', '.join(missing)})")
    if kind == "yamnet":
        stored = meta["backbone"]
        if not isinstance(stored, dict):
            raise ModelError(f"{model_dir / 'model.json'}: corrupt backbone record")
        handle = yamnet or os.environ.get("YAMCAP_YAMNET")
        if not handle:
            stored_handle = stored.get("handle", "")
            handle = stored_handle if stored_handle and Path(stored_handle).exists() else resolve_yamnet_handle()
        backbone = YamnetBackbone(handle, runtime or "auto").load()  # an unloadable handle fails first
        for note in check_compatible(stored, backbone.identity(), what=str(model_dir)):
            warnings.warn(note, YamcapWarning, stacklevel=2)
        config.backbone.handle = backbone.handle
        config.backbone.runtime = backbone.runtime
        return YamnetDetector.from_dir(model_dir, meta, config, backbone)
    if kind == "cnn":
        from .cnn import CNNDetector

        return CNNDetector.from_dir(model_dir, meta, config)
    raise ModelError(f"{model_dir}: unknown model kind {kind!r}")
