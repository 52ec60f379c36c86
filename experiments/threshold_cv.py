"""Is the decision threshold better chosen by cross-validation than on the small validation
split? Nested source-grouped cross-validation on the train + validation clips of a model's
split (the test split is never read).

    python experiments/threshold_cv.py --manifest yamnet_capuchin/default_model/manifest.csv --repeats 3

Outer folds stand in for unseen sources. Inside each outer training part, three ways to get a
scorer and its threshold:

- validation: one head (early-stopped on ~1/7 of the sources), threshold = best F1 on those
  early-stopping sources — what ``yamcap train`` does with its validation split;
- cv-threshold: the same head, threshold = best F1 on out-of-fold scores of an inner 4-fold CV;
- cv-ensemble: the mean score of the inner CV's four heads, with that same CV threshold.

Prints the out-of-fold F1 of each, per repeat and on average, and how much the threshold moves
between outer folds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from cv_common import TrainVal, f1_at
from sklearn.metrics import roc_auc_score

from yamnet_capuchin.config import Config
from yamnet_capuchin.metrics import best_f1_threshold

METHODS = ("validation", "cv-threshold", "cv-ensemble")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--inner-folds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="outer fold assignments (seeds 0..N-1)")
    args = parser.parse_args()
    data = TrainVal.load(args.manifest)
    params = vars(Config().head)
    copies = Config().augment.copies
    every = np.arange(len(data.y))
    print(f"{len(every)} train+val clips, {len(set(data.groups))} sources; {args.folds} outer x "
          f"{args.inner_folds} inner source-grouped folds, {args.repeats} repeats")
    results = {m: [] for m in METHODS}
    spread = {m: [] for m in METHODS[:2]}
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        scores = {m: np.zeros(len(every)) for m in METHODS}
        thresholds = {m: np.zeros(len(every)) for m in METHODS}
        for k, (train, held_out) in enumerate(data.folds(every, args.folds, repeat)):
            fit, stop = data.stop_split(train, k)
            head = data.fit_head(fit, stop, copies, params)
            t_val = best_f1_threshold(data.y[stop], data.scores(head, stop))
            inner_scores, inner_heads = np.zeros(len(every)), []
            for j, (inner_train, inner_held) in enumerate(data.folds(train, args.inner_folds, repeat)):
                inner_fit, inner_stop = data.stop_split(inner_train, 100 + j)
                inner_heads.append(data.fit_head(inner_fit, inner_stop, copies, params))
                inner_scores[inner_held] = data.scores(inner_heads[-1], inner_held)
            t_cv = best_f1_threshold(data.y[train], inner_scores[train])
            single = data.scores(head, held_out)
            ensemble = np.mean([data.scores(h, held_out) for h in inner_heads], axis=0)
            for method, s, t in (("validation", single, t_val), ("cv-threshold", single, t_cv),
                                 ("cv-ensemble", ensemble, t_cv)):
                scores[method][held_out], thresholds[method][held_out] = s, t
            spread["validation"].append(t_val)
            spread["cv-threshold"].append(t_cv)
        for method in METHODS:
            f1, fp, fn = f1_at(data.y, scores[method], thresholds[method])
            results[method].append((f1, fp, fn, roc_auc_score(data.y, scores[method])))
            print(f"repeat {repeat}  {method:13s} F1 {f1:.4f}  FP {fp:3d}  FN {fn:3d}  "
                  f"ROC-AUC {results[method][-1][3]:.4f}", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nmean over repeats:")
    for method in METHODS:
        f1, fp, fn, roc = np.mean(results[method], axis=0)
        print(f"  {method:13s} F1 {f1:.4f}  FP {fp:.1f}  FN {fn:.1f}  ROC-AUC {roc:.4f}")
    for method, ts in spread.items():
        print(f"  threshold by {method:13s}: {min(ts):.2f} .. {max(ts):.2f} across outer folds "
              f"(std {np.std(ts):.2f})")


if __name__ == "__main__":
    main()
