"""Annotation tables, recording families, segments from annotations and scoring against them."""

from pathlib import Path

import numpy as np
import pytest

from synth import SR, background, call, write
from yamnet_capuchin.annotations import (
    Selection, check_label, format_table, read_folder, read_table, stem_of_table, upsert, write_table,
)
from yamnet_capuchin.dataset import annotated_clips, selection_clips, split_by_source
from yamnet_capuchin.errors import YamcapError
from yamnet_capuchin.metrics import score_annotated
from yamnet_capuchin.families import (
    Similarity, aligned_correlation, background_profile, family_folds, group_families, read_families, similarity,
    write_families,
)

SELS = [Selection(2.4, 6.3, "capuchin", 350, 1800), Selection(34.0, 35.1, "other:harmonic-bird", 800, 3500, "every 5 s"),
        Selection(90.0, 93.0, "unsure", 400, 1500, "faint\tvery")]


def test_table_round_trip_keeps_labels_times_and_notes(tmp_path):
    path = tmp_path / "rec.Table.1.selections.txt"
    write_table(path, list(reversed(SELS)))
    back = read_table(path)
    assert [s.label for s in back] == ["capuchin", "other:harmonic-bird", "unsure"]
    assert back[0].begin_s == 2.4 and back[0].end_s == 6.3 and back[0].low_hz == 350 and back[0].high_hz == 1800
    assert back[2].note == "faint very"  # a tab inside a note cannot break the table
    header = path.read_text().splitlines()[0].split("\t")
    assert header[3:5] == ["Begin Time (s)", "End Time (s)"] and "Annotation" in header


def test_empty_table_means_annotated_with_nothing(tmp_path):
    path = tmp_path / "quiet.Table.1.selections.txt"
    write_table(path, [])
    assert read_table(path) == [] and read_folder(tmp_path) == {"quiet": []}


@pytest.mark.parametrize("label,ok", [("capuchin", True), (" Capuchin ", True), ("unsure", True), ("other", True),
                                      ("other:harmonic-bird", True), ("other:", False), ("bird", False),
                                      ("other:Bad Kind", False), ("", False)])
def test_labels_are_checked(label, ok):
    if ok:
        assert check_label(label) == label.strip().lower()
    else:
        with pytest.raises(YamcapError):
            check_label(label)


def test_bad_tables_give_one_line_errors(tmp_path):
    bad = tmp_path / "x.Table.1.selections.txt"
    bad.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n1\t1.0\t2.0\tpigeon\n")
    with pytest.raises(YamcapError, match="line 2.*unknown label 'pigeon'"):
        read_table(bad)
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(YamcapError, match="not a Raven selection table"):
        read_table(bad)
    with pytest.raises(YamcapError, match="begin must be"):
        write_table(tmp_path / "y.txt", [Selection(3.0, 2.0, "capuchin")])


def test_plain_yamcap_tables_read_as_calls_and_views_once(tmp_path):
    p = tmp_path / "r.Table.1.selections.txt"
    p.write_text("Selection\tView\tBegin Time (s)\tEnd Time (s)\n1\tWaveform 1\t1\t2\n1\tSpectrogram 1\t1\t2\n2\tSpectrogram 1\t5\t6\n")
    assert [(s.begin_s, s.label) for s in read_table(p)] == [(1.0, "capuchin"), (5.0, "capuchin")]
    assert stem_of_table(p) == "r"


def test_upsert_replaces_the_same_span_and_keeps_others():
    out = upsert(SELS, Selection(2.5, 6.2, "other:bird"))
    assert len(out) == 3 and out[0].label == "other:bird"
    assert len(upsert(SELS, Selection(10, 12, "capuchin"))) == 4


def test_frame_pieces_are_the_frames_inside_a_call():
    from yamnet_capuchin.dataset import frame_pieces

    assert frame_pieces(4.0, 7.0, 0.975, 0.48) == [(4.32, 5.295), (4.8, 5.775), (5.28, 6.255), (5.76, 6.735)]
    assert frame_pieces(0.0, 0.96, 0.975, 0.48) == [(0.0, 0.975)]  # too short: the frame nearest its centre
    clips = selection_clips(Path("r.wav"), [Selection(4.0, 7.0, "capuchin"), Selection(9, 12, "other:bird")], "s",
                            complete=False, call_frames=(0.975, 0.48))
    assert [c.label for c in clips] == [1, 1, 1, 1, 0] and clips[-1].start_s == 9


