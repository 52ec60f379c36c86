from pathlib import Path

import pytest

from yamnet_capuchin.dataset import (
    Clip, background_clips, discover_clips, read_manifest, source_of, split_by_source, write_manifest,
)
from yamnet_capuchin.errors import YamcapError


def test_source_names():
    assert source_of("XC114131-3.flac") == "XC114131"
    assert source_of("dir/crickets-chirping-noise-12.wav") == "crickets-chirping-noise"
    assert source_of("lonely.wav") == "lonely"


def _clips(n_sources=20, per=5):
    out = []
    for s in range(n_sources):
        for k in range(per):
            out.append(Clip(Path(f"XC{s}-{k}.wav"), 1, f"XC{s}"))
            out.append(Clip(Path(f"neg{s}-{k}.wav"), 0, f"neg{s}"))
    return out


def test_split_groups_by_source_and_is_stratified_and_seeded():
    clips = split_by_source(_clips(), (0.7, 0.1, 0.2), seed=3)
    by_source = {}
    for c in clips:
        by_source.setdefault(c.source, set()).add(c.split)
    assert all(len(s) == 1 for s in by_source.values())
    for split, n_sources in (("train", 14), ("val", 2), ("test", 4)):
        for label in (0, 1):
            assert len({c.source for c in clips if c.split == split and c.label == label}) == n_sources
    again = split_by_source(_clips(), (0.7, 0.1, 0.2), seed=3)
    assert [c.split for c in again] == [c.split for c in clips]
    other = split_by_source(_clips(), (0.7, 0.1, 0.2), seed=4)
    assert [c.split for c in other] != [c.split for c in clips]


def test_discover_and_manifest_roundtrip(tiny_data, tmp_path):
    clips = discover_clips(tiny_data)
    assert {c.label for c in clips} == {0, 1}
    assert all(c.path.suffix in (".wav", ".flac") for c in clips)
    clips += background_clips(tiny_data, ["recording_01", "recording_99"], 3.0)
    segs = [c for c in clips if c.is_segment]
    assert len(segs) == 6 and segs[1].start_s == 3.0 and segs[1].end_s == 6.0
    split = split_by_source(clips)
    write_manifest(split, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == split


def test_discover_requires_layout(tmp_path):
    with pytest.raises(YamcapError, match="Parsed_Capuchinbird_Clips"):
        discover_clips(tmp_path)


def test_partial_labels_train_and_move_no_other_clip(tiny_data, tmp_path):
    """Review labels (partial tables) are training data; labelling one more recording leaves the
    split of every other clip, and the augmentation noise pool, as it was."""
    from yamnet_capuchin.annotations import Selection, write_table
    from yamnet_capuchin.config import Config
    from yamnet_capuchin.dataset import annotated_clips, assign_splits
    from yamnet_capuchin.features import ClipEmbedder

    forest = tiny_data / "Forest Recordings"
    cfg = Config()
    base = discover_clips(tiny_data) + background_clips(tiny_data, ["recording_01"], 3.0)
    before = assign_splits(base, cfg)
    review = tmp_path / "review"
    write_table(review / "recording_01.Table.1.selections.txt",
                [Selection(2.0, 5.0, "capuchin"), Selection(9.0, 12.0, "other:insect")])
    labelled = annotated_clips([review], [], [forest], 3.0)
    assert labelled and all(c.partial and c.split == "train" for c in labelled)
    after = assign_splits(base + labelled, cfg)
    assert [c.split for c in after[:len(base)]] == [c.split for c in before]
    assert [c.split for c in after[len(base):]] == ["train"] * len(labelled)

    pools = []

    class Recorder(ClipEmbedder):
        def __init__(self):
            pass

        def augmented_copy(self, path, noise_pool, aug, rng_key):
            pools.append(list(noise_pool))

    only_negatives = [c for c in labelled if c.label == 0]
    positives = [c for c in after if c.label == 1 and not c.is_segment][:1]
    list(Recorder().training_copies(positives + only_negatives, cfg.augment, 1, 0))
    assert pools == [[]]  # a partially labelled recording is never noise
