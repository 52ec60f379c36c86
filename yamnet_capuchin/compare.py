"""Head-to-head: YAMNet + head vs the notebook CNN on one split (``yamcap compare``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .config import Config
from .dataset import Clip, read_manifest
from .errors import YamcapError
from .events import detect_events, notebook_rule_events
from .fileio import atomic_write_json, atomic_write_text, expand_audio_paths, save_figure, staging_dir
from .metrics import classification_metrics
from .detectors import load_model
from .progress import progress_bar, track

MODEL_FILES = ("head.npz", "cnn.weights.h5")


def _test_clips(model_dir: Path) -> list[Clip]:
    return [c for c in read_manifest(model_dir / "manifest.csv") if c.split == "test"]


def _clip_wave(clip: Clip, backend: str, cache: dict) -> np.ndarray:
    if clip.path not in cache:
        cache.clear()
        cache[clip.path] = load_audio(clip.path, backend)
    wave = cache[clip.path]
    if clip.is_segment:
        wave = wave[int(clip.start_s * SAMPLE_RATE): int(clip.end_s * SAMPLE_RATE)]
    return wave


def evaluate_clips(detector, clips: list[Clip], backend: str, progress: bool) -> dict:
    """Clip scores, metrics at the model's threshold and throughput (decode included)."""
    scores, audio_s, cache = [], 0.0, {}
    t0 = time.perf_counter()
    for clip in track(clips, f"Scoring test clips ({detector.kind})", len(clips), progress):
        wave = _clip_wave(clip, backend, cache)
        audio_s += wave.size / SAMPLE_RATE
        scores.append(detector.clip_score(wave))
    wall = time.perf_counter() - t0
    labels = np.array([c.label for c in clips])
    m = classification_metrics(labels, np.array(scores), detector.threshold)
    m.update({"clips_per_s": len(clips) / wall, "audio_s_per_s": audio_s / wall})
    return {"metrics": m, "scores": [float(s) for s in scores], "labels": labels.tolist()}


def _model_size(model_dir: Path) -> int:
    return sum((model_dir / f).stat().st_size for f in MODEL_FILES if (model_dir / f).exists())


def _parameters(detector) -> dict:
    if detector.kind == "cnn":
        return {"trainable": detector.n_parameters(), "frozen": 0}
    head = sum(int(np.prod(w.shape)) for w in detector.head.weights_.values())
    return {"trainable": head, "frozen": detector.backbone.n_parameters() or 0}  # frozen YAMNet


def count_forest(detectors: dict, files: list[Path], config: Config, progress: bool) -> dict:
    """Per-file counts for each model with its own rule and with the notebook rule."""
    from .count import event_params, notebook_window_samples, window_scores
    from .streaming import stream_frame_scores

    out = {"files": [p.name for p in files]}
    for name, det in detectors.items():
        own, notebook, t_total, audio_total = [], [], 0.0, 0.0
        win = notebook_window_samples(det)
        with progress_bar(progress) as bar:
            task = bar.add_task(f"Counting forest recordings ({name})", total=len(files)) if bar else None
            for path in files:
                t0 = time.perf_counter()
                fs = stream_frame_scores(det, path, config.audio.block_seconds, config.audio.backend)
                window_s, hop_s = det.window_samples / SAMPLE_RATE, det.hop_samples / SAMPLE_RATE
                own.append(len(detect_events(fs.start_s, fs.scores, window_s, hop_s, event_params(config, det.threshold))))
                t_total += time.perf_counter() - t0
                audio_total += fs.duration_s
                ws = fs if (det.kind == "cnn" and det.hop_samples == win) else window_scores(det, path, win, config.audio.backend)
                notebook.append(len(notebook_rule_events(ws.start_s, ws.scores, win / SAMPLE_RATE)))
                if bar:
                    bar.advance(task)
        out[name] = own
        out[f"{name}_notebook_rule"] = notebook
        out[f"{name}_realtime_factor"] = audio_total / t_total if t_total else None
    return out


def agreement(a: list[int], b: list[int]) -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"pearson_r": r, "mean_abs_diff": float(np.mean(np.abs(a - b))), "exact_agreement": float(np.mean(a == b)),
            "total_a": int(a.sum()), "total_b": int(b.sum())}


