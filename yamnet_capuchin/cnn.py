"""The original challenge notebook's spectrogram CNN, ported faithfully, as the baseline.

Input: a 16 kHz clip cut to, or zero-padded *at the front* to, ``selected_length`` samples
(the mean Capuchinbird-clip length of the training split, rounded to the nearest 1000; 54000
on the full original data); |STFT| with frame_length 320, frame_step 32 (FFT 512 -> 257
bins), giving a (1678, 257, 1) image for 54000 samples.

Network: Conv2D(16, 3x3, ReLU) -> MaxPool(3, stride 2, same) -> Conv2D(16, 3x3, ReLU) ->
MaxPool(3, stride 2, same) -> Flatten -> Dense(128, ReLU) -> Dropout(0.3) -> Dense(1, sigmoid);
Adam, binary cross-entropy, batch 16, 10 epochs, early stopping (patience 5, best weights)
on the *validation* split (the notebook monitored its test split).

As a detector it scores windows of ``selected_length`` samples every ``count_hop_s``
(default: non-overlapping, as the notebook counted).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .audio import SAMPLE_RATE, load_audio
from .backbones import public_handle
from .config import Config
from .dataset import Clip, assign_splits, candidate_clips, split_summary, write_manifest
from .detectors import MODEL_FORMAT, weights_fingerprint
from .errors import AudioError, ModelError, YamcapError
from .fileio import atomic_write_json, file_sha256, save_figure, staging_dir
from .metrics import best_f1_threshold, classification_metrics
from .progress import track

CNN_IDENTITY = {"name": "cnn", "version": "notebook-1", "runtime": "keras", "fingerprint": "", "handle": ""}


def selected_length_from(clips: list[Clip], audio_backend: str = "soundfile") -> int:
    """Mean length (samples at 16 kHz) of the positive training clips, to the nearest 1000."""
    from .audio import audio_info

    lengths = [audio_info(c.path).duration_s * SAMPLE_RATE
               for c in clips if c.split == "train" and c.label == 1 and not c.is_segment]
    if not lengths:
        raise YamcapError("no positive training clips to compute selected_length from")
    return int(round(np.mean(lengths) / 1000.0) * 1000)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Cut to ``length`` samples, or zero-pad at the front (as the notebook does)."""
    wave = np.asarray(wave, np.float32)[:length]
    if wave.size < length:
        wave = np.concatenate([np.zeros(length - wave.size, np.float32), wave])
    return wave


def n_stft_frames(length: int, frame_length: int = 320, frame_step: int = 32) -> int:
    return 1 + (length - frame_length) // frame_step


def spectrogram(waves: np.ndarray, frame_length: int = 320, frame_step: int = 32) -> np.ndarray:
    """|STFT| of (N, L) waveforms -> (N, frames, 257, 1) float32 (FFT size 512, Hann window)."""
    from .backbones import import_tensorflow

    tf = import_tensorflow()
    spec = tf.abs(tf.signal.stft(tf.convert_to_tensor(waves, tf.float32), frame_length=frame_length,
                                 frame_step=frame_step))
    return spec.numpy()[..., None]


def build_cnn(input_shape: tuple[int, int, int], learning_rate: float = 1e-3, compile: bool = True):
    """The notebook's network, compiled (Adam, BCE, recall and precision) unless ``compile`` is False."""
    from .backbones import import_tensorflow

    import_tensorflow()
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(16, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=3, strides=2, padding="same"),
        layers.Conv2D(16, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=3, strides=2, padding="same"),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(1, activation="sigmoid"),
    ])
    if compile:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                      metrics=[keras.metrics.Recall(name="recall"), keras.metrics.Precision(name="precision")])
    return model


