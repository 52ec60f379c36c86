"""Does another pooling of YAMNet's last feature map make better head inputs than YAMNet's own
embedding (its mean)? Source-grouped CV on the train + validation clips, as head_cv.py runs it
(the test split is never read).

    python experiments/feature_map_cv.py --manifest yamnet_capuchin/default_model/manifest.csv

YAMNet's 1024-d embedding is the mean of a 3 (time) x 2 (frequency) x 1024 feature map. The
TFLite model keeps that map as an internal tensor, so every row here runs the TFLite runtime
(``--yamnet``, default ../shared/models/yamnet.tflite), "mean" included, which makes "mean" the
baseline to compare the other poolings with (cv_common.pool_feature_map). Each row trains the
shipped head settings: max pooling over frames, 2 augmented copies per clip.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from cv_common import (
    TrainVal,
    cross_validate,
    print_header,
    print_row,
)

from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.config import Config

FEATURE_MAP_TENSOR = "yamnet_frames/layer14/pointwise_conv/relu/Relu"  # ReLU output before the mean


def feature_map_yamnet(tflite: str) -> YamnetBackbone:
    """YAMNet TFLite whose frames also carry the whole last feature map, flattened to (F, 6144),
    in ``frames.extra["feature_map"]`` (the backbone's public ``tflite_tensors`` hook)."""
    return YamnetBackbone(tflite, runtime="tflite", tflite_tensors={"feature_map": FEATURE_MAP_TENSOR})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--yamnet", default=str(Path(__file__).resolve().parents[2] / "shared/models/yamnet.tflite"),
                        help="YAMNet .tflite file")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="fold assignments (seeds 0..N-1)")
    parser.add_argument("--poolings", nargs="*", default=["mean", "max", "freq", "mean+max"])
    args = parser.parse_args()
    loaded = TrainVal.load(args.manifest, feature_map_yamnet(args.yamnet), inputs="map:mean")
    # the "mean" row must be YAMNet's own embedding: compare it with the TFLite embedding tensor
    reference = YamnetBackbone(args.yamnet, runtime="tflite").embed(loaded.embedder.load(Path(loaded.clips[0].path)))
    print(f"map mean vs YAMNet TFLite embedding, {loaded.clips[0].path}: max |difference| "
          f"{np.abs(reference.embeddings - loaded.x[0]).max():.1e}")
    print_header(loaded, args.folds, args.repeats)
    params = vars(Config().head)
    for pooling in args.poolings:
        t0 = time.perf_counter()
        rows = cross_validate(replace(loaded, inputs=f"map:{pooling}"),
                              lambda data, fit, stop: data.fit_head(fit, stop, 2, params), args.folds, args.repeats)
        print_row(f"feature map, {pooling}", rows, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
