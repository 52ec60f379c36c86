"""``yamcap evaluate``: count files with a detector and score events and counts against truth.

Files in (recordings, a truth table or annotation folder), report out; the scoring itself is
in :mod:`yamnet_capuchin.metrics`.
"""

from __future__ import annotations

import numpy as np

from .metrics import MIN_IOU, Interval, count_scores, event_scores

# -- the evaluate pipeline (files in, report out) -----------------------------------------

def read_truth_any(path) -> dict[str, list[Interval]]:
    """Ground truth keyed by file *stem*: a truth.csv, or a folder of Raven selection tables
    named ``<stem>.Table.1.selections.txt`` (or ``<stem>.selections.txt``, ``<stem>.txt``).
    In tables with an ``Annotation`` column only the ``capuchin`` selections are calls
    (``other:*`` and ``unsure`` are not); a table without one lists calls only."""
    from pathlib import Path

    from .annotations import calls, read_table, stem_of_table
    from .errors import YamcapError
    from .synth import read_truth

    path = Path(path)
    if path.is_dir():
        out = {}
        for table in sorted(path.glob("*.txt")):
            try:
                out[stem_of_table(table)] = sorted(calls(read_table(table)))
            except YamcapError:
                continue
        if not out:
            raise YamcapError(f"{path}: no Raven selection tables found")
        return out
    if not path.is_file():
        raise YamcapError(f"{path}: truth file not found")
    return {Path(name).stem: spans for name, spans in read_truth(path).items()}


SWEEP_THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.05, 1.0, 0.05))


TUNE_GRID = {
    "threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "off_ratio": (1.0, 0.5),  # off_threshold = off_ratio * threshold
    "min_gap_s": (0.0, 0.25, 0.5, 1.0),
    "min_duration_s": (0.0, 0.5, 1.0),
    "max_duration_s": (4.0, 6.0, 8.0, 0.0),
}


def tune_event_params(scored: dict, truth: dict, min_iou: float = MIN_IOU, collar_s: float | None = None,
                      grid: dict = TUNE_GRID) -> list[dict]:
    """Grid search of the event parameters on scored files; best (event F1, then -count MAE) first.

    ``scored``: {stem: :class:`~yamnet_capuchin.count.Detection`}; ``truth``: {stem: intervals}.
    Use validation soundscapes only: the winner becomes a default, so tuning on the data you
    report would inflate it.
    """
    import itertools

    from .events import EventParams, detect_events

    results = []
    true_counts = {k: len(v) for k, v in truth.items()}
    for thr, ratio, gap, dmin, dmax in itertools.product(*grid.values()):
        params = EventParams(thr, thr * ratio if ratio < 1 else None, gap, dmin, dmax)
        pred = {}
        for stem, d in scored.items():
            pred[stem] = [(e.start_s, e.end_s)
                          for e in detect_events(d.frames.start_s, d.frames.scores, d.window_s, d.hop_s, params)]
        res = {"threshold": thr, "off_threshold": thr * ratio if ratio < 1 else -1.0, "min_gap_s": gap,
               "min_duration_s": dmin, "max_duration_s": dmax}
        res.update(event_scores(truth, pred, min_iou, collar_s))
        res.update(count_scores(true_counts, {k: len(v) for k, v in pred.items()}))
        results.append(res)
    results.sort(key=lambda r: (-r["event_f1"], r["count_mae"]))
    return results


def evaluate_detector(detector, truth: dict, files, config, min_iou: float = MIN_IOU, collar_s: float | None = None,
                      progress: bool = True, tune: bool = False, label: str = "Counting") -> tuple[dict, dict]:
    """Count ``files`` and score them against ``truth`` ({stem: intervals}).

    Returns (report, scored) where ``scored`` maps stems to :class:`~yamnet_capuchin.count.Detection`.
    """
    from dataclasses import replace
    from pathlib import Path

    from .count import NOTEBOOK_THRESHOLD, event_params, score_and_detect
    from .errors import AudioError, YamcapError
    from .events import detect_events, notebook_rule_events
    from .progress import track

    files = [f for f in files if Path(f).stem in truth]
    if not files:
        raise YamcapError("none of the audio files has ground truth (matched by file stem)")
    scored, failures = {}, []
    for f in track(files, label, len(files), progress):
        try:
            scored[Path(f).stem] = score_and_detect(detector, f, config)
        except AudioError as exc:
            failures.append((str(f), exc.reason))
    truth = {k: v for k, v in truth.items() if k in scored}
    params = event_params(config, detector.threshold)
    rule = "notebook" if config.events.notebook_rule else "events"

    def predict(threshold):
        out = {}
        for stem, d in scored.items():
            fs = d.frames
            if rule == "notebook":
                ev = notebook_rule_events(fs.start_s, fs.scores, d.window_s, threshold)
            else:
                off = None if params.off_threshold is None else min(params.off_threshold, threshold)
                ev = detect_events(fs.start_s, fs.scores, d.window_s, d.hop_s, replace(params, threshold=threshold,
                                                                                        off_threshold=off))
            out[stem] = [(e.start_s, e.end_s) for e in ev]
        return out

    def scores_at(pred):
        res = event_scores(truth, pred, min_iou, collar_s)
        res.update(count_scores({k: len(v) for k, v in truth.items()}, {k: len(v) for k, v in pred.items()}))
        return res

    used = NOTEBOOK_THRESHOLD if rule == "notebook" else params.threshold
    pred = {stem: [(e.start_s, e.end_s) for e in d.events] for stem, d in scored.items()}
    main = scores_at(pred)
    sweep = [{"threshold": t, **scores_at(predict(t))} for t in sorted(set(SWEEP_THRESHOLDS) | {round(used, 4)})]
    best = max(sweep, key=lambda r: (r["event_f1"], -r["count_mae"]))
    report = {
        "model": {"kind": detector.kind, "fingerprint": detector.fingerprint(), "threshold": detector.threshold},
        "rule": rule, "threshold_used": used, "matching": {"min_iou": min_iou, "collar_s": collar_s},
        "files": len(scored), "failures": [{"file": f, "reason": r} for f, r in failures],
        **main,
        "per_file": {k: {"true": len(truth[k]), "predicted": len(pred[k])} for k in sorted(truth)},
        "sweep": sweep,
        "best_f1_threshold_on_this_data": best["threshold"], "best_event_f1_on_this_data": best["event_f1"],
        "event_params": params.__dict__, "config": config.to_dict(),
    }
    if tune and rule == "events":
        tuned = tune_event_params(scored, truth, min_iou, collar_s)
        report["tuning"] = {"grid": {k: list(v) for k, v in TUNE_GRID.items()}, "top": tuned[:10]}
    return report, scored


