import csv
import json
import shutil

import numpy as np
from typer.testing import CliRunner

from synth import call, soundscape, write
from yamnet_capuchin.cli import app
from yamnet_capuchin.cnn import build_cnn, fit_length, n_stft_frames, spectrogram
from yamnet_capuchin.detectors import load_model


def test_front_padding_and_cutting():
    w = np.arange(1, 6, dtype=np.float32)
    assert fit_length(w, 8).tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert fit_length(w, 3).tolist() == [1, 2, 3]


def test_notebook_shapes_for_54000_samples():
    assert n_stft_frames(54000) == 1678
    spec = spectrogram(np.zeros((2, 54000), np.float32))
    assert spec.shape == (2, 1678, 257, 1)
    net = build_cnn((1678, 257, 1))
    assert net.output_shape == (None, 1)
    # Flatten after two same-padded stride-2 pools: 418 x 63 x 16 features into Dense(128)
    dense = [layer for layer in net.layers if layer.name.startswith("dense")][0]
    assert dense.kernel.shape == (418 * 63 * 16, 128)
    assert 53_000_000 < net.count_params() < 55_000_000


def test_tiny_cnn_train_predict_count(tiny_data, tmp_path):
    out = tmp_path / "cnn"
    args = ["train", "--backbone", "cnn", "--data", str(tiny_data), "--out", str(out), "-q",
            "--set", "cnn.selected_length=8000", "--set", "cnn.epochs=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["kind"] == "cnn" and meta["selected_length"] == 8000
    det = load_model(out)
    assert det.kind == "cnn" and det.window_samples == 8000
    t, s = det.frame_scores(np.zeros(8000 * 3 + 100, np.float32))
    assert s.shape == (4,) and np.allclose(t, [0, 0.5, 1.0, 1.5])
    assert 0 <= det.clip_score(call(2.0)) <= 1
    rec = write(tmp_path / "rec" / "r.wav", soundscape(20.0, [3.0]))
    res = CliRunner().invoke(app, ["count", "-m", str(out), str(rec), "-o", str(tmp_path / "c"), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "counts.csv").read_text().startswith("clip_name,call_count\nr.wav,")


def test_selected_length_default_is_mean_training_call_length(tiny_data):
    from yamnet_capuchin.cnn import selected_length_from
    from yamnet_capuchin.dataset import discover_clips, split_by_source
    from yamnet_capuchin.audio import audio_info

    clips = split_by_source(discover_clips(tiny_data))
    expect = np.mean([audio_info(c.path).duration_s * 16000 for c in clips if c.split == "train" and c.label == 1])
    assert selected_length_from(clips) == int(round(expect / 1000) * 1000)


def test_saved_cnn_holds_weights_only(tiny_data, tmp_path):
    """No optimizer state on disk: the file is about 4 bytes per parameter."""
    out = tmp_path / "cnn"
    r = CliRunner().invoke(app, ["train", "-b", "cnn", "-d", str(tiny_data), "-o", str(out), "-q",
                                 "--set", "cnn.selected_length=4000", "--set", "cnn.epochs=1"])
    assert r.exit_code == 0, r.output
    det = load_model(out)
    size = (out / "cnn.weights.h5").stat().st_size
    assert size < 4 * det.n_parameters() * 1.2


def test_cnn_split_leaves_out_unreadable_sources(tiny_data, tmp_path):
    """A source whose only file cannot be read is dropped before the split is drawn, so the CNN
    gets the split it gets without that file (the one the YAMNet head gets too)."""
    from yamnet_capuchin.config import Config
    from yamnet_capuchin.dataset import assign_splits, candidate_clips

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "Parsed_Not_Capuchinbird_Clips" / "broken-1.wav").write_text("not audio\n")
    out = tmp_path / "cnn"
    r = CliRunner().invoke(app, ["train", "-b", "cnn", "-d", str(data), "-o", str(out), "-q",
                                 "--set", "cnn.selected_length=4000", "--set", "cnn.epochs=1"])
    assert r.exit_code == 1 and "broken-1.wav: not a readable audio file" in r.output, r.output
    with open(out / "manifest.csv", newline="") as fh:
        got = {r["source"]: r["split"] for r in csv.DictReader(fh)}
    clean = assign_splits(candidate_clips(tiny_data, Config(), echo=lambda _: None), Config())
    assert got == {c.source: c.split for c in clean}
