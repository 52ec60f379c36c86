import pytest

from yamnet_capuchin.metrics import count_scores, event_scores, iou, match_events


def test_iou():
    assert iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert iou((0, 1), (2, 3)) == 0


def test_three_truths_four_predictions_one_below_iou():
    truth = {"a.flac": [(0.0, 3.0), (10.0, 13.0), (20.0, 23.0)]}
    pred = {"a.flac": [
        (0.5, 3.5),    # IoU 2.5/3.5 = 0.71 -> match
        (10.0, 12.0),  # IoU 2/3 -> match
        (22.5, 26.0),  # IoU 0.5/6 = 0.08 -> below 0.3
        (40.0, 42.0),  # nothing there
    ]}
    s = event_scores(truth, pred)
    assert (s["event_tp"], s["event_fp"], s["event_fn"]) == (2, 2, 1)
    assert s["event_precision"] == pytest.approx(0.5)
    assert s["event_recall"] == pytest.approx(2 / 3)
    assert s["event_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # onset collar of 0.6 s: 22.5 vs 20.0 still too far, 0.5 and 10.0 onsets match
    assert event_scores(truth, pred, collar_s=0.6)["event_tp"] == 2


def test_matching_is_one_to_one():
    # one long prediction overlapping two truths can match only one of them
    m = match_events([(0, 2), (2.2, 4)], [(0, 4)], min_iou=0.3)
    assert len(m) == 1
    # Hungarian prefers the assignment with more total overlap over a greedy first pick
    m = match_events([(0, 2), (1, 3)], [(0.9, 2.9), (0, 1.6)], min_iou=0.3)
    assert sorted(m) == [(0, 1), (1, 0)]


def test_count_scores_by_hand():
    s = count_scores({"a": 3, "b": 0, "c": 5}, {"a": 2, "b": 0, "c": 8})
    assert s["count_mae"] == pytest.approx(4 / 3)
    assert s["count_rmse"] == pytest.approx(((1 + 0 + 9) / 3) ** 0.5)
    assert s["count_bias"] == pytest.approx(2 / 3)
    assert s["count_exact_rate"] == pytest.approx(1 / 3)