def test_selection_clips_labels_and_unlabelled_negatives():
    sels = [Selection(10.0, 15.0, "capuchin"), Selection(30.0, 30.4, "other:insect"), Selection(50, 53, "unsure")]
    clips = selection_clips(Path("r.wav"), sels, "rec:f", complete=True, clip_s=3.0, margin_s=0.5, duration_s=60.0)
    pos = [c for c in clips if c.label == 1]
    assert [(c.start_s, c.end_s) for c in pos] == [(10.0, 15.0)]
    short = [c for c in clips if c.label == 0 and c.start_s < 30.4 and c.end_s > 30.0]
    assert short == [c for c in clips if (c.start_s, c.end_s) == (29.7, 30.7)]  # widened to 1 s, centred
    unlabelled = [c for c in clips if c.label == 0 and c not in short]
    for c in unlabelled:  # the rest keeps clear of every selection, unsure included
        assert c.end_s - c.start_s >= 1.0 - 1e-9
        for s in sels:
            assert c.end_s <= s.begin_s - 0.5 + 1e-9 or c.start_s >= s.end_s + 0.5 - 1e-9
    covered = sum(c.end_s - c.start_s for c in unlabelled)
    assert covered > 60 - 5 - 0.4 - 3 - 3 * 1.0 - 3  # nearly all free audio is used
    assert {c.source for c in clips} == {"rec:f"}
    partial = selection_clips(Path("r.wav"), sels, "rec:f", complete=False)
    assert len(partial) == 2  # only the labelled calls and others


def test_annotated_clips_group_by_family_and_split_keeps_families_together(tmp_path):
    audio, ann = tmp_path / "audio", tmp_path / "ann"
    for k in range(6):
        write(audio / f"rec{k}.wav", background(12.0), sr=SR)
        write_table(ann / f"rec{k}.Table.1.selections.txt", [Selection(2.0, 6.0, "capuchin"), Selection(8, 9, "other:bird")])
    (ann / "families.csv").write_text("recording,family\n" + "".join(f"rec{k},fam{k // 2}\n" for k in range(6)))
    write_table(ann / "ghost.Table.1.selections.txt", [])
    said = []
    clips = annotated_clips([], [ann], [audio], echo=said.append)
    assert any("ghost" in s for s in said)
    assert {c.source for c in clips} == {"rec:fam0", "rec:fam1", "rec:fam2"}
    assert sum(c.label for c in clips) == 6
    split = split_by_source(clips, (0.34, 0.33, 0.33), seed=1)
    by_family = {}
    for c in split:
        by_family.setdefault(c.source, set()).add(c.split)
    assert all(len(v) == 1 for v in by_family.values())  # no family in two splits


def test_aligned_correlation_finds_a_shared_shifted_background():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 400)).astype(np.float32)
    shifted = np.roll(base, 25, axis=1)
    c, lag = aligned_correlation(shifted, base, 60)
    assert lag == 25 and c > 0.8
    other = rng.standard_normal((8, 400)).astype(np.float32)
    assert aligned_correlation(other, base, 60)[0] < 0.3


def test_families_from_real_profiles_of_synthetic_recordings(tmp_path):
    shared = forest(np.random.default_rng(3))
    a = shared + call_at(5.0)
    b = shared + call_at(17.0)
    c = forest(np.random.default_rng(9)) + call_at(8.0)
    sim = similarity([background_profile(w) for w in (a, b, c)], ["a", "b", "c"], max_lag_s=10)
    fams = group_families(sim, 0.4)
    assert fams == {"a": "a", "b": "a", "c": "c"}
    write_families(tmp_path / "f.csv", sim, fams)
    assert read_families(tmp_path / "f.csv") == fams


def forest(rng) -> np.ndarray:
    """30 s of noise with short tones at random times and pitches: a background with a time course."""
    wave = background(30.0, rng=rng, level=0.05)
    for start in rng.uniform(0, 29, 40):
        i = int(start * SR)
        wave[i:i + 3000] += 0.3 * np.sin(2 * np.pi * rng.uniform(500, 4000) * np.arange(3000) / SR)
    return wave


def call_at(t0: float, total_s: float = 30.0) -> np.ndarray:
    w = np.zeros(int(total_s * SR), np.float32)
    c = call(3.0)
    w[int(t0 * SR): int(t0 * SR) + c.size] = c
    return w


def test_family_folds_keep_families_whole_and_balance_weights():
    fams = {f"r{i}": f"f{i // 3}" for i in range(12)} | {"solo": "solo"}
    weights = {k: 1.0 for k in fams}
    folds = family_folds(fams, weights, 3, seed=0)
    assert set(folds) == set(fams.values())
    load = np.bincount([folds[fams[k]] for k in fams], minlength=3)
    assert load.max() - load.min() <= 3


def test_group_families_is_transitive():
    corr = np.array([[1, .5, 0, 0], [.5, 1, .45, 0], [0, .45, 1, 0], [0, 0, 0, 1.]])
    sim = Similarity(("a", "b", "c", "d"), corr, np.zeros((4, 4)))
    assert group_families(sim, 0.4) == {"a": "a", "b": "a", "c": "a", "d": "d"}


