"""Choose the head's settings by source-grouped cross-validation on the train + validation
clips of a model's split (the test split is never read).

    python benchmarks/head_cv.py --manifest yamnet_capuchin/default_model/manifest.csv --repeats 3

For each variant: out-of-fold clip scores from 5 source-grouped folds, repeated with
``--repeats`` different fold assignments; prints ROC-AUC, PR-AUC and the F1 reached with the
threshold each fold's head picks on its own early-stopping sources (as ``yamcap train`` picks it
on the validation split), averaged over the repeats. The README's tables come from this script.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from cv_common import TrainVal, f1_at, mine_negatives
from sklearn.metrics import average_precision_score, roc_auc_score

from yamnet_capuchin.config import Config
from yamnet_capuchin.dataset import read_manifest
from yamnet_capuchin.fileio import expand_audio_paths
from yamnet_capuchin.metrics import best_f1_threshold

# name: (augmented copies per clip, head parameters differing from configs/default.toml,
#        whether to add negatives mined from unlabelled forest audio)
# Mined negatives (self-training): in each fold a first head scores the forest recordings that
# are neither a background source of the manifest nor one of --not-mined; the 3 s segments far
# from any frame above 0.05 join the fitting set as negatives; a second head is trained from scratch.
VARIANTS = {
    "mean pooling": (0, {"pooling": "mean"}, False),
    "attention pooling": (0, {"pooling": "attention"}, False),
    "max pooling": (0, {"pooling": "max"}, False),
    "max pooling + augmentation (default)": (2, {}, False),
    "default, 128 hidden units, dropout 0.5": (2, {"hidden_units": 128, "dropout": 0.5}, False),
    "default, batch size 32": (2, {"batch_size": 32}, False),
    "default, classes not re-weighted": (2, {"balance_classes": False}, False),
    "default + context 1": (2, {"context": 1}, False),
    "default + context 2": (2, {"context": 2}, False),
    "default + mined forest negatives": (2, {}, True),
}
# backgrounds of the README's test soundscapes: never used for training
TEST_SOUNDSCAPE_BACKGROUNDS = "recording_12,recording_13,recording_24,recording_90"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="fold assignments (seeds 0..N-1)")
    parser.add_argument("--only", nargs="*", help="run only these variants (names as printed)")
    parser.add_argument("--not-mined", default=TEST_SOUNDSCAPE_BACKGROUNDS,
                        help="forest recordings (stems) kept out of the mined negatives")
    args = parser.parse_args()
    data = TrainVal.load(args.manifest)
    forest = unlabelled_forest(args.manifest, data, args.not_mined.split(","))
    every = np.arange(len(data.y))
    print(f"{len(every)} train+val clips, {len(set(data.groups))} sources, {args.folds} source-grouped folds "
          f"x {args.repeats} repeats")
    print(f"{'variant':40s} {'ROC-AUC':>8s} {'PR-AUC':>8s} {'F1':>7s} {'FP':>5s} {'FN':>5s}  (mean over repeats)")
    defaults = vars(Config().head)
    for name, (copies, overrides, mined) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        rows = []
        for repeat in range(args.repeats):
            scores, thresholds = np.zeros(len(every)), np.zeros(len(every))
            for k, (train, held_out) in enumerate(data.folds(every, args.folds, repeat)):
                fit, stop = data.stop_split(train, k)
                params = {**defaults, **overrides}
                head = data.fit_head(fit, stop, copies, params)
                if mined:
                    head = data.fit_head(fit, stop, copies, params, extra_negatives=mine_negatives(head, forest))
                scores[held_out] = data.scores(head, held_out)
                thresholds[held_out] = best_f1_threshold(data.y[stop], data.scores(head, stop))
            f1, fp, fn = f1_at(data.y, scores, thresholds)
            rows.append((roc_auc_score(data.y, scores), average_precision_score(data.y, scores), f1, fp, fn))
        roc, pr, f1, fp, fn = np.mean(rows, axis=0)
        print(f"{name:40s} {roc:8.4f} {pr:8.4f} {f1:7.4f} {fp:5.1f} {fn:5.1f}  "
              f"(F1 per repeat {' '.join(f'{r[2]:.3f}' for r in rows)}; {time.perf_counter() - t0:.0f} s)", flush=True)


def unlabelled_forest(manifest: Path, data: TrainVal, not_mined: list[str]) -> list:
    """YAMNet frames of the forest recordings beside the manifest's background sources, less the
    backgrounds themselves (any split) and ``not_mined``."""
    clips = read_manifest(manifest)
    backgrounds = {Path(c.path) for c in clips if c.is_segment}
    if not backgrounds:
        return []
    folder = next(iter(backgrounds)).parent
    used = {p.stem for p in backgrounds} | set(not_mined)
    paths = [p for p in expand_audio_paths([folder]) if p.stem not in used]
    print(f"{len(paths)} unlabelled forest recordings for mined negatives (not: {', '.join(sorted(used))})")
    return [data.embedder.embed(p) for p in paths]


if __name__ == "__main__":
    main()
