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

With ``--stages`` it also times the packaged model's stages one after another in this process
(:func:`yamnet_capuchin.benchmark.per_stage`; inference on 1 and on every core) and states the
best any overlap of decoding and inference could give on this machine's cores: core-seconds of
work per audio second, decode and resample on one core plus inference on one core, spread over
all cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yamnet_capuchin.benchmark import cold_count, decode_floor, machine_info, per_stage  # noqa: E402
from yamnet_capuchin.config import Config  # noqa: E402
from yamnet_capuchin.dataset import find_forest_dir  # noqa: E402
from yamnet_capuchin.fileio import atomic_write_json, expand_audio_paths  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout data folder (its Forest Recordings/)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model-args", default="", help="extra count arguments, e.g. '--model exported/int8'")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stages", action="store_true", help="also time the model's stages and state the overlap bound")
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
    if args.stages:
        result["stages"] = stages(files)
    if args.out:
        atomic_write_json(args.out, result)
    return result


def stages(files: list[Path]) -> dict:
    """The packaged model's per-stage speeds (audio s per s) with 1 and with every inference
    thread, and the bound on ``count``'s speed that they set."""
    from yamnet_capuchin.detectors import load_model

    cores = os.cpu_count() or 1
    out = {}
    saved = os.environ.get("YAMCAP_THREADS")
    try:
        for threads in sorted({1, cores}):
            os.environ["YAMCAP_THREADS"] = str(threads)
            out[f"{threads}_threads"] = per_stage(load_model(), files, Config())["rtf_by_stage"]
    finally:
        os.environ.pop("YAMCAP_THREADS", None) if saved is None else os.environ.update(YAMCAP_THREADS=saved)
    one = out["1_threads"]
    decode_s = 1 / one["decode"] + 1 / one["resample"]  # core-seconds per audio second
    model_s = 1 / one["embed_forward"] + 1 / one["head"] + 1 / one["events"]
    out["bound_rtf"] = cores / (decode_s + model_s)
    out["model_share_of_work"] = model_s / (decode_s + model_s)
    print(f"stages: decode+resample {1 / decode_s:.0f}x on one core, model {1 / model_s:.0f}x on one core "
          f"({out[f'{cores}_threads']['embed_forward']:.0f}x on {cores}); best overlap on {cores} cores: "
          f"{out['bound_rtf']:.0f}x ({out['model_share_of_work']:.0%} of the work is the model)")
    return out


if __name__ == "__main__":
    main()
