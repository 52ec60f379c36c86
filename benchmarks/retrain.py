"""How long the review page's retrain keeps a person waiting: cold (first) and warm (next).

    python benchmarks/retrain.py --data ../shared/data/capuchin --annotations data/annotations/forest

A review session, replayed: ``yamcap count`` on ``--review`` recordings (default 3 of the
annotated forest recordings), then the labels a reviewer would give them, then the retrain the
page's button starts (:func:`yamnet_capuchin.review.retrain.retrain`, called in this process as
the page's server does). The labels are the hand annotations of those recordings (taken out of the
complete-annotation folder the run trains on, so no recording is annotated twice):

* **cold**: an empty embedding cache, TensorFlow not yet imported, labels on the first recording;
* **warm**: then, in the same process, labels on one more recording and the retrain again
  (``--warm-runs`` times, each with one more labelled recording while there are any).

Every retrain trains the head and re-counts the run's recordings; its wall time is taken around
the whole call. Results: ``--out`` (JSON) and a line per retrain.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_REVIEW = ("recording_06", "recording_32", "recording_39")


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="Kaggle-layout training data")
    ap.add_argument("--annotations", type=Path, required=True, help="complete annotation tables + families.csv")
    ap.add_argument("--review", nargs="+", default=list(DEFAULT_REVIEW), help="recordings the reviewer labels")
    ap.add_argument("--warm-runs", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the timings as JSON here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="yamcap-retrain-bench-"))
    os.environ["YAMCAP_CACHE"] = str(work / "cache")  # cold: nothing embedded yet
    truth, review = work / "truth", work / "review"
    truth.mkdir()
    review.mkdir()
    for f in args.annotations.iterdir():
        if f.is_file() and f.name.split(".")[0] not in args.review:
            shutil.copy2(f, truth / f.name)
    forest = args.data / "Forest Recordings"
    paths = [next(forest.glob(f"{stem}.*")) for stem in args.review]
    config = work / "config.toml"
    config.write_text(f'[data]\ncomplete_annotations = ["{truth}"]\n')
    run = work / "run"
    subprocess.run([sys.executable, "-m", "yamnet_capuchin.cli", "count", *map(str, paths), "--out", str(run),
                    "--config", str(config)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    from yamnet_capuchin.review.retrain import retrain

    timings = []
    for i in range(1 + args.warm_runs):
        stem = args.review[min(i, len(args.review) - 1)]
        table = next(args.annotations.glob(f"{stem}.*selections.txt"))
        shutil.copy2(table, review / table.name)
        t0 = time.perf_counter()
        result = retrain(run, review, args.data, paths, echo=lambda *_: None)
        wall = time.perf_counter() - t0
        metrics = json.loads((Path(result["model_dir"]) / "metrics.json").read_text())
        stages, epochs = metrics["timing_s"], sum(m["epochs"] for m in metrics["pooling_selection"].values())
        kind = "cold" if i == 0 else "warm"
        timings.append({"kind": kind, "labelled": sorted(p.name.split(".")[0] for p in review.iterdir()),
                        "wall_s": round(wall, 2), "train_stages_s": stages, "epochs": epochs,
                        "val_pr_auc": metrics["val"]["pr_auc"], "counts": result["counts"]})
        print(f"{kind}: {wall:.1f} s (training {stages['total']:.1f} s: embed {stages['embed']:.1f}, augment "
              f"{stages['augment']:.1f}, head {stages['heads']:.1f} in {epochs} epochs; the rest counting), labelled "
              f"{', '.join(timings[-1]['labelled'])}", flush=True)
    if args.out:
        from yamnet_capuchin.fileio import atomic_write_json

        atomic_write_json(args.out, {
            "date": datetime.date.today().isoformat(), "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            "retrains": timings,
            "command": " ".join(["python", "benchmarks/retrain.py", *(argv or sys.argv[1:])])})
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
