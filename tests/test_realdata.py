"""Tests on the real YAMNet and data in ../shared; skipped with a reason when absent."""

import csv

import numpy as np
import pytest

from yamnet_capuchin.audio import load_audio
from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.dataset import find_forest_dir, read_manifest
from yamnet_capuchin.detectors import DEFAULT_MODEL_DIR, load_model

TFLITE = "yamnet.tflite"


@pytest.fixture(scope="module")
def forest_recording(real_data):
    forest = find_forest_dir(real_data)
    return sorted(forest.iterdir())[0]


def test_real_yamnet_frames_of_a_forest_recording(real_yamnet, forest_recording):
    wave = load_audio(forest_recording)
    assert abs(wave.size / 16000 - 180) < 1
    frames = YamnetBackbone(str(real_yamnet)).embed(wave)
    assert len(frames) == 375 and frames.embeddings.shape == (375, 1024)


def test_tflite_runtime_agrees_with_savedmodel(real_yamnet, forest_recording):
    tflite = real_yamnet.parent / TFLITE
    if not tflite.exists():
        pytest.skip("no yamnet.tflite beside the SavedModel")
    wave = load_audio(forest_recording)[: 16000 * 30]
    a = YamnetBackbone(str(real_yamnet)).embed(wave).embeddings
    lite = YamnetBackbone(str(tflite))
    b = lite.embed(wave).embeddings
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert a.shape == b.shape
    # XNNPACK (TensorFlow >= 2.19) measured mean 0.997-0.998, min 0.983-0.985 here; the reference int8
    # kernels of older TensorFlow 0.984 and 0.920 (backbones.tflite_kernels)
    if lite.identity()["tflite_kernels"] == "xnnpack":
        assert cos.mean() > 0.99 and cos.min() > 0.95
    else:
        assert cos.mean() > 0.97 and cos.min() > 0.9


def test_mel_profile_rows_belong_to_their_frame(real_yamnet, forest_recording):
    """Frame i's profile, cut from one whole-waveform spectrogram (rows 48 i .. 48 i + 95), is
    the profile of its own 15600 samples embedded alone; the TFLite runtime (one patch per
    frame, its own float front end) agrees closely."""
    wave = load_audio(forest_recording)[: 16000 * 10]
    saved = YamnetBackbone(str(real_yamnet))
    whole = saved.embed(wave).mel_profile
    assert whole.shape == (20, 64)
    for i in (0, 7, 18):
        alone = saved.embed(wave[7680 * i: 7680 * i + 15600]).mel_profile[0]
        assert np.abs(alone - whole[i]).max() < 1e-4  # a one-row shift differs by ~7e-3 on average
    tflite = real_yamnet.parent / TFLITE
    if tflite.exists():
        lite = YamnetBackbone(str(tflite)).embed(wave).mel_profile
        assert lite.shape == whole.shape and np.abs(lite - whole).mean() < 0.02


def test_shipped_model_scores_test_split_clips(real_yamnet, real_data):
    """The default model, on clips of its own test split (never seen in training)."""
    model = load_model(None, yamnet=str(real_yamnet))
    clips = [c for c in read_manifest(DEFAULT_MODEL_DIR / "manifest.csv") if c.split == "test" and not c.is_segment]
    pos = [c for c in clips if c.label == 1][:8]
    neg = [c for c in clips if c.label == 0][:: max(1, len(clips) // 16)][:8]
    root = real_data
    def score(c):
        return model.clip_score(load_audio(root / c.path.parent.name / c.path.name))
    pos_scores = [score(c) for c in pos]
    neg_scores = [score(c) for c in neg]
    assert np.median(pos_scores) > 0.9 and np.median(neg_scores) < 0.1


def test_shipped_model_is_trained_with_the_default_config_and_sane():
    """The shipped model matches configs/default.toml, and its recorded test-split metrics
    meet the issue's ROC-AUC target and are those of a working head (F1: see the README for
    the 0.95 target and the split-to-split spread)."""
    import json

    from yamnet_capuchin.config import Config

    m = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())
    meta = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert m["test"]["roc_auc"] >= 0.99 and m["test"]["f1"] >= 0.85
    assert meta["head_params"]["inputs"] == Config().head.inputs
    assert meta["pooling"] == Config().head.pooling
    rows = list(csv.DictReader(open(DEFAULT_MODEL_DIR / "manifest.csv")))
    assert {r["split"] for r in rows} == {"train", "val", "test"}
