"""On-disk cache of backbone frames, so retraining never recomputes embeddings.

Key = SHA-256 of the audio file's bytes + backbone identity (family, version, runtime,
weights fingerprint) + audio front end (backend, sample rate) + an optional variant tag
(augmentation parameters). One ``.npz`` per entry, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .backbones import Frames
from .fileio import atomic_path

ENV_CACHE = "YAMCAP_CACHE"


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "yamcap"


class EmbeddingCache:
    """``get``/``put`` frames by key; ``root=None`` uses ``$YAMCAP_CACHE`` or ``~/.cache/yamcap``."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(content_sha256: str, backbone_identity: dict, frontend: dict, variant: str = "") -> str:
        ident = {k: backbone_identity.get(k) for k in ("name", "version", "runtime", "fingerprint")}
        for extra in ("tensors", "hop_samples"):  # extra tensors, another framing: other entries
            if backbone_identity.get(extra):
                ident[extra] = backbone_identity[extra]
        blob = json.dumps([content_sha256, ident, frontend, variant], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / "frames" / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Frames | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with np.load(path) as data:
                extra = {k[len("extra:"):]: data[k] for k in data.files if k.startswith("extra:")}
                frames = Frames(data["start_s"], data["embeddings"], data["class_scores"], data["mel_profile"], extra)
        except (FileNotFoundError, OSError, KeyError, ValueError):  # KeyError: written by an older version
            self.misses += 1
            return None
        self.hits += 1
        return frames

    def put(self, key: str, frames: Frames) -> None:
        if not self.enabled:
            return
        with atomic_path(self._path(key)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, start_s=frames.start_s, embeddings=frames.embeddings, class_scores=frames.class_scores,
                         mel_profile=frames.mel_profile, **{f"extra:{k}": v for k, v in frames.extra.items()})