SOUNDSCAPE_KEYS = ("event_precision", "event_recall", "event_f1", "event_tp", "event_fp", "event_fn", "count_mae",
                   "count_rmse", "count_bias", "count_exact_rate", "true_total", "predicted_total", "files")


def evaluate_soundscapes(dets: dict, soundscapes: Path, config: Config, progress: bool) -> dict:
    """Event and count metrics of each model, with its own events and with the notebook rule."""
    from .evaluation import evaluate_detector, read_truth_any

    truth_path = soundscapes / "truth.csv" if (soundscapes / "truth.csv").exists() else soundscapes
    truth = read_truth_any(truth_path)
    files = expand_audio_paths([soundscapes])
    results = {}
    for name, det in dets.items():
        for notebook in (False, True):
            cfg = Config.from_dict(config.to_dict())
            cfg.events.notebook_rule = notebook
            key = f"{name}_notebook_rule" if notebook else name
            rep, _ = evaluate_detector(det, truth, files, cfg, progress=progress, label=f"Soundscapes ({key})")
            results[key] = {k: rep[k] for k in SOUNDSCAPE_KEYS}
    return {"dir": str(soundscapes), "results": results}


def run_compare(data_dir: str | Path, out_dir: str | Path, config: Config, yamnet_model: Path | None = None,
                cnn_model: Path | None = None, forest: Path | None = None, progress: bool = True,
                echo: Callable[[str], None] = print, soundscapes: Path | None = None) -> dict:
    from .cnn import train_cnn
    from .dataset import find_forest_dir
    from .train import train_yamnet

    out_dir = Path(out_dir)
    models_dir = out_dir.parent / f".{out_dir.name}.models"
    models_dir.mkdir(parents=True, exist_ok=True)
    trained = {}
    if yamnet_model is None:
        echo("training YAMNet head ...")
        train_yamnet(data_dir, models_dir / "yamnet", config, progress, echo)
        yamnet_model, trained["yamnet"] = models_dir / "yamnet", True
    if cnn_model is None:
        echo("training the notebook CNN (the bulk of the time) ...")
        cnn_cfg = Config.from_dict(config.to_dict())
        cnn_cfg.backbone.name = "cnn"
        train_cnn(data_dir, models_dir / "cnn", cnn_cfg, progress, echo)
        cnn_model, trained["cnn"] = models_dir / "cnn", True
    yamnet_model, cnn_model = Path(yamnet_model), Path(cnn_model)
    test_y, test_c = _test_clips(yamnet_model), _test_clips(cnn_model)
    if [(str(c.path), c.start_s) for c in test_y] != [(str(c.path), c.start_s) for c in test_c]:
        raise YamcapError("the two models were trained on different splits (test clips differ); "
                          "train them with the same data, seed and split settings")
    dets = {"yamnet": load_model(yamnet_model, expect_kind="yamnet"), "cnn": load_model(cnn_model, expect_kind="cnn")}

    report: dict = {"data": str(data_dir), "seed": config.seed, "test_clips": len(test_y),
                    "test_calls": sum(c.label for c in test_y), "models": {}}
    curves = {}
    for name, det in dets.items():
        mdir = yamnet_model if name == "yamnet" else cnn_model
        train_metrics = json.loads((mdir / "metrics.json").read_text())
        ev = evaluate_clips(det, test_y, config.audio.backend, progress)
        curves[name] = (np.array(ev["labels"]), np.array(ev["scores"]))
        report["models"][name] = {
            "model_dir": str(mdir), "test": ev["metrics"], "parameters": _parameters(det),
            "size_bytes": _model_size(mdir), "train_seconds": train_metrics["timing_s"]["total"],
            "trained_in_this_run": trained.get(name, False), "threshold": det.threshold,
        }
    forest_dir = forest or find_forest_dir(data_dir)
    if forest_dir is not None:
        files = expand_audio_paths([forest_dir])
        counts = count_forest(dets, files, config, progress)
        report["forest"] = {
            "dir": str(forest_dir), "counts": counts,
            "agreement_yamnet_vs_cnn": agreement(counts["yamnet"], counts["cnn"]),
            "agreement_yamnet_vs_cnn_notebook_rule": agreement(counts["yamnet"], counts["cnn_notebook_rule"]),
        }
    if soundscapes is not None:
        report["soundscapes"] = evaluate_soundscapes(dets, Path(soundscapes), config, progress)
    with staging_dir(out_dir) as tmp:
        atomic_write_json(tmp / "report.json", report)
        config.save(tmp / "config.toml")
        from .plots import counts_bar, roc_pr_curves

        save_figure(roc_pr_curves(curves), tmp / "roc_pr.png")
        for name, mdir in (("yamnet", yamnet_model), ("cnn", cnn_model)):
            if (mdir / "training_curve.png").exists():
                shutil.copy(mdir / "training_curve.png", tmp / f"training_curve_{name}.png")
        if "forest" in report:
            c = report["forest"]["counts"]
            save_figure(counts_bar([Path(f).stem for f in c["files"]],
                                   {"YAMNet": c["yamnet"], "CNN": c["cnn"], "CNN, notebook rule": c["cnn_notebook_rule"]},
                                   "Calls per forest recording"), tmp / "counts_compare.png")
        atomic_write_text(tmp / "report.md", render_markdown(report))
        if trained:
            shutil.copytree(models_dir, tmp / "models")
    shutil.rmtree(models_dir, ignore_errors=True)
    return report


