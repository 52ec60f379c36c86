"""Frame scores for files of any length, in bounded memory.

The file is read in blocks that overlap by ``window - hop`` samples, each block holding a
whole number of frames, so every frame of a whole-file pass is computed exactly once, from
exactly the same samples: frame times and scores equal the whole-file ones. A detector whose
frame score also depends on ``c`` neighbouring frames on each side (``context_frames``) gets
blocks overlapping by ``2c`` more frames; only frames whose neighbours all lie in the block
(or beyond the file's ends) are kept.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .audio import SAMPLE_RATE, Block, iter_blocks
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


def block_layout(detector, block_seconds: float) -> tuple[int, int, int]:
    """(new frames per block, block length, overlap) in samples, so blocks hold whole frames:
    each block holds its new frames plus ``2 * context_frames`` shared with the next one."""
    window, hop = detector.window_samples, detector.hop_samples
    n_frames = block_frames(block_seconds, hop)
    margin = 2 * detector.context_frames
    return n_frames, (n_frames + margin - 1) * hop + window, window - hop + margin * hop


def stream_frame_scores(detector, path: str | Path, block_seconds: float = 120.0,
                        audio_backend: str = "soundfile", blocks: Iterable[Block] | None = None) -> FrameScores:
    """Frame scores of a whole file, read block by block.

    ``detector`` needs ``window_samples``, ``hop_samples``, ``frame_count(n)`` and
    ``frame_scores(waveform) -> (start_s, scores)`` (see :class:`yamnet_capuchin.detectors.Detector`).
    ``blocks``: the file's blocks when already being decoded (:func:`prefetch_blocks`), laid
    out by :func:`block_layout` with the same ``block_seconds``.
    """
    values, total = stream_frame_values(detector, path, lambda wave: detector.frame_scores(wave)[1],
                                        block_seconds, audio_backend, blocks)
    # Frame i starts at i * hop: computed once for the file, so no float drift across blocks.
    start_s = frame_times(values.shape[0], detector.hop_samples, SAMPLE_RATE)
    return FrameScores(start_s, values.astype(np.float32, copy=False), total / SAMPLE_RATE)


def stream_frame_values(detector, path: str | Path, values: Callable[[np.ndarray], np.ndarray],
                        block_seconds: float = 120.0, audio_backend: str = "soundfile",
                        blocks: Iterable[Block] | None = None) -> tuple[np.ndarray, int]:
    """Per-frame values of a whole file, read block by block: ``values(waveform)`` gives an
    array with one row per frame of ``waveform`` (as ``detector.frame_scores`` gives scores);
    the rows of the whole file are returned as if ``values`` had seen it whole, with the
    file's length in 16 kHz samples."""
    hop = detector.hop_samples
    context = detector.context_frames
    n_frames, block_samples, overlap = block_layout(detector, block_seconds)
    rows = []
    emitted = 0
    total = 0
    if blocks is None:
        blocks = iter_blocks(path, block_samples, overlap, audio_backend)
    for block in blocks:
        total = block.start + block.samples.size
        # Block k holds the file's frames k*n .. k*n + n + 2c - 1; it emits those from the
        # first not yet emitted (k*n + c, or 0 in the first block) on.
        first = emitted - block.start // hop
        expected = n_frames + context - first if not block.is_last else detector.frame_count(total) - emitted
        if expected <= 0:
            break
        v = np.asarray(values(block.samples))
        rows.append(v[first:first + expected])
        emitted += rows[-1].shape[0]
    return (np.concatenate(rows) if rows else np.zeros(0, np.float32)), total


_END = object()


def prefetch_blocks(paths: Sequence[Path], block_samples: int, overlap: int, audio_backend: str = "soundfile",
                    depth: int = 4) -> Iterator[tuple[Path, Iterator[Block]]]:
    """Yield ``(path, blocks)`` per file while a background thread decodes ahead.

    Decoding (libsndfile, soxr) releases the GIL, so it overlaps the model's inference; the
    queue holds at most ``depth`` blocks, so memory stays bounded. A decoding error is raised
    from that file's block iterator; blocks a consumer leaves unread are discarded.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        for path in paths:
            try:
                for block in iter_blocks(path, block_samples, overlap, audio_backend):
                    if not put((path, block)):
                        return
            except Exception as exc:  # handed to the consumer, attributed to this file
                if not put((path, exc)):
                    return
            if not put((path, _END)):
                return

    thread = threading.Thread(target=worker, name="yamcap-decode", daemon=True)
    thread.start()
    try:
        for path in paths:
            state = {"ended": False}

            def blocks(state=state):
                while not state["ended"]:
                    _, item = q.get()
                    if item is _END:
                        state["ended"] = True
                        return
                    if isinstance(item, Exception):
                        # the worker puts _END next; consume it so the next file starts clean
                        q.get()
                        state["ended"] = True
                        raise item
                    yield item

            it = blocks()
            yield path, it
            if not state["ended"]:
                for _ in it:  # drain what the consumer did not read
                    pass
    finally:
        stop.set()
        thread.join(timeout=5)
