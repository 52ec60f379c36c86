"""Frame scores for files of any length, in bounded memory.

The file is read in blocks that overlap by ``window - hop`` samples, each block holding a
whole number of frames, so every frame of a whole-file pass is computed exactly once, from
exactly the same samples: frame times and scores equal the whole-file ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, iter_blocks
from .backbones import frame_times


@dataclass
class FrameScores:
    """Scores of one file: frame start times (s), scores in [0, 1], length of the audio (s)."""

    start_s: np.ndarray
    scores: np.ndarray
    duration_s: float


def block_frames(block_seconds: float, hop_samples: int) -> int:
    """Frames per block for a block of about ``block_seconds``."""
    return max(1, int(round(block_seconds * SAMPLE_RATE / hop_samples)))


def stream_frame_scores(detector, path: str | Path, block_seconds: float = 120.0,
                        audio_backend: str = "soundfile") -> FrameScores:
    """Frame scores of a whole file, read block by block.

    ``detector`` needs ``window_samples``, ``hop_samples``, ``frame_count(n)`` and
    ``frame_scores(waveform) -> (start_s, scores)`` (see :mod:`yamnet_capuchin.model`).
    """
    window, hop = detector.window_samples, detector.hop_samples
    n_frames = block_frames(block_seconds, hop)
    block_samples = (n_frames - 1) * hop + window
    starts, scores = [], []
    emitted = 0
    total = 0
    for block in iter_blocks(path, block_samples, window - hop, audio_backend):
        total = block.start + block.samples.size
        expected = n_frames if not block.is_last else detector.frame_count(total) - emitted
        if expected <= 0:
            break
        t, s = detector.frame_scores(block.samples)
        starts.append(np.asarray(t[:expected], dtype=np.float64) + block.start / SAMPLE_RATE)
        scores.append(np.asarray(s[:expected], dtype=np.float32))
        emitted += min(expected, len(s))
    # Frame i starts at i * hop: computed once for the file, so no float drift across blocks.
    start_s = frame_times(sum(s.size for s in starts), hop, SAMPLE_RATE)
    return FrameScores(start_s, np.concatenate(scores) if scores else np.zeros(0, np.float32), total / SAMPLE_RATE)
