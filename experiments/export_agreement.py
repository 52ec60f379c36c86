"""How far an exported TFLite file moves the shipped head's frame scores and counts.

    python experiments/export_agreement.py --data ../shared/data/capuchin --yamnet ../shared/models/yamnet

Exports the shipped head (float32, and with float16 weights) into a temporary folder, then scores
every forest recording with the head on YAMNet's SavedModel and with each export. Prints, per
export: its file size, the largest frame-score difference, how many frames cross the 0.99 event
threshold, and in how many recordings the number of events differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yamnet_capuchin.audio import load_audio  # noqa: E402
from yamnet_capuchin.config import Config  # noqa: E402
from yamnet_capuchin.count import event_params  # noqa: E402
from yamnet_capuchin.dataset import find_forest_dir  # noqa: E402
from yamnet_capuchin.detectors import DEFAULT_MODEL_DIR, load_model  # noqa: E402
from yamnet_capuchin.events import detect_events  # noqa: E402
from yamnet_capuchin.export import TFLITE_NAME, export_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--yamnet", required=True, help="YAMNet SavedModel folder")
    args = parser.parse_args()
    head = load_model(DEFAULT_MODEL_DIR, yamnet=args.yamnet, runtime="savedmodel")
    params = event_params(Config(), head.threshold)
    window_s, hop_s = head.window_samples / 16000, head.hop_samples / 16000
    files = sorted(p for p in find_forest_dir(args.data).iterdir() if p.suffix == ".mp3")
    with tempfile.TemporaryDirectory() as tmp:
        exports = {}
        for name, half in (("float32", False), ("float16", True)):
            export_model(head, Path(tmp) / name, "tflite", float16=half)
            exports[name] = load_model(Path(tmp) / name)
        stats = {n: {"diff": 0.0, "crossing": 0, "files": 0, "mb": (Path(tmp) / n / TFLITE_NAME).stat().st_size / 1e6}
                 for n in exports}
        frames = 0
        for path in files:
            wave = load_audio(path)
            start, ref = head.frame_scores(wave)
            n_ref = len(detect_events(start, ref, window_s, hop_s, params))
            frames += ref.size
            for name, det in exports.items():
                scores = det.frame_scores(wave)[1]
                s = stats[name]
                s["diff"] = max(s["diff"], float(np.abs(scores - ref).max()))
                s["crossing"] += int(((scores >= 0.99) != (ref >= 0.99)).sum())
                s["files"] += int(len(detect_events(start, scores, window_s, hop_s, params)) != n_ref)
    print(f"{len(files)} recordings, {frames} frames")
    for name, s in stats.items():
        print(f"{name}: {s['mb']:.1f} MB; max |score difference| {s['diff']:.2g}; frames crossing 0.99: "
              f"{s['crossing']}; recordings whose count differs: {s['files']}")


if __name__ == "__main__":
    main()
