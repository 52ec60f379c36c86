"""Head-to-head: the YAMNet head against its baselines, in one run (``yamcap compare``).

Rows: ``yamnet`` (the YAMNet head), and any of the baselines in :data:`BASELINES`: the
notebook's CNN, BirdNET 2.4 zero-shot (its own Capuchinbird class; threshold chosen on the
validation clips) and a head on BirdNET's embeddings. Every trained row uses the same data,
seed and source-grouped split. Sections of the report:

- test clips: classification metrics at each model's validation threshold, parameters, size,
  training time, clips per second;
- annotated real recordings (``annotations``): events and counts against the call-by-call
  truth, event rules chosen by family cross-validation (:mod:`yamnet_capuchin.crossval`; the
  models themselves never saw the recordings), and each model's speed over them, decode included;
  with ``site_cv`` also the heads retrained on the clips plus the other folds' recordings;
- synthetic soundscapes with known calls (``soundscapes``);
- without annotations: counts of the forest recordings and their agreement (no truth).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .audio import SAMPLE_RATE, audio_info, load_audio
from .backbones import make_backbone
from .backbones.birdnet import resolve_birdnet_handle
from .cnn import train_cnn
from .config import FAMILY_FOLDS, Config
from .count import event_params, notebook_window_samples, window_scores
from .crossval import SiteData, annotated_recordings, assign_folds, call_counts, fixed_scorer, nested_cv
from .dataset import Clip, find_forest_dir, read_manifest
from .detectors import load_model
from .errors import YamcapError
from .evaluation import evaluate_detector, read_truth_any
from .events import detect_events, notebook_rule_events
from .fileio import atomic_write_json, atomic_write_text, expand_audio_paths, save_figure, staging_dir
from .metrics import MIN_IOU, best_f1_threshold, classification_metrics, score_annotated
from .model import ZeroShotDetector
from .progress import track
from .streaming import stream_frame_scores
from .train import train_yamnet

BASELINES = {
    "cnn": "the notebook's spectrogram CNN",
    "birdnet": "BirdNET 2.4 zero-shot: its Capuchinbird class, threshold chosen on the validation clips",
    "birdnet-head": "a head on BirdNET 2.4's embeddings, trained as the YAMNet head is",
}
TRAINED = {"yamnet": "yamnet", "cnn": "cnn", "birdnet-head": "birdnet"}  # row -> backbone it trains on
MODEL_FILES = ("head.npz", "cnn.weights.h5")


def _clips(model_dir: Path, split: str) -> list[Clip]:
    return [c for c in read_manifest(model_dir / "manifest.csv") if c.split == split]


def _clip_wave(clip: Clip, backend: str, cache: dict) -> np.ndarray:
    if clip.path not in cache:
        cache.clear()
        cache[clip.path] = load_audio(clip.path, backend)
    wave = cache[clip.path]
    if clip.is_segment:
        wave = wave[int(clip.start_s * SAMPLE_RATE): int(clip.end_s * SAMPLE_RATE)]
    return wave


def clip_scores(detector, clips: list[Clip], backend: str, progress: bool, label: str = "") -> tuple[list, float, float]:
    """(scores, seconds, audio seconds) of ``clips``, each decoded from its file."""
    scores, audio_s, cache = [], 0.0, {}
    t0 = time.perf_counter()
    for clip in track(clips, label or f"Scoring clips ({detector.kind})", len(clips), progress):
        wave = _clip_wave(clip, backend, cache)
        audio_s += wave.size / SAMPLE_RATE
        scores.append(detector.clip_score(wave))
    return scores, time.perf_counter() - t0, audio_s


def evaluate_clips(detector, clips: list[Clip], backend: str, progress: bool, label: str = "") -> dict:
    """Clip scores, metrics at the model's threshold and throughput (decode included)."""
    scores, wall, audio_s = clip_scores(detector, clips, backend, progress, label)
    labels = np.array([c.label for c in clips])
    m = classification_metrics(labels, np.array(scores), detector.threshold)
    m.update({"clips_per_s": len(clips) / wall, "audio_s_per_s": audio_s / wall})
    return {"metrics": m, "scores": [float(s) for s in scores], "labels": labels.tolist()}


def _path_bytes(path) -> int | None:
    p = Path(str(path)) if path else None
    if p is None or not p.exists():
        return None  # a URL handle
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _size(detector, model_dir: Path | None) -> dict:
    own = sum((model_dir / f).stat().st_size for f in MODEL_FILES if (model_dir / f).exists()) if model_dir else 0
    backbone = getattr(detector, "backbone", None)
    return {"model_bytes": own, "backbone_bytes": _path_bytes(backbone.handle) if backbone is not None else None}


