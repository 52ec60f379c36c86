"""Recording families: recordings that share a background (the challenge reuses a few
backgrounds and inserts calls into them), found by aligned spectrogram correlation.

Each recording becomes a *profile*: its log-mel spectrogram (48 bands up to 8 kHz, 0.1 s hop)
with each band's mean over time removed and scaled to unit variance, so that level and the
stationary colour of the noise drop out and what remains is *when* things happen in each band.
Two recordings built on the same background correlate strongly at the lag that aligns them
(mostly 0 s here); unrelated recordings do not. Families are the connected components of the
graph whose edges are pairs correlating at least ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .audio import SAMPLE_RATE

PROFILE_HOP_S = 0.1
PROFILE_BANDS = 48


def background_profile(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(bands, T) profile of a waveform: log-mel, each band's mean removed, unit variance overall."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(wave, np.float32), sr=sample_rate, n_fft=1024,
                                         hop_length=int(round(PROFILE_HOP_S * sample_rate)),
                                         n_mels=PROFILE_BANDS, fmax=sample_rate / 2)
    log = np.log(mel + 1e-8)
    log -= log.mean(axis=1, keepdims=True)
    return (log / (log.std() + 1e-9)).astype(np.float32)


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Best correlation of two profiles over lags ``-max_lag..max_lag`` frames and that lag.

    The correlation at lag k is the mean over bands and overlapping frames of a[:, t] * b[:, t - k]
    (``a`` later than ``b`` by k frames for k > 0), i.e. it is normalised by the overlap."""
    t = min(a.shape[1], b.shape[1])
    a, b = a[:, :t], b[:, :t]
    max_lag = min(max_lag, t - 1)
    fa = np.fft.rfft(a, n=2 * t, axis=1)
    fb = np.fft.rfft(b, n=2 * t, axis=1)
    x = np.fft.irfft((fa * np.conj(fb)).sum(axis=0), n=2 * t)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    values = np.r_[x[: max_lag + 1], x[2 * t - max_lag:]] / ((t - np.abs(lags)) * a.shape[0])
    k = int(np.argmax(values))
    return float(values[k]), int(lags[k])


@dataclass(frozen=True)
class Similarity:
    """Pairwise aligned correlations (n, n) and the lags (s) that give them; ``names`` (n,)."""

    names: tuple[str, ...]
    corr: np.ndarray
    lag_s: np.ndarray


def similarity(profiles: Sequence[np.ndarray], names: Sequence[str], max_lag_s: float = 60.0) -> Similarity:
    n = len(profiles)
    corr, lag = np.eye(n), np.zeros((n, n))
    max_lag = int(round(max_lag_s / PROFILE_HOP_S))
    for i in range(n):
        for j in range(i + 1, n):
            c, k = aligned_correlation(profiles[i], profiles[j], max_lag)
            corr[i, j] = corr[j, i] = c
            lag[i, j], lag[j, i] = k * PROFILE_HOP_S, -k * PROFILE_HOP_S
    return Similarity(tuple(names), corr, lag)


def group_families(sim: Similarity, threshold: float = 0.4) -> dict[str, str]:
    """Recording name -> family name (the family's first member in sorted order).

    Union-find over pairs with correlation >= ``threshold``; a recording sharing nothing is a
    family of its own."""
    parent = list(range(len(sim.names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    n = len(sim.names)
    for i in range(n):
        for j in range(i + 1, n):
            if sim.corr[i, j] >= threshold:
                parent[root(i)] = root(j)
    members: dict[int, list[str]] = {}
    for i, name in enumerate(sim.names):
        members.setdefault(root(i), []).append(name)
    out = {}
    for group in members.values():
        label = min(group)
        out.update({name: label for name in group})
    return dict(sorted(out.items()))


def family_folds(families: dict[str, str], weights: dict[str, float], n_folds: int, seed: int = 0) -> dict[str, int]:
    """Family -> fold (0..n_folds-1), whole families only, balancing ``weights`` (e.g. calls per
    recording, plus a little per recording so that call-free ones spread too) across folds:
    families in decreasing weight, each into the fold with the least weight so far (ties
    broken by a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    totals: dict[str, float] = {}
    for name, fam in families.items():
        totals[fam] = totals.get(fam, 0.0) + weights.get(name, 0.0)
    order = sorted(totals)
    rng.shuffle(order)
    order.sort(key=lambda f: -totals[f])
    load = np.zeros(n_folds)
    fold_of: dict[str, int] = {}
    for fam in order:
        k = int(np.argmin(load))
        fold_of[fam] = k
        load[k] += totals[fam]
    return fold_of


def read_families(path) -> dict[str, str]:
    """``families.csv`` (columns ``recording,family``) -> recording stem -> family."""
    import csv

    from .errors import YamcapError

    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise YamcapError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if rows and not {"recording", "family"} <= set(rows[0]):
        raise YamcapError(f"{path}: a families table needs the columns recording,family")
    return {r["recording"]: r["family"] for r in rows}


def write_families(path, sim: Similarity, families: dict[str, str]) -> None:
    """``recording,family,closest,correlation,lag_s``: each recording's family and its most similar recording."""
    from .fileio import atomic_write_csv

    rows = []
    for i, name in enumerate(sim.names):
        c = sim.corr[i].copy()
        c[i] = -np.inf
        j = int(np.argmax(c)) if len(c) > 1 else i
        rows.append((name, families[name], sim.names[j], f"{sim.corr[i, j]:.3f}", f"{sim.lag_s[i, j]:.1f}"))
    atomic_write_csv(path, ("recording", "family", "closest", "correlation", "lag_s"), rows)


def similarity_figure(sim: Similarity, families: dict[str, str]):
    """Heat map of the pairwise correlations, recordings ordered by family."""
    from .plots import _plt

    plt = _plt()
    order = sorted(range(len(sim.names)), key=lambda i: (families[sim.names[i]], sim.names[i]))
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(sim.corr[np.ix_(order, order)], vmin=0, vmax=1, cmap="viridis")
    labels = [f"{sim.names[i]} [{families[sim.names[i]]}]" for i in order]
    ax.set_xticks(range(len(order)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(order)), labels, fontsize=6)
    fig.colorbar(im, ax=ax, label="aligned correlation")
    ax.set_title("Shared backgrounds: aligned spectrogram correlation")
    fig.tight_layout()
    return fig
