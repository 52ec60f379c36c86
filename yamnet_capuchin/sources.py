"""Which clip each annotated forest call was copied from: the call's *source* (``yamcap sources``).

The challenge's forest recordings hold calls inserted from a few parsed clips, so a cross-validation
that holds out backgrounds but trains on the clip a test call was copied from measures recall on
a bird the head has memorised. This module finds each copy by normalised cross-correlation of
band-passed waveforms (400-3500 Hz, where a Capuchinbird's call lies and most forest noise does
not), and gives every call a source: the matched clip's recording (``XC307385``), or, where no
clip matches (peak below ``min_peak``), a source of its own (``rec:<stem>@<begin_s>``).

Waveforms are 16 kHz mono float32 (:func:`yamnet_capuchin.audio.load_audio`); times in seconds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .annotations import CALL
from .audio import SAMPLE_RATE, load_audio
from .dataset import source_of
from .errors import AudioError, YamcapError
from .fileio import atomic_write_csv
from .progress import track

BAND_HZ = (400.0, 3500.0)
DECIMATE = 2  # the band ends below 4 kHz: correlate at 8 kHz (4x fewer operations)
MIN_PEAK = 0.6  # a copy correlates 0.8-1.0 with its clip; distinct calls of one bird stay below 0.5
MARGIN_S = 5.0  # the call's span is searched with this much on each side (clips are 2-5 s)
COLUMNS = ("recording", "begin_s", "end_s", "source", "clip", "peak", "lag_s")


@dataclass(frozen=True)
class CallSource:
    """One annotated call and where it came from. ``clip``: the best-matching clip's name ("" if
    none reached ``min_peak``); ``peak``: that clip's normalised correlation (0-1); ``lag_s``: the
    clip's start in the recording, seconds."""

    recording: str
    begin_s: float
    end_s: float
    source: str
    clip: str
    peak: float
    lag_s: float


def band_pass(wave: np.ndarray, band: tuple[float, float] = BAND_HZ, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) float32 -> (N,) float32: zero-phase 4th-order Butterworth band-pass."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, band, btype="bandpass", fs=rate, output="sos")
    return sosfiltfilt(sos, wave.astype(np.float64)).astype(np.float32)


def normalised_xcorr(long: np.ndarray, short: np.ndarray) -> np.ndarray:
    """(N,), (M,) with M <= N -> (N - M + 1,): the Pearson-style correlation of ``short`` with each
    M-sample window of ``long`` (no mean removal: both are band-passed, so zero-mean). 1 = the same
    waveform at any gain."""
    from scipy.signal import fftconvolve

    if short.size > long.size:
        raise ValueError("the template is longer than the signal")
    num = fftconvolve(long.astype(np.float64), short[::-1].astype(np.float64), mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(long.astype(np.float64) ** 2)])
    window = energy[short.size:] - energy[: long.size - short.size + 1]
    den = np.sqrt(np.maximum(window, 0.0)) * float(np.linalg.norm(short))
    out = np.zeros_like(num)
    ok = den > 1e-9 * max(float(den.max()), 1e-30)  # silent windows correlate with nothing
    out[ok] = num[ok] / den[ok]
    return out


def best_match(segment: np.ndarray, clips: Mapping[str, np.ndarray]) -> tuple[str, float, int]:
    """(clip name, peak, lag in samples) of the clip that correlates best with a band-passed
    ``segment``; clips longer than the segment are skipped."""
    best = ("", 0.0, 0)
    for name, clip in clips.items():
        if clip.size > segment.size or not np.any(clip):
            continue
        c = normalised_xcorr(segment, clip)
        i = int(np.argmax(c))
        if c[i] > best[1]:
            best = (name, float(c[i]), i)
    return best


def prepare(wave: np.ndarray) -> np.ndarray:
    """(N,) 16 kHz -> (N // DECIMATE,) band-passed at SAMPLE_RATE / DECIMATE Hz."""
    return band_pass(wave)[::DECIMATE]


def match_calls(recordings: Mapping[str, Path], tables: Mapping, clip_paths: Sequence[Path],
                min_peak: float = MIN_PEAK, progress: bool = True,
                load: Callable[[Path], np.ndarray] = load_audio,
                failures: list[tuple[str, str]] | None = None) -> list[CallSource]:
    """Every ``capuchin`` selection of ``tables`` ({stem: selections}) with its source.

    ``recordings``: {stem: audio path}; ``clip_paths``: the parsed call clips to look for.
    An unreadable recording raises :class:`AudioError`, or, given a ``failures`` list, is
    appended to it as (path, reason) and skipped (its calls then have no row)."""
    rate = SAMPLE_RATE / DECIMATE
    clips = {Path(p).stem: prepare(load(p)) for p in sorted(clip_paths)}
    out: list[CallSource] = []
    stems = [s for s in sorted(tables) if any(x.label == CALL for x in tables[s])]
    for stem in track(stems, "Matching calls", len(stems), progress):
        if stem not in recordings:
            raise YamcapError(f"{stem}: no audio for this annotation table")
        try:
            wave = prepare(load(recordings[stem]))
        except AudioError as exc:
            if failures is None:
                raise
            failures.append((exc.path, exc.reason))
            continue
        for sel in (x for x in tables[stem] if x.label == CALL):
            a = max(0, int((sel.begin_s - MARGIN_S) * rate))
            b = min(wave.size, int((sel.end_s + MARGIN_S) * rate))
            name, peak, lag = best_match(wave[a:b], clips)
            matched = peak >= min_peak
            out.append(CallSource(stem, sel.begin_s, sel.end_s,
                                  source_of(name) if matched else f"rec:{stem}@{sel.begin_s:.2f}",
                                  name if matched else "", round(peak, 3), round((a + lag) / rate, 3)))
    return out


def write_sources(path: str | Path, rows: Sequence[CallSource]) -> None:
    atomic_write_csv(path, COLUMNS, [[r.recording, f"{r.begin_s:.3f}", f"{r.end_s:.3f}", r.source, r.clip,
                                      f"{r.peak:.3f}", f"{r.lag_s:.3f}"] for r in rows])


def read_sources(path: str | Path) -> list[CallSource]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [CallSource(r["recording"], float(r["begin_s"]), float(r["end_s"]), r["source"], r["clip"],
                               float(r["peak"]), float(r["lag_s"])) for r in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError) as exc:
        raise YamcapError(f"{path}: not a call-source table ({exc})") from None


def source_lookup(rows: Sequence[CallSource]) -> Callable[[str, float, float], str]:
    """``(stem, begin_s, end_s) -> source`` for annotated calls: the row whose span overlaps the
    call most; a call with no row is its own source (``rec:<stem>@<begin>``)."""
    by_stem: dict[str, list[CallSource]] = {}
    for r in rows:
        by_stem.setdefault(r.recording, []).append(r)

    def lookup(stem: str, begin_s: float, end_s: float) -> str:
        best, overlap = None, 0.0
        for r in by_stem.get(stem, []):
            o = min(end_s, r.end_s) - max(begin_s, r.begin_s)
            if o > overlap:
                best, overlap = r, o
        return best.source if best else f"rec:{stem}@{begin_s:.2f}"

    return lookup
