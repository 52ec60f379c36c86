"""Shared pieces of the cross-validation scripts (head_cv.py, threshold_cv.py).

Everything here reads only the train + validation clips of a model's manifest: the test split
is never loaded, so these experiments can choose settings without touching it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.cache import EmbeddingCache
from yamnet_capuchin.config import AugmentConfig
from yamnet_capuchin.dataset import read_manifest
from yamnet_capuchin.features import ClipEmbedder
from yamnet_capuchin.head import FrameHead


@dataclass
class TrainVal:
    """The train + validation clips of a manifest with their cached YAMNet frames."""

    clips: list
    x: list  # (F_i, 1024) embeddings per clip
    y: np.ndarray  # (N,) 0/1
    groups: np.ndarray  # (N,) source recording per clip
    embedder: ClipEmbedder

    @classmethod
    def load(cls, manifest: Path) -> TrainVal:
        warnings.simplefilter("ignore")
        clips = [c for c in read_manifest(manifest) if c.split in ("train", "val")]
        embedder = ClipEmbedder(YamnetBackbone(), EmbeddingCache())
        return cls(
            clips, [embedder.embed_clip(c).embeddings for c in clips],
            np.array([c.label for c in clips]), np.array([c.source for c in clips]), embedder,
        )

    def folds(self, idx: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Source-grouped, stratified folds of the clips ``idx`` (as index arrays into all clips)."""
        split = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, self.y[idx], self.groups[idx])
        return [(idx[a], idx[b]) for a, b in split]

    def stop_split(self, idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Split ``idx`` into fitting clips and an early-stopping set of about 1/7 of its
        sources — the role the validation split plays in ``yamcap train``."""
        rng = np.random.default_rng(seed)
        sources = np.unique(self.groups[idx])
        held = np.isin(self.groups[idx], rng.choice(sources, size=max(2, len(sources) // 7), replace=False))
        return idx[~held], idx[held]

    def fit_head(self, fit: np.ndarray, stop: np.ndarray, copies: int, params: dict, seed: int = 0,
                 extra_negatives: list | None = None) -> FrameHead:
        """A head trained as ``yamcap train`` trains it: on ``fit`` plus ``copies`` augmented
        copies of each of its clips (noise drawn from its negatives), stopped early on ``stop``;
        ``extra_negatives``: more (F, D) bags labelled 0, added to the fitting set."""
        extra = list(extra_negatives or [])
        bags, labels = [self.x[i] for i in fit] + extra, list(self.y[fit]) + [0] * len(extra)
        whole = [i for i in fit if not self.clips[i].is_segment]  # ids: index among all clips
        for frames, label in self.embedder.training_copies([self.clips[i] for i in fit], AugmentConfig(), copies, seed, whole):
            bags.append(frames.embeddings)
            labels.append(label)
        head = FrameHead(seed=seed, **params)
        return head.fit(bags, np.array(labels), [self.x[i] for i in stop], self.y[stop])

    def scores(self, head: FrameHead, idx: np.ndarray) -> np.ndarray:
        return head.predict([self.x[i] for i in idx])


def mine_negatives(head: FrameHead, recordings: list, low: float = 0.05, guard_s: float = 6.0,
                   clip_s: float = 3.0, window_s: float = 0.96) -> list[np.ndarray]:
    """Pseudo-negative segments of unlabelled recordings: the ``clip_s`` segments whose centre
    lies more than ``guard_s`` from every frame ``head`` scores above ``low``.

    recordings: their YAMNet frames (:class:`~yamnet_capuchin.backbones.Frames`). Returns the
    segments' (F, D) embeddings."""
    out = []
    for frames in recordings:
        hot = frames.start_s[head.frame_scores(frames.embeddings) > low]
        for k in range(int((frames.start_s[-1] + window_s) // clip_s)):
            a = k * clip_s
            if hot.size and np.min(np.abs(hot - (a + clip_s / 2))) < guard_s:
                continue
            keep = (frames.start_s >= a) & (frames.start_s + window_s <= a + clip_s)
            if keep.any():
                out.append(frames.embeddings[keep])
    return out


def f1_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float) -> tuple[float, int, int]:
    """F1, false positives and false negatives of ``scores >= thresholds``."""
    pred = scores >= thresholds
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    return 2 * tp / (2 * tp + fp + fn), fp, fn
