"""Audio input: decode any format soundfile reads, downmix, resample to 16 kHz.

All functions return float32 mono waveforms at ``SAMPLE_RATE`` (16 kHz) in [-1, 1].
Any problem with a file raises :class:`~yamnet_capuchin.errors.AudioError` whose message
names the file and the reason.

Two backends (``AudioConfig.backend``):

* ``"soundfile"`` (default): libsndfile decodes (WAV, FLAC, OGG, MP3, ...), soxr resamples
  with a streaming resampler, so a file read whole and read block by block give the same
  samples.
* ``"tfio"``: tensorflow-io decodes and resamples. Optional; its resampler shifts audio by
  about 2 ms, enough to move YAMNet embeddings, so the backend is recorded with each model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import AudioError, YamcapError

SAMPLE_RATE = 16000
BACKENDS = ("soundfile", "tfio")
_READ_FRAMES = 1 << 18  # frames decoded per read (about 5 s at 48 kHz)
_TRUNCATION_TOLERANCE = 0.01  # fraction of the declared length that may be missing


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: native rate (Hz), channels, length (frames, seconds)."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Block:
    """A piece of a 16 kHz waveform: ``samples`` start at ``start`` (in 16 kHz samples)."""

    start: int
    samples: np.ndarray
    is_last: bool


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise YamcapError(f"unknown audio backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend == "tfio":
        _import_tfio()


def audio_info(path: str | Path) -> AudioInfo:
    """Header information of an audio file, without decoding it."""
    import soundfile as sf

    path = _check_path(path)
    try:
        with sf.SoundFile(str(path)) as fh:
            return AudioInfo(fh.samplerate, fh.channels, fh.frames)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(path, f"not a readable audio file ({_short(exc)})") from None


def load_audio(path: str | Path, backend: str = "soundfile") -> np.ndarray:
    """Decode a whole file to a float32 mono 16 kHz waveform, shape (n_samples,)."""
    if backend == "tfio":
        return _load_tfio(path)
    pieces = list(_stream_16k(path))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def iter_blocks(
    path: str | Path,
    block_samples: int,
    overlap_samples: int = 0,
    backend: str = "soundfile",
) -> Iterator[Block]:
    """Yield a file as overlapping 16 kHz blocks, in bounded memory.

    Block ``k`` starts at sample ``k * (block_samples - overlap_samples)`` and holds
    ``block_samples`` samples (the last one fewer). Concatenating the non-overlapping parts
    gives exactly :func:`load_audio`'s waveform.
    """
    stride = block_samples - overlap_samples
    if stride <= 0 or overlap_samples < 0:
        raise ValueError("need 0 <= overlap_samples < block_samples")
    if backend == "tfio":
        source: Iterator[np.ndarray] = iter([_load_tfio(path)])
    else:
        source = _stream_16k(path)
    buffer = np.zeros(0, np.float32)
    start = 0
    pending: Block | None = None  # held back one step so the last block can be flagged
    for piece in source:
        buffer = np.concatenate([buffer, piece]) if buffer.size else piece
        while buffer.size >= block_samples:
            if pending is not None:
                yield pending
            pending = Block(start, buffer[:block_samples].copy(), False)
            buffer = buffer[stride:]
            start += stride
    # ``buffer`` now holds the samples from ``start`` on, fewer than a block. The pending
    # block ends at ``start + overlap_samples``; anything past that forms a final block.
    if pending is None:
        yield Block(start, buffer.copy(), True)
    elif buffer.size > overlap_samples:
        yield pending
        yield Block(start, buffer.copy(), True)
    else:
        yield Block(pending.start, pending.samples, True)


def downmix(data: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) channel mean, float32 (a column loop: numpy's strided
    ``mean(axis=1)`` is several times slower on interleaved audio)."""
    if data.shape[1] == 1:
        return data[:, 0]
    mono = data[:, 0].copy()
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    mono *= np.float32(1.0 / data.shape[1])
    return mono


