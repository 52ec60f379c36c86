import soundfile as sf

from synth import soundscape, write
from yamnet_capuchin.benchmark import decode_floor, machine_info, machine_slug, render_markdown, write_long_wav


def test_long_wav_is_streamed_to_disk_with_the_right_length(tmp_path):
    path = write_long_wav(tmp_path / "l.wav", 150)
    info = sf.info(str(path))
    assert info.samplerate == 16000 and info.frames == 150 * 16000


def test_floor_and_report(tmp_path):
    files = [write(tmp_path / f"{i}.flac", soundscape(5.0, []), sr=16000) for i in range(2)]
    floor = decode_floor(files)
    assert floor["audio_s"] == 10.0 and floor["floor_rtf"] > 1
    info = machine_info()
    assert info["cores"] >= 1 and machine_slug(info).startswith(f"{info['cores']}core-")
    md = render_markdown({"date": "2026-01-01", "machine": info, "files": 2, "floor": floor, "runtimes": {}})
    assert "decode + resample only (floor)" in md
