"""Call sources (which clip a forest call was copied from) and the folds that hold them out.

Self-contained: distinct random 'calls' (band-limited noise bursts, each its own waveform) are
written as clips, copies of two of them are mixed into a recording with a third call that is a
copy of no clip, and the whole chain is checked: the copies are found, a held-out source's copy
is masked out of training, and check_no_leak fails on every way a held-out item could slip in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synth import SR, background, write

from yamnet_capuchin.annotations import CALL, Selection
from yamnet_capuchin.dataset import Clip, frame_pieces, selection_clips
from yamnet_capuchin.errors import YamcapError
from yamnet_capuchin.sourcecv import (Folds, assign_source_folds, check_no_leak, plan_fold, recall_by_source,
                                      training_segments)
from yamnet_capuchin.sources import (match_calls, normalised_xcorr, read_sources, source_lookup, write_sources)


def burst(seconds: float, seed: int) -> np.ndarray:
    """A call-like sound of its own: noise band-passed to 600-2500 Hz under a smooth envelope."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = sosfilt(butter(4, (600, 2500), btype="bandpass", fs=SR, output="sos"), rng.standard_normal(n))
    return (0.3 * x * np.sin(np.pi * np.arange(n) / n) ** 2).astype(np.float32)


@pytest.fixture
def world(tmp_path):
    """Clips XCA-0, XCA-1, XCB-0 (calls), N1-0, N2-0 (negatives) and rec_1 (30 s) holding a copy of
    XCA-1 at 5 s (gain 0.5), a copy of XCB-0 at 15 s and a call of no clip at 22 s; rec_2 (20 s)
    holds a copy of XCA-0 at 8 s."""
    waves = {"XCA-0": burst(2.5, 1), "XCA-1": burst(3.0, 2), "XCB-0": burst(2.0, 3)}
    clips = {n: write(tmp_path / "pos" / f"{n}.wav", w) for n, w in waves.items()}
    negs = {n: write(tmp_path / "neg" / f"{n}.wav", background(3.0, rng=np.random.default_rng(i)))
            for i, n in enumerate(["N1-0", "N2-0"])}
    rec1 = background(30.0, rng=np.random.default_rng(7), level=0.01)
    for name, at, gain in (("XCA-1", 5.0, 0.5), ("XCB-0", 15.0, 1.0)):
        w = waves[name]
        rec1[int(at * SR): int(at * SR) + w.size] += gain * w
    rec1[int(22 * SR): int(22 * SR) + 2 * SR] += burst(2.0, 99)
    rec2 = background(20.0, rng=np.random.default_rng(8), level=0.01)
    rec2[8 * SR: 8 * SR + waves["XCA-0"].size] += waves["XCA-0"]
    recordings = {"rec_1": write(tmp_path / "rec_1.wav", rec1), "rec_2": write(tmp_path / "rec_2.wav", rec2)}
    tables = {"rec_1": [Selection(5.1, 7.9, CALL), Selection(15.0, 17.0, CALL), Selection(22.0, 24.0, CALL),
                        Selection(10.0, 11.0, "other:bird")],
              "rec_2": [Selection(8.0, 10.5, CALL)]}
    return clips, negs, recordings, tables


def test_normalised_xcorr_is_one_at_the_copy_whatever_the_gain():
    rng = np.random.default_rng(0)
    long = rng.standard_normal(5000)
    short = long[1200:1700].copy()
    c = normalised_xcorr(3.0 * long, short)
    assert int(np.argmax(c)) == 1200 and c[1200] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.abs(c) <= 1 + 1e-9)
    assert np.all(normalised_xcorr(np.zeros(100), short[:10]) == 0)  # silence correlates with nothing


