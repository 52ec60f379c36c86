"""Local `yamcap count` against `yamcap count --runner R --workers N` on the same files.

    python benchmarks/beam_vs_local.py "../shared/data/capuchin/Forest Recordings" --workers 2

Each command runs once in a fresh process into a fresh output folder (wall time measured
around the whole process, so TensorFlow, Beam and Dask start-up are included), local first,
then each runner (default: direct and dask). Each runner's counts.csv, events.csv, errors.csv,
sources.csv and per-file tables are compared byte for byte with the local run's, and what each
run printed is kept, to show that a runner's log is the local run's few lines. Results:
benchmarks/results/<date>-beam-vs-local.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from yamnet_capuchin.benchmark import machine_info  # noqa: E402

COMPARED = ("counts.csv", "events.csv", "errors.csv", "sources.csv")


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, exit code, what it printed: stdout then stderr)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t0, p.returncode, p.stdout + p.stderr


def same_outputs(a: Path, b: Path) -> dict[str, bool]:
    result = {name: filecmp.cmp(a / name, b / name, shallow=False) for name in COMPARED}
    for sub in ("raven", "audacity"):
        names = sorted(p.name for p in (a / sub).iterdir())
        result[sub] = names == sorted(p.name for p in (b / sub).iterdir()) and all(
            filecmp.cmp(a / sub / n, b / sub / n, shallow=False) for n in names)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runners", nargs="+", default=["direct", "dask"])
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    yamcap = [sys.executable, "-m", "yamnet_capuchin.cli"]
    extra = ["--model", args.model] if args.model else []
    runs = {}
    with tempfile.TemporaryDirectory(prefix="yamcap-beam-bench-") as tmp:
        local_out = Path(tmp) / "local"
        wall, rc, log = timed([*yamcap, "count", *args.inputs, "--out", str(local_out), "-q", *extra])
        runs["local"] = {"wall_s": round(wall, 2), "exit_code": rc, "log": log.splitlines()}
        summary = json.loads((local_out / "summary.json").read_text())
        for runner in args.runners:
            out = Path(tmp) / runner
            wall, rc, log = timed([*yamcap, "count", *args.inputs, "--out", str(out), "-q", "--runner", runner,
                                   "--workers", str(args.workers), *extra])
            runs[runner] = {"workers": args.workers, "wall_s": round(wall, 2), "exit_code": rc,
                            "over_local_wall": round(wall / runs["local"]["wall_s"], 3),
                            "identical": same_outputs(local_out, out), "log": log.splitlines()}
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "inputs": args.inputs, "files": summary["files"], "audio_s": summary["audio_seconds_processed"],
        "runs": runs,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"{result['date']}-beam-vs-local"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    audio_h = result["audio_s"] / 3600
    lines = [f"# Beam runners against local count, {result['date']}\n",
             f"`python benchmarks/beam_vs_local.py {' '.join(map(shlex.quote, args.inputs))} --workers {args.workers}"
             f" --runners {' '.join(args.runners)}` on {result['machine']['cores']} cores "
             f"({result['machine']['cpu_model']}): {result['files']} files, "
             f"{audio_h:.2f} h of audio; wall time of the whole process (start-up included), one run each.\n",
             "| run | wall | real-time factor | / local | identical outputs | lines printed |",
             "|---|---|---|---|---|---|"]
    for name, run in runs.items():
        cmd = "`yamcap count`" if name == "local" else f"`--runner {name} --workers {args.workers}`"
        same = "-" if name == "local" else ("all" if all(run["identical"].values()) else
                                            "NOT " + ", ".join(k for k, v in run["identical"].items() if not v))
        lines.append(f"| {cmd} | {run['wall_s']:.1f} s | {result['audio_s'] / run['wall_s']:.0f}x | "
                     f"{run.get('over_local_wall', 1.0):.2f} | {same} | {len(run['log'])} |")
    for name, run in runs.items():
        lines += ["", f"What `{name}` printed:", "", "```", *run["log"], "```"]
    md = "\n".join(lines) + "\n"
    stem.with_suffix(".md").write_text(md)
    print(md)
    ok = all(all(r["identical"].values()) for n, r in runs.items() if n != "local")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
