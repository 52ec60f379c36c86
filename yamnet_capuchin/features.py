"""Clip files -> backbone frames, through the embedding cache (embed once, train many heads)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .augment import augment_clip
from .backbones import Frames, YamnetBackbone
from .cache import EmbeddingCache
from .config import AugmentConfig
from .fileio import file_sha256
from .progress import track

RECENT_FILES = 8  # frames of the last files embedded, kept in memory: segments of one recording read it once


class ClipEmbedder:
    """Embeds audio files with a backbone, caching frames by content + backbone + front end."""

    def __init__(self, backbone: YamnetBackbone, cache: EmbeddingCache, audio_backend: str = "soundfile"):
        self.backbone = backbone
        self.cache = cache
        self.audio_backend = audio_backend
        self._identity = backbone.identity()
        self._frontend = {"backend": audio_backend, "sample_rate": SAMPLE_RATE}
        self._sha: dict[Path, str] = {}
        self._waves: dict[Path, np.ndarray] = {}
        self._recent: OrderedDict[Path, Frames] = OrderedDict()  # a recording's segments come one after another

    def sha(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = file_sha256(path)
        return self._sha[path]

    def embed(self, path: str | Path) -> Frames:
        path = Path(path)
        if path in self._recent:
            self._recent.move_to_end(path)
            return self._recent[path]
        key = self.cache.key(self.sha(path), self._identity, self._frontend)
        frames = self.cache.get(key)
        if frames is None:
            frames = self.backbone.embed(load_audio(path, self.audio_backend))
            self.cache.put(key, frames)
        self._recent[path] = frames
        if len(self._recent) > RECENT_FILES:
            self._recent.popitem(last=False)
        return frames

    def embed_clip(self, clip) -> Frames:
        """Frames of a :class:`~yamnet_capuchin.dataset.Clip`: the whole file, or the frames
        lying wholly inside a segment's [start_s, end_s]."""
        frames = self.embed(clip.path)
        if not clip.is_segment:
            return frames
        window_s = self.backbone.window_samples / SAMPLE_RATE
        keep = (frames.start_s >= clip.start_s - 1e-6) & (frames.start_s + window_s <= clip.end_s + 1e-6)
        if not keep.any():  # a segment shorter than one window: take the frame at its start
            keep = np.zeros(len(frames), bool)
            keep[min(int(clip.start_s / (self.backbone.hop_samples / SAMPLE_RATE)), len(frames) - 1)] = True
        return frames.select(keep, clip.start_s)

    def load(self, path: Path) -> np.ndarray:
        """A decoded 16 kHz waveform, kept in memory (noise sources are reused many times)."""
        if path not in self._waves:
            self._waves[path] = load_audio(path, self.audio_backend)
        return self._waves[path]

    def embed_augmented(self, path: Path, noise_path: Path | None, params: dict, aug: AugmentConfig) -> Frames:
        """Frames of an augmented copy; ``params`` (seeded draws) fully determine the copy."""
        variant = json.dumps({
            "aug": [aug.snr_db_min, aug.snr_db_max, aug.gain_db, aug.max_shift_s],
            "params": params, "noise": self.sha(noise_path) if noise_path else "",
        }, sort_keys=True)
        key = self.cache.key(self.sha(path), self._identity, self._frontend, variant)
        frames = self.cache.get(key)
        if frames is None:
            clip = load_audio(path, self.audio_backend)
            noise = self.load(noise_path) if noise_path else None
            rng = np.random.default_rng(params["seed"])
            wave, _ = augment_clip(
                clip, noise, rng, (aug.snr_db_min, aug.snr_db_max), aug.gain_db,
                int(aug.max_shift_s * SAMPLE_RATE),
            )
            frames = self.backbone.embed(wave)
            self.cache.put(key, frames)
        return frames

    def augmented_copy(self, path: Path, noise_pool: Sequence[Path], aug: AugmentConfig, rng_key) -> Frames:
        """One augmented copy of ``path``, mixed into a noise file drawn from ``noise_pool``
        (never the clip itself); ``rng_key`` (e.g. ``[seed, clip index, copy]``) fixes every draw."""
        rng = np.random.default_rng(rng_key)
        target = str(path)  # str(Path) is cached; Path == Path is not (0.4 s per training run)
        candidates = [p for p in noise_pool if str(p) != target]
        noise = candidates[int(rng.integers(len(candidates)))] if candidates else None
        return self.embed_augmented(path, noise, {"seed": int(rng.integers(2**31))}, aug)

    def training_copies(self, clips: Sequence, aug: AugmentConfig, copies: int, seed: int, ids: Sequence[int] | None = None):
        """Augmented copies of a training set, as ``yamcap train`` makes them: ``copies`` per
        whole clip (background segments get none), each mixed into a negative file of the same
        set that holds no call (an annotated recording with calls in it is not noise, nor is one
        with only partial labels: its unlabelled rest may hold calls). ``ids``
        (one per whole clip, default its position among them) with ``seed`` and the copy
        number fix every draw. Yields (frames, label) pairs."""
        noise_pool = sorted({c.path for c in clips if c.label == 0 and not c.partial}
                            - {c.path for c in clips if c.label == 1})
        originals = [c for c in clips if not c.is_segment]
        for clip_id, clip in zip(range(len(originals)) if ids is None else ids, originals):
            for copy in range(copies):
                yield self.augmented_copy(clip.path, noise_pool, aug, [seed, int(clip_id), copy]), clip.label

    def embed_many(self, clips: Sequence, description: str = "Embedding", progress: bool = True):
        """Frames per clip, and a list of (path, error message) for files that failed."""
        from .errors import AudioError

        out: list[Frames | None] = []
        failures: list[tuple[Path, str]] = []
        failed: dict[Path, str] = {}
        for clip in track(clips, description, len(clips), progress):
            try:
                if clip.path in failed:
                    raise AudioError(clip.path, failed[clip.path])
                out.append(self.embed_clip(clip))
            except AudioError as exc:
                out.append(None)
                if clip.path not in failed:
                    failures.append((Path(clip.path), exc.reason))
                failed[clip.path] = exc.reason
        return out, failures
