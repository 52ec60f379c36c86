"""Local `yamcap count` against `yamcap count --runner direct --workers N` on the same files.

    python benchmarks/beam_vs_local.py "../shared/data/capuchin/Forest Recordings" --workers 2

Each command runs once in a fresh process into a fresh output folder (wall time measured
around the whole process, so TensorFlow and Beam start-up are included), then the two
folders' counts.csv, events.csv, errors.csv, sources.csv and per-file tables are compared
byte for byte. Results: benchmarks/results/<date>-beam-vs-local.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPARED = ("counts.csv", "events.csv", "errors.csv", "sources.csv")


def timed(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t0, rc


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
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    yamcap = [sys.executable, "-m", "yamnet_capuchin.cli"]
    extra = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory(prefix="yamcap-beam-bench-") as tmp:
        local_out, beam_out = Path(tmp) / "local", Path(tmp) / "beam"
        local_s, local_rc = timed([*yamcap, "count", *args.inputs, "--out", str(local_out), "-q", *extra])
        beam_s, beam_rc = timed([*yamcap, "count", *args.inputs, "--out", str(beam_out), "--runner", "direct",
                                 "--workers", str(args.workers), *extra])
        equal = same_outputs(local_out, beam_out)
        summary = json.loads((local_out / "summary.json").read_text())
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "inputs": args.inputs, "files": summary["files"], "audio_s": summary["audio_seconds_processed"],
        "local": {"wall_s": round(local_s, 2), "exit_code": local_rc},
        "beam_direct": {"workers": args.workers, "wall_s": round(beam_s, 2), "exit_code": beam_rc},
        "beam_over_local_wall": round(beam_s / local_s, 3),
        "identical": equal,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"{result['date']}-beam-vs-local"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    audio_h = result["audio_s"] / 3600
    md = (f"# Beam DirectRunner against local count, {result['date']}\n\n"
          f"`python benchmarks/beam_vs_local.py {' '.join(map(shlex.quote, args.inputs))} --workers {args.workers}` on "
          f"{result['machine']['cores']} cores: {result['files']} files, {audio_h:.2f} h of audio; "
          "wall time of the whole process (start-up included).\n\n"
          "| run | wall | real-time factor |\n|---|---|---|\n"
          f"| `yamcap count` (local) | {local_s:.1f} s | {result['audio_s'] / local_s:.0f}x |\n"
          f"| `yamcap count --runner direct --workers {args.workers}` | {beam_s:.1f} s | "
          f"{result['audio_s'] / beam_s:.0f}x |\n\n"
          f"Beam / local wall time: {result['beam_over_local_wall']:.2f}. Identical outputs: "
          + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in equal.items()) + ".\n")
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0 if all(equal.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
