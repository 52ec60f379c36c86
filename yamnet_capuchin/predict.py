"""Clip scoring: audio files -> one score per file (``yamcap predict``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .audio import load_audio
from .errors import AudioError
from .progress import progress_bar


@dataclass(frozen=True)
class ClipPrediction:
    path: Path
    score: float
    label: int


def predict_files(detector, paths: Sequence[Path], threshold: float | None = None,
                  audio_backend: str = "soundfile", progress: bool = True):
    """Score each file with ``detector.clip_score``.

    Returns (predictions, failures): failures are (path, reason) for files that could not be
    read; the others are scored regardless.
    """
    thr = detector.threshold if threshold is None else threshold
    preds: list[ClipPrediction] = []
    failures: list[tuple[Path, str]] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("Scoring", total=len(paths)) if bar else None
        for path in paths:
            try:
                score = detector.clip_score(load_audio(path, audio_backend))
                preds.append(ClipPrediction(Path(path), score, int(score >= thr)))
            except AudioError as exc:
                failures.append((Path(path), exc.reason))
            if bar:
                bar.advance(task)
    return preds, failures