def _stream_16k(path: str | Path) -> Iterator[np.ndarray]:
    """Decode ``path`` piece by piece, downmix to mono, resample to 16 kHz (soxr, streaming)."""
    import soundfile as sf
    import soxr

    path = _check_path(path)
    try:
        fh = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(path, f"not a readable audio file ({_short(exc)})") from None
    with fh:
        declared, rate = fh.frames, fh.samplerate
        if declared == 0:
            raise AudioError(path, "contains no audio samples (0 frames)")
        resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        decoded = emitted = 0
        while True:
            try:
                data = fh.read(_READ_FRAMES, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(path, f"decoding failed after {decoded / rate:.1f} s ({_short(exc)})") from None
            last = data.shape[0] < _READ_FRAMES
            mono = downmix(data)
            if not np.isfinite(mono).all():
                first_bad = decoded + int(np.flatnonzero(~np.isfinite(mono))[0])
                raise AudioError(path, f"contains NaN or infinite samples (first at {first_bad / rate:.3f} s, "
                                       f"sample {first_bad})")
            decoded += data.shape[0]
            out = resampler.resample_chunk(mono, last=last) if resampler is not None else mono.copy()
            emitted += out.size
            if out.size:
                yield np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)
            if last:
                break
    if decoded == 0:
        raise AudioError(path, "contains no audio samples (0 frames decoded)")
    if emitted == 0:
        raise AudioError(path, f"too short: {decoded} sample(s) at {rate} Hz make no sample at {SAMPLE_RATE} Hz")
    if declared > 0 and decoded < declared * (1.0 - _TRUNCATION_TOLERANCE):
        raise AudioError(
            path, f"truncated: decoded {decoded / rate:.2f} s of the {declared / rate:.2f} s its header declares"
        )


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise AudioError(path, f"broken link (points to {os.readlink(path)}, which does not exist)")
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    return path


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    # libsndfile prefixes "Error opening '<path>': " -- the path is already in our message.
    return text.split("': ", 1)[-1]


def _import_tfio():
    try:
        import tensorflow_io as tfio  # noqa: F401
    except Exception as exc:  # ImportError, or NotFoundError for undefined symbols
        raise YamcapError(
            "audio backend 'tfio' unavailable: tensorflow-io failed to load "
            f"({_short(exc)}). tensorflow-io 0.37.1 works only with TensorFlow <= 2.17; "
            "use --set audio.backend=soundfile (or audio.backend = \"soundfile\" in a config) instead."
        ) from None
    return tfio


_TFIO_PCM_SCALE = {"int16": (0.0, 32768.0), "int32": (0.0, 2147483648.0), "uint8": (128.0, 128.0)}


def _load_tfio(path: str | Path) -> np.ndarray:
    tfio = _import_tfio()
    import tensorflow as tf

    path = _check_path(path)
    try:
        audio = tfio.audio.AudioIOTensor(str(path))
        rate = int(audio.rate.numpy())
        data = audio.to_tensor()
        # integer PCM comes back unscaled (16-bit as int16, 24-bit as int32 shifted to full
        # scale, 8-bit as uint8); floats (MP3, Ogg, float WAV) are already in [-1, 1]
        offset, full_scale = _TFIO_PCM_SCALE.get(data.dtype.name, (0.0, 1.0))
        data = (tf.cast(data, tf.float32) - offset) / full_scale
        mono = tf.reduce_mean(data, axis=1)
        if rate != SAMPLE_RATE:
            mono = tfio.audio.resample(mono, rate_in=rate, rate_out=SAMPLE_RATE)
        wave = mono.numpy().astype(np.float32)
    except Exception as exc:
        raise AudioError(path, f"tensorflow-io could not decode it ({_short(exc)})") from None
    if wave.size == 0:
        raise AudioError(path, "contains no audio samples")
    if not np.isfinite(wave).all():
        raise AudioError(path, "contains NaN or infinite samples as decoded by tensorflow-io "
                               "(it misreads 32-bit integer WAV; the soundfile backend reads it)")
    return np.clip(wave, -1.0, 1.0)
