"""Waveform augmentation for training: mix into other audio at a random SNR, random gain,
random circular time shift. Pure functions on 16 kHz float32 arrays."""

from __future__ import annotations

import numpy as np


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal`` plus ``noise`` (tiled/cut to its length) scaled to the given SNR in dB."""
    if noise.size == 0 or rms(noise) == 0.0:
        return signal.copy()
    reps = int(np.ceil(signal.size / noise.size))
    noise = np.tile(noise, reps)[: signal.size]
    scale = rms(signal) / (rms(noise) * 10 ** (snr_db / 20.0)) if rms(signal) > 0 else 1.0
    return signal + scale * noise


def augment_clip(
    clip: np.ndarray,
    noise: np.ndarray | None,
    rng: np.random.Generator,
    snr_db_range: tuple[float, float] = (0.0, 20.0),
    gain_db: float = 6.0,
    max_shift_samples: int = 8000,
) -> tuple[np.ndarray, dict]:
    """One augmented copy of ``clip`` and the parameters drawn (for the record).

    Shift is circular (the call stays in the clip); the result is clipped to [-1, 1].
    """
    shift = int(rng.integers(-max_shift_samples, max_shift_samples + 1)) if max_shift_samples > 0 else 0
    out = np.roll(clip, shift)
    params = {"shift": shift}
    if noise is not None and noise.size:
        snr = float(rng.uniform(*snr_db_range))
        offset = int(rng.integers(0, max(1, noise.size - clip.size)))
        out = mix_at_snr(out, noise[offset: offset + max(clip.size, 1)], snr)
        params["snr_db"] = snr
    gain = float(rng.uniform(-gain_db, gain_db))
    out = out * 10 ** (gain / 20.0)
    params["gain_db"] = gain
    return np.clip(out, -1.0, 1.0).astype(np.float32), params
