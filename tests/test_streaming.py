import numpy as np
import pytest

from synth import soundscape, write
from yamnet_capuchin.audio import load_audio
from yamnet_capuchin.backbones import YamnetBackbone
from yamnet_capuchin.config import Config
from yamnet_capuchin.head import FrameHead
from yamnet_capuchin.model import YamnetDetector
from yamnet_capuchin.streaming import stream_frame_scores


def random_head(dim=1024, hidden=16, seed=0, context=0, inputs="embeddings"):
    rng = np.random.default_rng(seed)
    head = FrameHead(hidden_units=hidden, pooling="max", context=context, inputs=inputs)
    width = dim * (2 if context else 1)
    head.weights_ = {"w1": rng.standard_normal((width, hidden)).astype(np.float32) * 0.05,
                     "b1": np.zeros(hidden, np.float32),
                     "w2": rng.standard_normal(hidden).astype(np.float32), "b2": np.zeros(1, np.float32)}
    return head


@pytest.fixture(scope="module")
def detector(tiny_yamnet):
    return YamnetDetector(random_head(), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet)))


@pytest.mark.parametrize("seconds", [61.3, 20.0, 0.5, 7.68 * 3 + 0.495])
@pytest.mark.parametrize("block_seconds", [5.0, 7.7, 1000.0])
def test_blockwise_equals_whole_file(detector, tmp_path, seconds, block_seconds):
    path = write(tmp_path / "s.wav", soundscape(seconds, [1.0]) if seconds > 4 else soundscape(seconds, []))
    whole_t, whole_s = detector.frame_scores(load_audio(path))
    fs = stream_frame_scores(detector, path, block_seconds=block_seconds)
    assert np.array_equal(fs.start_s, whole_t)
    assert np.allclose(fs.scores, whole_s, rtol=0, atol=1e-6)
    assert fs.duration_s == pytest.approx(seconds, abs=1e-3)


@pytest.mark.parametrize("context", [1, 2])
@pytest.mark.parametrize("seconds", [61.3, 0.5, 7.68 * 3 + 0.495])
def test_blockwise_equals_whole_file_with_context(tiny_yamnet, tmp_path, seconds, context):
    """Scores that depend on neighbouring frames: blocks overlap by the context, so a frame at a
    block edge sees the same neighbours as in a whole-file pass."""
    det = YamnetDetector(random_head(context=context), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet)))
    path = write(tmp_path / "s.wav", soundscape(seconds, [1.0, 30.0]) if seconds > 4 else soundscape(seconds, []))
    whole_t, whole_s = det.frame_scores(load_audio(path))
    for block_seconds in (1.0, 5.0, 7.7):
        fs = stream_frame_scores(det, path, block_seconds=block_seconds)
        assert np.array_equal(fs.start_s, whole_t)
        # float noise between block and whole-file embeddings is ~2e-6; edge frames that
        # missed a neighbour would be off by ~1e-2
        assert np.allclose(fs.scores, whole_s, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seconds", [61.3, 7.68 * 3 + 0.495])
def test_blockwise_equals_whole_file_with_spectral_shape(tiny_yamnet, tmp_path, seconds):
    """A frame's log-mel rows lie inside its own window, so blocks give the same profile."""
    head = random_head(dim=1024 + 64, inputs="embeddings+spectral_shape")
    det = YamnetDetector(head, 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet)))
    path = write(tmp_path / "s.wav", soundscape(seconds, [1.0, 30.0]) if seconds > 40 else soundscape(seconds, [1.0]))
    whole_t, whole_s = det.frame_scores(load_audio(path))
    for block_seconds in (5.0, 7.7):
        fs = stream_frame_scores(det, path, block_seconds=block_seconds)
        assert np.array_equal(fs.start_s, whole_t)
        assert np.allclose(fs.scores, whole_s, rtol=0, atol=1e-5)


@pytest.mark.parametrize("inputs", ["embeddings", "embeddings+spectral_shape"])
def test_blockwise_equals_whole_file_real_yamnet(real_yamnet, tmp_path, inputs):
    head = random_head(dim=1024 + (64 if inputs != "embeddings" else 0), inputs=inputs)
    det = YamnetDetector(head, 0.5, Config(), {}, YamnetBackbone(str(real_yamnet)))
    path = write(tmp_path / "s.flac", soundscape(95.0, [10.0, 40.0, 70.0]))
    whole_t, whole_s = det.frame_scores(load_audio(path))
    fs = stream_frame_scores(det, path, block_seconds=30.0)
    assert np.array_equal(fs.start_s, whole_t)
    assert np.allclose(fs.scores, whole_s, rtol=0, atol=1e-5)


