"""How much the YAMNet runtime and the audio backend move the embeddings (docs/runtimes.md).

    python experiments/frontend_agreement.py --data ../shared/data/capuchin [--tfio]

* Runtime: embeddings of the first 30 s of forest recording_01 from the TFLite file
  (``yamnet.tflite`` beside ``$YAMCAP_YAMNET``) against the SavedModel's, as cosine per frame,
  with the TFLite kernels this TensorFlow uses (``backbones.tflite_kernels``).
* ``--tfio`` (needs TensorFlow <= 2.17 with tensorflow-io): every 20th call clip and every 60th
  other clip decoded by tensorflow-io against soundfile, both embedded by the SavedModel: cosine
  per frame and the change in the shipped head's clip score.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

from yamnet_capuchin.audio import load_audio
from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.dataset import find_forest_dir
from yamnet_capuchin.detectors import load_model


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (F, D) arrays, cut to the shorter one."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout data folder")
    parser.add_argument("--tfio", action="store_true", help="also compare the tensorflow-io audio backend")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import tensorflow as tf

    saved = YamnetBackbone(os.environ.get("YAMCAP_YAMNET"))
    lite = YamnetBackbone(str(Path(saved.handle).parent / "yamnet.tflite"))
    recording = next(p for p in sorted(find_forest_dir(args.data).iterdir()) if p.stem == "recording_01")
    wave = load_audio(recording)[: 16000 * 30]
    c = cosine(saved.embed(wave).embeddings, lite.embed(wave).embeddings)
    print(f"TensorFlow {tf.__version__}, TFLite kernels: {lite.identity()['tflite_kernels']}")
    print(f"TFLite vs SavedModel, {len(c)} frames of {recording.name}: cosine mean {c.mean():.4f} min {c.min():.4f}")
    if not args.tfio:
        return
    calls = sorted((args.data / "Parsed_Capuchinbird_Clips").iterdir())[::20]
    others = sorted((args.data / "Parsed_Not_Capuchinbird_Clips").iterdir())[::60]
    head = load_model().head
    cos, moved = [], []
    for path in calls + others:
        a, b = saved.embed(load_audio(path)).embeddings, saved.embed(load_audio(path, "tfio")).embeddings
        cos.extend(cosine(a, b))
        n = min(len(a), len(b))
        moved.append(abs(head.clip_score(a[:n]) - head.clip_score(b[:n])))
    cos = np.array(cos)
    print(f"tensorflow-io vs soundfile, {len(cos)} frames of {len(calls) + len(others)} clips: cosine mean "
          f"{cos.mean():.3f} min {cos.min():.3f}; shipped head's clip score moves by {np.mean(moved):.3f} "
          f"on average, {np.max(moved):.3f} at most")


if __name__ == "__main__":
    main()