def run_evaluate(detector, truth_path, files, out_dir, config, min_iou: float = MIN_IOU,
                 collar_s: float | None = None, progress: bool = True, echo=print, tune: bool = False) -> dict:
    """Count ``files`` with ``detector``, score against the truth, sweep the threshold, write a report.

    With ``tune``, also grid-search the event parameters (:func:`tune_event_params`) and write
    the best as ``tuned_events.toml`` (for validation soundscapes only)."""
    from .fileio import atomic_write_json, atomic_write_text, save_figure, staging_dir
    from .outputs import write_events_csv

    report, scored = evaluate_detector(detector, read_truth_any(truth_path), files, config, min_iou, collar_s,
                                       progress, tune)
    with staging_dir(out_dir) as tmp:
        atomic_write_json(tmp / "report.json", report)
        atomic_write_text(tmp / "report.md", render_evaluation(report))
        write_events_csv(tmp / "events.csv", [(stem, e) for stem, d in sorted(scored.items()) for e in d.events])
        config.save(tmp / "config.toml")
        from .plots import count_scatter, threshold_sweep

        save_figure(threshold_sweep(report["sweep"], report["threshold_used"]), tmp / "sweep.png")
        save_figure(count_scatter(report["per_file"]), tmp / "counts.png")
        if "tuning" in report:
            best = report["tuning"]["top"][0]
            keys = ("threshold", "off_threshold", "min_gap_s", "min_duration_s", "max_duration_s")
            atomic_write_text(tmp / "tuned_events.toml", "# best event parameters on these soundscapes "
                              f"(event F1 {best['event_f1']:.3f}, count MAE {best['count_mae']:.2f})\n[events]\n"
                              + "".join(f"{k} = {float(best[k])!r}\n" for k in keys))
    return report


def render_evaluation(r: dict) -> str:
    m = r["matching"]
    how = f"IoU >= {m['min_iou']}" if m["collar_s"] is None else f"onset within {m['collar_s']} s"
    lines = [
        "# Event and count evaluation", "",
        f"Model: {r['model']['kind']} ({r['model']['fingerprint']}), rule: {r['rule']}, threshold "
        f"{r['threshold_used']:.3f}; {r['files']} files, one-to-one matching at {how}.", "",
        "| event precision | event recall | event F1 | count MAE | count RMSE | count bias | exact counts | calls (true / found) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['event_precision']:.3f} | {r['event_recall']:.3f} | {r['event_f1']:.3f} | {r['count_mae']:.2f} | "
        f"{r['count_rmse']:.2f} | {r['count_bias']:+.2f} | {r['count_exact_rate']:.0%} | "
        f"{r['true_total']} / {r['predicted_total']} |", "",
        f"Threshold sweep: best event F1 {r['best_event_f1_on_this_data']:.3f} at {r['best_f1_threshold_on_this_data']} "
        "*on this data* (choose thresholds on validation soundscapes, never on the ones you report).", "",
        "| threshold | precision | recall | F1 | count MAE |", "|---|---|---|---|---|",
    ]
    for s in r["sweep"]:
        lines.append(f"| {s['threshold']:.2f} | {s['event_precision']:.3f} | {s['event_recall']:.3f} | "
                     f"{s['event_f1']:.3f} | {s['count_mae']:.2f} |")
    if "tuning" in r:
        lines += ["", "## Event-parameter tuning (top 10 of the grid; for validation soundscapes only)", "",
                  "| threshold | off | min gap | min dur | max dur | event F1 | count MAE |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t['threshold']} | {t['off_threshold']:.2f} | {t['min_gap_s']} | {t['min_duration_s']} | "
                  f"{t['max_duration_s']} | {t['event_f1']:.3f} | {t['count_mae']:.2f} |" for t in r["tuning"]["top"]]
    lines += ["", "| file | true | predicted |", "|---|---|---|"]
    lines += [f"| {k} | {v['true']} | {v['predicted']} |" for k, v in r["per_file"].items()]
    return "\n".join(lines) + "\n"


# -- scoring against annotated recordings (Raven tables with capuchin / other:* / unsure) ----
