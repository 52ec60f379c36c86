"""Figures (matplotlib, Agg backend): training curves, ROC/PR curves, counts per file."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str = "Training"):
    """Loss per epoch (train solid, validation dashed) for each named run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, hist) in enumerate(histories.items()):
        color = f"C{i}"
        if "loss" in hist:
            ax.plot(np.arange(1, len(hist["loss"]) + 1), hist["loss"], color=color, label=f"{name} train")
        if "val_loss" in hist:
            ax.plot(np.arange(1, len(hist["val_loss"]) + 1), hist["val_loss"], "--", color=color, label=f"{name} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def roc_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]):
    """ROC and precision-recall curves for each named (labels, scores) pair."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax1.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        prec, rec, _ = precision_recall_curve(y, s)
        ax2.plot(rec, prec, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax1.plot([0, 1], [0, 1], ":", color="grey")
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test clips)")
    ax2.set(xlabel="recall", ylabel="precision", title="Precision-recall (test clips)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8, loc="lower right" if ax is ax1 else "lower left")
        ax.grid(alpha=0.3)
    return fig


def counts_bar(names: Sequence[str], counts: Mapping[str, Sequence[int]], title: str = "Calls per recording"):
    """Bar chart of counts per file; several series side by side."""
    plt = _plt()
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * n + 2), 4))
    width = 0.8 / max(1, len(counts))
    x = np.arange(n)
    for i, (label, values) in enumerate(counts.items()):
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("calls")
    ax.set_title(title)
    if len(counts) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def activity_plot(diel: Mapping[str, Sequence], daily: Mapping[str, Sequence], tz_name: str = "UTC"):
    """Calls per recorded hour: by hour of day (the diel pattern) and by date, one line per
    site. ``diel``: site -> 24 values (None: no effort); ``daily``: site -> [(date, value)]
    (:func:`yamnet_capuchin.activity.diel_profile` / ``daily_profile``)."""
    import datetime as dt

    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    top = 0.0
    for site, values in diel.items():
        y = [np.nan if v is None else v for v in values]
        top = max([top] + [v for v in values if v is not None])
        ax1.plot(range(24), y, marker="o", ms=3, lw=1.2, label=site or "(no site)")
    ax1.set_xticks(range(0, 24, 3))
    ax1.set_xlim(-0.5, 23.5)
    ax1.set_xlabel(f"hour of day ({tz_name})")
    ax1.set_ylabel("calls per recorded hour")
    ax1.set_title("By hour of day")
    dates = []
    for site, points in daily.items():
        if points:
            dates += [d for d, _ in points]
            top = max([top] + [v for _, v in points])
            ax2.plot([d for d, _ in points], [v for _, v in points], marker="o", ms=3, lw=1.2, label=site or "(no site)")
    if dates:
        import matplotlib.dates as mdates

        ax2.set_xlim(min(dates) - dt.timedelta(days=1), max(dates) + dt.timedelta(days=1))
        ax2.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=10, interval_multiples=True))
        ax2.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax2.set_xlabel("date")
    ax2.set_title("By date")
    ax2.tick_params(axis="x", labelrotation=30)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.1 * top if top > 0 else 1.0)
    if len(diel) > 1:
        ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def count_errors(names: Sequence[str], true: Sequence[int], counts: Mapping[str, Sequence[int]],
                 title: str = "Counted minus true calls per recording"):
    """One row per model, one column per file: counted minus true calls (red: too many, blue:
    too few, white: exact), with the difference written in each non-zero cell and the true
    counts along the top."""
    plt = _plt()
    rows = list(counts)
    diff = np.array([np.asarray(counts[r]) - np.asarray(true) for r in rows], float)
    limit = max(1.0, float(np.abs(diff).max()))
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names) + 3), 0.45 * len(rows) + 1.8))
    ax.imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for i, j in zip(*np.nonzero(diff)):
        ax.text(j, i, f"{int(diff[i, j]):+d}", ha="center", va="center", fontsize=6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    top = ax.secondary_xaxis("top")
    top.set_xticks(range(len(names)))
    top.set_xticklabels([str(t) for t in true], fontsize=7)
    top.set_xlabel("true calls", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def detection_plot(path, frame_scores, events, audio_backend: str, window_s: float, hop_s: float, threshold=None,
                   wave=None):
    """Spectrogram, frame-score curve and detected events of one file. ``wave``: its (N,) 16 kHz
    waveform if already decoded; else the whole file is loaded."""
    from .audio import load_audio
    from .spectrogram import log_spectrogram

    plt = _plt()
    if wave is None:
        wave = load_audio(path, audio_backend)
    t, f, db = log_spectrogram(wave, n_fft=512, hop=256, fmax=4000.0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax1.pcolormesh(t, f, db, shading="auto", cmap="magma")
    ax1.set_ylim(0, 4000)
    ax1.set_ylabel("Hz")
    ax1.set_title(f"{path} -- {len(events)} call(s)")
    centres = frame_scores.start_s + window_s / 2
    ax2.plot(centres, frame_scores.scores, color="C0", lw=1)
    for e in events:
        for ax in (ax1, ax2):
            ax.axvspan(e.start_s, e.end_s, color="C2", alpha=0.3)
    if threshold is not None:
        ax2.axhline(threshold, color="C3", ls="--", lw=1)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("score")
    ax2.set_xlabel("time (s)")
    return fig


def threshold_sweep(sweep, used: float | None = None):
    """Event precision / recall / F1 and count MAE against the threshold, and the PR curve."""
    plt = _plt()
    t = [s["threshold"] for s in sweep]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("event_precision", "precision"), ("event_recall", "recall"), ("event_f1", "F1")):
        ax1.plot(t, [s[key] for s in sweep], marker=".", label=label)
    ax1b = ax1.twinx()
    ax1b.plot(t, [s["count_mae"] for s in sweep], color="grey", ls=":", label="count MAE")
    ax1b.set_ylabel("count MAE (calls per file)")
    if used is not None:
        ax1.axvline(used, color="C3", ls="--", lw=1)
    ax1.set(xlabel="threshold", ylabel="event metric", ylim=(0, 1.02), title="Threshold sweep")
    ax1.legend(fontsize=8, loc="lower left")
    ax2.plot([s["event_recall"] for s in sweep], [s["event_precision"] for s in sweep], marker=".")
    ax2.set(xlabel="event recall", ylabel="event precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Event PR curve")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return fig


def count_scatter(per_file):
    """Predicted vs true calls per file."""
    plt = _plt()
    true = [v["true"] for v in per_file.values()]
    pred = [v["predicted"] for v in per_file.values()]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = max(true + pred + [1]) + 1
    ax.plot([0, top], [0, top], ":", color="grey")
    ax.scatter(true, pred, alpha=0.7)
    ax.set(xlabel="true calls", ylabel="predicted calls", title="Calls per file", xlim=(-0.5, top), ylim=(-0.5, top))
    ax.grid(alpha=0.3)
    return fig
