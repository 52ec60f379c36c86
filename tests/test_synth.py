import csv
import hashlib

import numpy as np
import pytest
import soundfile as sf

from synth import SR, background, call, other, write
from yamnet_capuchin.synth import SynthParams, read_truth, select_sources, synthesize


@pytest.fixture()
def sources(tmp_path):
    rng = np.random.default_rng(0)
    calls = [write(tmp_path / "calls" / f"XC1-{k}.wav", call(2.0 + 0.5 * k), sr=44100 if k % 2 else 16000) for k in range(4)]
    negs = [write(tmp_path / "negs" / f"n-{k}.flac", other(2.0, rng=rng)) for k in range(3)]
    bgs = [write(tmp_path / "bg" / "recording_01.flac", background(40.0, sr=48000, rng=rng), sr=48000, channels=2)]
    return calls, negs, bgs


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_output(sources, tmp_path):
    p = SynthParams(n_files=3, seed=5, duration_s=30.0, calls_min=2, calls_max=5)
    synthesize(*sources, tmp_path / "a", p, progress=False)
    synthesize(*sources, tmp_path / "b", p, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    synthesize(*sources, tmp_path / "c", SynthParams(n_files=3, seed=6, duration_s=30.0, calls_min=2, calls_max=5),
               progress=False)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize("density", ["sparse", "dense", "mixed"])
def test_truth_layout_no_overlap_and_format(sources, tmp_path, density):
    p = SynthParams(n_files=4, seed=1, duration_s=30.0, calls_min=0, calls_max=6, density=density)
    events = synthesize(*sources, tmp_path / "s", p, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "s" / "truth.csv")))
    assert list(rows[0]) == ["file", "start_s", "end_s", "source_clip", "snr_db"]
    truth = read_truth(tmp_path / "s" / "truth.csv")
    assert sorted(truth) == [f"soundscape_{i:03d}.flac" for i in range(4)]
    for name, spans in truth.items():
        spans = sorted(spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert all(0 <= s and e <= 30.0 for s, e in spans)
        info = sf.info(str(tmp_path / "s" / name))
        assert (info.samplerate, info.channels) == (48000, 2) and info.duration == pytest.approx(30.0)
        table = (tmp_path / "s" / f"{name[:-5]}.Table.1.selections.txt").read_text().splitlines()
        assert len(table) == 1 + len(spans)
    snrs = [e.snr_db for e in events if e.start_s == e.start_s]
    assert all(-3.0 <= s <= 15.0 for s in snrs)
    if density == "dense":
        gaps = [b[0] - a[1] for spans in truth.values() for a, b in zip(sorted(spans), sorted(spans)[1:])]
        assert gaps and min(gaps) < 2.1


def test_snr_is_measured_against_the_local_background(sources, tmp_path):
    """Recover the mixed call from the difference with the background and check its SNR."""
    calls, negs, _ = sources
    # a background exactly as long as the soundscape, so the excerpt starts at 0
    bgs = [write(tmp_path / "bg30" / "recording_05.flac", background(30.0, sr=48000), sr=48000, channels=2)]
    p = SynthParams(n_files=1, seed=3, duration_s=30.0, calls_min=1, calls_max=1, distractors_max=0,
                    snr_db_min=6.0, snr_db_max=6.0)
    (event,) = synthesize(calls, negs, bgs, tmp_path / "s", p, progress=False)
    mix, rate = sf.read(str(tmp_path / "s" / "soundscape_000.flac"), dtype="float32")
    bg, _ = sf.read(str(bgs[0]), dtype="float32")
    offset = 0
    a, b = int(event.start_s * rate), int(event.end_s * rate)
    added = mix[a:b, 0] - bg[offset + a: offset + b, 0]
    local = bg[offset + a: offset + b].mean(axis=1)
    snr = 20 * np.log10(np.sqrt(np.mean(added ** 2)) / np.sqrt(np.mean(local ** 2)))
    assert snr == pytest.approx(6.0, abs=0.3)  # 16-bit FLAC quantisation


def test_manifest_hygiene(sources, tmp_path):
    calls, negs, bgs = sources
    write(tmp_path / "bg" / "recording_02.flac", background(5.0))
    m = tmp_path / "manifest.csv"
    m.write_text("path,label,source,split,start_s,end_s\n"
                 f"{calls[0]},1,XC1,train,0,0\n{calls[1]},1,XC1,test,0,0\n{negs[0]},0,n,test,0,0\n"
                 f"{bgs[0]},0,background:recording_01,train,0.0,3.0\n")
    listing = tmp_path / "bgs.txt"
    listing.write_text("recording_01\nrecording_02\n")
    c, n, b = select_sources(tmp_path / "calls", tmp_path / "negs", tmp_path / "bg", manifest=m, splits=["test"],
                             background_list=listing, echo=lambda s: None)
    assert [p.name for p in c] == [calls[1].name] and [p.name for p in n] == [negs[0].name]
    assert [p.name for p in b] == ["recording_02.flac"]  # recording_01 was used in training
    c, n, b = select_sources(tmp_path / "calls", tmp_path / "negs", tmp_path / "bg", manifest=m, splits=["train"],
                             background_list=listing, echo=lambda s: None)
    assert [p.name for p in c] == [calls[0].name] and [p.name for p in b] == ["recording_01.flac"]


def test_annotations_pick_backgrounds_and_add_cut_calls(tmp_path):
    from yamnet_capuchin.annotations import Selection, write_table
    from yamnet_capuchin.synth import CallSegment

    clips, forest, ann = tmp_path / "clips", tmp_path / "forest", tmp_path / "ann"
    write(clips / "XC1-0.wav", call(2.5))
    rec = background(30.0)
    rec[SR * 10: SR * 10 + call(3.0).size] += call(3.0)
    write(forest / "with_call.wav", rec)
    write(forest / "quiet.wav", background(30.0))
    write(forest / "doubtful.wav", background(30.0))
    write(forest / "unlooked.wav", background(30.0))
    write_table(ann / "with_call.Table.1.selections.txt", [Selection(10.0, 13.0, "capuchin")])
    write_table(ann / "quiet.Table.1.selections.txt", [Selection(2.0, 3.0, "other:insect")])
    write_table(ann / "doubtful.Table.1.selections.txt", [Selection(5.0, 7.0, "unsure")])
    calls, _, backgrounds = select_sources(clips, None, forest, annotations=ann, echo=lambda m: None)
    assert [p.name for p in backgrounds] == ["quiet.wav"]  # annotated call-free only; no model was run
    cut = [c for c in calls if isinstance(c, CallSegment)]
    assert [(c.path.name, c.start_s, c.end_s) for c in cut] == [("with_call.wav", 10.0, 13.0)]
    truth = synthesize(calls, [], backgrounds, tmp_path / "out",
                       SynthParams(n_files=3, seed=1, duration_s=20.0, calls_min=4, calls_max=4), progress=False)
    sources = {e.source_clip for e in truth}
    assert "with_call.wav@10.00-13.00" in sources and "XC1-0.wav" in sources
    cut_events = [e for e in truth if e.source_clip.startswith("with_call")]
    assert all(abs((e.end_s - e.start_s) - 3.0) < 0.01 for e in cut_events)  # the whole annotated call
