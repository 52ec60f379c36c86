"""The folds of benchmarks/source_cv.py on the real data: no held-out clip, or copy of one, trains.

Uses ../shared (the clips and the forest recordings' durations) and the repository's annotation
tables with their sources.csv; embeds nothing, so it runs in seconds. The check is made twice:
by :func:`check_no_leak`, and here again from sources.csv's own rows, so that a bug in the lookup
the plan uses cannot hide a leak.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yamnet_capuchin.annotations import CALL
from yamnet_capuchin.audio import audio_info
from yamnet_capuchin.config import FAMILY_FOLDS, Config
from yamnet_capuchin.crossval import annotated_recordings
from yamnet_capuchin.dataset import discover_clips, selection_clips, source_of, split_by_source
from yamnet_capuchin.sourcecv import assign_source_folds, check_no_leak, plan_fold, training_segments
from yamnet_capuchin.sources import read_sources

ANNOTATIONS = Path(__file__).resolve().parents[1] / "data" / "annotations" / "forest"

pytestmark = pytest.mark.realdata


def test_sources_table_covers_every_annotated_call(real_data):
    tables, _, _ = annotated_recordings(ANNOTATIONS, real_data)
    rows = read_sources(ANNOTATIONS / "sources.csv")
    calls = {(s, round(x.begin_s, 3)) for s, sel in tables.items() for x in sel if x.label == CALL}
    assert {(r.recording, round(r.begin_s, 3)) for r in rows} == calls
    clips = {c.path.stem for c in discover_clips(real_data) if c.label == 1}
    assert all(r.clip in clips and r.source == source_of(r.clip) for r in rows if r.clip)
    assert all(r.source.startswith("rec:") and r.peak < 0.6 for r in rows if not r.clip)


def test_no_fold_trains_on_a_held_out_clip_or_copy(real_data):
    cfg = Config()
    tables, audio, families = annotated_recordings(ANNOTATIONS, real_data)
    rows = read_sources(ANNOTATIONS / "sources.csv")
    s = cfg.split
    clips = split_by_source(discover_clips(real_data), (s.train_fraction, s.val_fraction, s.test_fraction), cfg.seed)
    folds = assign_source_folds(clips, rows, families, tables, FAMILY_FOLDS, cfg.seed)
    segments = {st: selection_clips(audio[st], sel, "rec", True, 3.0, 0.5, audio_info(audio[st]).duration_s,
                                    (0.96, 0.48)) for st, sel in tables.items()}
    held_sets = [(k,) for k in range(folds.n)] + [(j, k) for j in range(folds.n) for k in range(j + 1, folds.n)]
    masked_total = 0
    for held in held_sets:
        plan = plan_fold(held, folds, clips, tables, families, rows)
        kept = training_segments(plan, segments)
        check_no_leak(plan, kept, segments, tables, families, rows)
        # the same, from sources.csv directly
        assert not {c.path.stem for c in plan.train_clips if not c.is_segment} & \
            {c.path.stem for c in clips if folds.source.get(c.source, -1) in held and c.label == 1}
        copies = {}
        for r in rows:
            if folds.source[r.source] in held:
                copies.setdefault(r.recording, []).append((r.begin_s, r.end_s))
        for stem, idx in kept.items():
            assert folds.family[families.get(stem, stem)] not in held
            for i in idx:
                seg = segments[stem][i]
                assert not any(seg.start_s < b and a < seg.end_s for a, b in copies.get(stem, [])), (held, stem)
        masked_total += sum(map(len, plan.masked.values()))
    # the one source behind 160 forest calls is held out in some fold, and its copies were masked there
    assert folds.source["XC307385"] in range(folds.n) and masked_total > 0
