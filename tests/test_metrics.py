import numpy as np
import pytest

from yamnet_capuchin.metrics import best_f1_threshold, classification_metrics


def test_classification_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05])
    m = classification_metrics(y, s, 0.5)
    # predicted positive: 0.9, 0.8, 0.7 -> TP 2, FP 1, FN 1, TN 3
    assert m["confusion"] == [[3, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # ROC-AUC: of 12 (pos, neg) pairs, only (0.3 vs 0.7) is mis-ordered
    assert m["roc_auc"] == pytest.approx(11 / 12)


def test_best_f1_threshold_separates_with_widest_margin():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.95])
    assert best_f1_threshold(y, s) == pytest.approx(0.6)
    y2 = np.array([0, 1, 0, 1])
    s2 = np.array([0.1, 0.4, 0.5, 0.9])
    t = best_f1_threshold(y2, s2)
    assert 0.1 < t < 0.4  # predicting 0.4, 0.5, 0.9 positive gives F1 0.8, the best
