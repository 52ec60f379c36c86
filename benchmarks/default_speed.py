"""The README's first command against the decode floor, on the same files, in the same run.

    python benchmarks/default_speed.py --data ../shared/data/capuchin --runs 5 --out benchmarks/results/DATE-default-speed.json

Each run times, one after the other:

* **floor**: decoding and resampling every forest recording on one core, nothing else
  (:func:`yamnet_capuchin.benchmark.decode_floor`, in this process);
* **count**: ``yamcap count FOREST --out TMP -q`` in a fresh process with no ``YAMCAP_*``
  variable set (so the packaged model runs, as after ``pip install yamnet-capuchin``), timed
  from its start to its exit: start-up, model loading, decoding, inference, every output.

Speeds are audio seconds per wall second; the ratio is count's speed over the floor's in the
same run (1.0: counting as fast as decoding alone). A warm-up run first (file pages cached) is
not counted. Prints one line per run and writes the runs, their medians and the machine to --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yamnet_capuchin.benchmark import cold_count, decode_floor, machine_info  # noqa: E402
from yamnet_capuchin.dataset import find_forest_dir  # noqa: E402
from yamnet_capuchin.fileio import atomic_write_json, expand_audio_paths  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout data folder (its Forest Recordings/)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model-args", default="", help="extra count arguments, e.g. '--model exported/int8'")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    forest = find_forest_dir(args.data)
    if forest is None:
        parser.error(f"{args.data}: no 'Forest Recordings' folder")
    files = expand_audio_paths([forest])
    env = {k: v for k, v in os.environ.items() if not k.startswith("YAMCAP_")}
    model_args = args.model_args.split()
    runs = []
    for i in range(args.runs + 1):
        floor = decode_floor(files)
        count = cold_count(files, model_args, env)
        run = {"floor_rtf": floor["floor_rtf"], "count_rtf": count["rtf"], "count_wall_s": count["wall_s"],
               "ratio": count["rtf"] / floor["floor_rtf"], "audio_s": count["audio_s"]}
        print(("warm-up" if i == 0 else f"run {i}") + f": floor {run['floor_rtf']:.0f}x, count {run['count_rtf']:.0f}x "
              f"({run['count_wall_s']:.1f} s), ratio {run['ratio']:.2f}", flush=True)
        if i:
            runs.append(run)
    result = {"machine": machine_info(), "files": len(files), "count_args": model_args, "runs": runs,
              "median": {k: statistics.median(r[k] for r in runs) for k in ("floor_rtf", "count_rtf", "ratio")}}
    print(f"median of {len(runs)}: floor {result['median']['floor_rtf']:.0f}x, count {result['median']['count_rtf']:.0f}x, "
          f"ratio {result['median']['ratio']:.2f} ({result['machine']['cpu_model']}, {result['machine']['cores']} cores)")
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