def count_forest(detectors: dict, files: list[Path], config: Config, progress: bool) -> dict:
    """Per-file counts for each model with its own rule and with the notebook rule."""
    out = {"files": [p.name for p in files]}
    for name, det in detectors.items():
        own, notebook, t_total, audio_total = [], [], 0.0, 0.0
        win = notebook_window_samples(det)
        for path in track(files, f"Counting forest recordings ({name})", len(files), progress):
            t0 = time.perf_counter()
            fs = stream_frame_scores(det, path, config.audio.block_seconds, config.audio.backend)
            window_s, hop_s = det.window_samples / SAMPLE_RATE, det.hop_samples / SAMPLE_RATE
            own.append(len(detect_events(fs.start_s, fs.scores, window_s, hop_s, event_params(config, det.threshold))))
            t_total += time.perf_counter() - t0
            audio_total += fs.duration_s
            same = det.window_samples == det.hop_samples == win  # non-overlapping windows: the scores above
            ws = fs if same else window_scores(det, path, win, config.audio.backend)
            notebook.append(len(notebook_rule_events(ws.start_s, ws.scores, win / SAMPLE_RATE)))
        out[name] = own
        out[f"{name}_notebook_rule"] = notebook
        out[f"{name}_realtime_factor"] = audio_total / t_total if t_total else None
    return out


def agreement(a: list[int], b: list[int]) -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"pearson_r": r, "mean_abs_diff": float(np.mean(np.abs(a - b))), "exact_agreement": float(np.mean(a == b)),
            "total_a": int(a.sum()), "total_b": int(b.sum())}


def evaluate_real(dets: dict, annotations: Path, data_dir: Path, config: Config, folds: int, site_cv: bool,
                  progress: bool, echo: Callable[[str], None]) -> dict:
    """Every model on completely annotated recordings: frame scores of each recording once
    (timed: the speed per model), event rules chosen by family CV; with ``site_cv`` also the
    heads retrained, per fold, on the clips plus the other folds' recordings."""
    tables, audio, families = annotated_recordings(annotations, data_dir, config.data.audio_dirs)
    fold = assign_folds(tables, families, folds, config.seed)  # checked once already, before training
    durations = {s: audio_info(p).duration_s for s, p in audio.items()}
    stems = sorted(tables)
    out = {"dir": str(annotations), "recordings": len(stems), "calls": sum(call_counts(tables).values()),
           "hours": sum(durations.values()) / 3600, "folds": folds, "fold_of": fold, "rows": {}}

    def add(key: str, cv: dict, **extra) -> None:
        out["rows"][key] = {"scores": cv["rows"]["nested"], "per_file": cv["per_file"],
                            "chosen_per_fold": cv["chosen_per_fold"], **extra}
        r = cv["rows"]["nested"]
        echo(f"{key}: event P {r['event_precision']:.3f} R {r['event_recall']:.3f} F1 {r['event_f1']:.3f}, "
             f"count MAE {r['count_mae']:.3f}")

    for name, det in dets.items():
        scores, t0 = {}, time.perf_counter()
        for stem in track(stems, f"Annotated recordings ({name})", len(stems), progress):
            fs = stream_frame_scores(det, audio[stem], config.audio.block_seconds, config.audio.backend)
            scores[stem] = (fs.start_s, fs.scores)
        seconds = time.perf_counter() - t0
        window_s, hop_s = det.window_samples / SAMPLE_RATE, det.hop_samples / SAMPLE_RATE
        add(name, nested_cv(fold, fixed_scorer(scores), tables, durations, window_s, hop_s),
            seconds=seconds, realtime_factor=sum(durations.values()) / seconds)
        if name == "cnn":  # the notebook as published: its rule, nothing chosen
            win = notebook_window_samples(det)
            same = det.window_samples == det.hop_samples == win  # non-overlapping windows: the scores above
            pred = {}
            for stem in stems:
                if same:
                    t, sc = scores[stem]
                else:
                    ws = window_scores(det, audio[stem], win, config.audio.backend)
                    t, sc = ws.start_s, ws.scores
                pred[stem] = [(e.start_s, e.end_s) for e in notebook_rule_events(t, sc, win / SAMPLE_RATE)]
            r = score_annotated(tables, pred, durations)
            truth = call_counts(tables)
            out["rows"]["cnn, notebook rule"] = {
                "scores": r, "per_file": {s: {"true": truth[s], "nested": len(pred[s]), "fold": fold[s]} for s in stems}}
    if site_cv:
        for name in (n for n in dets if n in ("yamnet", "birdnet-head")):
            cfg = Config.from_dict(config.to_dict())
            cfg.backbone.name = TRAINED[name]
            data = SiteData(cfg, data_dir, tables, audio, families, echo, backbone=dets[name].backbone)
            t0 = time.perf_counter()
            add(f"{name}, + other folds' recordings", nested_cv(fold, data.score_fold, tables, durations, data.window_s,
                                                               data.hop_s, echo=echo), seconds=time.perf_counter() - t0)
    return out


