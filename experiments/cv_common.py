"""Shared pieces of the cross-validation scripts (head_cv.py, threshold_cv.py).

Everything here reads only the train + validation clips of a model's manifest: the test split
is never loaded, so these experiments can choose settings without touching it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.cache import EmbeddingCache
from yamnet_capuchin.config import AugmentConfig
from yamnet_capuchin.dataset import read_manifest
from yamnet_capuchin.features import ClipEmbedder
from yamnet_capuchin.head import FrameHead
from yamnet_capuchin.head import head_inputs as package_head_inputs
from yamnet_capuchin.metrics import best_f1_threshold


def head_inputs(frames, inputs: str = "embeddings") -> np.ndarray:
    """What the head sees per frame, (F, D): the head inputs ``yamcap train`` offers
    (``head.inputs``), or two experiments: ``"embeddings+spectral_shape*S"``, the spectral shape
    scaled by S instead of the package's 0.25, and ``"embeddings+scores"``, the embeddings
    followed by the 521 AudioSet scores, scaled by 4 to about the embeddings' range; and
    ``"map:<pooling>"`` for frames that carry YAMNet's whole last feature map in
    ``frames.extra["feature_map"]`` (see :func:`pool_feature_map`)."""
    if inputs.startswith("map:"):
        return pool_feature_map(frames.extra["feature_map"], inputs[4:])
    if inputs == "embeddings+scores":
        return np.concatenate([frames.embeddings, 4 * frames.class_scores], axis=1).astype(np.float32)
    if inputs.startswith("embeddings+spectral_shape*"):
        return package_head_inputs(frames, "embeddings+spectral_shape", float(inputs.rsplit("*", 1)[1]))
    return package_head_inputs(frames, inputs)


FEATURE_MAP_SHAPE = (3, 2, 1024)  # YAMNet's last feature map per frame: time x frequency x channels


def pool_feature_map(maps: np.ndarray, pooling: str) -> np.ndarray:
    """Per-frame features from YAMNet's last feature map, ``maps`` (F, 6144) = (F, 3, 2, 1024)
    flattened: ``"mean"`` over time and frequency (YAMNet's own 1024-d embedding), ``"max"`` over
    both, ``"mean+max"`` (2048-d), or ``"freq"``: the mean over time of each of the two frequency
    halves side by side (2048-d), which keeps where in frequency the energy lies."""
    m = maps.reshape(len(maps), *FEATURE_MAP_SHAPE)
    pooled = {
        "mean": lambda: m.mean(axis=(1, 2)),
        "max": lambda: m.max(axis=(1, 2)),
        "mean+max": lambda: np.concatenate([m.mean(axis=(1, 2)), m.max(axis=(1, 2))], axis=1),
        "freq": lambda: m.mean(axis=1).reshape(len(m), -1),
    }
    if pooling not in pooled:
        raise ValueError(f"unknown feature-map pooling '{pooling}' (choose {', '.join(pooled)})")
    return pooled[pooling]().astype(np.float32)


@dataclass
class TrainVal:
    """The train + validation clips of a manifest with their cached YAMNet frames."""

    clips: list
    frames: list  # YAMNet Frames per clip
    y: np.ndarray  # (N,) 0/1
    groups: np.ndarray  # (N,) source recording per clip
    embedder: ClipEmbedder
    inputs: str = "embeddings"  # see head_inputs; dataclasses.replace(data, inputs=...) switches
    x: list = field(init=False)  # (F_i, D) head inputs per clip

    def __post_init__(self):
        self.x = [head_inputs(f, self.inputs) for f in self.frames]

    @classmethod
    def load(cls, manifest: Path, backbone: YamnetBackbone | None = None, inputs: str = "embeddings") -> TrainVal:
        """The train + validation clips of ``manifest``, embedded by ``backbone`` (default: YAMNet
        as ``YAMCAP_YAMNET`` names it)."""
        warnings.simplefilter("ignore")
        clips = [c for c in read_manifest(manifest) if c.split in ("train", "val")]
        embedder = ClipEmbedder(backbone or YamnetBackbone(), EmbeddingCache())
        return cls(
            clips, [embedder.embed_clip(c) for c in clips],
            np.array([c.label for c in clips]), np.array([c.source for c in clips]), embedder, inputs,
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
                 extra_negatives: list | None = None, extra_positives: list | None = None,
                 augment: AugmentConfig | None = None, balance_sources: bool = False) -> FrameHead:
        """A head trained as ``yamcap train`` trains it: on ``fit`` plus ``copies`` augmented
        copies of each of its clips (noise drawn from its negatives), stopped early on ``stop``;
        ``extra_negatives`` / ``extra_positives``: more (F, D) bags labelled 0 / 1, added to the
        fitting set; ``augment``: the augmentation settings (default: the package's);
        ``balance_sources``: each source recording weighs the same within its class, however
        many clips (and copies) it has (extra bags count as one source per class)."""
        neg, pos = list(extra_negatives or []), list(extra_positives or [])
        bags = [self.x[i] for i in fit] + pos + neg
        labels = list(self.y[fit]) + [1] * len(pos) + [0] * len(neg)
        whole = [i for i in fit if not self.clips[i].is_segment]  # ids: index among all clips
        for frames, label in self.embedder.training_copies([self.clips[i] for i in fit], augment or AugmentConfig(), copies, seed, whole):
            bags.append(head_inputs(frames, self.inputs))
            labels.append(label)
        # the inputs are built here (self.inputs); the head's own ``inputs`` is only a record
        head = FrameHead(seed=seed, **{k: v for k, v in params.items() if k != "inputs"})
        weights = None
        if balance_sources:
            groups = ([self.groups[i] for i in fit] + ["mined+"] * len(pos) + ["mined-"] * len(neg)
                      + [self.groups[i] for i in whole for _ in range(copies)])
            weights = source_balanced_weights(np.array(labels), np.array(groups))
        return head.fit(bags, np.array(labels), [self.x[i] for i in stop], self.y[stop], sample_weight=weights)

    def scores(self, head: FrameHead, idx: np.ndarray) -> np.ndarray:
        return head.predict_proba([self.x[i] for i in idx])[:, 1]


def source_balanced_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N,) weights under which every source weighs the same within its class and each class
    keeps its total (its clip count): clip i gets (n_c / S_c) / n_source(i)."""
    w = np.zeros(len(labels))
    for c in np.unique(labels):
        in_c = labels == c
        sources, counts = np.unique(groups[in_c], return_counts=True)
        per_source = dict(zip(sources, counts))
        w[in_c] = [in_c.sum() / len(sources) / per_source[g] for g in groups[in_c]]
    return w


class SustainedScore:
    """A trained head scored differently: clip score = the best run of ``frames`` consecutive
    frames, each run scored by the ``reduce`` ("min" or "mean") of its frame scores (1 frame =
    max pooling). A call (2-3 s) spans several 0.48 s-hop frames; a short coo may fill one."""

    def __init__(self, head, frames: int = 2, reduce: str = "min"):
        self.head, self.frames, self.reduce = head, frames, {"min": np.min, "mean": np.mean}[reduce]

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        return self.head.frame_scores(x)

    def predict(self, bags: list[np.ndarray]) -> np.ndarray:
        out = []
        for b in bags:
            p = self.frame_scores(b)
            n = min(self.frames, len(p))
            out.append(max(self.reduce(p[t: t + n]) for t in range(len(p) - n + 1)))
        return np.array(out, dtype=np.float32)


class MeanOfHeads:
    """Heads averaged frame by frame: frame score = the heads' mean, clip score = its maximum
    (as with one max-pooling head, so counting could use the same frame scores)."""

    def __init__(self, heads: list[FrameHead]):
        self.heads = heads

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        return np.mean([h.frame_scores(x) for h in self.heads], axis=0)

    def predict(self, bags: list[np.ndarray]) -> np.ndarray:
        return np.array([self.frame_scores(b).max() for b in bags], dtype=np.float32)


def mine_negatives(head: FrameHead, recordings: list, low: float = 0.05, guard_s: float = 6.0,
                   clip_s: float = 3.0, window_s: float = 0.96, inputs: str = "embeddings") -> list[np.ndarray]:
    """Pseudo-negative segments of unlabelled recordings: the ``clip_s`` segments whose centre
    lies more than ``guard_s`` from every frame ``head`` scores above ``low``.

    recordings: their YAMNet frames (:class:`~yamnet_capuchin.backbones.Frames`). Returns the
    segments' (F, D) head inputs."""
    out = []
    for frames in recordings:
        x = head_inputs(frames, inputs)
        hot = frames.start_s[head.frame_scores(x) > low]
        for k in range(int((frames.start_s[-1] + window_s) // clip_s)):
            a = k * clip_s
            if hot.size and np.min(np.abs(hot - (a + clip_s / 2))) < guard_s:
                continue
            keep = (frames.start_s >= a) & (frames.start_s + window_s <= a + clip_s)
            if keep.any():
                out.append(x[keep])
    return out


def mine_positives(head: FrameHead, recordings: list, high: float = 0.9, half_width: int = 2,
                   inputs: str = "embeddings") -> list[np.ndarray]:
    """Pseudo-positive segments of unlabelled recordings: around each frame ``head`` scores
    above ``high`` (best first, skipping frames within ``half_width`` + 1 frames of an earlier
    segment), the frames within ``half_width`` of it (5 frames = 2.9 s, about one call).
    Returns the segments' (F, D) head inputs."""
    out = []
    for frames in recordings:
        x = head_inputs(frames, inputs)
        scores = head.frame_scores(x)
        taken = np.zeros(len(scores), bool)
        for i in np.argsort(-scores):
            if scores[i] < high:
                break
            if taken[max(0, i - half_width - 1): i + half_width + 2].any():
                continue
            lo, hi = max(0, i - half_width), min(len(scores), i + half_width + 1)
            taken[lo:hi] = True
            out.append(x[lo:hi])
    return out


def f1_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float) -> tuple[float, int, int]:
    """F1, false positives and false negatives of ``scores >= thresholds``."""
    pred = scores >= thresholds
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    return 2 * tp / (2 * tp + fp + fn), fp, fn


def cross_validate(data: TrainVal, make_head, folds: int = 5, repeats: int = 3) -> list[tuple]:
    """Out-of-fold clip scores from ``folds`` source-grouped folds, for each of ``repeats`` fold
    assignments (seeds 0..repeats-1). ``make_head(data, fit, stop)`` trains a head (anything with
    ``predict(bags)``) on the clips ``fit``, stopped early on ``stop``; each fold's threshold is the
    best F1 on its own ``stop`` clips, as ``yamcap train`` picks it on the validation split.
    Returns one (ROC-AUC, PR-AUC, F1, FP, FN) per repeat."""
    every = np.arange(len(data.y))
    rows = []
    for repeat in range(repeats):
        scores, thresholds = np.zeros(len(every)), np.zeros(len(every))
        for k, (train, held_out) in enumerate(data.folds(every, folds, repeat)):
            fit, stop = data.stop_split(train, k)
            head = make_head(data, fit, stop)
            scores[held_out] = data.scores(head, held_out)
            thresholds[held_out] = best_f1_threshold(data.y[stop], data.scores(head, stop))
        f1, fp, fn = f1_at(data.y, scores, thresholds)
        rows.append((roc_auc_score(data.y, scores), average_precision_score(data.y, scores), f1, fp, fn))
    return rows


def print_header(data: TrainVal, folds: int, repeats: int) -> None:
    print(f"{len(data.y)} train+val clips, {len(set(data.groups))} sources, {folds} source-grouped folds "
          f"x {repeats} repeats")
    print(f"{'variant':40s} {'ROC-AUC':>8s} {'PR-AUC':>8s} {'F1':>7s} {'FP':>5s} {'FN':>5s}  (mean over repeats)")


def print_row(name: str, rows: list[tuple], seconds: float) -> None:
    roc, pr, f1, fp, fn = np.mean(rows, axis=0)
    print(f"{name:40s} {roc:8.4f} {pr:8.4f} {f1:7.4f} {fp:5.1f} {fn:5.1f}  "
          f"(F1 per repeat {' '.join(f'{r[2]:.3f}' for r in rows)}; {seconds:.0f} s)", flush=True)
