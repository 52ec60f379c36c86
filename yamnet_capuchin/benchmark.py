"""Speed, memory and scaling benchmarks (``yamcap benchmark``; ``benchmarks/run.py``).

Everything is measured in this run, on this machine: throughput (audio seconds per wall
second = real-time factor) end to end and per stage, the decode + resample floor, peak RSS
against recording length (fresh processes), 1 vs 2 threads, number of files, and training
time with a cold and a warm embedding cache.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import SAMPLE_RATE
from .config import DEFAULT_BLOCK_FRAMES, Config
from .export import calibration_blocks, export_model
from .fileio import atomic_write_json, atomic_write_text

RSS_LENGTHS_S = {"1 min": 60, "10 min": 600, "1 h": 3600, "10 h": 36000}


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    import numpy

    mem = None
    try:
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024
    except (OSError, AttributeError):
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu, "memory_mb": mem, "python": platform.python_version(),
            "tensorflow": _version("tensorflow"), "ai-edge-litert": _version("ai-edge-litert"),
            "numpy": numpy.__version__, "platform": platform.platform()}


def _version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None: not installed), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def machine_slug(info: dict) -> str:
    cpu = re.sub(r"[^a-z0-9]+", "-", info["cpu_model"].lower()).strip("-")[:40] or "cpu"
    return f"{info['cores']}core-{cpu}"


def decode_floor(files: list[Path]) -> dict:
    """Decode alone, resample alone, and both: the floor no model can beat."""
    import soundfile as sf
    import soxr

    from .audio import downmix

    t_dec = t_res = audio = 0.0
    for f in files:
        t0 = time.perf_counter()
        data, rate = sf.read(str(f), dtype="float32", always_2d=True)
        mono = downmix(data)
        t1 = time.perf_counter()
        soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
        t2 = time.perf_counter()
        t_dec, t_res, audio = t_dec + t1 - t0, t_res + t2 - t1, audio + mono.size / rate
    return {"audio_s": audio, "decode_s": t_dec, "resample_s": t_res, "decode_resample_s": t_dec + t_res,
            "floor_rtf": audio / (t_dec + t_res)}


def per_stage(detector, files: list[Path], config: Config) -> dict:
    """Seconds per stage over ``files``, run one after another (no overlap)."""
    import soundfile as sf
    import soxr

    from .audio import downmix
    from .count import event_params
    from .events import detect_events

    stages = {"decode": 0.0, "resample": 0.0, "embed_forward": 0.0, "head": 0.0, "events": 0.0}
    audio = 0.0
    params = event_params(config, detector.threshold)
    for f in files:
        t0 = time.perf_counter()
        data, rate = sf.read(str(f), dtype="float32", always_2d=True)
        mono = downmix(data)
        t1 = time.perf_counter()
        wave = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
        t2 = time.perf_counter()
        if hasattr(detector, "head") and hasattr(detector, "backbone"):  # backbone and head timed apart
            frames = detector.backbone.embed(wave)
            t3 = time.perf_counter()
            start_s, scores = frames.start_s, detector.head.frame_scores(detector.head.frame_inputs(frames))
        else:
            start_s, scores = detector.frame_scores(wave)
            t3 = time.perf_counter()
        t4 = time.perf_counter()
        detect_events(start_s, scores, detector.window_samples / SAMPLE_RATE, detector.hop_samples / SAMPLE_RATE, params)
        t5 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            stages[key] += dt
        audio += wave.size / SAMPLE_RATE
    total = sum(stages.values())
    return {"audio_s": audio, "seconds": stages, "total_s": total, "rtf": audio / total,
            "rtf_by_stage": {k: (audio / v if v > 0 else None) for k, v in stages.items()}}


def end_to_end(detector, files: list[Path], config: Config) -> dict:
    """The real ``count`` pipeline (decode ahead in a thread, outputs written) into a temp dir."""
    from .count import count_files

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = count_files(detector, files, tmp, config, progress=False)
        wall = time.perf_counter() - t0
    return {"files": len(files), "audio_s": run.audio_s, "wall_s": wall, "rtf": run.audio_s / wall,
            "calls": sum(len(r.events) for r in run.results)}


def cold_count(files: list[Path], model_args: list[str], env: dict | None = None) -> dict:
    """``yamcap count FILES MODEL_ARGS`` in a fresh process with the default settings, timed from
    its start to its exit: Python, TensorFlow (or LiteRT) start-up, model loading, decoding,
    inference, the outputs and the plot; the audio seconds come from its ``summary.json``.
    ``env``: the process's environment (default: this one's)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "yamnet_capuchin.cli", "count", *map(str, files),
                               "--out", str(Path(tmp) / "out"), "-q", *model_args], capture_output=True, text=True,
                              env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"yamcap count failed: {proc.stderr.strip()[-500:]}")
        audio = json.loads((Path(tmp) / "out" / "summary.json").read_text())["audio_seconds_processed"]
    return {"files": len(files), "audio_s": audio, "wall_s": wall, "rtf": audio / wall}


