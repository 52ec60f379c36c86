"""Clip scoring: audio files -> one score per file (``yamcap predict``).

Files are read block by block (:mod:`yamnet_capuchin.streaming`), so a two-hour recording
needs no more memory than a two-minute one: a YAMNet detector's per-frame scores (and, for
attention pooling, attention logits) are collected block by block and pooled at the end, which
gives the whole-file clip score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import iter_blocks, load_audio
from .errors import AudioError
from .progress import track


@dataclass(frozen=True)
class ClipPrediction:
    path: Path
    score: float
    label: int


def streamed_clip_score(detector, path: str | Path, block_seconds: float = 120.0,
                        audio_backend: str = "soundfile") -> float:
    """``detector.clip_score`` of a whole file, computed in bounded memory.

    A YAMNet detector (a :class:`~yamnet_capuchin.head.FrameHead` on backbone frames) is run
    block by block and its frame scores pooled as the head pools them; a CNN scores only the
    first ``selected_length`` samples, so only those are kept (the rest is still decoded, so
    a file that breaks later fails as it does when read whole); anything else reads the file
    whole."""
    head = getattr(detector, "head", None)
    if head is not None and hasattr(head, "_forward") and hasattr(detector, "backbone"):
        return _streamed_head_score(detector, head, path, block_seconds, audio_backend)
    length = int(getattr(detector, "selected_length", 0) or 0)
    if length > 0 and audio_backend != "tfio":
        kept, n = [], 0
        for block in iter_blocks(path, max(length, 1 << 20), 0, audio_backend):
            if n < length:
                kept.append(block.samples[: length - n])
                n += kept[-1].size
        return detector.clip_score(np.concatenate(kept) if kept else np.zeros(0, np.float32))
    return detector.clip_score(load_audio(path, audio_backend))


def _streamed_head_score(detector, head, path, block_seconds: float, audio_backend: str) -> float:
    from .streaming import stream_frame_values

    weights = head._check_fitted()
    attention = head.pooling == "attention"

    def values(wave: np.ndarray) -> np.ndarray:
        h, p = head._forward(head.frame_inputs(detector.backbone.embed(wave)))
        if not attention:
            return p[:, None]
        return np.stack([p, (h @ weights["wa"] + weights["ba"]).astype(p.dtype)], axis=1)

    rows, _ = stream_frame_values(detector, path, values, block_seconds, audio_backend)
    p = rows[:, 0]
    if head.pooling == "mean":
        return float(p.mean())
    if head.pooling == "max":
        return float(p.max())
    a = rows[:, 1]
    a = np.exp(a - a.max())
    return float(np.sum(a / a.sum() * p))


def predict_files(detector, paths: Sequence[Path], threshold: float | None = None,
                  audio_backend: str = "soundfile", progress: bool = True, block_seconds: float = 120.0):
    """Score each file with ``detector``'s clip score, each read block by block.

    Returns (predictions, failures): failures are (path, reason) for files that could not be
    read; the others are scored regardless.
    """
    thr = detector.threshold if threshold is None else threshold
    preds: list[ClipPrediction] = []
    failures: list[tuple[Path, str]] = []
    for path in track(paths, "Scoring", enabled=progress):
        try:
            score = streamed_clip_score(detector, path, block_seconds, audio_backend)
            preds.append(ClipPrediction(Path(path), score, int(score >= thr)))
        except AudioError as exc:
            failures.append((Path(path), exc.reason))
    return preds, failures