def test_copies_are_found_and_an_unmatched_call_is_its_own_source(world, tmp_path):
    clips, _, recordings, tables = world
    rows = match_calls(recordings, tables, list(clips.values()), progress=False)
    got = {(r.recording, r.begin_s): (r.source, r.clip) for r in rows}
    assert got == {("rec_1", 5.1): ("XCA", "XCA-1"), ("rec_1", 15.0): ("XCB", "XCB-0"),
                   ("rec_1", 22.0): ("rec:rec_1@22.00", ""), ("rec_2", 8.0): ("XCA", "XCA-0")}
    by = {(r.recording, r.begin_s): r for r in rows}
    assert by[("rec_1", 5.1)].peak > 0.9 and by[("rec_1", 5.1)].lag_s == pytest.approx(5.0, abs=0.01)
    assert by[("rec_1", 22.0)].peak < 0.5
    write_sources(tmp_path / "sources.csv", rows)
    assert read_sources(tmp_path / "sources.csv") == rows
    lookup = source_lookup(rows)
    assert lookup("rec_1", 5.0, 8.0) == "XCA" and lookup("rec_9", 1.0, 2.0) == "rec:rec_9@1.00"


def _setup(world):
    clips, negs, recordings, tables = world
    rows = match_calls(recordings, tables, list(clips.values()), progress=False)
    all_clips = [Clip(p, 1, n.split("-")[0]) for n, p in clips.items()] + \
        [Clip(p, 0, n.split("-")[0]) for n, p in negs.items()]
    families = {"rec_1": "fam1", "rec_2": "fam2"}
    segments = {s: selection_clips(recordings[s], tables[s], f"rec:{families[s]}", True, 3.0, 0.5,
                                   30.0 if s == "rec_1" else 20.0, (0.96, 0.48)) for s in tables}
    return rows, all_clips, families, segments, tables


def test_a_held_out_source_leaves_training_with_its_copies(world):
    rows, clips, families, segments, tables = _setup(world)
    folds = Folds(source={"XCA": 0, "XCB": 1, "rec:rec_1@22.00": 1}, negative={"N1": 0, "N2": 1},
                  family={"fam1": 1, "fam2": 0}, n=2)
    plan = plan_fold((0,), folds, clips, tables, families, rows)
    assert {c.path.stem for c in plan.train_clips} == {"XCB-0", "N2-0"}
    assert plan.train_recordings == ["rec_1"]  # rec_2's family is held out
    assert plan.masked == {"rec_1": [(5.1, 7.9)]}  # the copy of XCA-1 in a training recording
    kept = training_segments(plan, segments)
    check_no_leak(plan, kept, segments, tables, families, rows)
    spans = [(segments["rec_1"][i].start_s, segments["rec_1"][i].end_s) for i in kept["rec_1"]]
    assert not any(a < 7.9 and 5.1 < b for a, b in spans)
    # the other calls of rec_1 (XCB's copy, the unmatched one) still train, frame by frame
    positives = [(segments["rec_1"][i].start_s) for i in kept["rec_1"] if segments["rec_1"][i].label == 1]
    assert len(positives) == len(frame_pieces(15.0, 17.0, 0.96, 0.48)) + len(frame_pieces(22.0, 24.0, 0.96, 0.48))


@pytest.mark.parametrize("leak", ["held-out clip", "held-out negative", "copy left in", "held-out family"])
def test_check_no_leak_fails_on_every_leak(world, leak):
    rows, clips, families, segments, tables = _setup(world)
    folds = Folds(source={"XCA": 0, "XCB": 1, "rec:rec_1@22.00": 1}, negative={"N1": 0, "N2": 1},
                  family={"fam1": 1, "fam2": 0}, n=2)
    plan = plan_fold((0,), folds, clips, tables, families, rows)
    kept = training_segments(plan, segments)
    if leak == "held-out clip":
        plan.train_clips.append(next(c for c in clips if c.path.stem == "XCA-1"))
    elif leak == "held-out negative":
        plan.train_clips.append(next(c for c in clips if c.path.stem == "N1-0"))
    elif leak == "copy left in":
        kept = {s: list(range(len(segments[s]))) for s in plan.train_recordings}  # nothing masked
    else:
        kept = dict(kept, rec_2=list(range(len(segments["rec_2"]))))
    with pytest.raises(YamcapError, match=r"fold \(0,\)"):
        check_no_leak(plan, kept, segments, tables, families, rows)


