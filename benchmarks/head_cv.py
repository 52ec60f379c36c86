"""Choose the head's pooling and augmentation by source-grouped cross-validation on the
train + validation clips of a model's split (the test split is never read).

    python benchmarks/head_cv.py --manifest yamnet_capuchin/default_model/manifest.csv

Prints the ROC-AUC and PR-AUC of out-of-fold clip scores for each variant; the README's
"Why max pooling and augmentation" table comes from this script.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.cache import EmbeddingCache
from yamnet_capuchin.config import AugmentConfig, Config
from yamnet_capuchin.dataset import read_manifest
from yamnet_capuchin.features import ClipEmbedder
from yamnet_capuchin.head import FrameHead

VARIANTS = {
    "mean pooling": ("mean", 0),
    "attention pooling": ("attention", 0),
    "max pooling": ("max", 0),
    "max pooling + augmentation": ("max", 2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cfg = Config()
    clips = [c for c in read_manifest(args.manifest) if c.split in ("train", "val")]
    embedder = ClipEmbedder(YamnetBackbone(), EmbeddingCache())
    x = [embedder.embed_clip(c).embeddings for c in clips]
    y = np.array([c.label for c in clips])
    groups = np.array([c.source for c in clips])
    folds = list(StratifiedGroupKFold(args.folds, shuffle=True, random_state=args.seed).split(x, y, groups))
    params = {k: v for k, v in vars(cfg.head).items() if k != "pooling"}
    print(f"{len(clips)} train+val clips, {len(set(groups))} sources, {args.folds} source-grouped folds")
    for name, (pooling, copies) in VARIANTS.items():
        t0 = time.perf_counter()
        scores = np.zeros(len(y))
        for k, (train, held_out) in enumerate(folds):
            # early stopping on a source-grouped 15 % of the training fold
            rng = np.random.default_rng(k)
            srcs = np.unique(groups[train])
            inner = np.isin(groups[train], rng.choice(srcs, size=max(2, len(srcs) // 7), replace=False))
            fit, stop = train[~inner], train[inner]
            fx, fy = [x[i] for i in fit], list(y[fit])
            noise = sorted({clips[i].path for i in fit if y[i] == 0})  # as training draws it
            for i in fit:
                if clips[i].is_segment:
                    continue
                for copy in range(copies):
                    aug = embedder.augmented_copy(clips[i].path, noise, AugmentConfig(), [args.seed, int(i), copy])
                    fx.append(aug.embeddings)
                    fy.append(y[i])
            head = FrameHead(pooling=pooling, seed=args.seed, **params)
            head.fit(fx, np.array(fy), [x[i] for i in stop], y[stop])
            scores[held_out] = head.predict([x[i] for i in held_out])
        print(f"{name:28s} CV ROC-AUC {roc_auc_score(y, scores):.4f}  PR-AUC {average_precision_score(y, scores):.4f}"
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
