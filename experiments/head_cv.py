"""Choose the head's settings by source-grouped cross-validation on the train + validation
clips of a model's split (the test split is never read).

    python experiments/head_cv.py --manifest yamnet_capuchin/default_model/manifest.csv --repeats 3

For each variant: out-of-fold clip scores from 5 source-grouped folds, repeated with
``--repeats`` different fold assignments; prints ROC-AUC, PR-AUC and the F1 reached with the
threshold each fold's head picks on its own early-stopping sources (as ``yamcap train`` picks it
on the validation split), averaged over the repeats. The tables in docs/experiments.md come from this script.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from cv_common import (
    MeanOfHeads,
    SustainedScore,
    TrainVal,
    cross_validate,
    mine_negatives,
    mine_positives,
    print_header,
    print_row,
)

from yamnet_capuchin.config import AugmentConfig, Config
from yamnet_capuchin.dataset import read_manifest
from yamnet_capuchin.fileio import expand_audio_paths


@dataclass(frozen=True)
class Variant:
    """One row of the table: what differs from "base", i.e. ``yamcap train`` with max pooling,
    2 augmented copies per clip and the YAMNet embeddings alone as inputs."""

    copies: int = 2  # augmented copies per clip
    head: dict = field(default_factory=dict)  # head parameters that differ from configs/default.toml
    mined_negatives: bool = False
    mined_positives: float | None = None  # frame score above which forest segments become positives
    inputs: str = "embeddings"  # cv_common.head_inputs
    heads: int = 1  # > 1: that many heads (seeds 0..n-1: initialisation and augmentation draws), averaged
    augment: dict = field(default_factory=dict)  # augmentation settings that differ from configs/default.toml
    balance_sources: bool = False  # every source weighs the same within its class (cv_common.fit_head)
    sustained: tuple[int, str] | None = None  # score the trained head with cv_common.SustainedScore(frames, reduce)


# Mined negatives / positives (self-training): in each fold a first head scores the forest
# recordings that are neither a background source of the manifest nor one of --not-mined; 3 s
# segments far from any frame above 0.05 join the fitting set as negatives, and/or 2.9 s segments
# around frames above the given score as positives; a second head is trained from scratch.
VARIANTS = {
    "mean pooling": Variant(0, {"pooling": "mean"}),
    "attention pooling": Variant(0, {"pooling": "attention"}),
    "max pooling": Variant(0, {"pooling": "max"}),
    "base (max pooling + augmentation; shipped)": Variant(),
    "base, 128 hidden units, dropout 0.5": Variant(head={"hidden_units": 128, "dropout": 0.5}),
    "base, batch size 32": Variant(head={"batch_size": 32}),
    "base, classes not re-weighted": Variant(head={"balance_classes": False}),
    "base + context 1": Variant(head={"context": 1}),
    "base + context 2": Variant(head={"context": 2}),
    "base + mined forest negatives": Variant(mined_negatives=True),
    "base, 4 augmented copies": Variant(copies=4),
    "base + AudioSet scores as inputs": Variant(inputs="embeddings+scores"),
    "base + mined forest positives (> 0.9)": Variant(mined_positives=0.9),
    "base + spectral shape": Variant(inputs="embeddings+spectral_shape"),
    "base + spectral shape x2": Variant(inputs="embeddings+spectral_shape*0.5"),
    "base + spectral shape x4": Variant(inputs="embeddings+spectral_shape*1.0"),
    "base, mean of 4 heads of 128 units": Variant(head={"hidden_units": 128}, heads=4),
    "base, clips mixed in at 5-20 dB SNR": Variant(augment={"snr_db_min": 5.0}),
    "base, clips mixed in at 10-30 dB SNR": Variant(augment={"snr_db_min": 10.0, "snr_db_max": 30.0}),
    "base, linear probe (no hidden layer)": Variant(head={"hidden_units": 0}),
    "base, sources weighted equally": Variant(balance_sources=True),
    "base, scored by the best 2 adjacent frames (min)": Variant(sustained=(2, "min")),
    "base, scored by the best 2 adjacent frames (mean)": Variant(sustained=(2, "mean")),
}
# backgrounds of the test soundscapes in docs/experiments.md: never used for training
TEST_SOUNDSCAPE_BACKGROUNDS = "recording_12,recording_13,recording_24,recording_90"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="fold assignments (seeds 0..N-1)")
    parser.add_argument("--only", nargs="*", help="run only these variants (names as printed)")
    parser.add_argument("--not-mined", default=TEST_SOUNDSCAPE_BACKGROUNDS,
                        help="forest recordings (stems) never mined for segments")
    args = parser.parse_args()
    loaded = TrainVal.load(args.manifest)
    forest = unlabelled_forest(args.manifest, loaded, args.not_mined.split(","))
    print_header(loaded, args.folds, args.repeats)
    defaults = vars(Config().head)
    for name, variant in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        data = replace(loaded, inputs=variant.inputs)
        params = {**defaults, **variant.head}
        aug = replace(AugmentConfig(), **variant.augment)
        t0 = time.perf_counter()

        def make_head(data, fit, stop, variant=variant, params=params, aug=aug):
            if variant.heads > 1:
                head = MeanOfHeads([data.fit_head(fit, stop, variant.copies, params, seed=s, augment=aug)
                                    for s in range(variant.heads)])
            else:
                head = data.fit_head(fit, stop, variant.copies, params, augment=aug,
                                     balance_sources=variant.balance_sources)
            if variant.mined_negatives or variant.mined_positives is not None:
                neg = mine_negatives(head, forest, inputs=data.inputs) if variant.mined_negatives else []
                pos = ([] if variant.mined_positives is None else
                       mine_positives(head, forest, variant.mined_positives, inputs=data.inputs))
                head = data.fit_head(fit, stop, variant.copies, params, extra_negatives=neg, extra_positives=pos,
                                     augment=aug)
            return SustainedScore(head, *variant.sustained) if variant.sustained else head

        rows = cross_validate(data, make_head, args.folds, args.repeats)
        print_row(name, rows, time.perf_counter() - t0)


def unlabelled_forest(manifest: Path, data: TrainVal, not_mined: list[str]) -> list:
    """YAMNet frames of the forest recordings beside the manifest's background sources, less the
    backgrounds themselves (any split) and ``not_mined``."""
    clips = read_manifest(manifest)
    backgrounds = {Path(c.path) for c in clips if c.is_segment}
    if not backgrounds:
        return []
    folder = next(iter(backgrounds)).parent
    used = {p.stem for p in backgrounds} | set(not_mined)
    paths = [p for p in expand_audio_paths([folder]) if p.stem not in used]
    print(f"{len(paths)} unlabelled forest recordings to mine segments from (not: {', '.join(sorted(used))})")
    return [data.embedder.embed(p) for p in paths]


if __name__ == "__main__":
    main()
