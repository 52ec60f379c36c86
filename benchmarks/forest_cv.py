"""Cross-validation by recording family on the annotated forest recordings.

    python benchmarks/forest_cv.py --data ../shared/data/capuchin --annotations data/annotations/forest

Per outer fold (whole families, ``yamcap families``): a head is trained on the clips plus the
annotated segments of the other folds' recordings (calls, other:* and the unlabelled rest as
non-calls; what `yamcap train --complete-annotations` does), the event parameters are chosen
on inner folds (each inner fold scored by a head trained without it and without the outer
fold), and the outer fold's recordings are scored. Events and counts are pooled over the
outer folds and printed (event precision / recall / F1 at IoU >= 0.3, count MAE, exact-count
share, false events per hour of call-free audio), once with the inner-chosen parameters and
once with the configuration's fixed ``[events]``.

``--set backbone.name=birdnet`` runs the same on BirdNET 2.4's embeddings; with ``--zero-shot``
no head is trained and BirdNET's own Capuchinbird score is the frame score (event rules still
chosen on inner folds).

``--tune-all`` also prints the parameters that the same grid chooses on the out-of-fold
scores of *all* recordings: the candidate default for configs/default.toml (choosing it
there does not touch the nested figures above).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from yamnet_capuchin.annotations import CALL, read_folder
from yamnet_capuchin.audio import SAMPLE_RATE
from yamnet_capuchin.backbones import make_backbone
from yamnet_capuchin.cache import EmbeddingCache
from yamnet_capuchin.config import Config
from yamnet_capuchin.count import event_params
from yamnet_capuchin.dataset import (background_clips, discover_clips, find_forest_dir, find_recordings,
                                     selection_clips, split_by_source)
from yamnet_capuchin.metrics import score_annotated
from yamnet_capuchin.events import EventParams, detect_events
from yamnet_capuchin.families import family_folds, read_families
from yamnet_capuchin.features import ClipEmbedder
from yamnet_capuchin.head import FrameHead, head_inputs

GRID = {
    "threshold": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99),
    "off_ratio": (1.0, 0.5),
    "min_gap_s": (0.5, 1.0, 2.0),
    "min_duration_s": (0.5, 1.0, 2.0, 3.0),
    "max_duration_s": (8.0, 10.0, 0.0),
}


def grid_points():
    """(threshold, off_ratio, min_gap_s, min_duration_s, max_duration_s) tuples of GRID."""
    return list(itertools.product(*GRID.values()))


def to_params(point) -> EventParams:
    thr, ratio, gap, dmin, dmax = point
    return EventParams(thr, thr * ratio if ratio < 1 else None, gap, dmin, dmax)


def events_of(scores: dict, params: EventParams, window_s: float, hop_s: float) -> dict:
    return {stem: [(e.start_s, e.end_s) for e in detect_events(t, s, window_s, hop_s, params)]
            for stem, (t, s) in scores.items()}


def choose_params(scores: dict, tables: dict, durations: dict, window_s: float, hop_s: float,
                  rule: str = "plateau") -> tuple[EventParams, dict]:
    """Event parameters chosen on ``scores`` by pooled event F1 (then count MAE, then fewer false events).

    ``rule = "best"``: the best grid point. ``"plateau"``: F1 averaged with the neighbouring
    thresholds (same other parameters) first, so that among near-equal settings the one in the
    middle of a flat stretch wins rather than the lowest threshold that reaches it: the head's
    scores sit near 0 and 1, so F1 is flat over wide threshold ranges on the inner folds."""
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


class Data:
    """Clips (split by source, as `yamcap train` does) and annotated segments, all embedded."""

    def __init__(self, cfg: Config, data_dir: Path, ann_dir: Path, echo=print):
        self.cfg = cfg
        backbone = make_backbone(cfg.backbone.name, cfg.backbone.handle or None, cfg.backbone.runtime).load()
        self.window_s = backbone.window_samples / SAMPLE_RATE
        self.hop_s = backbone.hop_samples / SAMPLE_RATE
        self.embedder = ClipEmbedder(backbone, EmbeddingCache(cfg.cache_dir or None), cfg.audio.backend)
        self.tables = read_folder(ann_dir)
        self.families = read_families(ann_dir / "families.csv")
        self.audio = find_recordings(self.tables, [find_forest_dir(data_dir)])
        missing = sorted(set(self.tables) - set(self.audio))
        if missing:
            sys.exit(f"no audio for {missing}")
        annotated = set(self.tables)
        clips = discover_clips(data_dir) + background_clips(
            data_dir, [b for b in cfg.data.backgrounds if b not in annotated], cfg.data.background_clip_s)
        s = cfg.split
        self.clips = split_by_source(clips, (s.train_fraction, s.val_fraction, s.test_fraction), cfg.seed)
        t0 = time.perf_counter()
        self.clip_x = [self.inputs(self.embedder.embed_clip(c)) for c in self.clips]
        from yamnet_capuchin.audio import audio_info

        self.durations = {k: audio_info(p).duration_s for k, p in self.audio.items()}
        self.segments = {stem: selection_clips(self.audio[stem], sel, f"rec:{self.families.get(stem, stem)}", True,
                                               cfg.data.background_clip_s, cfg.data.annotation_margin_s,
                                               self.durations[stem],
                                               (self.window_s, self.hop_s) if cfg.data.call_bags == "frames" else None)
                         for stem, sel in self.tables.items()}
        self.seg_x = {stem: [self.inputs(self.embedder.embed_clip(c)) for c in segs]
                      for stem, segs in self.segments.items()}
        self.rec_x = {stem: (self.embedder.embed(p).start_s, self.inputs(self.embedder.embed(p)))
                      for stem, p in self.audio.items()}
        echo(f"{len(self.clips)} clips, {sum(map(len, self.segments.values()))} segments of {len(self.tables)} "
             f"recordings embedded in {time.perf_counter() - t0:.1f} s")
        self._aug: dict = {}
        self.negative_weight = 1.0  # weight of the recordings' non-call segments (other:* and unlabelled)

    def inputs(self, frames):
        return head_inputs(frames, self.cfg.head.inputs)

    def augmented(self, train_recordings):
        """Augmented copies of the training clips, as `yamcap train` makes them: each mixed into
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

    def fit(self, train_recordings) -> FrameHead:
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

    def frame_scores(self, head: FrameHead | None, stems) -> dict:
        """Frame scores of ``stems``: the head's, or (``head`` None) the backbone's own zero-shot
        Capuchinbird score (BirdNET: ``frames.extra["capuchinbird"]``)."""
        if head is None:
            return {s: (self.rec_x[s][0], self.embedder.embed(self.audio[s]).extra["capuchinbird"][:, 0]) for s in stems}
        return {s: (self.rec_x[s][0], head.frame_scores(self.rec_x[s][1])) for s in stems}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--annotations", type=Path, required=True, help="folder of tables + families.csv")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--tune-all", action="store_true")
    ap.add_argument("--zero-shot", action="store_true",
                    help="no head: score frames with the backbone's own Capuchinbird class (--set backbone.name=birdnet)")
    ap.add_argument("--negative-weight", type=float, default=1.0,
                    help="training weight of the annotated recordings' non-call segments (default 1)")
    ap.add_argument("--out", type=Path, help="write the pooled results and per-file counts as JSON here")
    args = ap.parse_args(argv)
    cfg = Config.load(args.config, dict(s.split("=", 1) for s in args.sets))
    t_start = time.perf_counter()
    d = Data(cfg, args.data, args.annotations)
    d.negative_weight = args.negative_weight
    stems = sorted(d.tables)
    n_calls = {s: sum(x.label == CALL for x in d.tables[s]) for s in stems}
    fams = {s: d.families.get(s, s) for s in stems}
    fold_of_family = family_folds(fams, {s: n_calls[s] + 0.5 for s in stems}, args.folds, cfg.seed)
    fold = {s: fold_of_family[fams[s]] for s in stems}
    for k in range(args.folds):
        members = [s for s in stems if fold[s] == k]
        print(f"fold {k}: {len(members)} recordings, {sum(n_calls[s] for s in members)} calls, "
              f"families {sorted({fams[s] for s in members})}")
    fixed = event_params(cfg, 0.5)
    nested_pred, best_pred, fixed_pred, oof_scores, chosen, inner_saved = {}, {}, {}, {}, [], {}
    for k in range(args.folds):
        outer = [s for s in stems if fold[s] == k]
        inner_scores = {}
        for j in range(args.folds):
            if j == k:
                continue
            head = None if args.zero_shot else d.fit([s for s in stems if fold[s] not in (j, k)])
            inner_scores.update(d.frame_scores(head, [s for s in stems if fold[s] == j]))
        params, inner = choose_params(inner_scores, d.tables, d.durations, d.window_s, d.hop_s)
        params_best, _ = choose_params(inner_scores, d.tables, d.durations, d.window_s, d.hop_s, rule="best")
        chosen.append({"plateau": params.__dict__, "best": params_best.__dict__})
        inner_saved.update({f"fold{k}/{stem}": v for stem, v in inner_scores.items()})
        head = None if args.zero_shot else d.fit([s for s in stems if fold[s] != k])
        scores = d.frame_scores(head, outer)
        oof_scores.update(scores)
        nested_pred.update(events_of(scores, params, d.window_s, d.hop_s))
        best_pred.update(events_of(scores, params_best, d.window_s, d.hop_s))
        fixed_pred.update(events_of(scores, fixed, d.window_s, d.hop_s))
        r = score_annotated({s: d.tables[s] for s in outer}, events_of(scores, params, d.window_s, d.hop_s), d.durations)
        print(f"fold {k}: params {params.__dict__} (inner F1 {inner['event_f1']:.3f}) -> outer P {r['event_precision']:.3f} "
              f"R {r['event_recall']:.3f} MAE {r['count_mae']:.2f} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    rows = {"nested, plateau rule (event rules chosen on inner folds)": score_annotated(d.tables, nested_pred, d.durations),
            "nested, best-point rule": score_annotated(d.tables, best_pred, d.durations),
            f"fixed [events] of the config {fixed.__dict__}": score_annotated(d.tables, fixed_pred, d.durations)}
    print(f"\n{len(stems)} recordings, {sum(n_calls.values())} calls, {args.folds} folds by family; "
          f"{time.perf_counter() - t_start:.0f} s")
    print("| rules | event P | event R | event F1 | count MAE | exact | false events / h call-free |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['event_precision']:.3f} | {r['event_recall']:.3f} | {r['event_f1']:.3f} | "
              f"{r['count_mae']:.3f} | {r['count_exact_rate']:.3f} | {r['false_events_per_hour']:.2f} |")
    per_file = {s: {"true": n_calls[s], "nested": len(nested_pred[s]), "fixed": len(fixed_pred[s]), "fold": fold[s]}
                for s in stems}
    wrong = {s: v for s, v in per_file.items() if v["nested"] != v["true"]}
    print("files with a wrong count (nested):", json.dumps(wrong))
    result = {"rows": rows, "per_file": per_file, "chosen_per_fold": chosen, "folds": args.folds,
              "config": cfg.to_dict()}
    if args.tune_all:
        params, r = choose_params(oof_scores, d.tables, d.durations, d.window_s, d.hop_s)
        print(f"chosen on all out-of-fold scores: {params.__dict__} (F1 {r['event_f1']:.3f}, MAE {r['count_mae']:.3f})")
        result["tuned_on_all"] = {"params": params.__dict__, "scores": r}
    if args.out:
        from yamnet_capuchin.fileio import atomic_write_json

        atomic_write_json(args.out, result)
        np.savez_compressed(args.out.with_suffix(".scores.npz"),
                            **{f"{k}.{part}": v for k, (t, sc) in oof_scores.items() for part, v in (("t", t), ("p", sc))})
        np.savez_compressed(args.out.with_suffix(".inner.npz"),
                            **{f"{k}.{part}": v for k, (t, sc) in inner_saved.items() for part, v in (("t", t), ("p", sc))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
