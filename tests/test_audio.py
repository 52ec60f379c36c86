import numpy as np
import pytest
import soundfile as sf

from synth import SR, call, tfio_loads, write
from yamnet_capuchin.audio import SAMPLE_RATE, audio_info, iter_blocks, load_audio
from yamnet_capuchin.errors import AudioError, YamcapError


@pytest.mark.parametrize("ext,fmt", [("wav", None), ("flac", None), ("ogg", None), ("mp3", None)])
def test_decodes_formats_to_16k_mono(tmp_path, ext, fmt):
    wave = call(2.0, sr=48000)
    path = write(tmp_path / f"c.{ext}", wave, sr=48000, channels=2, fmt=fmt)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    # MP3/OGG encoders pad a little; lengths agree within 0.1 s
    assert abs(out.size - 2.0 * SAMPLE_RATE) < 0.1 * SAMPLE_RATE
    assert np.abs(out).max() <= 1.0


def test_downmix_is_channel_mean(tmp_path):
    left = np.full(SR, 0.5, np.float32)
    right = np.full(SR, -0.1, np.float32)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], 1), SR, subtype="FLOAT")
    out = load_audio(path)
    assert np.allclose(out, 0.2, atol=1e-6)


def test_resample_keeps_frequency(tmp_path):
    t = np.arange(44100) / 44100
    path = write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr=44100)
    out = load_audio(path)
    assert out.size == SAMPLE_RATE
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / out.size
    assert abs(peak_hz - 1000) <= 1


def test_info(tmp_path):
    path = write(tmp_path / "a.flac", call(1.5, sr=44100), sr=44100, channels=2)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration_s == pytest.approx(1.5, abs=1e-3)


@pytest.mark.parametrize("block,overlap", [(16000, 0), (15600, 7920), (50000, 7920), (10**7, 100)])
def test_blocks_rebuild_whole_file(tmp_path, block, overlap):
    rng = np.random.default_rng(0)
    path = write(tmp_path / "n.wav", (0.1 * rng.standard_normal(48000 * 7)).astype(np.float32), sr=48000)
    whole = load_audio(path)
    blocks = list(iter_blocks(path, block, overlap))
    assert [b.is_last for b in blocks] == [False] * (len(blocks) - 1) + [True]
    assert all(b.start == i * (block - overlap) for i, b in enumerate(blocks))
    rebuilt = np.concatenate([blocks[0].samples] + [b.samples[overlap:] for b in blocks[1:]])
    assert np.array_equal(rebuilt, whole)


def _bad_files(tmp_path):
    good = write(tmp_path / "good.mp3", call(3.0, sr=48000), sr=48000)
    data = good.read_bytes()
    (tmp_path / "truncated.mp3").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 20)
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR)
    nan = np.ones(SR, np.float32)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    return {
        "truncated.mp3": "truncated", "empty.wav": "empty file", "text.wav": "not a readable audio file",
        "zero.wav": "no audio samples", "nan.wav": "NaN", "missing.wav": "not found",
    }


def test_bad_inputs_raise_one_error_type_naming_file_and_reason(tmp_path):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load_audio(tmp_path / name)
        message = str(info.value)
        assert name in message and reason in message, message
        assert "\n" not in message


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


@pytest.mark.skipif(not tfio_loads(), reason="tensorflow-io does not load here (it needs TensorFlow <= 2.17)")
@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_U8"), ("wav", "FLOAT"),
                                         ("flac", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"), ("mp3", None)])
def test_tfio_backend_matches_soundfile_up_to_its_delay(tmp_path, ext, subtype):
    """Same level and shape as the default backend; tensorflow-io's resampler delays by ~2 ms."""
    wave = call(2.0, sr=44100)
    path = write(tmp_path / f"c.{ext}", wave, sr=44100, channels=2, subtype=subtype)
    ref, got = load_audio(path), load_audio(path, backend="tfio")
    assert abs(got.size - ref.size) < 0.1 * SAMPLE_RATE
    n = min(ref.size, got.size) - 64
    lag = max(range(-64, 65), key=lambda k: float(np.dot(ref[64:n], got[64 + k: n + k])))
    assert 16 <= lag <= 48  # ~2 ms at 16 kHz
    assert np.corrcoef(ref[64:n], got[64 + lag: n + lag])[0, 1] > 0.99
    assert 0.95 < got.std() / ref.std() < 1.05  # integer PCM scaled to [-1, 1], not left at +-32768


def test_tfio_backend_errors_clearly_when_unavailable(tmp_path):
    pytest.importorskip("tensorflow")
    if tfio_loads():
        pytest.skip("tensorflow-io loads here")
    path = write(tmp_path / "a.wav", call(1.0))
    with pytest.raises(YamcapError, match="tensorflow-io"):
        load_audio(path, backend="tfio")
