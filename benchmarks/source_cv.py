"""Cross-validation by call source and recording family: recall on birds the head has never heard.

    python benchmarks/source_cv.py --data ../shared/data/capuchin --annotations data/annotations/forest --out reports/source_cv.json

The machinery is :mod:`yamnet_capuchin.sourcecv`; the call sources come from
``ANNOTATIONS/sources.csv`` (``yamcap sources``). Each fold holds out call sources (their clips,
and their copies' frames in training recordings), negative-clip sources and recording families
together. Per fold: (a) synthetic soundscapes of the held-out sources' calls in the held-out
families' call-free recordings, (b) the held-out families' annotated recordings; event rules
chosen on inner folds over (a) and (b) pooled. Prints pooled P, R, F1, count MAE, false events per
call-free hour for (a) and (b), and recall per held-out source.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from yamnet_capuchin.config import FAMILY_FOLDS, Config
from yamnet_capuchin.crossval import annotated_recordings
from yamnet_capuchin.errors import YamcapError
from yamnet_capuchin.sourcecv import SYNTH_PER_FOLD, SourceSiteData, assign_source_folds, source_cv, synth_sets
from yamnet_capuchin.sources import read_sources


def row(name: str, r: dict) -> str:
    return (f"| {name} | {r['event_precision']:.3f} | {r['event_recall']:.3f} | {r['event_f1']:.3f} | "
            f"{r['count_mae']:.2f} | {r['false_events_per_hour']:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--annotations", type=Path, required=True, help="tables + families.csv + sources.csv")
    ap.add_argument("--folds", type=int, default=FAMILY_FOLDS)
    ap.add_argument("--synth-per-fold", type=int, default=SYNTH_PER_FOLD)
    ap.add_argument("--synth-dir", type=Path, help="where the fold soundscapes go (default: a temporary folder)")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--balance-sources", action="store_true",
                    help="every call source weighs the same in training (a forest copy counts as its source)")
    ap.add_argument("--forest-call-weight", type=float, default=1.0,
                    help="training weight of the annotated recordings' call frames (default 1)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    cfg = Config.load(args.config, dict(s.split("=", 1) for s in args.sets))
    t_start = time.perf_counter()
    try:
        tables, audio, families = annotated_recordings(args.annotations, args.data)
        calls = read_sources(args.annotations / "sources.csv")
        d = SourceSiteData(cfg, args.data, tables, audio, families)
        d.balance_sources, d.forest_call_weight = args.balance_sources, args.forest_call_weight
        folds = assign_source_folds(d.clips, calls, families, tables, args.folds, cfg.seed)
    except YamcapError as exc:
        sys.exit(f"error: {exc}")
    synth_dir = args.synth_dir or Path(tempfile.mkdtemp(prefix="yamcap-source-cv-"))
    synth = synth_sets(folds, d.clips, tables, families, audio, synth_dir, cfg.seed, args.synth_per_fold)
    for k in range(args.folds):
        n_syn = sum(len(ev) for _, ev in synth[k].values())
        print(f"fold {k}: sources {sorted(s for s, f in folds.source.items() if f == k)}; "
              f"{sum(1 for s in tables if folds.family[families.get(s, s)] == k)} recordings; "
              f"{len(synth[k])} soundscapes with {n_syn} calls")
    cv = source_cv(d, folds, tables, families, calls, synth)
    print(f"\n{len(tables)} recordings, {args.folds} folds by call source + family; {time.perf_counter() - t_start:.0f} s")
    print("| test set | event P | event R | event F1 | count MAE | false events / h call-free |")
    print("|---|---|---|---|---|---|")
    print(row("(a) held-out sources in held-out backgrounds (synthetic)", cv["synthetic"]))
    print(row("(b) held-out families' annotated recordings", cv["real"]))
    print("recall per held-out source:", json.dumps({k: v["recall"] for k, v in cv["per_source"].items()}))
    wrong = {s: v for s, v in cv["per_file"].items() if v["counted"] != v["true"]}
    print("real recordings with a wrong count:", json.dumps(wrong))
    if args.out:
        from yamnet_capuchin.fileio import atomic_write_json

        atomic_write_json(args.out, {**cv, "config": cfg.to_dict(), "seconds": round(time.perf_counter() - t_start),
                                     "command": " ".join(["python", "benchmarks/source_cv.py", *(argv or sys.argv[1:])])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
