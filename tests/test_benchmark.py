import pytest
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


def test_cold_count_times_a_whole_count_process(tmp_path, tiny_yamnet, monkeypatch):
    """The headline figure: `yamcap count` in a fresh process, start-up included, in the report."""
    from test_reliability import random_head
    from yamnet_capuchin.backbones import YamnetBackbone
    from yamnet_capuchin.benchmark import cold_count
    from yamnet_capuchin.config import Config
    from yamnet_capuchin.model import YamnetDetector

    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    model = tmp_path / "model"
    YamnetDetector(random_head(), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet))).save(model)
    files = [write(tmp_path / f"{i}.wav", soundscape(5.0, [1.0]), sr=16000) for i in range(2)]
    cold = cold_count(files, ["--model", str(model)])
    assert cold["files"] == 2 and cold["audio_s"] == 10.0 and cold["rtf"] == 10.0 / cold["wall_s"]
    loaded = {"files": 2, "audio_s": 10.0, "wall_s": 0.1, "rtf": 100.0}
    stages = {k: 1000.0 for k in ("decode", "resample", "embed_forward", "head", "events")}
    md = render_markdown({"date": "2026-01-01", "machine": machine_info(), "files": 2, "floor": decode_floor(files),
                          "runtimes": {"tiny": {"cold": cold, "end_to_end": loaded, "files_scaling": [loaded],
                                                "per_stage": {"rtf_by_stage": stages},
                                                "threads": {"1": loaded, "2": loaded}}}})
    assert f"| tiny | **{cold['rtf']:.0f}x** ({cold['wall_s']:.1f} s) |" in md
    with pytest.raises(RuntimeError, match="yamcap count failed"):
        cold_count([tmp_path / "missing.wav"], ["--model", str(model)])
