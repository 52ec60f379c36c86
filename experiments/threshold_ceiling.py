"""Upper bound on a model's test F1 over all thresholds — an analysis, never a result.

    python experiments/threshold_ceiling.py --model yamnet_capuchin/default_model

Scores the model's test-split clips and reports F1 at the model's own threshold and at the
threshold that is best *on the test clips themselves*. The second number is not a valid
estimate of anything (the threshold is fitted to the data it is scored on); it answers one
question: could any threshold rule reach a target F1 on this split, or must the ranking improve?
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from yamnet_capuchin.cache import EmbeddingCache
from yamnet_capuchin.dataset import read_manifest
from yamnet_capuchin.features import ClipEmbedder
from yamnet_capuchin.metrics import best_f1_threshold, classification_metrics
from yamnet_capuchin.detectors import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    detector = load_model(args.model, expect_kind="yamnet")
    model_dir = args.model or Path(__file__).resolve().parents[1] / "yamnet_capuchin" / "default_model"
    clips = [c for c in read_manifest(model_dir / "manifest.csv") if c.split == "test"]
    embedder = ClipEmbedder(detector.backbone, EmbeddingCache(), detector.config.audio.backend)
    frames, failures = embedder.embed_many(clips, "Embedding test clips", progress=False)
    if failures:
        raise SystemExit(f"could not read: {failures}")
    labels = np.array([c.label for c in clips])
    scores = detector.head.predict_proba([detector.head.frame_inputs(f) for f in frames])[:, 1]
    for name, threshold in (("model's threshold (from validation)", detector.threshold),
                            ("best on the test clips (analysis only)", best_f1_threshold(labels, scores))):
        m = classification_metrics(labels, scores, threshold)
        print(f"{name:40s} threshold {threshold:.3f}  F1 {m['f1']:.3f}  confusion [[TN FP] [FN TP]] = {m['confusion']}")


if __name__ == "__main__":
    main()
