"""Synthetic audio and a tiny YAMNet stand-in for self-contained tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def call(duration_s: float = 2.5, sr: int = SR, rng=None) -> np.ndarray:
    """A 'Capuchinbird-like' call: a low harmonic tone rising 500 -> 900 Hz, smooth envelope."""
    t = np.arange(int(duration_s * sr)) / sr
    f = 500 + 400 * t / duration_s
    phase = 2 * np.pi * np.cumsum(f) / sr
    tone = np.sin(phase) + 0.5 * np.sin(2 * phase)
    env = np.sin(np.pi * t / duration_s) ** 2
    return (0.4 * env * tone).astype(np.float32)


def other(duration_s: float = 3.0, sr: int = SR, rng=None) -> np.ndarray:
    """A 'not Capuchinbird' sound: high chirps (3-5 kHz) and hiss."""
    rng = rng or np.random.default_rng(0)
    n = int(duration_s * sr)
    t = np.arange(n) / sr
    x = 0.05 * rng.standard_normal(n)
    for start in rng.uniform(0, duration_s - 0.2, size=6):
        seg = (t >= start) & (t < start + 0.15)
        x[seg] += 0.3 * np.sin(2 * np.pi * rng.uniform(3000, 5000) * t[seg])
    return x.astype(np.float32)


def background(duration_s: float, sr: int = SR, rng=None, level: float = 0.02) -> np.ndarray:
    rng = rng or np.random.default_rng(1)
    return (level * rng.standard_normal(int(duration_s * sr))).astype(np.float32)


def write(path: Path, wave: np.ndarray, sr: int = SR, channels: int = 1, fmt: str | None = None,
          subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def make_dataset(root: Path, n_pos_sources: int = 6, n_neg_sources: int = 6, per_source: int = 4) -> Path:
    """A Kaggle-layout folder of synthetic clips, with a short call-free 'forest' recording."""
    rng = np.random.default_rng(42)
    for s in range(n_pos_sources):
        for k in range(per_source):
            wave = call(rng.uniform(2.0, 3.5))
            wave = wave + background(wave.size / SR, rng=rng)
            write(root / "Parsed_Capuchinbird_Clips" / f"XC{1000 + s}-{k}.wav", wave, sr=44100 if s % 2 else SR)
    for s in range(n_neg_sources):
        for k in range(per_source):
            write(root / "Parsed_Not_Capuchinbird_Clips" / f"noise-{s}-{k}.flac", other(3.0, rng=rng), sr=SR)
    write(root / "Forest Recordings" / "recording_01.flac", background(20.0, rng=rng), sr=SR)
    return root


def soundscape(duration_s: float, call_starts: list[float], rng=None) -> np.ndarray:
    rng = rng or np.random.default_rng(7)
    wave = background(duration_s, rng=rng)
    for t0 in call_starts:
        c = call(2.5)
        i = int(t0 * SR)
        wave[i: i + c.size] += c[: max(0, min(c.size, wave.size - i))]
    return wave


def build_tiny_yamnet(path: Path, tflite_ready: bool = False) -> Path:
    """A SavedModel with YAMNet's interface and framing (0.975 s windows, 0.48 s hop).

    ``model(waveform[N]) -> (scores[F, 521], embeddings[F, 1024], log_mel[T, 64])`` and
    ``class_map_path()``. Embeddings are log band energies through a fixed random projection,
    enough for a head to tell the synthetic call from the other sounds; the "log-mel" rows are
    log energies in 64 linear bands. ``tflite_ready``: FFT lengths padded to powers of two
    (16384, 512), which TFLite's RFFT needs (export tests); the bands then span 0-7.6 kHz, and
    the projection is a 1x1 convolution (what an int8 export quantizes).
    """
    from yamnet_capuchin.backbones import import_tensorflow

    tf = import_tensorflow()
    path = Path(path)
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((32, 1024)).astype(np.float32) / math.sqrt(32)
    class_map = path.parent / "tiny_class_map.csv"
    class_map.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},class {i}\n" for i in range(521)))

    class TinyYamnet(tf.Module):
        def __init__(self):
            super().__init__()
            self.proj = tf.Variable(proj, trainable=False)
            self.class_map = tf.saved_model.Asset(str(class_map))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            n = tf.shape(waveform)[0]
            extra = tf.maximum(n - 15600, 0)
            frames_n = 1 + (extra + 7679) // 7680
            padded = tf.pad(waveform, [[0, (frames_n - 1) * 7680 + 15600 - n]])
            frames = tf.signal.frame(padded, 15600, 7680)
            spec = tf.abs(tf.signal.rfft(frames, [16384] if tflite_ready else None))[:, :7776]  # 0 .. ~7.97 kHz
            bands = tf.reduce_mean(tf.reshape(spec, [-1, 32, 243]), axis=-1)
            logs = tf.math.log(bands + 1e-3)
            if tflite_ready:  # the same product as a 1x1 convolution, so that an int8 export has one to quantize
                conv = tf.nn.conv2d(logs[:, None, None, :], self.proj[None, None], 1, "VALID")
                emb = tf.nn.relu(tf.reshape(conv, [-1, 1024]))
            else:
                emb = tf.nn.relu(tf.matmul(logs, self.proj))
            scores = tf.sigmoid(emb[:, :521])
            # like YAMNet's: 25 ms windows every 10 ms, (F - 1) * 48 + 96 rows, 64 log bands
            rows = tf.abs(tf.signal.rfft(tf.signal.frame(padded, 400, 160), [512] if tflite_ready else None))[:, :192]
            log_mel = tf.math.log(tf.reduce_mean(tf.reshape(rows, [-1, 64, 3]), axis=-1) + 1e-3)
            return scores, emb, log_mel

        @tf.function(input_signature=[])
        def class_map_path(self):
            return self.class_map.asset_path

    module = TinyYamnet()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def build_tiny_birdnet(folder: Path) -> Path:
    """A TFLite file with BirdNET 2.4's interface: input [batch, 144000] (3 s at 48 kHz),
    an internal ``model/GLOBAL_AVG_POOL/Mean`` (batch, 1024) embedding and [batch, 10] logits,
    with a labels file beside it whose last class is the Capuchinbird. Embeddings are log
    energies of 64 sample blocks through a fixed random projection."""
    from yamnet_capuchin.backbones import import_tensorflow

    tf = import_tensorflow()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = [f"Genus species{i}_Bird {i}" for i in range(9)] + ["Perissocephalus tricolor_Capuchinbird"]
    proj = rng.standard_normal((64, 1024)).astype(np.float32) / 8
    classes = rng.standard_normal((1024, len(labels))).astype(np.float32) / 32

    class TinyBirdnet(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 144000], tf.float32)])
        def __call__(self, x):
            with tf.name_scope("model"):
                blocks = tf.reshape(x, [-1, 2250, 64])
                energy = tf.math.log(tf.reduce_mean(tf.square(blocks), axis=1) + 1e-6)
                h = tf.nn.relu(tf.matmul(energy, proj))[:, None, None, :]
                with tf.name_scope("GLOBAL_AVG_POOL"):
                    emb = tf.reduce_mean(h, axis=[1, 2])
                return tf.matmul(emb, classes)

    module = TinyBirdnet()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    model = folder / "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
    model.write_bytes(converter.convert())
    (folder / "BirdNET_GLOBAL_6K_V2.4_Labels.txt").write_text("\n".join(labels) + "\n")
    return model


def tfio_loads() -> bool:
    """Whether the optional tensorflow-io backend can run here (it needs TensorFlow <= 2.17)."""
    try:
        import tensorflow_io  # noqa: F401
    except Exception:  # ImportError, or undefined symbols with a newer TensorFlow
        return False
    return True
