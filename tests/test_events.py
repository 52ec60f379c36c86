import numpy as np
import pytest

from yamnet_capuchin.events import EventParams, detect_events, frame_runs, notebook_rule_events


def test_runs_of_a_hand_made_sequence():
    assert frame_runs(np.array([1, 0, 1, 1, 1, 0, 0, 1.0]), 0.5) == [(0, 0), (2, 4), (7, 7)]


def test_notebook_rule_counts_runs():
    scores = np.array([1, 0, 1, 1, 1, 0, 0, 1.0])
    starts = np.arange(8) * 3.375
    events = notebook_rule_events(starts, scores, 3.375, 0.99)
    assert len(events) == 3
    assert (events[1].start_s, events[1].end_s) == (2 * 3.375, 5 * 3.375)
    # p must exceed 0.99: 0.99 itself is not a call
    assert notebook_rule_events(starts, np.full(8, 0.99), 3.375) == []


def test_hysteresis_extends_runs_over_off_threshold():
    s = np.array([0.1, 0.4, 0.8, 0.4, 0.1, 0.45, 0.1])
    assert frame_runs(s, 0.7) == [(2, 2)]
    assert frame_runs(s, 0.7, 0.3) == [(1, 3)]  # 0.45 alone never reached 0.7


def _events(scores, **kw):
    s = np.asarray(scores, float)
    return detect_events(np.arange(s.size) * 0.48, s, 0.96, 0.48, EventParams(**{"threshold": 0.5, **kw}))


def test_event_times_use_the_central_hop_of_each_frame():
    (e,) = _events([0, 1, 1, 0], min_gap_s=0)
    assert e.start_s == pytest.approx(0.48 + 0.24)
    assert e.end_s == pytest.approx(0.96 + 0.72)
    assert e.peak_score == 1.0 and e.mean_score == 1.0


def test_merge_short_gaps_and_drop_short_events():
    s = [1, 1, 0, 1, 1, 0, 0, 0, 0, 1]
    assert len(_events(s, min_gap_s=0.0)) == 3
    assert len(_events(s, min_gap_s=0.6)) == 2  # one-frame gap (0.48 s) merged
    assert len(_events(s, min_gap_s=0.6, min_duration_s=0.9)) == 1  # the lone frame (0.48 s) dropped


def test_long_runs_split_at_score_minima():
    s = [0.9, 0.95, 0.9, 0.6, 0.9, 0.95, 0.9]  # two calls touching, a dip between them
    assert len(_events(s, max_duration_s=0)) == 1
    events = _events(s, max_duration_s=2.0)
    assert len(events) == 2
    assert events[0].end_s <= events[1].start_s


def test_no_scores_no_events():
    assert _events([]) == []