class CNNDetector:
    """The notebook's CNN behind the common detector surface."""

    kind = "cnn"
    context_frames = 0  # each window is scored on its own

    def __init__(self, network, selected_length: int, threshold: float, config: Config, meta: dict | None = None):
        self.network = network
        self.selected_length = int(selected_length)
        self.threshold = float(threshold)
        self.config = config
        self.meta = dict(meta or {})
        hop_s = config.cnn.count_hop_s
        self.hop_samples = int(round(hop_s * SAMPLE_RATE)) if hop_s > 0 else self.selected_length

    @property
    def window_samples(self) -> int:
        return self.selected_length

    def frame_count(self, n_samples: int) -> int:
        if n_samples <= self.window_samples:
            return 1
        return 1 + math.ceil((n_samples - self.window_samples) / self.hop_samples)

    def _predict(self, waves: np.ndarray, batch: int = 16) -> np.ndarray:
        c = self.config.cnn
        out = []
        for i in range(0, len(waves), batch):
            spec = spectrogram(waves[i: i + batch], c.frame_length, c.frame_step)
            out.append(np.asarray(self.network(spec, training=False)).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def frame_scores(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of windows ``selected_length`` long, ``hop_samples`` apart (last one zero-padded at the end)."""
        from .backbones import frame_times

        n = self.frame_count(waveform.size)
        padded = np.zeros((n - 1) * self.hop_samples + self.window_samples, np.float32)
        padded[: waveform.size] = waveform
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.window_samples)[:: self.hop_samples][:n]
        return frame_times(n, self.hop_samples), self._predict(np.ascontiguousarray(windows))

    def clip_score(self, waveform: np.ndarray) -> float:
        return float(self._predict(fit_length(waveform, self.selected_length)[None])[0])

    def predict_clips(self, waves: list[np.ndarray]) -> np.ndarray:
        return self._predict(np.stack([fit_length(w, self.selected_length) for w in waves]))

    def n_parameters(self) -> int:
        return int(self.network.count_params())

    def parameters(self) -> dict:
        return {"trainable": self.n_parameters(), "frozen": 0}

    def fingerprint(self) -> str:
        weights = {str(i): w for i, w in enumerate(self.network.get_weights())}
        return weights_fingerprint(self.kind, self.threshold, weights, {"hop": self.hop_samples})

    def save(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        # weights only (216 MB): the architecture is rebuilt from selected_length, and the
        # optimizer state a full .keras file carries would triple the size
        clean = build_cnn(self.network.input_shape[1:], compile=False)
        clean.set_weights(self.network.get_weights())
        clean.save_weights(model_dir / "cnn.weights.h5")
        meta = dict(self.meta)
        meta.update({
            "format": MODEL_FORMAT, "kind": self.kind, "package_version": __version__,
            "threshold": self.threshold, "selected_length": self.selected_length,
            "backbone": CNN_IDENTITY, "audio_backend": self.config.audio.backend, "seed": self.config.seed,
        })
        atomic_write_json(model_dir / "model.json", meta)
        config = copy.deepcopy(self.config)
        config.backbone.handle = public_handle(config.backbone.handle)  # not this machine's path
        config.save(model_dir / "config.toml")

    REQUIRED_META = ("selected_length", "threshold")

    @classmethod
    def from_dir(cls, model_dir: Path, meta: dict, config: Config, **_) -> "CNNDetector":
        from .backbones import import_tensorflow

        import_tensorflow()

        c = config.cnn
        length = int(meta["selected_length"])
        network = build_cnn((n_stft_frames(length, c.frame_length, c.frame_step), 257, 1), compile=False)
        try:
            network.load_weights(model_dir / "cnn.weights.h5")
        except Exception as exc:
            raise ModelError(f"{model_dir}: cannot load cnn.weights.h5 ({exc})") from None
        return cls(network, meta["selected_length"], meta["threshold"], config, meta)


def load_clip_waves(clips: list[Clip], audio_backend: str, progress: bool):
    """Waveforms of clips (segments cut from their files); failures as (path, reason)."""
    waves, kept, failures, cache = [], [], [], {}
    for clip in track(clips, "Loading clips", len(clips), progress):
        try:
            if clip.path not in cache:
                cache.clear() if len(cache) > 4 else None
                cache[clip.path] = load_audio(clip.path, audio_backend)
            wave = cache[clip.path]
            if clip.is_segment:
                wave = wave[int(clip.start_s * SAMPLE_RATE): int(clip.end_s * SAMPLE_RATE)]
            waves.append(wave)
            kept.append(clip)
        except AudioError as exc:
            if all(str(clip.path) != p for p, _ in failures):
                failures.append((str(clip.path), exc.reason))
    return waves, kept, failures


def train_cnn(data_dir, out_dir, config: Config, progress: bool = True,
              echo: Callable[[str], None] = print) -> dict:
    """Train the notebook CNN on the same source-grouped split as YAMNet; write ``out_dir``."""

    t_start = time.perf_counter()
    c = config.cnn
    waves, kept, failures = load_clip_waves(candidate_clips(data_dir, config, echo), config.audio.backend, progress)
    kept = assign_splits(kept, config)
    for path, reason in failures:
        echo(f"skipped {path}: {reason}")
    length = c.selected_length or selected_length_from(kept, config.audio.backend)
    echo(f"  CNN input: {length} samples -> ({n_stft_frames(length, c.frame_length, c.frame_step)}, 257, 1)")

    def part(split):
        idx = [i for i, k in enumerate(kept) if k.split == split]
        x = spectrogram(np.stack([fit_length(waves[i], length) for i in idx]), c.frame_length, c.frame_step)
        return x, np.array([kept[i].label for i in idx], np.float32)

    x_tr, y_tr = part("train")
    x_va, y_va = part("val")
    x_te, y_te = part("test")
    import keras

    keras.utils.set_random_seed(config.seed)
    net = build_cnn(x_tr.shape[1:], c.learning_rate)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=c.patience, restore_best_weights=True)
    t0 = time.perf_counter()
    hist = net.fit(x_tr, y_tr, validation_data=(x_va, y_va), batch_size=c.batch_size, epochs=c.epochs,
                   callbacks=[stop], verbose=2 if progress else 0, shuffle=True)
    t_fit = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_scores = np.asarray(net.predict(x_va, batch_size=16, verbose=0)).reshape(-1)
    threshold = best_f1_threshold(y_va, val_scores)
    test_scores = np.asarray(net.predict(x_te, batch_size=16, verbose=0)).reshape(-1)
    metrics = {
        "backbone": "cnn",
        "test": classification_metrics(y_te, test_scores, threshold),
        "val": classification_metrics(y_va, val_scores, threshold),
        "threshold": threshold,
        "selected_length": length,
        "parameters": int(net.count_params()),
        "split": split_summary(kept),
        "failures": [{"path": p, "reason": r} for p, r in failures],
        "epochs": len(history["loss"]),
        "timing_s": {"fit": round(t_fit, 2), "total": round(time.perf_counter() - t_start, 2)},
        "history": history,
    }
    with staging_dir(out_dir) as tmp:
        write_manifest(kept, tmp / "manifest.csv")
        det = CNNDetector(net, length, threshold, config, {"manifest_sha256": file_sha256(tmp / "manifest.csv")})
        det.save(tmp)
        atomic_write_json(tmp / "metrics.json", metrics)
        from .plots import training_curves

        save_figure(training_curves({"cnn": history}, "Notebook CNN"), tmp / "training_curve.png")
    return metrics
