"""Retraining from the review labels: a thin adapter over ``yamnet_capuchin.train.train_yamnet``.

The review tables are *partial* (only the spans someone labelled), so they enter training as
``data.annotations`` (their selections only, never the unlabelled rest). This module trains
into ``RUN_DIR/retrained/model`` and re-counts the run's recordings with the new head into
``RUN_DIR/retrained/``. TensorFlow is imported only when retraining starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import YamcapError

RETRAINED_DIR = "retrained"


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
    from ..detectors import load_model

    run_dir = Path(run_dir)
    out_dir = run_dir / RETRAINED_DIR
    model_dir = out_dir / "model"
    cfg = Config.load(run_dir / "config.toml" if (run_dir / "config.toml").exists() else None)
    paths = [Path(p) for p in recordings]
    cfg.data.annotations = [*cfg.data.annotations, str(annotations_dir)]
    cfg.data.audio_dirs = [*cfg.data.audio_dirs, *sorted({str(p.parent) for p in paths})]
    metrics = train.train_yamnet(data_dir, model_dir, cfg, progress=False, echo=echo)
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