SOUNDSCAPE_KEYS = ("event_precision", "event_recall", "event_f1", "event_tp", "event_fp", "event_fn", "count_mae",
                   "count_rmse", "count_bias", "count_exact_rate", "true_total", "predicted_total", "files")


def evaluate_soundscapes(dets: dict, soundscapes: Path, config: Config, progress: bool) -> dict:
    """Event and count metrics of each model with its own events (on-threshold: the model's
    validation-clip threshold, so no row borrows another's tuning), and the CNN with the notebook rule."""
    truth_path = soundscapes / "truth.csv" if (soundscapes / "truth.csv").exists() else soundscapes
    truth = read_truth_any(truth_path)
    files = expand_audio_paths([soundscapes])
    results = {}
    for name, det in dets.items():
        for notebook in (False, True) if name == "cnn" else (False,):
            cfg = Config.from_dict(config.to_dict())
            cfg.events.notebook_rule = notebook
            cfg.events.threshold = cfg.events.off_threshold = -1.0
            key = f"{name}, notebook rule" if notebook else name
            rep, _ = evaluate_detector(det, truth, files, cfg, progress=progress, label=f"Soundscapes ({key})")
            results[key] = {k: rep[k] for k in SOUNDSCAPE_KEYS}
    return {"dir": str(soundscapes), "results": results}


def _train(name: str, data_dir, out: Path, config: Config, progress: bool, echo) -> Path:

    cfg = Config.from_dict(config.to_dict())
    cfg.backbone.name = TRAINED[name]
    if name == "yamnet":  # the run's handle and runtime are kept as given
        cfg.backbone.handle, cfg.backbone.runtime = config.backbone.handle, config.backbone.runtime
    else:
        cfg.backbone.handle, cfg.backbone.runtime = "", "auto"
    echo(f"training {name} ..." + (" (the bulk of the time)" if name == "cnn" else ""))
    (train_cnn if name == "cnn" else train_yamnet)(data_dir, out, cfg, progress, echo)
    return out


def zero_shot_detector(config: Config, val_clips: list[Clip], progress: bool, backbone=None):
    """BirdNET zero-shot, its threshold the best F1 on ``val_clips``."""
    det = ZeroShotDetector(backbone or make_backbone("birdnet"), 0.5, config)
    scores, _, _ = clip_scores(det, val_clips, config.audio.backend, progress, "Choosing BirdNET's threshold (validation clips)")
    det.threshold = best_f1_threshold(np.array([c.label for c in val_clips]), np.array(scores))
    return det