def write_long_wav(path: Path, seconds: int, seed: int = 0) -> Path:
    """A 16 kHz mono PCM-16 WAV of forest-like noise with a tone call every 60 s, written in chunks."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(2.5 * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * (500 + 160 * t) * t) * np.sin(np.pi * t / 2.5) ** 2).astype(np.float32)
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 1, subtype="PCM_16") as fh:
        for minute in range(int(np.ceil(seconds / 60))):
            n = min(60, seconds - minute * 60) * SAMPLE_RATE
            chunk = (0.02 * rng.standard_normal(n)).astype(np.float32)
            if n > tone.size + SAMPLE_RATE:
                chunk[SAMPLE_RATE: SAMPLE_RATE + tone.size] += tone
            fh.write(chunk)
    return path


def _child(args: list[str], env: dict | None = None) -> dict:
    """Run ``python -m yamnet_capuchin.benchmark ARGS`` and parse its JSON line."""
    proc = subprocess.run([sys.executable, "-m", "yamnet_capuchin.benchmark", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(argv: list[str]) -> None:
    """``rss FILE... [--model M] [--yamnet H]``: count the files, print throughput and peak RSS as JSON."""
    import argparse
    import warnings

    parser = argparse.ArgumentParser(prog="python -m yamnet_capuchin.benchmark")
    parser.add_argument("command", choices=["rss"])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--model", default="")
    parser.add_argument("--yamnet", default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from .detectors import load_model

    det = load_model(args.model or None, yamnet=args.yamnet)
    det.frame_scores(np.zeros(SAMPLE_RATE * 5, np.float32))  # warm-up, as in the parent
    result = end_to_end(det, args.files, Config())
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's peak resident set size (MB) since it was exec'd.

    ``/proc/self/status`` VmHWM is reset by exec; ``ru_maxrss`` is not, so in a child started
    by fork + exec it would report the parent's size when that is larger.
    """
    import resource

    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_benchmark(data_dir: Path, out_dir: Path, yamnet: str, tflite: str | None, cnn_model: Path | None,
                  yamnet_model: Path | None = None, rss: bool = True, train: bool = True,
                  echo: Callable[[str], None] = print) -> dict:
    from .dataset import find_forest_dir
    from .fileio import expand_audio_paths
    from .detectors import load_model

    forest = find_forest_dir(data_dir)
    if forest is None:
        from .errors import YamcapError

        raise YamcapError(f"{data_dir}: no 'Forest Recordings' folder to benchmark on")
    files = expand_audio_paths([forest])
    info = machine_info()
    config = Config()
    result: dict = {"date": _dt.date.today().isoformat(), "machine": info, "files": len(files),
                    "data": str(forest), "yamnet_handle": yamnet, "tflite": tflite}
    echo(f"machine: {info['cores']} cores, {info['cpu_model']}; {len(files)} recordings")
    result["floor"] = decode_floor(files)
    echo(f"decode+resample floor: {result['floor']['floor_rtf']:.0f}x real time")

    runtimes = {"yamnet_savedmodel": lambda: load_model(yamnet_model, yamnet=yamnet, runtime="savedmodel")}
    if tflite:
        runtimes["yamnet_tflite"] = lambda: load_model(yamnet_model, yamnet=tflite, runtime="tflite")
    if cnn_model:
        runtimes["cnn"] = lambda: load_model(cnn_model, expect_kind="cnn")
    exported_dir = Path(tempfile.mkdtemp(prefix="yamcap-bench-export-"))
    exported = {}
    clips = [d for d in (data_dir / "Parsed_Capuchinbird_Clips", data_dir / "Parsed_Not_Capuchinbird_Clips") if d.is_dir()]
    for name in ("savedmodel", "tflite", "tflite_int8"):  # the same head as one graph (yamcap export)
        if name == "tflite_int8" and not clips:
            continue
        fmt = name.split("_")[0]
        calibration = calibration_blocks(clips, DEFAULT_BLOCK_FRAMES, seed=config.seed) if name.endswith("int8") else None
        exported[f"exported_{name}"] = exported_dir / name
        export_model(load_model(yamnet_model, yamnet=yamnet, runtime="savedmodel"), exported_dir / name, fmt,
                     calibration=calibration)
        runtimes[f"exported_{name}"] = (lambda d: lambda: load_model(d))(exported_dir / name)
    result["runtimes"] = {}
    for name, make in runtimes.items():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = make()
        det.frame_scores(np.zeros(SAMPLE_RATE * 5, np.float32))  # warm-up (graph tracing, allocation)
        r = {"end_to_end": end_to_end(det, files, config), "per_stage": per_stage(det, files, config)}
        r["files_scaling"] = [end_to_end(det, files[:k], config) for k in (10, 20) if k < len(files)]
        r["files_scaling"].append({k: r["end_to_end"][k] for k in ("files", "wall_s", "rtf")})
        handle = {"yamnet_savedmodel": yamnet, "yamnet_tflite": tflite}.get(name)
        model = exported.get(name) or (cnn_model if name == "cnn" else yamnet_model)
        r["cold"] = cold_count(files, (["--model", str(model)] if model else []) +
                               (["--yamnet", handle, "--runtime", name.split("_")[1]] if handle else []))
        sub = [str(f) for f in files[:10]]
        model_args = ["--model", str(exported.get(name) or (cnn_model if name == "cnn" else (yamnet_model or "")))]
        r["threads"] = {}
        for threads in (1, 2):
            args = ["rss", *sub, *model_args] + (["--yamnet", handle] if handle else [])
            r["threads"][str(threads)] = _child(args, {"YAMCAP_THREADS": str(threads),
                                                       "OMP_NUM_THREADS": str(threads)})
        result["runtimes"][name] = r
        e = r["end_to_end"]
        echo(f"{name}: {e['audio_s']:.0f} s of audio in {e['wall_s']:.1f} s = {e['rtf']:.0f}x real time; "
             f"fresh process {r['cold']['rtf']:.0f}x; 1 thread {r['threads']['1']['rtf']:.0f}x, "
             f"2 threads {r['threads']['2']['rtf']:.0f}x")
    shutil.rmtree(exported_dir, ignore_errors=True)
    if rss:
        result["rss"] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label, seconds in RSS_LENGTHS_S.items():
                path = write_long_wav(Path(tmp) / f"long_{seconds}.wav", seconds)
                r = _child(["rss", str(path), "--model", str(yamnet_model or ""), "--yamnet", yamnet])
                r["seconds"] = seconds
                result["rss"][label] = r
                path.unlink()
                echo(f"RSS, {label} recording: peak {r['peak_rss_mb']:.0f} MB ({r['rtf']:.0f}x real time)")
    if train:
        result["training"] = training_times(data_dir, yamnet, cnn_model, echo)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result['date']}-{machine_slug(info)}"
    atomic_write_json(out_dir / f"{stem}.json", result)
    atomic_write_text(out_dir / f"{stem}.md", render_markdown(result))
    result["written"] = [str(out_dir / f"{stem}.json"), str(out_dir / f"{stem}.md")]
    return result


