"""Spectrogram images for looking at recordings: whole-file panels and zooms.

Used to annotate recordings by eye (``yamcap panels``), by ``count --plots`` and by the
review page. Times are seconds from the file's start, frequencies Hz; waveforms are 16 kHz
mono float32 (``yamnet_capuchin.audio``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .audio import SAMPLE_RATE

# One colour per annotation kind (capuchin, other:*, unsure) and for model events.
MARK_COLOURS = {"capuchin": "#00e676", "other": "#29b6f6", "unsure": "#ffea00", "event": "#ff4081"}


@dataclass(frozen=True)
class Mark:
    """A span drawn on a panel: ``[start_s, end_s]`` with a short text label."""

    start_s: float
    end_s: float
    label: str = ""
    kind: str = "event"  # a key of MARK_COLOURS


def log_spectrogram(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024,
                    hop: int = 160, fmax: float = 4000.0, top_db: float = 80.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times_s[T], freqs_hz[F], power_db[F, T]) of ``wave`` up to ``fmax``.

    Periodic Hann window of ``n_fft`` samples (64 ms at 16 kHz: 15.6 Hz bins, enough to see a
    call's harmonics), hop of ``hop`` samples (10 ms), frames centred on ``t * hop`` (the wave
    zero-padded by ``n_fft // 2`` at both ends). Power in dB re 1, floored at 1e-10 and at
    ``top_db`` below the loudest bin (librosa's ``stft`` + ``power_to_db``, in NumPy alone);
    each panel is normalised later."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    padded = np.pad(wave, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    keep = freqs <= fmax
    power = np.abs(np.fft.rfft(frames * window, axis=1)[:, keep]).T.astype(np.float32) ** 2
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return np.arange(frames.shape[0]) * hop / sample_rate, freqs[keep], db


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, wave: np.ndarray, offset_s: float, fmax: float, marks: Sequence[Mark], dynamic_db: float) -> None:
    times, freqs, db = log_spectrogram(wave, fmax=fmax)
    top = np.percentile(db, 99.7)
    ax.pcolormesh(times + offset_s, freqs, db, shading="auto", cmap="magma", vmin=top - dynamic_db, vmax=top,
                  rasterized=True)
    ax.set_ylim(0, fmax)
    end_s = offset_s + wave.size / SAMPLE_RATE
    ax.set_xlim(offset_s, end_s)
    for m in marks:
        if m.end_s < offset_s or m.start_s > end_s:
            continue
        colour = MARK_COLOURS.get(m.kind.split(":")[0], MARK_COLOURS["event"])
        for t in (m.start_s, m.end_s):
            ax.axvline(t, color=colour, lw=1.2, alpha=0.9)
        ax.axhspan(fmax * 0.93, fmax, xmin=max(0, (m.start_s - offset_s) / (end_s - offset_s)),
                   xmax=min(1, (m.end_s - offset_s) / (end_s - offset_s)), color=colour, alpha=0.6)
        if m.label:
            ax.text(max(m.start_s, offset_s), fmax * 0.965, m.label, color="black", fontsize=7, va="center")


def panel_figure(wave: np.ndarray, start_s: float = 0.0, row_s: float = 30.0, fmax: float = 4000.0,
                 marks: Sequence[Mark] = (), title: str = "", dynamic_db: float = 70.0):
    """A figure of ``wave`` (which starts at ``start_s`` in its file) cut into rows of ``row_s``
    seconds, 0..``fmax`` Hz, with ``marks`` drawn as coloured spans and 1 s ticks."""
    plt = _plt()
    total_s = wave.size / SAMPLE_RATE
    n_rows = max(1, int(np.ceil(total_s / row_s - 1.0 / row_s)))  # no row for a last second or less
    width = min(24.0, max(12.0, row_s * 0.6))
    row_height = 2.3 if n_rows > 2 else 4.0  # zooms get taller rows
    fig, axes = plt.subplots(n_rows, 1, figsize=(width, row_height * n_rows), squeeze=False)
    for r in range(n_rows):
        ax = axes[r][0]
        a = int(round(r * row_s * SAMPLE_RATE))
        b = min(wave.size, int(round((r + 1) * row_s * SAMPLE_RATE)))
        _draw(ax, wave[a:b], start_s + a / SAMPLE_RATE, fmax, marks, dynamic_db)
        t0 = start_s + a / SAMPLE_RATE
        ax.set_xlim(t0, t0 + row_s)
        step = 1.0 if row_s <= 40 else 5.0
        ax.set_xticks(np.arange(np.ceil(t0 / step) * step, t0 + row_s + 1e-9, step))
        ax.tick_params(axis="x", labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_yticks(np.arange(0, fmax + 1, 500))
        ax.grid(axis="x", color="white", alpha=0.15, lw=0.5)
        ax.set_ylabel("Hz", fontsize=7)
    axes[-1][0].set_xlabel("time in file (s)", fontsize=8)
    if title:
        axes[0][0].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def file_panels(path, out_png, start_s: float = 0.0, end_s: float | None = None, row_s: float = 30.0,
                fmax: float = 4000.0, marks: Sequence[Mark] = (), audio_backend: str = "soundfile") -> None:
    """Render ``path`` from ``start_s`` to ``end_s`` (default: its end) into ``out_png``."""
    from pathlib import Path

    from .audio import load_audio
    from .fileio import save_figure

    wave = load_audio(path, audio_backend)
    a = max(0, int(round(start_s * SAMPLE_RATE)))
    b = wave.size if end_s is None else min(wave.size, int(round(end_s * SAMPLE_RATE)))
    title = f"{Path(path).name}  {a / SAMPLE_RATE:.1f}-{b / SAMPLE_RATE:.1f} s"
    save_figure(panel_figure(wave[a:b], a / SAMPLE_RATE, row_s, fmax, marks, title), out_png, dpi=80)
