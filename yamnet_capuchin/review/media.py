"""Audio spans and spectrogram images of candidates, made on request.

Decoded recordings are kept in a small in-memory LRU cache (a 3-minute file is about 11 MB
at 16 kHz float32); images are cached as PNG files under ``RUN_DIR/.review-cache/``.
Matplotlib is not thread-safe, so images are drawn one at a time.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..errors import YamcapError
from ..fileio import AUDIO_EXTENSIONS, expand_audio_paths

CONTEXT_S = 2.0  # shown before and after a candidate
FMAX_HZ = 4000.0
CACHE_DIR = ".review-cache"


class AudioResolver:
    """Where the recording named in events.csv is: a given AUDIO path (matched by file name or
    by its path's tail), the path as written (relative to the working directory), relative to
    the run folder's parent, or ``DATA/Forest Recordings/<name>``."""

    def __init__(self, audio: Iterable[str | Path] = (), run_dir: str | Path | None = None,
                 data_dir: str | Path | None = None):
        self.by_name: dict[str, Path] = {}
        for p in expand_audio_paths(audio or [], AUDIO_EXTENSIONS):
            self.by_name.setdefault(p.name, p)
        self.run_dir = Path(run_dir) if run_dir else None
        self.data_dir = Path(data_dir) if data_dir else None
        self._memo: dict[str, Path | None] = {}

    def resolve(self, file: str) -> Path | None:
        if file in self._memo:
            return self._memo[file]
        name = Path(file).name
        tries = [self.by_name.get(name), Path(file)]
        if self.run_dir is not None and not Path(file).is_absolute():
            tries.append(self.run_dir.parent / file)
        if self.data_dir is not None:
            tries += [self.data_dir / "Forest Recordings" / name, self.data_dir / name]
        found = next((p for p in tries if p is not None and p.is_file()), None)
        self._memo[file] = found
        return found


class WaveCache:
    """Whole decoded recordings, least recently used dropped first; one decode per file at a time."""

    def __init__(self, size: int = 6, backend: str = "soundfile"):
        self.size, self.backend = size, backend
        self._waves: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._file_locks: dict[str, threading.Lock] = {}
        self.decodes = 0

    def get(self, path: str | Path) -> np.ndarray:
        key = str(path)
        with self._lock:
            if key in self._waves:
                self._waves.move_to_end(key)
                return self._waves[key]
            file_lock = self._file_locks.setdefault(key, threading.Lock())
        with file_lock:
            with self._lock:
                if key in self._waves:
                    return self._waves[key]
            wave = load_audio(path, self.backend)
            with self._lock:
                self.decodes += 1
                self._waves[key] = wave
                while len(self._waves) > self.size:
                    self._waves.popitem(last=False)
            return wave


def span(wave: np.ndarray, start_s: float, end_s: float, context_s: float = CONTEXT_S) -> tuple[np.ndarray, float]:
    """The samples from ``start_s - context_s`` to ``end_s + context_s`` (clipped to the file)
    and the time (s) of the first one."""
    a = max(0, int(round((start_s - context_s) * SAMPLE_RATE)))
    b = min(wave.size, int(round((end_s + context_s) * SAMPLE_RATE)))
    if b <= a:
        raise YamcapError(f"span {start_s:.2f}-{end_s:.2f} s lies outside the recording")
    return wave[a:b], a / SAMPLE_RATE


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono 16-bit PCM WAV."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


_PLOT_LOCK = threading.Lock()


def spectrogram_png(samples: np.ndarray, offset_s: float, start_s: float, end_s: float, title: str = "",
                    label: str = "") -> bytes:
    """A 0-4 kHz spectrogram PNG of ``samples`` (starting at ``offset_s`` in the file) with the
    candidate's bounds drawn."""
    from ..spectrogram import Mark, panel_figure

    length_s = samples.size / SAMPLE_RATE
    with _PLOT_LOCK:
        import matplotlib.pyplot as plt

        fig = panel_figure(samples, offset_s, row_s=max(length_s, 1.0), fmax=FMAX_HZ,
                           marks=[Mark(start_s, end_s, label, "event")], title=title)
        fig.set_size_inches(10, 3.6)
        fig.tight_layout()
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", dpi=80)
        finally:
            plt.close(fig)
    return buf.getvalue()


def cached_png(cache_dir: Path, key: str, make) -> bytes:
    """The PNG ``cache_dir/key`` if it exists, else ``make()`` written there atomically."""
    from ..fileio import atomic_write_bytes

    path = cache_dir / key
    if path.is_file():
        return path.read_bytes()
    data = make()
    atomic_write_bytes(path, data)
    return data