def training_times(data_dir: Path, yamnet: str, cnn_model: Path | None, echo) -> dict:
    """YAMNet head training with an empty and a warm embedding cache (fresh processes)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"YAMCAP_CACHE": str(Path(tmp) / "cache"), "YAMCAP_YAMNET": yamnet}
        for label in ("cold_cache", "warm_cache"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "yamnet_capuchin.cli", "train", "--backbone", "yamnet",
                                   "--data", str(data_dir), "--out", str(Path(tmp) / "model"), "-q"],
                                  capture_output=True, text=True, env={**os.environ, **env})
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-500:])
            out[f"yamnet_{label}_s"] = time.perf_counter() - t0
            echo(f"training YAMNet head, {label.replace('_', ' ')}: {out[f'yamnet_{label}_s']:.1f} s")
    if cnn_model and (Path(cnn_model) / "metrics.json").exists():
        m = json.loads((Path(cnn_model) / "metrics.json").read_text())
        out["cnn_s"] = m["timing_s"]["total"]
        out["cnn_note"] = f"from {cnn_model}/metrics.json (yamcap train --backbone cnn)"
    return out


def render_markdown(r: dict) -> str:
    m = r["machine"]
    fl = r["floor"]
    lines = [f"# Benchmark {r['date']}", "",
             f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_mb']} MB RAM; TensorFlow {m['tensorflow']}. "
             f"Data: {r['files']} recordings ({fl['audio_s'] / 3600:.2f} h).", "",
             "## Throughput (real-time factor = audio seconds per wall second)", "",
             "| pipeline | `yamcap count`, fresh process | share of floor | end to end, loaded | share of floor |"
             " 1 thread | 2 threads | decode | resample | embed / forward | head | events |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| decode + resample only (floor) | | | {fl['floor_rtf']:.0f}x | 100 % | | | "
             f"{fl['audio_s'] / fl['decode_s']:.0f}x | {fl['audio_s'] / fl['resample_s']:.0f}x | | | |"]
    for name, rt in r.get("runtimes", {}).items():
        e, st = rt["end_to_end"], rt["per_stage"]["rtf_by_stage"]

        def f(x):
            return f"{x:.0f}x" if x and x < 1e6 else "-"  # a stage that takes no time (the CNN has no head)

        cold = rt.get("cold")
        cold_cells = f"**{cold['rtf']:.0f}x** ({cold['wall_s']:.1f} s) | {cold['rtf'] / fl['floor_rtf']:.0%}" if cold else "- | -"
        lines.append(f"| {name} | {cold_cells} | {e['rtf']:.0f}x ({e['wall_s']:.1f} s) | "
                     f"{e['rtf'] / fl['floor_rtf']:.0%} | {rt['threads']['1']['rtf']:.0f}x | "
                     f"{rt['threads']['2']['rtf']:.0f}x | {f(st['decode'])} | {f(st['resample'])} | "
                     f"{f(st['embed_forward'])} | {f(st['head'])} | {f(st['events'])} |")
    lines += ["", "Fresh process: the `yamcap count` command over every file with its default settings, timed "
              "from start to exit (Python, TensorFlow or LiteRT start-up, model loading, outputs and plot "
              "included). End to end, loaded: the same `count` pipeline in this process after the model was "
              "loaded and warmed up (decoding overlapped with inference, outputs written). Threads: the "
              "loaded pipeline on the first 10 files in a fresh process per setting (`YAMCAP_THREADS`), "
              "timed after loading. Per-stage figures come from a sequential pass (no overlap). Share of "
              "floor = speed / decode+resample speed.", ""]
    if r.get("runtimes"):
        lines += ["## Number of files (end to end)", "", "| pipeline | " + " | ".join(
            f"{s['files']} files" for s in next(iter(r["runtimes"].values()))["files_scaling"]) + " |",
            "|---|" + "---|" * len(next(iter(r["runtimes"].values()))["files_scaling"])]
        for name, rt in r["runtimes"].items():
            lines.append(f"| {name} | " + " | ".join(f"{s['wall_s']:.1f} s ({s['rtf']:.0f}x)" for s in rt["files_scaling"]) + " |")
    if "rss" in r:
        lines += ["", "## Peak RSS against recording length (YAMNet SavedModel, fresh process each)", "",
                  "| length | peak RSS | real-time factor |", "|---|---|---|"]
        lines += [f"| {k} | {v['peak_rss_mb']:.0f} MB | {v['rtf']:.0f}x |" for k, v in r["rss"].items()]
    if "training" in r:
        t = r["training"]
        lines += ["", "## Training", "", "| | seconds |", "|---|---|",
                  f"| YAMNet head on the clips (`yamcap train --data DATA`), empty embedding cache | {t['yamnet_cold_cache_s']:.1f} |",
                  f"| the same, warm cache | {t['yamnet_warm_cache_s']:.1f} |"]
        if "cnn_s" in t:
            lines.append(f"| notebook CNN ({t['cnn_note']}) | {t['cnn_s']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the child process used for RSS and thread measurements
    child_main(sys.argv[1:])
