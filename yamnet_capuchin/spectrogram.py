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
                    hop: int = 160, fmax: float = 4000.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times_s[T], freqs_hz[F], power_db[F, T]) of ``wave`` up to ``fmax``.

    Hann window of ``n_fft`` samples (64 ms at 16 kHz: 15.6 Hz bins, enough to see a call's
    harmonics), hop of ``hop`` samples (10 ms). Power in dB, each panel normalised later."""
    import librosa

    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    spec = np.abs(librosa.stft(wave, n_fft=n_fft, hop_length=hop, center=True)) ** 2
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    keep = freqs <= fmax
    times = librosa.frames_to_time(np.arange(spec.shape[1]), sr=sample_rate, hop_length=hop)
    return times, freqs[keep], librosa.power_to_db(spec[keep], ref=1.0, amin=1e-10)


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
