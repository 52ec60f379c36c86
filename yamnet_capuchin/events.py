"""Frame scores -> call events (pure functions on arrays).

Frame ``i`` starts at ``start_s[i]`` and spans ``window_s``; consecutive frames are ``hop_s``
apart. Each frame stands for the central ``hop_s`` of its window, so a run of frames
``i..j`` becomes the event ``[start_s[i] + (window_s - hop_s)/2, start_s[j] + (window_s + hop_s)/2]``
(for non-overlapping windows, simply the windows themselves).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Event:
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EventParams:
    """How frame scores become events; see ``[events]`` in configs/default.toml."""

    threshold: float = 0.5  # a run starts at a frame scoring >= threshold
    off_threshold: float | None = None  # and continues while >= off_threshold (hysteresis)
    min_gap_s: float = 0.5  # events closer than this are merged
    min_duration_s: float = 0.0  # shorter events are dropped
    max_duration_s: float = 8.0  # longer events are split at their lowest-scoring frames (0 = never)


def frame_runs(scores: np.ndarray, on: float, off: float | None = None) -> list[tuple[int, int]]:
    """Runs of frames ``(first, last)`` (inclusive) with hysteresis.

    A run starts at a frame >= ``on``, extends forwards and backwards over frames >= ``off``
    (default ``on``). Example: scores 1,0,1,1,1,0,0,1 with on 0.5 -> (0,0), (2,4), (7,7).
    """
    s = np.asarray(scores, dtype=float)
    off = on if off is None else min(off, on)
    above_off = s >= off
    runs = []
    i, n = 0, s.size
    while i < n:
        if above_off[i]:
            j = i
            while j + 1 < n and above_off[j + 1]:
                j += 1
            if np.any(s[i: j + 1] >= on):
                runs.append((i, j))
            i = j + 1
        else:
            i += 1
    return runs


def _split_run(scores: np.ndarray, first: int, last: int, max_frames: int) -> list[tuple[int, int]]:
    """Split ``first..last`` at interior score minima until every piece has <= max_frames frames."""
    if last - first + 1 <= max_frames or last - first < 2:
        return [(first, last)]
    interior = scores[first + 1: last]
    cut = first + 1 + int(np.argmin(interior))  # the weakest frame separates two calls
    return _split_run(scores, first, cut - 1, max_frames) + _split_run(scores, cut + 1, last, max_frames)


def detect_events(
    start_s: np.ndarray,
    scores: np.ndarray,
    window_s: float,
    hop_s: float,
    params: EventParams = EventParams(),
) -> list[Event]:
    """Events from frame scores (times in seconds); see :class:`EventParams`."""
    start_s = np.asarray(start_s, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return []
    lead = (window_s - hop_s) / 2.0
    runs = frame_runs(scores, params.threshold, params.off_threshold)

    def bounds(run):
        return start_s[run[0]] + lead, start_s[run[1]] + lead + hop_s

    # merge runs separated by short gaps (on frame-run level, so scores stay attached)
    merged: list[tuple[int, int]] = []
    for run in runs:
        if merged and bounds(run)[0] - bounds(merged[-1])[1] < params.min_gap_s:
            merged[-1] = (merged[-1][0], run[1])
        else:
            merged.append(run)
    if params.max_duration_s and params.max_duration_s > 0:
        max_frames = max(1, int(np.floor(params.max_duration_s / hop_s + 1e-9)))  # k frames last k * hop_s
        pieces = []
        for first, last in merged:
            pieces.extend(_split_run(scores, first, last, max_frames))
        merged = pieces
    events = []
    for first, last in merged:
        t0, t1 = bounds((first, last))
        if t1 - t0 < params.min_duration_s:
            continue
        seg = scores[first: last + 1]
        events.append(Event(float(t0), float(t1), float(seg.max()), float(seg.mean())))
    return events


def notebook_rule_events(start_s: np.ndarray, scores: np.ndarray, window_s: float, threshold: float = 0.99) -> list[Event]:
    """The original notebook's rule: non-overlapping windows, score > threshold, each run of
    consecutive positive windows = one call. ``start_s``/``scores`` are per window."""
    s = np.asarray(scores, dtype=float)
    positive = s > threshold
    events = []
    i = 0
    while i < s.size:
        if positive[i]:
            j = i
            while j + 1 < s.size and positive[j + 1]:
                j += 1
            seg = s[i: j + 1]
            events.append(Event(float(start_s[i]), float(start_s[j] + window_s), float(seg.max()), float(seg.mean())))
            i = j + 1
        else:
            i += 1
    return events
