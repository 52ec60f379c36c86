"""Retraining from the review labels: a thin adapter over ``yamnet_capuchin.train.train_yamnet``.

The review tables are *partial* (only the spans someone labelled), so they enter training as
``data.annotations`` (their selections only, never the unlabelled rest). This module trains
into ``RUN_DIR/retrained/model`` and re-counts the run's recordings with the new head into
``RUN_DIR/retrained/``. TensorFlow is imported only when retraining starts.

A retrain starts from the last retrained head, or for the first one the packaged default's
(``warm_start``, where the configuration trains a head of that shape), and trains it for at most
:data:`RETRAIN_EPOCHS` epochs (the one with the best validation loss is kept): the labels change
little from one retrain to the next, and a person is waiting (``benchmarks/retrain.py``). So the
page's model depends on what came before it; ``yamcap train`` with the same labels trains one
from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import YamcapError

RETRAINED_DIR = "retrained"
RETRAIN_EPOCHS = 4  # most epochs of a warm-started retrain (benchmarks/retrain.py)
RETRAIN_BUCKET_FRAMES = 8  # head.bucket_frames of a retrain: 1-5-frame bags are not padded to a 60-frame one


class RetrainUnavailable(YamcapError):
    """Retraining cannot start (there is no training data)."""


def check_ready(data_dir: str | Path | None) -> None:
    """Raise :class:`RetrainUnavailable` unless retraining can start."""
    if data_dir is None or not Path(data_dir).is_dir():
        raise RetrainUnavailable("no training data folder: start `yamcap review` with --data DIR "
                                 "(Kaggle layout) or set YAMCAP_DATA" + (f" ({data_dir} not found)" if data_dir else ""))


def retrain(run_dir: str | Path, annotations_dir: str | Path, data_dir: str | Path | None,
            recordings: Sequence[str | Path] = (), echo: Callable[[str], None] = print) -> dict:
    """Train a new head on ``data_dir`` plus the labels in ``annotations_dir``, then count
    ``recordings`` with it into ``run_dir/retrained/``.

    Returns ``{"model_dir", "out_dir", "counts": {path: n_events}, "failures": [[path, reason]],
    "metrics": {...}}``, counts keyed by the paths given in ``recordings``."""
    check_ready(data_dir)
    from .. import train
    from ..config import Config
    from ..count import count_files
    from ..detectors import DEFAULT_MODEL_DIR, load_model

    run_dir = Path(run_dir)
    out_dir = run_dir / RETRAINED_DIR
    model_dir = out_dir / "model"
    cfg = Config.load(run_dir / "config.toml" if (run_dir / "config.toml").exists() else None)
    paths = [Path(p) for p in recordings]
    cfg.data.annotations = [*cfg.data.annotations, str(annotations_dir)]
    cfg.data.audio_dirs = [*cfg.data.audio_dirs, *sorted({str(p.parent) for p in paths})]
    cfg.head.bucket_frames = cfg.head.bucket_frames or RETRAIN_BUCKET_FRAMES
    start = previous_head(model_dir, cfg) or previous_head(DEFAULT_MODEL_DIR, cfg)
    if start is not None:
        cfg.head.max_epochs = min(cfg.head.max_epochs, RETRAIN_EPOCHS)
    metrics = train.train_yamnet(data_dir, model_dir, cfg, progress=False, echo=echo, warm_start_from=start)
    detector = load_model(model_dir)
    cfg.backbone, cfg.audio.backend = detector.config.backbone, detector.config.audio.backend
    run = count_files(detector, paths, out_dir, cfg, progress=False, echo=echo)
    test = (metrics or {}).get("test", {}) if isinstance(metrics, dict) else {}
    return {
        "model_dir": str(model_dir),
        "out_dir": str(out_dir),
        "counts": {r.path: len(r.events) for r in run.results},
        "failures": [[p, reason] for p, reason in run.failures],
        "metrics": {k: test.get(k) for k in ("precision", "recall", "f1", "pr_auc") if k in test},
    }


def previous_head(model_dir: Path, cfg):
    """The head of the model in ``model_dir`` when the configuration trains one of the same shape
    (hidden units, context, inputs) on the same backbone, else None."""
    from ..detectors import read_model_meta
    from ..head import FrameHead

    try:
        meta = read_model_meta(model_dir)
        if meta.get("kind") != "yamnet" or meta["backbone"].get("name") != cfg.backbone.name:
            return None
        params = dict(meta["head_params"])
        if any(params.get(k) != getattr(cfg.head, k) for k in ("hidden_units", "context", "inputs")):
            return None
        return FrameHead.load(model_dir / "head.npz", **params)
    except (YamcapError, KeyError, TypeError, ValueError):  # no earlier retrain, or not a YAMNet head
        return None
