"""Cross-validation that holds out the bird as well as the site: folds by call source and family.

Family CV (:mod:`.crossval`) holds out backgrounds, but the calls in the challenge's forest
recordings are copies of a few parsed clips (:mod:`.sources`): every test call's own clip is in
training. Here each fold holds out, together,

* a set of **call sources** (xeno-canto recordings ``XC<id>``, and forest calls that match no
  clip, each its own source): their clips leave training, and wherever a copy of one sits in a
  training recording, the frames of that call leave training too (masked; the rest stays);
* a set of **negative-clip sources** (other birds, insects, rain), which become the test
  soundscapes' distractors;
* a set of **recording families** (backgrounds): their recordings leave training.

Per fold it is scored on (a) synthetic soundscapes (``yamcap synth``): the held-out sources'
clips mixed at -3 to 15 dB SNR into the held-out families' call-free recordings, with exact
truth, and (b) the held-out families' annotated recordings. Event rules are chosen on inner folds
(each inner fold ``j`` scored by a head trained without ``j`` and the outer fold), on (a) and (b)
pooled. :func:`check_no_leak` refuses a plan whose training holds a held-out clip or copy.

Times in seconds; frame scores are ``{name: ((F,) start times, (F,) scores)}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .annotations import CALL, Selection
from .config import SynthParams
from .crossval import SiteData, assign_folds, choose_params, events_of
from .dataset import Clip, source_of
from .errors import YamcapError
from .families import family_folds
from .head import FrameHead
from .metrics import match_events, score_annotated
from .sources import CallSource, source_lookup
from .synth import read_truth_rows, synthesize

SYNTH_PER_FOLD = 8  # 3-min soundscapes per fold


@dataclass
class Folds:
    """Fold of every held-out unit: ``source`` (call source), ``negative`` (negative-clip source)
    and ``family`` (recording family), each ``{name: fold}``."""

    source: dict[str, int]
    negative: dict[str, int]
    family: dict[str, int]
    n: int


@dataclass
class FoldPlan:
    """What one training run may and may not see. ``held``: the fold numbers held out."""

    held: tuple[int, ...]
    held_sources: frozenset[str]
    held_negatives: frozenset[str]
    held_families: frozenset[str]
    train_clips: list[Clip]
    train_recordings: list[str]
    masked: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # {stem: call spans left out}


def assign_source_folds(clips: Sequence[Clip], calls: Sequence[CallSource], families: Mapping[str, str],
                        tables: Mapping, n_folds: int, seed: int) -> Folds:
    """Call sources (weighted by clips, a forest-only source by 1), negative sources (by clips) and
    families (by calls) each spread over ``n_folds`` folds, whole units only."""
    pos = {c.path.stem: c.source for c in clips if c.label == 1 and not c.is_segment}
    pos.update({f"{r.recording}@{r.begin_s}": r.source for r in calls if r.source not in pos.values()})
    neg = {c.path.stem: c.source for c in clips if c.label == 0 and not c.is_segment}
    for name, what in ((pos, "call sources"), (neg, "negative-clip sources")):
        if len(set(name.values())) < n_folds:
            raise YamcapError(f"{len(set(name.values()))} {what} cannot fill {n_folds} folds")
    src_fold = family_folds(pos, {k: 1.0 for k in pos}, n_folds, seed)
    neg_fold = family_folds(neg, {k: 1.0 for k in neg}, n_folds, seed + 1)
    rec_fold = assign_folds(tables, families, n_folds, seed)
    fam_fold = {families.get(s, s): k for s, k in rec_fold.items()}
    return Folds(src_fold, neg_fold, spread_call_free(fam_fold, tables, families), n_folds)


def spread_call_free(fam_fold: dict[str, int], tables: Mapping, families: Mapping[str, str]) -> dict[str, int]:
    """Move whole call-free families so that every fold holds one where there are enough (the
    fold's soundscapes need a held-out call-free background): from the fold with the most."""
    fam_fold = dict(fam_fold)
    has_calls = {families.get(s, s) for s, sel in tables.items() if any(x.label == CALL for x in sel)}
    free = sorted(f for f in fam_fold if f not in has_calls)
    n = max(fam_fold.values()) + 1 if fam_fold else 0
    for k in range(n):
        if any(fam_fold[f] == k for f in free):
            continue
        per_fold = {j: [f for f in free if fam_fold[f] == j] for j in range(n)}
        donor = max(per_fold, key=lambda j: (len(per_fold[j]), -j))
        if len(per_fold[donor]) < 2:
            break
        fam_fold[per_fold[donor][0]] = k
    return fam_fold


def plan_fold(held: Sequence[int], folds: Folds, clips: Sequence[Clip], tables: Mapping,
              families: Mapping[str, str], calls: Sequence[CallSource]) -> FoldPlan:
    """The training set without the folds ``held``: clips of other sources, recordings of other
    families, and in those recordings the calls copied from a held-out source masked."""
    held = tuple(sorted(set(held)))
    srcs = frozenset(s for s, k in folds.source.items() if k in held)
    negs = frozenset(s for s, k in folds.negative.items() if k in held)
    fams = frozenset(f for f, k in folds.family.items() if k in held)
    train_clips = [c for c in clips if not (c.label == 1 and c.source in srcs) and
                   not (c.label == 0 and not c.is_segment and c.source in negs)]
    train_recs = sorted(s for s in tables if families.get(s, s) not in fams)
    lookup = source_lookup(calls)
    masked = {}
    for stem in train_recs:
        spans = [(x.begin_s, x.end_s) for x in tables[stem]
                 if x.label == CALL and lookup(stem, x.begin_s, x.end_s) in srcs]
        if spans:
            masked[stem] = spans
    return FoldPlan(held, srcs, negs, fams, train_clips, train_recs, masked)


def overlaps(a: float, b: float, spans: Sequence[tuple[float, float]], margin_s: float = 0.0) -> bool:
    return any(a < y + margin_s and x - margin_s < b for x, y in spans)


def training_segments(plan: FoldPlan, segments: Mapping[str, Sequence[Clip]], margin_s: float = 0.5) -> dict:
    """{stem: [segment index]} of the training recordings' segments that the plan keeps: those
    not within ``margin_s`` of a masked call."""
    return {stem: [i for i, c in enumerate(segments[stem])
                   if not overlaps(c.start_s, c.end_s, plan.masked.get(stem, []), margin_s)]
            for stem in plan.train_recordings}


def check_no_leak(plan: FoldPlan, kept: Mapping[str, Sequence[int]], segments: Mapping[str, Sequence[Clip]],
                  tables: Mapping, families: Mapping[str, str], calls: Sequence[CallSource]) -> None:
    """Raise :class:`YamcapError` if anything held out reaches the training set of ``plan``: a
    clip of a held-out source (call or negative), a recording of a held-out family, or a kept
    segment that overlaps a call copied from a held-out source."""
    lookup = source_lookup(calls)
    for c in plan.train_clips:
        if c.is_segment:
            continue
        if (c.label == 1 and c.source in plan.held_sources) or (c.label == 0 and c.source in plan.held_negatives):
            raise YamcapError(f"fold {plan.held}: held-out clip {c.path.name} is in training")
    for stem, idx in kept.items():
        if families.get(stem, stem) in plan.held_families:
            raise YamcapError(f"fold {plan.held}: {stem} belongs to a held-out family")
        copies = [(x.begin_s, x.end_s) for x in tables[stem]
                  if x.label == CALL and lookup(stem, x.begin_s, x.end_s) in plan.held_sources]
        for i in idx:
            seg = segments[stem][i]
            if overlaps(seg.start_s, seg.end_s, copies):
                raise YamcapError(f"fold {plan.held}: {stem} {seg.start_s:.2f}-{seg.end_s:.2f} s holds a copy of a "
                                  "held-out source's call")


def source_weights(sources: Sequence[str | None], base: Sequence[float]) -> np.ndarray:
    """(N,) weights that give every call source the same total weight, keeping the positives'
    total: ``sources[i]`` is item i's call source (None for a negative, which keeps ``base[i]``)."""
    base = np.asarray(base, np.float64)
    w = base.copy()
    pos = [i for i, s in enumerate(sources) if s is not None]
    if not pos:
        return w
    totals: dict[str, float] = {}
    for i in pos:
        totals[sources[i]] = totals.get(sources[i], 0.0) + base[i]
    share = sum(totals.values()) / len(totals)
    for i in pos:
        w[i] = base[i] * share / totals[sources[i]]
    return w


class SourceSiteData(SiteData):
    """:class:`SiteData` whose heads are trained on a :class:`FoldPlan`.

    ``balance_sources``: every call source weighs the same in the loss (a forest copy counts as
    its source); ``forest_call_weight``: weight of the annotated recordings' call frames."""

    balance_sources = False
    forest_call_weight = 1.0

    def fit_plan(self, plan: FoldPlan, tables: Mapping, families: Mapping[str, str],
                 calls: Sequence[CallSource]) -> FrameHead:
        kept = training_segments(plan, self.segments)
        check_no_leak(plan, kept, self.segments, tables, families, calls)
        allowed = {id(c) for c in plan.train_clips}
        index = [i for i, c in enumerate(self.clips) if id(c) in allowed]
        train = [self.clips[i] for i in index if self.clips[i].split != "val"]
        x = [self.clip_x[i] for i in index if self.clips[i].split != "val"]
        y = [c.label for c in train]
        src: list[str | None] = [c.source if c.label == 1 else None for c in train]
        base = [1.0] * len(x)
        vx = [self.clip_x[i] for i in index if self.clips[i].split == "val"]
        vy = [self.clips[i].label for i in index if self.clips[i].split == "val"]
        a = self.cfg.augment
        if a.enabled:
            call_free = [s for s in plan.train_recordings if not any(c.label for c in self.segments[s])]
            pool = train + [c for s in call_free for c in self.segments[s]]
            originals = [c for c in pool if not c.is_segment]
            for n, (frames, label) in enumerate(self.embedder.training_copies(pool, a, a.copies, self.cfg.seed)):
                x.append(self.inputs(frames))
                y.append(label)
                clip = originals[n // a.copies]
                src.append(clip.source if label == 1 else None)
                base.append(1.0)
        lookup = source_lookup(calls)
        for stem in plan.train_recordings:
            for i in kept[stem]:
                seg = self.segments[stem][i]
                x.append(self.seg_x[stem][i])
                y.append(seg.label)
                src.append(lookup(stem, seg.start_s, seg.end_s) if seg.label == 1 else None)
                base.append(self.forest_call_weight if seg.label == 1 else 1.0)
        w = source_weights(src, base) if self.balance_sources else np.asarray(base)
        params = {k: v for k, v in vars(self.cfg.head).items() if k != "pooling"}
        pooling = self.cfg.head.pooling if self.cfg.head.pooling != "auto" else "max"
        return FrameHead(pooling=pooling, seed=self.cfg.seed, **params).fit(
            x, np.array(y), vx, np.array(vy), sample_weight=None if np.all(w == 1.0) else w)


def synth_sets(folds: Folds, clips: Sequence[Clip], tables: Mapping, families: Mapping[str, str],
               audio: Mapping[str, Path], out_dir: Path, seed: int, n_files: int = SYNTH_PER_FOLD,
               echo: Callable[[str], None] = print) -> dict[int, dict[str, tuple[Path, list]]]:
    """Per fold, ``n_files`` soundscapes of the fold's call sources mixed into its families'
    call-free recordings (distractors: its negative sources), at -3 to 15 dB SNR:
    ``{fold: {name: (path, [(start_s, end_s, source)])}}``. Written once into ``out_dir``."""
    out: dict[int, dict] = {}
    for k in range(folds.n):
        calls = sorted(c.path for c in clips if c.label == 1 and not c.is_segment and folds.source.get(c.source) == k)
        negs = sorted(c.path for c in clips if c.label == 0 and not c.is_segment and folds.negative.get(c.source) == k)
        bgs = sorted(audio[s] for s in tables if folds.family.get(families.get(s, s)) == k
                     and not any(x.label == CALL for x in tables[s]))
        if not calls or not bgs:
            echo(f"fold {k}: no {'call clips' if not calls else 'call-free recordings'} held out: no soundscapes")
            out[k] = {}
            continue
        d = out_dir / f"fold{k}"
        if not (d / "truth.csv").is_file():
            synthesize(calls, negs, bgs, d, SynthParams(n_files=n_files, seed=seed + k), progress=False, echo=echo)
        rows = read_truth_rows(d / "truth.csv")
        out[k] = {f"synth{k}/{Path(f).stem}": (d / f, [(a, b, source_of(Path(src).stem)) for a, b, src in ev])
                  for f, ev in rows.items()}
    return out


def synth_tables(sets: Mapping[str, tuple[Path, list]]) -> dict[str, list[Selection]]:
    return {name: [Selection(a, b, CALL) for a, b, _ in ev] for name, (_, ev) in sets.items()}


def recall_by_source(sets: Mapping[str, tuple[Path, list]], pred: Mapping[str, Sequence]) -> dict[str, dict]:
    """{source: {calls, found, recall}} over soundscapes ``sets`` and predicted events ``pred``."""
    out: dict[str, dict] = {}
    for name, (_, ev) in sets.items():
        truth = [(a, b) for a, b, _ in ev]
        hit = {t for t, _ in match_events(truth, list(pred.get(name, [])))}
        for i, (_, _, src) in enumerate(ev):
            r = out.setdefault(src, {"calls": 0, "found": 0})
            r["calls"] += 1
            r["found"] += int(i in hit)
    for r in out.values():
        r["recall"] = round(r["found"] / r["calls"], 3) if r["calls"] else None
    return dict(sorted(out.items()))


def source_cv(d: SourceSiteData, folds: Folds, tables: Mapping, families: Mapping[str, str],
              calls: Sequence[CallSource], synth: Mapping[int, Mapping], echo: Callable[[str], None] = print) -> dict:
    """Nested CV by source and family (module docstring). Returns pooled ``synthetic`` and
    ``real`` scores, ``per_source`` recall, ``chosen_per_fold`` and per-file counts."""
    n = folds.n
    rec_fold = {s: folds.family[families.get(s, s)] for s in tables}
    heads: dict[tuple, dict] = {}

    def scores_for(held: tuple[int, ...], targets: Sequence[int]) -> dict:
        """Frame scores of the targets' real and synthetic recordings by a head without ``held``."""
        held = tuple(sorted(set(held)))
        if held not in heads:
            t0 = time.perf_counter()
            plan = plan_fold(held, folds, d.clips, tables, families, calls)
            head = d.fit_plan(plan, tables, families, calls)
            heads[held] = {"head": head}
            echo(f"  head without folds {held}: {len(plan.train_clips)} clips, {len(plan.train_recordings)} "
                 f"recordings, {sum(map(len, plan.masked.values()))} calls masked ({time.perf_counter() - t0:.0f} s)")
        head = heads[held]["head"]
        out = {}
        for k in targets:
            for s in (s for s in tables if rec_fold[s] == k):
                f = d.rec_frames[s]
                out[s] = (f.start_s, head.frame_scores(d.inputs(f)))
            for name, (path, _) in synth[k].items():
                f = d.embedder.embed(path)
                out[name] = (f.start_s, head.frame_scores(d.inputs(f)))
        return out

    all_tables = dict(tables)
    for k in range(n):
        all_tables.update(synth_tables(synth[k]))
    durations = dict(d.durations)
    pred, chosen, t0 = {}, [], time.perf_counter()
    for k in range(n):
        inner: dict = {}
        for j in range(n):
            if j != k:
                inner.update(scores_for((j, k), [j]))
        durations.update({s: SynthParams.duration_s for s in inner if s not in durations})
        params, r_in = choose_params(inner, all_tables, durations, d.window_s, d.hop_s)
        outer = scores_for((k,), [k])
        durations.update({s: SynthParams.duration_s for s in outer if s not in durations})
        pred.update(events_of(outer, params, d.window_s, d.hop_s))
        chosen.append(params.__dict__)
        real_k = {s: tables[s] for s in outer if s in tables}
        syn_k = {s: all_tables[s] for s in outer if s not in tables}
        rr, rs = score_annotated(real_k, pred, durations), score_annotated(syn_k, pred, durations) if syn_k else None
        echo(f"fold {k}: threshold {params.threshold}, min {params.min_duration_s} s (inner F1 {r_in['event_f1']:.3f}) "
             f"-> real P {rr['event_precision']:.3f} R {rr['event_recall']:.3f}"
             + (f"; new sources P {rs['event_precision']:.3f} R {rs['event_recall']:.3f}" if rs else "")
             + f" ({time.perf_counter() - t0:.0f} s)")
    real = {s: tables[s] for s in tables}
    syn = {s: all_tables[s] for s in all_tables if s not in tables}
    sets = {name: v for k in range(n) for name, v in synth[k].items()}
    return {
        "synthetic": score_annotated(syn, pred, durations),
        "real": score_annotated(real, pred, durations),
        "per_source": recall_by_source(sets, pred),
        "chosen_per_fold": chosen,
        "per_file": {s: {"true": sum(x.label == CALL for x in tables[s]), "counted": len(pred.get(s, [])),
                         "fold": rec_fold[s]} for s in sorted(tables)},
        "folds": {"sources": {k: sorted(s for s, f in folds.source.items() if f == k) for k in range(n)},
                  "families": {k: sorted(s for s, f in folds.family.items() if f == k) for k in range(n)}},
    }