def test_prefetch_yields_each_files_blocks_and_attributes_errors(tmp_path):
    from yamnet_capuchin.audio import iter_blocks
    from yamnet_capuchin.errors import AudioError
    from yamnet_capuchin.streaming import prefetch_blocks

    a = write(tmp_path / "a.wav", soundscape(10.0, []))
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    b = write(tmp_path / "b.wav", soundscape(7.0, []))
    seen = {}
    for path, blocks in prefetch_blocks([a, bad, b, a], 16000, 400, depth=2):
        try:
            seen.setdefault(path.name, []).append([blk.samples.copy() for blk in blocks])
        except AudioError as exc:
            seen.setdefault(path.name, []).append(str(exc))
    assert "not a readable audio file" in seen["bad.wav"][0]
    for name, path in (("a.wav", a), ("b.wav", b)):
        expect = [blk.samples for blk in iter_blocks(path, 16000, 400)]
        got = seen[name][0]
        assert len(got) == len(expect) and all(np.array_equal(x, y) for x, y in zip(got, expect))
    assert len(seen["a.wav"]) == 2


def test_prefetch_discards_unread_blocks(tmp_path):
    from yamnet_capuchin.streaming import prefetch_blocks

    a = write(tmp_path / "a.wav", soundscape(10.0, []))
    b = write(tmp_path / "b.wav", soundscape(5.0, []))
    out = []
    for path, blocks in prefetch_blocks([a, b], 16000, 0, depth=1):
        first = next(iter(blocks))  # read one block only
        out.append((path.name, first.start))
    assert out == [("a.wav", 0), ("b.wav", 0)]


@pytest.mark.parametrize("block_seconds", [3.0, 11.1])
def test_stream_frame_values_gives_whole_file_rows(detector, tmp_path, block_seconds):
    """Any per-frame values (here score and a second column) come out as from a whole-file pass."""
    from yamnet_capuchin.streaming import stream_frame_values

    path = write(tmp_path / "s.wav", soundscape(40.0, [3.0, 20.0]))
    wave = load_audio(path)

    def values(w):
        s = detector.frame_scores(w)[1]
        return np.stack([s, 1.0 - s], axis=1)

    rows, total = stream_frame_values(detector, path, values, block_seconds)
    assert total == wave.size and rows.shape == (detector.frame_count(wave.size), 2)
    assert np.allclose(rows, values(wave), rtol=0, atol=1e-6)


def test_nan_is_located_exactly_while_streaming(detector, tmp_path):
    """The first non-finite sample is named to the sample, not the 16 s read block it lies in."""
    import soundfile as sf

    from yamnet_capuchin.errors import AudioError

    x = np.zeros(16000 * 40, np.float32)
    x[16000 * 33 + 7] = np.inf
    sf.write(tmp_path / "n.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"first at 33\.000 s, sample 528007"):
        stream_frame_scores(detector, tmp_path / "n.wav", block_seconds=5.0)


@pytest.mark.parametrize("seconds", [61.3, 0.5])
def test_count_plots_draw_the_samples_decoded_for_scoring(detector, tmp_path, monkeypatch, seconds):
    """`count --plots` decodes each file once: the plot gets the blocks' samples, which joined
    are exactly the file's waveform."""
    from yamnet_capuchin import audio, count
    from yamnet_capuchin.streaming import block_layout, prefetch_blocks

    path = write(tmp_path / "s.wav", soundscape(seconds, [1.0]) if seconds > 4 else soundscape(seconds, []))
    cfg = Config()
    cfg.audio.block_seconds = 5.0
    _, block_samples, overlap = block_layout(detector, cfg.audio.block_seconds)
    pieces = []
    for _, blocks in prefetch_blocks([path], block_samples, overlap):
        list(count.kept_samples(blocks, pieces))
    assert np.array_equal(np.concatenate(pieces), load_audio(path))

    drawn, loads = [], []
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: loads.append(a) or load_audio(*a, **k))
    monkeypatch.setattr("yamnet_capuchin.plots.detection_plot", lambda *a, wave=None, **k: drawn.append(wave))
    run = count.count_files(detector, [path], tmp_path / "out", cfg, plots=True, progress=False, echo=lambda *_: None)
    assert len(run.results) == 1 and loads == []  # scored from the prefetched blocks, plotted from them
    assert np.array_equal(drawn[0], load_audio(path))
