import numpy as np
import pytest

from synth import call
from yamnet_capuchin.backbones import Frames, YamnetBackbone, check_compatible, patch_means, yamnet_frame_count
from yamnet_capuchin.cache import EmbeddingCache
from yamnet_capuchin.errors import ModelError


@pytest.mark.parametrize("n,frames", [(0, 1), (15600, 1), (15601, 2), (23280, 2), (23281, 3), (2880667, 375)])
def test_frame_count(n, frames):
    assert yamnet_frame_count(n) == frames


def test_hub_loading_path_and_frames(tiny_yamnet):
    bb = YamnetBackbone(str(tiny_yamnet))
    assert bb.runtime == "savedmodel"
    wave = np.concatenate([call(2.0), np.zeros(8000, np.float32)])
    frames = bb.embed(wave)
    assert len(frames) == yamnet_frame_count(wave.size)
    assert frames.embeddings.shape == (len(frames), 1024)
    assert frames.class_scores.shape == (len(frames), 521)
    assert frames.mel_profile.shape == (len(frames), 64) and np.isfinite(frames.mel_profile).all()
    assert np.allclose(frames.start_s, np.arange(len(frames)) * 0.48)
    assert len(bb.class_names()) == 521


def test_env_var_selects_the_handle(tiny_yamnet, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    assert YamnetBackbone().handle == str(tiny_yamnet)
    monkeypatch.delenv("YAMCAP_YAMNET")
    assert YamnetBackbone().handle == "https://tfhub.dev/google/yamnet/1"


def test_unloadable_handle_names_the_env_var(tmp_path):
    with pytest.raises(ModelError, match="YAMCAP_YAMNET"):
        YamnetBackbone(str(tmp_path / "nowhere")).load()
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelError, match="YAMCAP_YAMNET"):
        YamnetBackbone(str(tmp_path / "junk")).load()
    with pytest.raises(ModelError, match="tflite"):
        YamnetBackbone(str(tmp_path / "junk"), runtime="tflite")


def test_compatibility_rules():
    base = {"name": "yamnet", "version": "1", "runtime": "savedmodel", "fingerprint": "a", "handle": "x"}
    assert check_compatible(base, dict(base)) == []
    assert "runtime" in check_compatible(base, {**base, "runtime": "tflite", "fingerprint": "b"})[0]
    with pytest.raises(ModelError, match="version"):
        check_compatible(base, {**base, "version": "2"})
    with pytest.raises(ModelError, match="backbone"):
        check_compatible(base, {**base, "name": "cnn"})


def test_compatibility_of_tflite_kernels():
    lite = {"name": "yamnet", "version": "1", "runtime": "tflite", "fingerprint": "a", "handle": "y.tflite"}
    xnn, ref = {**lite, "tflite_kernels": "xnnpack"}, {**lite, "tflite_kernels": "reference"}
    assert check_compatible(xnn, dict(xnn)) == [] and check_compatible(lite, ref) == []  # unrecorded: no claim
    (note,) = check_compatible(xnn, ref)
    assert "xnnpack kernels, now reference kernels" in note
    saved = {**lite, "runtime": "savedmodel", "fingerprint": "b"}
    (note,) = check_compatible(saved, ref)
    assert "runtime" in note and "reference kernels" in note
    assert "reference" not in check_compatible(saved, xnn)[0]


def test_cache_roundtrip(tiny_yamnet, tmp_path):
    bb = YamnetBackbone(str(tiny_yamnet))
    frames = bb.embed(call(2.0))
    cache = EmbeddingCache(tmp_path / "c")
    key = cache.key("abc", bb.identity(), {"backend": "soundfile"})
    assert cache.get(key) is None
    cache.put(key, frames)
    again = cache.get(key)
    assert np.array_equal(again.embeddings, frames.embeddings) and cache.hits == 1
    assert np.array_equal(again.mel_profile, frames.mel_profile) and again.mel_profile.shape[1] == 64
    assert key != cache.key("abc", {**bb.identity(), "runtime": "tflite"}, {"backend": "soundfile"})
    assert key != cache.key("abc", bb.identity(), {"backend": "tfio"})


