"""Where the int8 export's time goes: the model alone, decoding alone, and `count` end to end
with 1 or 2 inference threads (docs/export.md, "Speed").

    python experiments/export_speed.py --data ../shared/data/capuchin [--block-frames 16 32 64]

Exports the shipped model with ``--int8`` (calibrated on the data's two clip folders, as the
benchmark does), then, in this one process:
- decoding + resampling alone, over the first ``--files`` recordings (one thread);
- the exported graph alone on the already decoded waveforms, 1 and 2 threads, per block size;
- ``count`` end to end over all recordings (decoding in a background thread, outputs written),
  1 and 2 inference threads, twice each, with the int8 export and with a float32 one (the
  measurements behind ``ExportedDetector.inference_threads``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from yamnet_capuchin.audio import load_audio
from yamnet_capuchin.benchmark import end_to_end
from yamnet_capuchin.config import Config
from yamnet_capuchin.dataset import find_forest_dir
from yamnet_capuchin.detectors import load_model
from yamnet_capuchin.export import META_NAME, ExportedDetector, calibration_blocks, export_model
from yamnet_capuchin.fileio import expand_audio_paths


def exported(model_dir: Path, threads: int) -> ExportedDetector:
    detector = ExportedDetector(model_dir, json.loads((model_dir / META_NAME).read_text()), threads=threads)
    detector._load()
    detector.frame_scores(np.zeros(5 * 16000, np.float32))  # warm-up
    return detector


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--files", type=int, default=10, help="recordings for the model-alone timing (default 10)")
    ap.add_argument("--block-frames", type=int, nargs="+", default=[16])
    args = ap.parse_args(argv)
    files = expand_audio_paths([find_forest_dir(args.data)])
    clips = [args.data / "Parsed_Capuchinbird_Clips", args.data / "Parsed_Not_Capuchinbird_Clips"]
    shipped = load_model(None, runtime="savedmodel")
    t0 = time.perf_counter()
    waves = [load_audio(p) for p in files[: args.files]]
    audio_s = sum(w.size for w in waves) / 16000
    print(f"decode + resample alone ({len(waves)} files): {audio_s / (time.perf_counter() - t0):.0f}x real time")
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.block_frames:
            out = Path(tmp) / f"int8_{k}"
            export_model(shipped, out, "tflite", k, calibration_blocks(clips, k, 200 * 16 // k, seed=Config().seed))
            for threads in (1, 2):
                detector = exported(out, threads)
                t0 = time.perf_counter()
                for w in waves:
                    detector.frame_scores(w)
                print(f"model alone, {k}-frame blocks, {threads} thread(s): {audio_s / (time.perf_counter() - t0):.0f}x")
        float32 = Path(tmp) / f"float32_{args.block_frames[0]}"
        export_model(shipped, float32, "tflite", args.block_frames[0])
        for name, out in (("int8", Path(tmp) / f"int8_{args.block_frames[0]}"), ("float32", float32)):
            for threads in (1, 2, 1, 2):
                r = end_to_end(exported(out, threads), files, Config())
                print(f"{name}: count end to end, {len(files)} files, {threads} inference thread(s): "
                      f"{r['rtf']:.0f}x ({r['wall_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
