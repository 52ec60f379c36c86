"""Cross-validation by recording family on the annotated forest recordings.

    python benchmarks/forest_cv.py --data ../shared/data/capuchin --annotations data/annotations/forest

The machinery is :mod:`yamnet_capuchin.crossval`. Per outer fold (whole families, ``yamcap families``): a head is trained on the clips plus the
annotated segments of the other folds' recordings (calls, other:* and the unlabelled rest as
non-calls; what `yamcap train --complete-annotations` does), the event parameters are chosen
on inner folds (each inner fold scored by a head trained without it and without the outer
fold), and the outer fold's recordings are scored. Events and counts are pooled over the
outer folds and printed (event precision / recall / F1 at IoU >= 0.3, count MAE, exact-count
share, false events per hour of call-free audio), once with the inner-chosen parameters and
once with the configuration's fixed ``[events]``.

``--set backbone.name=birdnet`` runs the same on BirdNET 2.4's embeddings; with ``--zero-shot``
no head is trained and BirdNET's own Capuchinbird score is the frame score (event rules still
chosen on inner folds).

``--tune-all`` also prints the parameters that the same grid chooses on the out-of-fold
scores of *all* recordings: the candidate default for configs/default.toml (choosing it
there does not touch the nested figures above).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from yamnet_capuchin.config import FAMILY_FOLDS, Config
from yamnet_capuchin.count import event_params
from yamnet_capuchin.crossval import (SiteData, annotated_recordings, assign_folds, call_counts, choose_params,
                                      fixed_scorer, nested_cv)
from yamnet_capuchin.errors import YamcapError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--annotations", type=Path, required=True, help="folder of tables + families.csv")
    ap.add_argument("--folds", type=int, default=FAMILY_FOLDS)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--tune-all", action="store_true")
    ap.add_argument("--zero-shot", action="store_true",
                    help="no head: score frames with the backbone's own Capuchinbird class (--set backbone.name=birdnet)")
    ap.add_argument("--negative-weight", type=float, default=1.0,
                    help="training weight of the annotated recordings' non-call segments (default 1)")
    ap.add_argument("--out", type=Path, help="write the pooled results and per-file counts as JSON here")
    args = ap.parse_args(argv)
    cfg = Config.load(args.config, dict(s.split("=", 1) for s in args.sets))
    t_start = time.perf_counter()
    try:
        tables, audio, families = annotated_recordings(args.annotations, args.data)
        d = SiteData(cfg, args.data, tables, audio, families)
        fold = assign_folds(tables, families, args.folds, cfg.seed)
    except YamcapError as exc:
        sys.exit(f"error: {exc}")
    d.negative_weight = args.negative_weight
    n_calls = call_counts(tables)
    for k in range(args.folds):
        members = [s for s in sorted(fold) if fold[s] == k]
        print(f"fold {k}: {len(members)} recordings, {sum(n_calls[s] for s in members)} calls, "
              f"families {sorted({families.get(s, s) for s in members})}")
    fixed = event_params(cfg, 0.5)
    scorer = fixed_scorer(d.zero_shot_scores()) if args.zero_shot else d.score_fold
    cv = nested_cv(fold, scorer, tables, d.durations, d.window_s, d.hop_s, fixed, echo=print)
    names = {"nested": "nested, plateau rule (event rules chosen on inner folds)",
             "nested_best_point": "nested, best-point rule", "fixed": f"fixed [events] of the config {fixed.__dict__}"}
    rows = {names[k]: v for k, v in cv["rows"].items()}
    print(f"\n{len(tables)} recordings, {sum(n_calls.values())} calls, {args.folds} folds by family; "
          f"{time.perf_counter() - t_start:.0f} s")
    print("| rules | event P | event R | event F1 | count MAE | exact | false events / h call-free |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['event_precision']:.3f} | {r['event_recall']:.3f} | {r['event_f1']:.3f} | "
              f"{r['count_mae']:.3f} | {r['count_exact_rate']:.3f} | {r['false_events_per_hour']:.2f} |")
    wrong = {s: v for s, v in cv["per_file"].items() if v["nested"] != v["true"]}
    print("files with a wrong count (nested):", json.dumps(wrong))
    result = {"rows": rows, "per_file": cv["per_file"], "chosen_per_fold": cv["chosen_per_fold"], "folds": args.folds,
              "config": cfg.to_dict()}
    if args.tune_all:
        params, r = choose_params(cv["oof_scores"], tables, d.durations, d.window_s, d.hop_s)
        print(f"chosen on all out-of-fold scores: {params.__dict__} (F1 {r['event_f1']:.3f}, MAE {r['count_mae']:.3f})")
        result["tuned_on_all"] = {"params": params.__dict__, "scores": r}
    if args.out:
        from yamnet_capuchin.fileio import atomic_write_json

        atomic_write_json(args.out, result)
        for suffix, scores in ((".scores.npz", cv["oof_scores"]), (".inner.npz", cv["inner_scores"])):
            np.savez_compressed(args.out.with_suffix(suffix),
                                **{f"{k}.{part}": v for k, (t, sc) in scores.items() for part, v in (("t", t), ("p", sc))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