def test_parameter_count_of_the_loaded_savedmodel(tiny_yamnet):
    # the stand-in's only weights: a 32 x 1024 projection
    assert YamnetBackbone(str(tiny_yamnet)).n_parameters() == 32 * 1024


def test_patch_means_are_the_mean_of_each_frames_96_rows():
    rng = np.random.default_rng(0)
    for n_frames in (1, 2, 7):
        log_mel = rng.standard_normal(((n_frames - 1) * 48 + 96, 64)).astype(np.float32)
        want = np.stack([log_mel[48 * i: 48 * i + 96].mean(axis=0) for i in range(n_frames)])
        assert np.allclose(patch_means(log_mel, n_frames), want, atol=1e-6)
    assert patch_means(np.zeros((10, 64)), 1).shape == (1, 0)  # too few rows: no profile


def test_frames_select_keeps_every_field_and_shifts_times():
    f = Frames(np.arange(4) * 0.48, np.ones((4, 3)), np.zeros((4, 2)), np.arange(8.0).reshape(4, 2))
    s = f.select(np.array([False, True, True, False]), shift_s=0.48)
    assert np.allclose(s.start_s, [0.0, 0.48]) and s.mel_profile.tolist() == [[2, 3], [4, 5]]
    assert Frames(np.zeros(2), np.ones((2, 3)), np.zeros((2, 0))).mel_profile.shape == (2, 0)


def test_cache_entry_without_mel_profile_is_a_miss(tmp_path):
    """Entries written before frames carried the log-mel profile are recomputed, not misread."""
    cache = EmbeddingCache(tmp_path / "c")
    key = cache.key("abc", {"name": "yamnet"}, {"backend": "soundfile"})
    path = cache._path(key)
    path.parent.mkdir(parents=True)
    np.savez(path, start_s=np.zeros(1), embeddings=np.ones((1, 4)), class_scores=np.zeros((1, 2)))
    assert cache.get(key) is None and cache.misses == 1


def shared_tflite():
    from conftest import shared_path

    path = shared_path("YAMCAP_YAMNET_TFLITE", "shared/models/yamnet.tflite")
    if path is None:
        pytest.skip("needs ../shared/models/yamnet.tflite (YAMNet TFLite)")
    return path


@pytest.mark.realdata
def test_tflite_tensors_hook_rides_along_and_keys_the_cache(tmp_path):
    """Internal TFLite tensors come back per frame in Frames.extra through the public hook, and
    frames with them are cached apart from frames without them."""
    tflite = shared_tflite()
    from yamnet_capuchin.backbones import TFLITE_EMBEDDING_TENSOR
    from yamnet_capuchin.cache import EmbeddingCache

    plain = YamnetBackbone(str(tflite), runtime="tflite")
    hooked = YamnetBackbone(str(tflite), runtime="tflite", tflite_tensors={"emb": TFLITE_EMBEDDING_TENSOR})
    wave = np.random.default_rng(0).uniform(-0.1, 0.1, 16000 * 3).astype(np.float32)
    frames = hooked.embed(wave)
    assert frames.extra["emb"].shape == frames.embeddings.shape
    assert np.array_equal(frames.extra["emb"], frames.embeddings)  # the same tensor, read twice
    assert plain.embed(wave).extra == {}
    kept = frames.select(np.array([0, 2]))
    assert np.array_equal(kept.extra["emb"], frames.extra["emb"][[0, 2]])
    cache = EmbeddingCache(tmp_path)
    k_plain = cache.key("sha", plain.identity(), {})
    k_hooked = cache.key("sha", hooked.identity(), {})
    assert k_plain != k_hooked
    cache.put(k_hooked, frames)
    assert np.array_equal(cache.get(k_hooked).extra["emb"], frames.extra["emb"])
    with pytest.raises(ModelError, match="no tensor 'nope'"):
        YamnetBackbone(str(tflite), runtime="tflite", tflite_tensors={"x": "nope"}).load()
    with pytest.raises(ModelError, match="TFLite runtime"):
        YamnetBackbone("some/savedmodel", runtime="savedmodel", tflite_tensors={"x": "y"})