def test_score_annotated_counts_unsure_as_neutral():
    sel = {"r": [Selection(10, 15, "capuchin"), Selection(40, 44, "capuchin"), Selection(80, 84, "unsure"),
                 Selection(100, 101, "other:bird")],
           "q": []}
    pred = {"r": [(10.5, 15.2), (80.5, 83.5), (100, 101.5)], "q": [(1, 3)]}
    r = score_annotated(sel, pred, {"r": 180.0, "q": 180.0})
    assert (r["event_tp"], r["event_fp"], r["event_fn"]) == (1, 2, 1)
    assert r["event_precision"] == pytest.approx(1 / 3) and r["event_recall"] == pytest.approx(0.5)
    assert r["count_mae"] == pytest.approx((0 + 1) / 2)  # r: 2 true, 2 counted (unsure left out); q: 0 vs 1
    assert r["false_events_per_hour"] == pytest.approx(2 / ((360 - 9) / 3600))
    perfect = score_annotated(sel, {"r": [(10, 15), (40, 44)], "q": []}, {"r": 180.0, "q": 180.0})
    assert perfect["event_f1"] == 1.0 and perfect["count_mae"] == 0.0 and perfect["false_events_per_hour"] == 0.0


def test_format_table_numbers_selections_in_time_order():
    lines = format_table([Selection(5, 6, "capuchin"), Selection(1, 2, "unsure")]).splitlines()
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "2"] and lines[1].split("\t")[7] == "unsure"


def test_train_with_annotations_adds_labelled_segments(tiny_yamnet, tiny_data, tmp_path, monkeypatch):
    """`yamcap train --complete-annotations`: calls become positives, other:* and the unlabelled
    rest negatives, unsure nothing; an annotated background is not cut twice."""
    import csv

    from typer.testing import CliRunner

    from yamnet_capuchin.cli import app

    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    audio, ann = tmp_path / "audio", tmp_path / "ann"
    wave = background(30.0, level=0.01)
    c = call(3.0)
    for t0 in (4.0, 20.0):
        wave[int(t0 * SR): int(t0 * SR) + c.size] += c
    write(audio / "site_a.wav", wave)
    write_table(ann / "site_a.Table.1.selections.txt", [
        Selection(4.0, 7.0, "capuchin"), Selection(20.0, 23.0, "capuchin"), Selection(12.0, 13.5, "other:bird"),
        Selection(26.0, 28.0, "unsure")])
    write_table(ann / "recording_01.Table.1.selections.txt", [])  # the data's call-free background, annotated
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data), "--out", str(out), "--complete-annotations",
                                      str(ann), "--audio", str(audio), "--set", "head.hidden_units=16",
                                      "--set", "head.max_epochs=5", "--set", "augment.copies=1", "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    site = [r for r in rows if Path(r["path"]).stem == "site_a"]
    calls = sorted((float(r["start_s"]), float(r["end_s"])) for r in site if r["label"] == "1")
    # data.call_bags = "frames": one positive per YAMNet frame (0.975 s, hop 0.48 s) inside a call
    assert calls == [(round(k * 0.48, 3), round(k * 0.48 + 0.975, 3)) for k in (*range(9, 13), *range(42, 46))]
    negatives = [(float(r["start_s"]), float(r["end_s"])) for r in site if r["label"] == "0"]
    assert (12.0, 13.5) in negatives and negatives
    for a, b in negatives:
        assert b <= 25.5 or a >= 28.5  # nothing from the unsure stretch
    assert {r["source"] for r in site} == {"rec:site_a"} and len({r["split"] for r in site}) == 1
    bg = [r for r in rows if Path(r["path"]).stem == "recording_01"]
    assert bg and {r["source"] for r in bg} == {"rec:recording_01"}  # taken from the table, not as a background
    saved = (out / "config.toml").read_text()
    assert str(ann) in saved


def test_label_at_takes_the_most_overlapping_selection():
    from yamnet_capuchin.annotations import label_at

    sels = [Selection(1, 5, "capuchin"), Selection(5, 6, "other:bird")]
    assert label_at(sels, 4.5, 6.0) == "other:bird" and label_at(sels, 2, 3) == "capuchin"
    assert label_at(sels, 10, 11) == "unsure" and label_at([], 0, 1, default="other") == "other"


def test_evaluate_truth_from_annotation_tables_keeps_only_calls(tmp_path):
    from yamnet_capuchin.evaluation import read_truth_any

    write_table(tmp_path / "rec.Table.1.selections.txt", SELS)
    (tmp_path / "plain.Table.1.selections.txt").write_text("Selection\tBegin Time (s)\tEnd Time (s)\n1\t1\t2\n")
    (tmp_path / "notes.txt").write_text("not a table\n")
    assert read_truth_any(tmp_path) == {"rec": [(2.4, 6.3)], "plain": [(1.0, 2.0)]}