def test_source_folds_keep_units_whole_and_use_every_fold(world):
    rows, clips, families, segments, tables = _setup(world)
    extra = [Clip(Path(f"/x/XC{i}-0.wav"), 1, f"XC{i}") for i in range(4)] + \
        [Clip(Path(f"/x/M{i}-0.wav"), 0, f"M{i}") for i in range(4)]
    folds = assign_source_folds(clips + extra, rows, families, tables, 2, seed=0)
    assert set(folds.source) == {"XCA", "XCB", "XC0", "XC1", "XC2", "XC3", "rec:rec_1@22.00"}
    assert set(folds.source.values()) == {0, 1} and set(folds.negative.values()) == {0, 1}
    assert set(folds.family) == {"fam1", "fam2"} and set(folds.family.values()) == {0, 1}
    with pytest.raises(YamcapError, match="cannot fill 3 folds"):
        assign_source_folds(clips, rows, families, tables, 3, seed=0)


def test_recall_by_source():
    sets = {"s1": (Path("s1.flac"), [(1.0, 3.0, "XCA"), (10.0, 12.0, "XCB")]),
            "s2": (Path("s2.flac"), [(5.0, 7.0, "XCA")])}
    pred = {"s1": [(1.1, 3.0)], "s2": [(20.0, 21.0)]}
    assert recall_by_source(sets, pred) == {"XCA": {"calls": 2, "found": 1, "recall": 0.5},
                                           "XCB": {"calls": 1, "found": 0, "recall": 0.0}}


def test_source_weights_give_each_source_the_same_total():
    from yamnet_capuchin.sourcecv import source_weights

    w = source_weights(["A", "A", "A", "B", None, None], [1, 1, 1, 1, 1, 1])
    assert w[:3].sum() == pytest.approx(w[3]) and w[:4].sum() == pytest.approx(4.0)
    assert list(w[4:]) == [1.0, 1.0]
    w = source_weights(["A", "B", "B"], [0.2, 1.0, 1.0])  # a down-weighted forest frame still counts
    assert w[0] == pytest.approx(w[1:].sum()) and w.sum() == pytest.approx(2.2)


def test_every_fold_gets_a_call_free_background_where_there_are_enough():
    from yamnet_capuchin.sourcecv import spread_call_free

    tables = {"a": [Selection(1, 2, CALL)], "b": [Selection(1, 2, CALL)], "c": [], "d": [], "e": []}
    families = {s: s for s in tables}
    moved = spread_call_free({"a": 0, "b": 1, "c": 2, "d": 2, "e": 2}, tables, families)
    assert moved["a"] == 0 and moved["b"] == 1  # families with calls stay
    assert {k for f, k in moved.items() if f in "cde"} == {0, 1, 2}


def test_cli_names_each_unreadable_recording_and_writes_no_partial_table(world, tmp_path):
    from typer.testing import CliRunner

    from yamnet_capuchin.annotations import write_table
    from yamnet_capuchin.cli import app

    clips, negs, recordings, tables = world
    data = tmp_path / "data"
    for folder, files in (("Parsed_Capuchinbird_Clips", clips), ("Parsed_Not_Capuchinbird_Clips", negs)):
        (data / folder).mkdir(parents=True)
        for p in files.values():
            (data / folder / p.name).write_bytes(p.read_bytes())
    ann, audio = tmp_path / "ann", tmp_path / "audio"
    audio.mkdir()
    for stem, sel in tables.items():
        write_table(ann / f"{stem}.Table.1.selections.txt", sel)
        (audio / f"{stem}.wav").write_bytes(recordings[stem].read_bytes())
    args = ["sources", str(ann), "--data", str(data), "--audio", str(audio), "-q"]
    (audio / "rec_2.wav").write_bytes(b"")  # an empty file
    write_table(ann / "rec_3.Table.1.selections.txt", [Selection(1.0, 2.0, CALL)])
    (audio / "rec_3.wav").write_text("not audio")  # a text file named .wav
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "rec_2.wav: empty file" in result.output and "rec_3.wav: not a readable audio file" in result.output
    assert not (ann / "sources.csv").exists()
    (audio / "rec_2.wav").write_bytes(recordings["rec_2"].read_bytes())
    (ann / "rec_3.Table.1.selections.txt").unlink()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {r.source for r in read_sources(ann / "sources.csv")} == {"XCA", "XCB", "rec:rec_1@22.00"}