def run_compare(data_dir: str | Path, out_dir: str | Path, config: Config, baselines: Sequence[str] = ("cnn",),
                models: dict[str, Path] | None = None, forest: Path | None = None, annotations: Path | None = None,
                site_cv: bool = False, soundscapes: Path | None = None, folds: int = FAMILY_FOLDS, progress: bool = True,
                echo: Callable[[str], None] = print) -> dict:
    """Train (or take from ``models``: row -> model dir) every row, evaluate all, write ``out_dir``."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise YamcapError(f"unknown baseline '{unknown[0]}' (known: {', '.join(BASELINES)})")
    if site_cv and annotations is None:
        raise YamcapError("--site-cv needs --annotations (completely annotated recordings with families.csv)")
    rows = ["yamnet"] + [b for b in dict.fromkeys(baselines) if b != "yamnet"]
    if {"birdnet", "birdnet-head"} & set(rows):  # before anything trains: the [birdnet] extra is there
        resolve_birdnet_handle()
    if annotations is not None:  # ... and the annotated recordings, their audio and enough families
        tables, _, families = annotated_recordings(Path(annotations), data_dir, config.data.audio_dirs)
        assign_folds(tables, families, folds, config.seed)
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    models_dir = out_dir.parent / f".{out_dir.name}.models"
    models_dir.mkdir(parents=True, exist_ok=True)
    model_dirs, trained, dets = {}, {}, {}
    for name in (r for r in rows if r in TRAINED):
        given = (models or {}).get(name)
        model_dirs[name] = Path(given) if given else _train(name, data_dir, models_dir / name, config, progress, echo)
        trained[name] = given is None
        dets[name] = load_model(model_dirs[name], expect_kind=TRAINED[name])
    test = {n: _clips(d, "test") for n, d in model_dirs.items()}
    first = [(str(c.path), c.start_s) for c in test["yamnet"]]
    for name, clips in test.items():
        if [(str(c.path), c.start_s) for c in clips] != first:
            raise YamcapError(f"yamnet and {name} were trained on different splits (test clips differ); "
                              "train them with the same data, seed and split settings")
    if "birdnet" in rows:
        shared = dets["birdnet-head"].backbone if "birdnet-head" in dets else None
        dets["birdnet"] = zero_shot_detector(config, _clips(model_dirs["yamnet"], "val"), progress, shared)
    dets = {n: dets[n] for n in rows}

    test_y = test["yamnet"]
    report: dict = {"data": str(data_dir), "seed": config.seed, "rows": rows, "baselines": {b: BASELINES[b] for b in rows[1:]},
                    "test_clips": len(test_y), "test_calls": sum(c.label for c in test_y), "models": {}}
    curves = {}
    for name, det in dets.items():
        mdir = model_dirs.get(name)
        train_s = json.loads((mdir / "metrics.json").read_text())["timing_s"]["total"] if mdir else 0.0
        ev = evaluate_clips(det, test_y, config.audio.backend, progress, f"Test clips ({name})")
        curves[name] = (np.array(ev["labels"]), np.array(ev["scores"]))
        report["models"][name] = {
            "kind": det.kind, "test": ev["metrics"],
            "model_dir": str(out_dir / "models" / name) if trained.get(name) else (str(mdir) if mdir else None),
            "parameters": det.parameters(), **_size(det, mdir), "train_seconds": train_s,
            "trained_in_this_run": trained.get(name, False), "threshold": det.threshold,
        }
    if annotations is not None:
        report["real"] = evaluate_real(dets, Path(annotations), data_dir, config, folds, site_cv, progress, echo)
    else:
        forest_dir = forest or find_forest_dir(data_dir)
        if forest_dir is not None:
            counts = count_forest(dets, expand_audio_paths([forest_dir]), config, progress)
            report["forest"] = {"dir": str(forest_dir), "counts": counts,
                                "agreement_with_yamnet": {n: agreement(counts["yamnet"], counts[n]) for n in rows[1:]}}
    if soundscapes is not None:
        report["soundscapes"] = evaluate_soundscapes(dets, Path(soundscapes), config, progress)
    with staging_dir(out_dir) as tmp:
        atomic_write_json(tmp / "report.json", report)
        config.save(tmp / "config.toml")
        _figures(report, curves, model_dirs, tmp)
        atomic_write_text(tmp / "report.md", render_markdown(report))
        if any(trained.values()):
            shutil.copytree(models_dir, tmp / "models")
    shutil.rmtree(models_dir, ignore_errors=True)
    return report


def _figures(report: dict, curves: dict, model_dirs: dict, tmp: Path) -> None:
    from .plots import count_errors, counts_bar, roc_pr_curves

    save_figure(roc_pr_curves(curves), tmp / "roc_pr.png")
    for name, mdir in model_dirs.items():
        if (mdir / "training_curve.png").exists():
            shutil.copy(mdir / "training_curve.png", tmp / f"training_curve_{name}.png")
    if "real" in report:
        rows = report["real"]["rows"]
        stems = sorted(rows["yamnet"]["per_file"])
        save_figure(count_errors(stems, [rows["yamnet"]["per_file"][s]["true"] for s in stems],
                                 {k: [v["per_file"][s]["nested"] for s in stems] for k, v in rows.items()},
                                 "Counted minus true calls per annotated recording (family CV)"),
                    tmp / "counts_compare.png")
    elif "forest" in report:
        c = report["forest"]["counts"]
        bars = {n: c[n] for n in report["rows"]}
        if "cnn" in bars:
            bars["cnn, notebook rule"] = c["cnn_notebook_rule"]
        save_figure(counts_bar([Path(f).stem for f in c["files"]], bars, "Calls per forest recording"),
                    tmp / "counts_compare.png")


def _event_row(name: str, r: dict, extra: str = "") -> str:
    return (f"| {name} | {r['event_precision']:.3f} | {r['event_recall']:.3f} | {r['event_f1']:.3f} | "
            f"{r['count_mae']:.3f} | {r['count_bias']:+.2f} | {r['count_exact_rate']:.0%} | "
            f"{r['true_total']} / {r['predicted_total']} |{extra}")


def _n(n) -> str:
    return "-" if n is None else f"{n:,}"


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def render_markdown(r: dict) -> str:
    names = r["rows"]
    lines = [f"# {' vs '.join(names)}", "",
             f"Data: `{r['data']}`, seed {r['seed']}; one source-grouped test split for every model "
             f"({r['test_clips']} clips, {r['test_calls']} calls)."]
    lines += [f"- `{b}`: {what}" for b, what in r["baselines"].items()]
    lines += ["", "## Test clips", "",
              "| model | precision | recall | F1 | ROC-AUC | PR-AUC | confusion [[TN FP] [FN TP]] | threshold |",
              "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        t = m["test"]
        lines.append(f"| {name} | {t['precision']:.3f} | {t['recall']:.3f} | {t['f1']:.3f} | {t['roc_auc']:.3f} | "
                     f"{t['pr_auc']:.3f} | {t['confusion']} | {m['threshold']:.3f} |")
    real = r.get("real", {}).get("rows", {})
    lines += ["", "## Cost", "",
              "| model | trainable parameters | frozen parameters | own files | backbone | training time | "
              "test clips/s | recordings: x real time |", "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        p, rt = m["parameters"], real.get(name, {}).get("realtime_factor")
        lines.append(f"| {name} | {_n(p['trainable'])} | {_n(p['frozen'])} | "
                     f"{_mb(m['model_bytes'])} | {_mb(m['backbone_bytes'])} | {m['train_seconds']:.0f} s | "
                     f"{m['test']['clips_per_s']:.1f} | {'-' if rt is None else f'{rt:.0f}x'} |")
    head = ["| model, rule | event precision | event recall | event F1 | count MAE | count bias | exact counts | "
            "calls (true / found) |", "|---|---|---|---|---|---|---|---|"]
    if "real" in r:
        g = r["real"]
        lines += ["", "## Annotated real recordings", "",
                  f"`{g['dir']}`: {g['recordings']} recordings ({g['hours']:.2f} h), {g['calls']} calls marked one by "
                  f"one; events match at IoU >= {MIN_IOU}. Event rules (threshold, hysteresis, gap, durations) are chosen "
                  f"for each of {g['folds']} folds of whole recording families on the other folds and pooled; the "
                  "models never saw these recordings, except the rows marked \"+ other folds' recordings\" (heads "
                  "retrained per fold on the clips plus the other folds, rules chosen on inner folds). "
                  "\"notebook rule\": the notebook's counting, nothing chosen.", ""] + head
        for key, v in real.items():
            lines.append(_event_row(key, v["scores"]))
        lines += ["", "False events per hour of call-free audio: " + ", ".join(
            f"{k} {v['scores']['false_events_per_hour']:.1f}" for k, v in real.items()) + "."]
    if "forest" in r:
        c = r["forest"]["counts"]
        lines += ["", "## Forest recordings (no ground truth: agreement, not accuracy)", "",
                  "Total calls: " + ", ".join(f"{n} {sum(c[n])}" for n in names) + ".", ""]
        for n, a in r["forest"]["agreement_with_yamnet"].items():
            lines.append(f"- yamnet vs {n} per file: Pearson r {a['pearson_r']:.2f}, mean |difference| "
                         f"{a['mean_abs_diff']:.2f} calls, identical counts in {a['exact_agreement']:.0%} of files.")
        cols = names + [f"{n}, notebook rule" for n in names]
        lines += ["", "| file | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for i, f in enumerate(c["files"]):
            lines.append(f"| {f} | " + " | ".join(str(c[n.replace(', notebook rule', '_notebook_rule')][i]) for n in cols) + " |")
    if "soundscapes" in r:
        lines += ["", "## Synthetic soundscapes with known calls", "",
                  f"`{r['soundscapes']['dir']}`: each model's own events at its validation-clip threshold; "
                  f"one-to-one matching at IoU >= {MIN_IOU}.", ""] + head
        for key, v in r["soundscapes"]["results"].items():
            lines.append(_event_row(key, v))
    lines += ["", "Figures: `roc_pr.png`, `counts_compare.png`, `training_curve_*.png`. Every number: `report.json`."]
    return "\n".join(lines) + "\n"
