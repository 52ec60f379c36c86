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
    FEATURE_MAP_SHAPE,
    TrainVal,
    cross_validate,
    print_header,
    print_row,
)

from yamnet_capuchin.backbones import (
    YAMNET_HOP,
    YAMNET_WINDOW,
    YamnetBackbone,
    yamnet_frame_count,
)
from yamnet_capuchin.config import Config

FEATURE_MAP_TENSOR = "yamnet_frames/layer14/pointwise_conv/relu/Relu"  # ReLU output before the mean


class FeatureMapYamnet(YamnetBackbone):
    """YAMNet TFLite whose frames carry the whole last feature map, flattened to (F, 6144), in
    place of the embedding (and no AudioSet scores or log-mel profile, which these rows do not use)."""

    def identity(self) -> dict:
        # a cache key of its own: these frames are not the package's
        return {**super().identity(), "frames": "last feature map 3x2x1024"}

    def _load_tflite(self) -> None:
        super()._load_tflite()
        self._map_tensor = next(d["index"] for d in self._interpreter.get_tensor_details()
                                if d["name"].startswith(FEATURE_MAP_TENSOR))

    def _embed_tflite(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        interp, tensor = self._interpreter, self._map_tensor
        n = yamnet_frame_count(wave.size)
        padded = np.zeros((n - 1) * YAMNET_HOP + YAMNET_WINDOW, np.float32)
        padded[: wave.size] = wave
        windows = np.lib.stride_tricks.sliding_window_view(padded, YAMNET_WINDOW)[::YAMNET_HOP]
        maps = np.empty((n, int(np.prod(FEATURE_MAP_SHAPE))), np.float32)
        for i in range(n):
            interp.set_tensor(self._tfl_input, windows[i][None, :])
            interp.invoke()
            maps[i] = interp.get_tensor(tensor)[0].reshape(-1)
        return np.zeros((n, 0), np.float32), maps, np.zeros((n, 0), np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--yamnet", default=str(Path(__file__).resolve().parents[2] / "shared/models/yamnet.tflite"),
                        help="YAMNet .tflite file")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="fold assignments (seeds 0..N-1)")
    parser.add_argument("--poolings", nargs="*", default=["mean", "max", "freq", "mean+max"])
    args = parser.parse_args()
    loaded = TrainVal.load(args.manifest, FeatureMapYamnet(args.yamnet, runtime="tflite"), inputs="map:mean")
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
