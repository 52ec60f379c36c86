"""Scores, as pure functions: clip classification (arrays), and events and counts (intervals).

Event matching is one-to-one (Hungarian assignment) and a pair counts only when its
intersection-over-union is at least ``min_iou`` (0.3, the DCASE few-shot bioacoustic
convention) or, optionally, when the onsets lie within ``collar_s`` of each other.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .config import MIN_IOU


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


# -- events and counts ---------------------------------------------------------------------

Interval = tuple[float, float]


def iou(a: Interval, b: Interval) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def match_events(truth: Sequence[Interval], pred: Sequence[Interval], min_iou: float = MIN_IOU,
                 collar_s: float | None = None) -> list[tuple[int, int]]:
    """One-to-one matches (truth index, prediction index) maximising total similarity."""
    from scipy.optimize import linear_sum_assignment

    if not truth or not pred:
        return []
    if collar_s is None:
        sim = np.array([[iou(t, p) for p in pred] for t in truth])
        ok = sim >= min_iou
    else:
        diff = np.array([[abs(t[0] - p[0]) for p in pred] for t in truth])
        ok = diff <= collar_s
        sim = np.where(ok, collar_s + 1.0 - diff, 0.0)
    rows, cols = linear_sum_assignment(-np.where(ok, sim, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]


def event_scores(truth: Mapping[str, Sequence[Interval]], pred: Mapping[str, Sequence[Interval]],
                 min_iou: float = MIN_IOU, collar_s: float | None = None) -> dict:
    """Micro-averaged event precision / recall / F1 over files (files missing from ``pred`` have none)."""
    tp = fp = fn = 0
    for name in sorted(set(truth) | set(pred)):
        t, p = list(truth.get(name, [])), list(pred.get(name, []))
        m = len(match_events(t, p, min_iou, collar_s))
        tp, fp, fn = tp + m, fp + len(p) - m, fn + len(t) - m
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"event_tp": tp, "event_fp": fp, "event_fn": fn, "event_precision": precision,
            "event_recall": recall, "event_f1": f1}


def count_scores(truth_counts: Mapping[str, int], pred_counts: Mapping[str, int]) -> dict:
    """Per-file count errors: MAE, RMSE, bias (mean predicted - true), exact-count rate."""
    names = sorted(truth_counts)
    if not names:
        return {"count_mae": float("nan"), "count_rmse": float("nan"), "count_bias": float("nan"),
                "count_exact_rate": float("nan"), "files": 0}
    t = np.array([truth_counts[n] for n in names], float)
    p = np.array([pred_counts.get(n, 0) for n in names], float)
    d = p - t
    return {"count_mae": float(np.mean(np.abs(d))), "count_rmse": float(np.sqrt(np.mean(d ** 2))),
            "count_bias": float(np.mean(d)), "count_exact_rate": float(np.mean(d == 0)), "files": len(names),
            "true_total": int(t.sum()), "predicted_total": int(p.sum())}


def score_annotated(selections: Mapping[str, Sequence], pred: Mapping[str, Sequence[Interval]],
                    durations: Mapping[str, float], min_iou: float = MIN_IOU) -> dict:
    """Events and counts of annotated recordings against their ``capuchin`` selections.

    ``selections``: {stem: [annotations.Selection]}, ``pred``: {stem: [(start, end)]},
    ``durations``: {stem: seconds}. A predicted event that matches no call but overlaps an
    ``unsure`` selection by half its length or more is left out (neither right nor wrong, and
    not counted). Returns event precision / recall / F1 (one-to-one matching at IoU >=
    ``min_iou``), count MAE / bias / exact share per file, and false events per hour of
    call-free audio (each file's duration minus its calls' durations, summed)."""
    from .annotations import CALL, UNSURE

    tp = fp = fn = 0
    true_counts, pred_counts = {}, {}
    call_free_s = 0.0
    for stem in sorted(selections):
        sel = selections[stem]
        truth = [s.interval() for s in sel if s.label == CALL]
        unsure = [s.interval() for s in sel if s.label == UNSURE]
        p = list(pred.get(stem, []))
        matched = {pi for _, pi in match_events(truth, p, min_iou)}

        def on_unsure(e):
            return any(min(e[1], u[1]) - max(e[0], u[0]) >= 0.5 * (e[1] - e[0]) for u in unsure)

        kept = [e for i, e in enumerate(p) if i in matched or not on_unsure(e)]
        m = len(matched)
        tp, fp, fn = tp + m, fp + len(kept) - m, fn + len(truth) - m
        true_counts[stem], pred_counts[stem] = len(truth), len(kept)
        call_free_s += max(0.0, durations.get(stem, 0.0) - sum(b - a for a, b in truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {"event_tp": tp, "event_fp": fp, "event_fn": fn, "event_precision": precision, "event_recall": recall,
           "event_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
           "false_events_per_hour": fp / (call_free_s / 3600.0) if call_free_s else float("nan"),
           "call_free_hours": call_free_s / 3600.0}
    out.update(count_scores(true_counts, pred_counts))
    return out
