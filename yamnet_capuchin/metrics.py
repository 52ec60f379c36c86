"""Clip-level classification metrics and threshold choice (pure functions on arrays)."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1, accuracy, ROC-AUC, PR-AUC and the confusion matrix.

    labels: (N,) 0/1; scores: (N,) in [0, 1]; a clip is positive when score >= threshold.
    ``confusion`` is [[TN, FP], [FN, TP]].
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = len(np.unique(y)) == 2
    return {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / y.size if y.size else 0.0,
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "confusion": [[tn, fp], [fn, tp]],
    }


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold with the best F1 on (validation) data.

    Candidates are midpoints between consecutive distinct scores; among equally good ones the
    widest gap wins, so a perfectly separated set gets a threshold far from both classes.
    """
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    uniq = np.unique(s)
    if uniq.size < 2 or y.sum() == 0:
        return 0.5
    mids = (uniq[:-1] + uniq[1:]) / 2
    gaps = uniq[1:] - uniq[:-1]
    best = (-1.0, -1.0, 0.5)
    n_pos = y.sum()
    for t, gap in zip(mids, gaps):
        pred = s >= t
        tp = np.sum(pred & (y == 1))
        denom = pred.sum() + n_pos
        f1 = 2 * tp / denom if denom else 0.0
        if (f1, gap) > best[:2]:
            best = (f1, gap, float(t))
    return best[2]
