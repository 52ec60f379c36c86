"""Training pipeline: data folder -> split -> frames (cached) -> heads -> model directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import SAMPLE_RATE
from .backbones import make_backbone
from .cache import EmbeddingCache
from .config import Config
from .dataset import assign_splits, candidate_clips, split_summary, write_manifest
from .errors import YamcapError
from .features import ClipEmbedder
from .fileio import atomic_write_json, file_sha256, save_figure, staging_dir
from .head import POOLINGS, FrameHead, head_inputs
from .metrics import best_f1_threshold, classification_metrics
from .model import YamnetDetector
from .progress import track


def train_yamnet(
    data_dir: str | Path,
    out_dir: str | Path,
    config: Config,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    warm_start_from: FrameHead | None = None,
) -> dict:
    """Train a YAMNet head on a Kaggle-layout folder; write the model directory ``out_dir``.

    ``warm_start_from``: a trained head of the same shape to start from (the review page's
    retrain, :mod:`yamnet_capuchin.review.retrain`) instead of a random initialisation; only its
    pooling is then trained. Returns the metrics dictionary also written to ``out_dir/metrics.json``.
    """
    t_start = time.perf_counter()
    backbone = make_backbone(config.backbone.name, config.backbone.handle or None, config.backbone.runtime).load()
    clips = candidate_clips(data_dir, config, echo, (backbone.window_samples / SAMPLE_RATE,
                                                     backbone.hop_samples / SAMPLE_RATE))
    config.backbone.handle, config.backbone.runtime = backbone.handle, backbone.runtime
    cache = EmbeddingCache(config.cache_dir or None)
    embedder = ClipEmbedder(backbone, cache, config.audio.backend)

    t0 = time.perf_counter()
    frames, failures = embedder.embed_many(clips, "Embedding clips", progress)
    for path, reason in failures:
        echo(f"skipped {path}: {reason}")
    readable = [(c, f) for c, f in zip(clips, frames) if f is not None]
    kept = list(zip(assign_splits([c for c, _ in readable], config), [f for _, f in readable]))
    t_embed = time.perf_counter() - t0

    def part(split: str, segments: bool | None = None):
        sel = [(c, f) for c, f in kept if c.split == split and (segments is None or c.is_segment == segments)]
        return [head_inputs(f, config.head.inputs) for _, f in sel], np.array([c.label for c, _ in sel])

    train_x, train_y = part("train")
    val_x, val_y = part("val")
    test_x, test_y = part("test", segments=False)  # whole clips, comparable with models trained on clips only
    seg_x, seg_y = part("test", segments=True)  # segments of recordings (backgrounds, annotated calls per frame)
    for name, y in (("train", train_y), ("val", val_y), ("test", test_y)):
        if y.size == 0 or y.min() == y.max():
            raise YamcapError(f"the {name} split needs clips of both classes (has {y.size}); check the data")

    t0 = time.perf_counter()
    n_augmented = 0
    if config.augment.enabled:
        aug_x, aug_y = _augmented(kept, embedder, config, progress)
        train_x, train_y = train_x + aug_x, np.concatenate([train_y, aug_y])
        n_augmented = len(aug_x)
    t_augment = time.perf_counter() - t0

    t0 = time.perf_counter()
    poolings = POOLINGS if config.head.pooling == "auto" else (config.head.pooling,)
    if warm_start_from is not None:
        poolings = (warm_start_from.pooling,)
    candidates = {}
    for pooling in poolings:
        params = {k: v for k, v in vars(config.head).items() if k != "pooling"}
        head = FrameHead(pooling=pooling, seed=config.seed, **params)
        if warm_start_from is not None:
            head.set_params(warm_start=True).weights_ = dict(warm_start_from.weights_)
        head.fit(train_x, train_y, val_x, val_y)
        val_scores = head.predict_proba(val_x)[:, 1]
        m = classification_metrics(val_y, val_scores, best_f1_threshold(val_y, val_scores))
        m["val_loss"] = float(min(head.history_["val_loss"]))
        m["epochs"] = len(head.history_["val_loss"])
        candidates[pooling] = (head, val_scores, m)
        echo(f"  pooling {pooling:9s}  val PR-AUC {m['pr_auc']:.4f}  ROC-AUC {m['roc_auc']:.4f}  "
             f"F1 {m['f1']:.4f}  loss {m['val_loss']:.4f}  ({m['epochs']} epochs)")
    best = max(candidates, key=lambda p: (candidates[p][2]["pr_auc"], -candidates[p][2]["val_loss"]))
    head, val_scores, _ = candidates[best]
    threshold = best_f1_threshold(val_y, val_scores)
    t_head = time.perf_counter() - t0

    test_scores = head.predict_proba(test_x)[:, 1]
    test_metrics = classification_metrics(test_y, test_scores, threshold)
    seg_metrics = (classification_metrics(seg_y, head.predict_proba(seg_x)[:, 1], threshold)
                   if seg_y.size and 0 < seg_y.sum() < seg_y.size else None)
    val_metrics = classification_metrics(val_y, val_scores, threshold)

    metrics = {
        "backbone": backbone.name,
        "test": test_metrics,
        "test_segments": seg_metrics,
        "val": val_metrics,
        "pooling": best,
        "pooling_selection": {p: c[2] for p, c in candidates.items()},
        "threshold": threshold,
        "split": split_summary([c for c, _ in kept]),
        "failures": [{"path": str(p), "reason": r} for p, r in failures],
        "augmentation": {"enabled": config.augment.enabled, "train_copies_added": n_augmented},
        "timing_s": {
            "embed": round(t_embed, 2), "augment": round(t_augment, 2), "heads": round(t_head, 2),
            "total": round(time.perf_counter() - t_start, 2),
        },
        "cache": {"hits": cache.hits, "misses": cache.misses},  # not its folder: a path of this machine
    }
    manifest_rows = [c for c, _ in kept]
    with staging_dir(out_dir) as tmp:
        write_manifest(manifest_rows, tmp / "manifest.csv")
        detector = YamnetDetector(head, threshold, config, {
            "backbone": backbone.identity(),
            "manifest_sha256": file_sha256(tmp / "manifest.csv"),
        }, backbone)
        detector.save(tmp)
        atomic_write_json(tmp / "metrics.json", metrics)
        from .plots import training_curves

        save_figure(training_curves({p: c[0].history_ for p, c in candidates.items()},
                                    f"YAMNet head (selected: {best} pooling)"), tmp / "training_curve.png")
    return metrics


def _augmented(kept, embedder: ClipEmbedder, config: Config, progress: bool):
    """Augmented copies of the training clips (:meth:`ClipEmbedder.training_copies`)."""
    train = [c for c, _ in kept if c.split == "train"]
    n_copies = sum(not c.is_segment for c in train) * config.augment.copies
    xs, ys = [], []
    copies = embedder.training_copies(train, config.augment, config.augment.copies, config.seed)
    for frames, label in track(copies, "Augmenting", n_copies, progress):
        xs.append(head_inputs(frames, config.head.inputs))
        ys.append(label)
    return xs, np.array(ys)
