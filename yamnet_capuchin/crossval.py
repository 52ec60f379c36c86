"""Cross-validation by recording family on completely annotated recordings.

Recordings are grouped into folds by family (``yamcap families``: recordings of one site and
hour never split). For each outer fold, event rules (threshold, hysteresis, gap, durations) are
chosen on the other folds' recordings, each of them scored as held out, and the outer fold's
recordings are then scored with them. Events and counts are pooled over the outer folds.

What "scored as held out" means is the caller's ``score_fold(train_stems, test_stems)``:

- a model that never saw the recordings (trained on clips only, or zero-shot) scores every
  recording once; only the event rules are cross-validated (:func:`fixed_scorer`);
- a head that also learns from annotated recordings is trained, for each held-out set, on the
  clips plus the *other* folds' recordings (:class:`SiteData`): the nested scheme, in which the
  inner folds' scores come from heads that saw neither the inner nor the outer fold.

Times are in seconds; frame scores are ``{stem: ((F,) start times, (F,) scores)}``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .annotations import CALL, read_folder
from .audio import SAMPLE_RATE, audio_info
from .backbones import make_backbone
from .cache import EmbeddingCache
from .config import Config
from .dataset import (background_clips, discover_clips, find_forest_dir, find_recordings, selection_clips,
                      split_by_source)
from .errors import YamcapError
from .events import EventParams, detect_events
from .families import family_folds, read_families
from .features import ClipEmbedder
from .head import FrameHead, head_inputs
from .metrics import score_annotated

GRID = {
    "threshold": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99),
    "off_ratio": (1.0, 0.5),
    "min_gap_s": (0.5, 1.0, 2.0),
    "min_duration_s": (0.5, 1.0, 2.0, 3.0),
    "max_duration_s": (8.0, 10.0, 0.0),
}

Scores = Mapping[str, tuple[np.ndarray, np.ndarray]]
ScoreFold = Callable[[Sequence[str], Sequence[str]], Scores]


def grid_points() -> list[tuple]:
    """(threshold, off_ratio, min_gap_s, min_duration_s, max_duration_s) tuples of GRID."""
    return list(itertools.product(*GRID.values()))


def to_params(point) -> EventParams:
    thr, ratio, gap, dmin, dmax = point
    return EventParams(thr, thr * ratio if ratio < 1 else None, gap, dmin, dmax)


def events_of(scores: Scores, params: EventParams, window_s: float, hop_s: float) -> dict:
    """{stem: [(start_s, end_s)]} of frame scores under ``params``."""
    return {stem: [(e.start_s, e.end_s) for e in detect_events(t, s, window_s, hop_s, params)]
            for stem, (t, s) in scores.items()}


def choose_params(scores: Scores, tables: Mapping, durations: Mapping, window_s: float, hop_s: float,
                  rule: str = "plateau") -> tuple[EventParams, dict]:
    """Event parameters chosen on ``scores`` by pooled event F1 (then count MAE, then fewer false events).

    ``rule = "best"``: the best grid point. ``"plateau"``: F1 averaged with the neighbouring
    thresholds (same other parameters) first, so that among near-equal settings the one in the
    middle of a flat stretch wins rather than the lowest threshold that reaches it: a head's
    scores sit near 0 and 1, so F1 is flat over wide threshold ranges."""
    results = {}
    for point in grid_points():
        pred = events_of(scores, to_params(point), window_s, hop_s)
        results[point] = score_annotated({k: tables[k] for k in scores}, pred, durations)
    thresholds = GRID["threshold"]

    def key(point):
        r = results[point]
        f1 = r["event_f1"]
        if rule == "plateau":
            i = thresholds.index(point[0])
            f1 = float(np.mean([results[(t, *point[1:])]["event_f1"] for t in thresholds[max(0, i - 1): i + 2]]))
        return (round(f1, 9), -r["count_mae"], -r["event_fp"])

    best = max(results, key=key)
    return to_params(best), results[best]


def call_counts(tables: Mapping) -> dict[str, int]:
    return {s: sum(x.label == CALL for x in sel) for s, sel in tables.items()}


def assign_folds(tables: Mapping, families: Mapping[str, str], n_folds: int, seed: int) -> dict[str, int]:
    """Recording stem -> fold, whole families only, calls balanced across folds."""
    n_calls = call_counts(tables)
    fams = {s: families.get(s, s) for s in tables}
    if len(set(fams.values())) < n_folds:
        raise YamcapError(f"{len(set(fams.values()))} recording families cannot fill {n_folds} folds")
    fold_of_family = family_folds(fams, {s: n_calls[s] + 0.5 for s in tables}, n_folds, seed)
    return {s: fold_of_family[fams[s]] for s in tables}


def nested_cv(fold: Mapping[str, int], score_fold: ScoreFold, tables: Mapping, durations: Mapping,
              window_s: float, hop_s: float, fixed: EventParams | None = None,
              echo: Callable[[str], None] | None = None) -> dict:
    """Nested family CV of one detector; see the module docstring.

    Returns ``rows`` (pooled scores: ``nested`` with the plateau rule, ``nested_best_point``,
    and ``fixed`` when ``fixed`` event parameters are given), ``per_file`` ({stem: true,
    nested and fixed counts, fold}), ``chosen_per_fold``, and the out-of-fold and inner
    scores (``oof_scores``, ``inner_scores``) for saving."""
    stems = sorted(fold)
    n_folds = max(fold.values()) + 1
    nested, best, fixed_pred, oof, inner_saved, chosen = {}, {}, {}, {}, {}, []
    t0 = time.perf_counter()
    for k in range(n_folds):
        outer = [s for s in stems if fold[s] == k]
        inner_scores: dict = {}
        for j in range(n_folds):
            if j != k:
                inner_scores.update(score_fold([s for s in stems if fold[s] not in (j, k)],
                                               [s for s in stems if fold[s] == j]))
        params, inner = choose_params(inner_scores, tables, durations, window_s, hop_s)
        params_best, _ = choose_params(inner_scores, tables, durations, window_s, hop_s, rule="best")
        chosen.append({"plateau": params.__dict__, "best": params_best.__dict__})
        inner_saved.update({f"fold{k}/{stem}": v for stem, v in inner_scores.items()})
        scores = score_fold([s for s in stems if fold[s] != k], outer)
        oof.update(scores)
        nested.update(events_of(scores, params, window_s, hop_s))
        best.update(events_of(scores, params_best, window_s, hop_s))
        if fixed is not None:
            fixed_pred.update(events_of(scores, fixed, window_s, hop_s))
        if echo:
            r = score_annotated({s: tables[s] for s in outer}, {s: nested[s] for s in outer}, durations)
            echo(f"fold {k}: threshold {params.threshold} (inner F1 {inner['event_f1']:.3f}) -> outer "
                 f"P {r['event_precision']:.3f} R {r['event_recall']:.3f} MAE {r['count_mae']:.2f} "
                 f"({time.perf_counter() - t0:.0f} s)")
    truth = call_counts(tables)
    rows = {"nested": score_annotated(tables, nested, durations),
            "nested_best_point": score_annotated(tables, best, durations)}
    if fixed is not None:
        rows["fixed"] = score_annotated(tables, fixed_pred, durations)
    per_file = {s: {"true": truth[s], "nested": len(nested[s]), "fold": fold[s],
                    **({"fixed": len(fixed_pred[s])} if fixed is not None else {})} for s in stems}
    return {"rows": rows, "per_file": per_file, "chosen_per_fold": chosen, "folds": n_folds,
            "oof_scores": oof, "inner_scores": inner_saved}


def fixed_scorer(scores: Scores) -> ScoreFold:
    """``score_fold`` of a model that never saw the recordings: the same scores in every fold."""
    return lambda train, test: {s: scores[s] for s in test}


class SiteData:
    """Clips (split by source, as ``yamcap train`` does) and annotated recordings, all embedded
    with the configuration's backbone, for heads that learn from the other folds' recordings.

    ``tables``: {stem: selections} (complete annotations), ``audio``: {stem: path}.
    """

    def __init__(self, cfg: Config, data_dir: Path, tables: Mapping, audio: Mapping[str, Path],
                 families: Mapping[str, str], echo: Callable[[str], None] = print, backbone=None):

        self.cfg = cfg
        b = cfg.backbone
        backbone = (backbone or make_backbone(b.name, b.handle or None, b.runtime)).load()
        self.window_s = backbone.window_samples / SAMPLE_RATE
        self.hop_s = backbone.hop_samples / SAMPLE_RATE
        self.embedder = ClipEmbedder(backbone, EmbeddingCache(cfg.cache_dir or None), cfg.audio.backend)
        self.tables, self.audio = dict(tables), dict(audio)
        clips = discover_clips(data_dir) + background_clips(
            data_dir, [s for s in cfg.data.backgrounds if s not in self.tables], cfg.data.background_clip_s)
        s = cfg.split
        self.clips = split_by_source(clips, (s.train_fraction, s.val_fraction, s.test_fraction), cfg.seed)
        t0 = time.perf_counter()
        self.clip_x = [self.inputs(self.embedder.embed_clip(c)) for c in self.clips]
        self.durations = {k: audio_info(p).duration_s for k, p in self.audio.items()}
        bags = (self.window_s, self.hop_s) if cfg.data.call_bags == "frames" else None
        self.segments = {stem: selection_clips(self.audio[stem], sel, f"rec:{families.get(stem, stem)}", True,
                                               cfg.data.background_clip_s, cfg.data.annotation_margin_s,
                                               self.durations[stem], bags)
                         for stem, sel in self.tables.items()}
        self.seg_x = {stem: [self.inputs(self.embedder.embed_clip(c)) for c in segs]
                      for stem, segs in self.segments.items()}
        self.rec_frames = {stem: self.embedder.embed(p) for stem, p in self.audio.items()}
        echo(f"{len(self.clips)} clips, {sum(map(len, self.segments.values()))} segments of {len(self.tables)} "
             f"recordings embedded with {backbone.name} in {time.perf_counter() - t0:.1f} s")
        self._aug: dict = {}
        self._scores: dict = {}
        self.negative_weight = 1.0  # weight of the recordings' non-call segments (other:* and unlabelled)

    def inputs(self, frames):

        return head_inputs(frames, self.cfg.head.inputs)

    def augmented(self, train_recordings):
        """Augmented copies of the training clips, as ``yamcap train`` makes them: each mixed into
        a negative clip or a call-free recording among ``train_recordings`` (never one with calls)."""
        a = self.cfg.augment
        if not a.enabled:
            return [], []
        key = tuple(sorted(s for s in train_recordings if not any(c.label for c in self.segments[s])))
        if key not in self._aug:
            pool = [c for c in self.clips if c.split != "val"] + [c for s in key for c in self.segments[s]]
            xs, ys = [], []
            for frames, label in self.embedder.training_copies(pool, a, a.copies, self.cfg.seed):
                xs.append(self.inputs(frames))
                ys.append(label)
            self._aug[key] = (xs, ys)
        return self._aug[key]

    def fit(self, train_recordings):
        """A head on the clips (train + test split; val for early stopping) and the segments of
        ``train_recordings``."""
        x = [xi for c, xi in zip(self.clips, self.clip_x) if c.split != "val"]
        y = [c.label for c in self.clips if c.split != "val"]
        vx = [xi for c, xi in zip(self.clips, self.clip_x) if c.split == "val"]
        vy = [c.label for c in self.clips if c.split == "val"]
        ax, ay = self.augmented(train_recordings)
        x, y = x + ax, y + ay
        w = [1.0] * len(x)
        for stem in sorted(train_recordings):
            x += self.seg_x[stem]
            y += [c.label for c in self.segments[stem]]
            w += [1.0 if c.label else self.negative_weight for c in self.segments[stem]]
        params = {k: v for k, v in vars(self.cfg.head).items() if k != "pooling"}
        pooling = self.cfg.head.pooling if self.cfg.head.pooling != "auto" else "max"
        return FrameHead(pooling=pooling, seed=self.cfg.seed, **params).fit(
            x, np.array(y), vx, np.array(vy), sample_weight=np.array(w) if self.negative_weight != 1.0 else None)

    def zero_shot_scores(self, name: str = "capuchinbird") -> dict:
        """Every recording's frame scores from the backbone's own class score (BirdNET's Capuchinbird)."""
        missing = [s for s, f in self.rec_frames.items() if name not in f.extra]
        if missing:
            raise YamcapError(f"the {self.embedder.backbone.name} backbone gives no '{name}' score (zero-shot needs BirdNET)")
        return {s: (f.start_s, f.extra[name][:, 0]) for s, f in self.rec_frames.items()}

    def score_fold(self, train: Sequence[str], test: Sequence[str]) -> dict:
        """``score_fold`` for :func:`nested_cv`: a head trained with ``train``'s recordings scores
        ``test``'s. Heads are kept by training set: inner folds (j, k) and (k, j) share one."""
        key = tuple(sorted(train))
        if key not in self._scores:
            head = self.fit(key)
            self._scores[key] = {s: (f.start_s, head.frame_scores(self.inputs(f))) for s, f in self.rec_frames.items()}
        return {s: self._scores[key][s] for s in test}


def annotated_recordings(ann_dir: Path, data_dir: Path | None, audio_dirs: Sequence[Path] = ()) -> tuple[dict, dict, dict]:
    """(tables, audio paths, families) of a folder of complete annotation tables with its
    ``families.csv``; audio is found in ``audio_dirs`` and the data's forest folder."""

    ann_dir = Path(ann_dir)
    tables = read_folder(ann_dir)
    if not tables:
        raise YamcapError(f"{ann_dir}: no annotation tables")
    families = read_families(ann_dir / "families.csv") if (ann_dir / "families.csv").exists() else {}
    dirs = [Path(d) for d in audio_dirs] + ([find_forest_dir(data_dir)] if data_dir else [])
    audio = find_recordings(tables, [d for d in dirs if d is not None])
    missing = sorted(set(tables) - set(audio))
    if missing:
        raise YamcapError(f"{ann_dir}: no audio found for {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}")
    return tables, audio, families