def render_markdown(r: dict) -> str:
    lines = ["# YAMNet + head vs the notebook CNN", "",
             f"Data: `{r['data']}`, seed {r['seed']}; the same source-grouped test split for both "
             f"({r['test_clips']} clips, {r['test_calls']} calls).", "",
             "## Test clips", "",
             "| model | precision | recall | F1 | ROC-AUC | PR-AUC | confusion [[TN FP] [FN TP]] | threshold |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        t = m["test"]
        lines.append(f"| {name} | {t['precision']:.3f} | {t['recall']:.3f} | {t['f1']:.3f} | {t['roc_auc']:.3f} | "
                     f"{t['pr_auc']:.3f} | {t['confusion']} | {m['threshold']:.3f} |")
    lines += ["", "## Cost", "",
              "| model | trainable parameters | frozen parameters | size on disk | training time | test clips/s | audio s/s |",
              "|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        t = m["test"]
        lines.append(f"| {name} | {m['parameters']['trainable']:,} | {m['parameters']['frozen']:,} | "
                     f"{m['size_bytes'] / 1e6:.1f} MB | {m['train_seconds']:.0f} s | {t['clips_per_s']:.1f} | "
                     f"{t['audio_s_per_s']:.0f} |")
    if "forest" in r:
        c = r["forest"]["counts"]
        a = r["forest"]["agreement_yamnet_vs_cnn"]
        lines += ["", "## Forest recordings (no ground truth: agreement, not accuracy)", "",
                  f"Total calls: YAMNet {sum(c['yamnet'])}, CNN {sum(c['cnn'])}; with the notebook rule: "
                  f"YAMNet {sum(c['yamnet_notebook_rule'])}, CNN {sum(c['cnn_notebook_rule'])}.", "",
                  f"YAMNet vs CNN per file: Pearson r {a['pearson_r']:.2f}, mean |difference| "
                  f"{a['mean_abs_diff']:.2f} calls, identical counts in {a['exact_agreement']:.0%} of files.", "",
                  "| file | YAMNet | CNN | YAMNet, notebook rule | CNN, notebook rule |", "|---|---|---|---|---|"]
        for i, f in enumerate(c["files"]):
            lines.append(f"| {f} | {c['yamnet'][i]} | {c['cnn'][i]} | {c['yamnet_notebook_rule'][i]} | "
                         f"{c['cnn_notebook_rule'][i]} |")
    if "soundscapes" in r:
        lines += ["", "## Counting on soundscapes with known calls", "",
                  f"`{r['soundscapes']['dir']}`: one-to-one matching at IoU >= 0.3.", "",
                  "| model, rule | event precision | event recall | event F1 | count MAE | count bias | exact counts | calls (true / found) |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, v in r["soundscapes"]["results"].items():
            lines.append(f"| {key.replace('_notebook_rule', ', notebook rule')} | {v['event_precision']:.3f} | "
                         f"{v['event_recall']:.3f} | {v['event_f1']:.3f} | {v['count_mae']:.2f} | "
                         f"{v['count_bias']:+.2f} | {v['count_exact_rate']:.0%} | {v['true_total']} / {v['predicted_total']} |")
    lines += ["", "Figures: `roc_pr.png`, `counts_compare.png`, `training_curve_*.png`. Every number: `report.json`."]
    return "\n".join(lines) + "\n"
