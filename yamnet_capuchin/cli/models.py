"""``yamcap train``, ``export``, ``compare`` and ``benchmark``: make, ship and measure models."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..config import DEFAULT_BLOCK_FRAMES, DEFAULT_CALIBRATION_BLOCKS, FAMILY_FOLDS
from .common import (
    _CFG,
    ConfigOpt,
    DataOpt,
    QuietOpt,
    RuntimeOpt,
    SetOpt,
    YamnetOpt,
    _default,
    _fail,
    _guarded,
    _load_config,
    _report_failures,
    app,
)


@app.command()
@_guarded
def train(
    data: Path = DataOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write (replaced if it exists)."),
    backbone: str = typer.Option("yamnet", "--backbone", "-b", help="yamnet (frozen YAMNet + head), birdnet (frozen BirdNET 2.4 + the same head; the [birdnet] extra; the BirdNET model is CC BY-NC-SA 4.0, non-commercial use only) or cnn (the notebook's spectrogram CNN)."),
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Random seed (split, initialisation, augmentation) {_default('seed')}."),
    yamnet: Optional[str] = YamnetOpt,
    runtime: Optional[str] = RuntimeOpt,
    pooling: Optional[str] = typer.Option(None, "--pooling", help=f"mean, max, attention, or auto (best on validation) {_default('head.pooling')}."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help=f"Mix training clips into other audio at random SNR, gain and shift {_default('augment.enabled')}."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache [env: YAMCAP_CACHE; default ~/.cache/yamcap]."),
    annotations: Optional[List[Path]] = typer.Option(None, "--annotations", help="Folder of Raven tables with an Annotation column (e.g. from `yamcap review`): capuchin selections join as calls, other:* as non-calls (repeatable)."),
    complete_annotations: Optional[List[Path]] = typer.Option(None, "--complete-annotations", help="Like --annotations, for tables that mark every call: the unlabelled rest of each recording joins as non-calls too (repeatable)."),
    audio: Optional[List[Path]] = typer.Option(None, "--audio", help="Folders holding the annotated recordings, matched by file stem (besides the data's forest folder; repeatable)."),
    sets: Optional[List[str]] = SetOpt,
    quiet: bool = QuietOpt,
):
    """Train a detector on labelled clips (and annotated recordings) and report test-split metrics.

    The split is made by *source recording* (70/10/20 % of sources by default), so clips cut from
    one recording never sit on both sides. The decision threshold is the best-F1 one on the
    validation split and is stored with the model. Files that cannot be read are left out before
    the split is drawn and listed with their reasons (also in metrics.json); the model is still
    written, and the exit status is then 1.

    Examples:

        yamcap train --backbone yamnet --data ../shared/data/capuchin --out runs/y

        yamcap train -b yamnet -d data/ -o runs/aug --augment --set head.hidden_units=256

        yamcap train -d ../shared/data/capuchin -o runs/forest --complete-annotations data/annotations/forest

    Annotated recordings are split by family (a families.csv beside the tables, written by
    `yamcap families`), else by recording.
    """
    cfg = _load_config(config, sets, {
        "seed": seed, "backbone.name": backbone, "backbone.handle": yamnet, "backbone.runtime": runtime,
        "head.pooling": pooling, "augment.enabled": augment, "cache_dir": str(cache_dir) if cache_dir else None,
    })
    for key, given in (("annotations", annotations), ("complete_annotations", complete_annotations),
                       ("audio_dirs", audio)):
        if given:
            setattr(cfg.data, key, [str(p) for p in given])
    if cfg.backbone.name in ("yamnet", "birdnet"):
        from ..train import train_yamnet

        metrics = train_yamnet(data, out, cfg, progress=not quiet, echo=typer.echo)
    elif cfg.backbone.name == "cnn":
        from ..cnn import train_cnn

        metrics = train_cnn(data, out, cfg, progress=not quiet, echo=typer.echo)
    else:
        _fail(f"unknown backbone '{cfg.backbone.name}' (yamnet, birdnet or cnn)")
    _print_metrics(metrics, out)
    if metrics.get("failures"):  # the model is complete, but trained without these files
        typer.secho(f"{len(metrics['failures'])} file(s) could not be read and were left out "
                    "(listed above and in metrics.json)", fg="yellow", err=True)
        raise typer.Exit(1)


def _print_metrics(metrics: dict, out: Path) -> None:
    t = metrics["test"]
    typer.echo(
        f"test split ({t['n']} clips, {t['n_positive']} calls), threshold {metrics['threshold']:.3f}:\n"
        f"  precision {t['precision']:.4f}  recall {t['recall']:.4f}  F1 {t['f1']:.4f}  "
        f"ROC-AUC {t['roc_auc']:.4f}  PR-AUC {t['pr_auc']:.4f}\n"
        f"  confusion [[TN FP] [FN TP]] = {t['confusion']}\n"
        + (f"test segments of recordings ({seg['n']}, {seg['n_positive']} call frames): precision {seg['precision']:.4f}  "
           f"recall {seg['recall']:.4f}  ROC-AUC {seg['roc_auc']:.4f}\n" if (seg := metrics.get("test_segments")) else "")
        + f"model written to {out} ({metrics['timing_s']['total']:.1f} s)"
    )


@app.command()
@_guarded
def export(
    out: str = typer.Option(..., "--out", "-o", help="Folder to write (replaced if it exists)."),
    fmt: str = typer.Option("savedmodel", "--format", "-f", help="savedmodel (any length in, TensorFlow only) or tflite (fixed blocks, for TFLite interpreters)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="YAMNet-head model directory (default: the shipped model)."),
    block_frames: int = typer.Option(DEFAULT_BLOCK_FRAMES, "--block-frames", help="tflite: frames per invoke (the input is (N - 1) * 7680 + 15600 samples)."),
    int8: bool = typer.Option(False, "--int8", rich_help_panel="Quantization", help="tflite: run YAMNet's convolutions in int8 (count 1.7x faster than the float32 TFLite on 2 cores; front end and head stay float32). It costs accuracy: event F1 0.94 -> 0.91 in family CV (docs/export.md)."),
    calibrate: Optional[List[Path]] = typer.Option(None, "--calibrate", rich_help_panel="Quantization", help="With --int8: audio files or folders to calibrate on, like the audio the model will meet (e.g. its training clips); no labels are read (repeatable)."),
    calibration_blocks: int = typer.Option(DEFAULT_CALIBRATION_BLOCKS, "--calibration-blocks", rich_help_panel="Quantization", help="With --int8: blocks of audio (each --block-frames frames) to calibrate on, drawn from --calibrate in a seeded shuffle of its files."),
    float16: bool = typer.Option(False, "--float16", rich_help_panel="Quantization", help="tflite: store the weights as float16, half the file (7.9 MB instead of 15.8 for the shipped model); products stay float32. On the shipped model frame scores moved by up to 0.022; counts on the 40 forest recordings were unchanged (docs/export.md)."),
    yamnet: Optional[str] = YamnetOpt,
    quiet: bool = QuietOpt,
):
    """Export a model as one graph: 16 kHz waveform in, frame scores (and embeddings) out.

    YAMNet and the head go into one SavedModel (load it with plain `tf.saved_model.load`, no
    yamcap needed) or one TFLite file; OUT/yamcap_export.json holds the threshold, the event
    parameters, the frame window and hop and where the model came from. `yamcap count` and
    `yamcap predict` take the folder as --model. docs/export.md shows how to call it from
    TensorFlow alone.

    Examples:

        yamcap export --out exported/savedmodel

        yamcap export --format tflite --out exported/tflite --model runs/mine

        yamcap export --format tflite --int8 --calibrate ../shared/data/capuchin/Parsed_Capuchinbird_Clips --calibrate ../shared/data/capuchin/Parsed_Not_Capuchinbird_Clips --out exported/int8
    """
    from ..detectors import load_model
    from ..export import calibration_blocks as cut_blocks
    from ..export import export_model

    if (int8 or calibrate or float16) and fmt != "tflite":
        _fail("--int8, --calibrate and --float16 are for --format tflite")
    if int8 and float16:
        _fail("choose --int8 or --float16, not both")
    if int8 and not calibrate:
        _fail("--int8 needs --calibrate: audio like the audio the model will meet (e.g. its training clips)")
    failures: list = []
    calibration = cut_blocks(calibrate, block_frames, calibration_blocks, seed=_CFG.seed, failures=failures) if int8 else None
    detector = load_model(model, yamnet=yamnet, runtime="savedmodel")
    meta = export_model(detector, out, fmt, block_frames, calibration, float16)
    what = (f"block of {meta['block_samples']} samples -> {meta['block_frames']} frame scores"
            if fmt == "tflite" else "waveform (any length) -> frame scores, embeddings, start times")
    if calibration is not None:
        what += f"; int8 convolutions, calibrated on {len(calibration)} blocks"
    elif float16:
        what += "; float16 weights"
    typer.echo(f"exported {meta['provenance']['source_fingerprint']} as {fmt} to {out}/ ({what})")
    if failures:
        _report_failures(failures)
        raise typer.Exit(1)


@app.command()
@_guarded
def compare(
    baseline: List[str] = typer.Option(["cnn"], "--baseline", help="Baseline(s) to put beside the YAMNet head, repeatable: cnn (the notebook's CNN), birdnet (BirdNET 2.4 zero-shot), birdnet-head (a head on BirdNET's embeddings). BirdNET needs the [birdnet] extra; its model is CC BY-NC-SA 4.0, non-commercial."),
    data: Path = DataOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (report.md, report.json, figures)."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="Completely annotated recordings (Raven tables + families.csv, e.g. data/annotations/forest): events and counts against the truth, event rules chosen by family cross-validation."),
    site_cv: bool = typer.Option(False, "--site-cv", help="With --annotations: also retrain the heads per fold on the clips plus the other folds' recordings (minutes per head)."),
    folds: int = typer.Option(FAMILY_FOLDS, "--folds", help="Folds of whole recording families for --annotations."),
    soundscapes: Optional[Path] = typer.Option(None, "--soundscapes", help="Soundscapes with truth.csv (yamcap synth, test splits) for event and count metrics."),
    forest: Optional[Path] = typer.Option(None, "--forest", help="Without --annotations: recordings to count with every model (default: the data's forest folder)."),
    yamnet_model: Optional[Path] = typer.Option(None, "--yamnet-model", help="A trained YAMNet model dir (else trained here)."),
    cnn_model: Optional[Path] = typer.Option(None, "--cnn-model", help="A trained CNN model dir (else trained here; ~13 min on 2 cores)."),
    birdnet_model: Optional[Path] = typer.Option(None, "--birdnet-model", help="A trained BirdNET-head model dir (train --backbone birdnet; else trained here)."),
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Random seed (split, initialisation) {_default('seed')}."),
    sets: Optional[List[str]] = SetOpt,
    quiet: bool = QuietOpt,
):
    """The YAMNet head against its baselines, every row from one run.

    Trains whichever model is not given (all on one data set, seed and source-grouped split),
    then scores every model on the test clips (precision, recall, F1, ROC-AUC, PR-AUC,
    confusion matrix, parameters, size, training time, speed); with --annotations, on
    annotated real recordings (events and counts against the truth, event rules chosen by
    family cross-validation, speed over the recordings); with --soundscapes, on soundscapes
    with known calls. BirdNET zero-shot takes its threshold from the validation clips.

    Example:

        yamcap compare --baseline cnn --baseline birdnet --baseline birdnet-head --data ../shared/data/capuchin --annotations data/annotations/forest --out reports/compare
    """
    from ..compare import run_compare

    cfg = _load_config(config, sets, {"seed": seed})
    given = {"yamnet": yamnet_model, "cnn": cnn_model, "birdnet-head": birdnet_model}
    report = run_compare(data, out, cfg, baseline, {k: v for k, v in given.items() if v}, forest, annotations,
                         site_cv, soundscapes, folds, progress=not quiet, echo=typer.echo)
    for name, m in report["models"].items():
        t = m["test"]
        real = report.get("real", {}).get("rows", {}).get(name)
        events = f"  recordings: event F1 {real['scores']['event_f1']:.3f}, count MAE {real['scores']['count_mae']:.2f}" if real else ""
        typer.echo(f"{name:13s} test F1 {t['f1']:.3f}  ROC-AUC {t['roc_auc']:.3f}  {t['clips_per_s']:.1f} clips/s{events}")
    typer.echo(f"report written to {out}/report.md")


@app.command()
@_guarded
def benchmark(
    data: Path = typer.Option(..., "--data", "-d", help="Kaggle-layout folder; its forest recordings are the workload."),
    out: Path = typer.Option(Path("benchmarks/results"), "--out", "-o", help="Folder for the results: DATE-MACHINE.json and DATE-MACHINE.md."),
    yamnet: Optional[str] = typer.Option(None, "--yamnet", help="YAMNet SavedModel/URL [env: YAMCAP_YAMNET]."),
    tflite: Optional[str] = typer.Option(None, "--tflite", help="YAMNet .tflite file (default: yamnet.tflite beside the SavedModel)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="YAMNet head to run (default: the shipped one)."),
    cnn_model: Optional[Path] = typer.Option(None, "--cnn-model", help="A trained CNN model dir (yamcap train --backbone cnn) to include."),
    rss: bool = typer.Option(True, "--rss/--no-rss", help="Peak RSS for 1 min .. 10 h synthetic recordings (about 4 min)."),
    train: bool = typer.Option(True, "--train/--no-train", help="Time YAMNet training with a cold and a warm cache."),
):
    """Measure speed, memory and scaling for YAMNet (SavedModel, TFLite) and the CNN.

    Throughput end to end and per stage (decode, resample, embed/forward, head, events), the
    decode + resample floor, 1 vs 2 threads, number of files, peak RSS against recording
    length (1 min, 10 min, 1 h, 10 h), training time with a cold and a warm cache.

    Example:

        yamcap benchmark --data ../shared/data/capuchin --cnn-model runs/cnn
    """
    from ..backbones import resolve_yamnet_handle
    from ..benchmark import run_benchmark

    handle = resolve_yamnet_handle(yamnet)
    tfl = tflite
    if tfl is None and Path(handle).is_dir() and (Path(handle).parent / "yamnet.tflite").exists():
        tfl = str(Path(handle).parent / "yamnet.tflite")
    result = run_benchmark(data, out, handle, tfl, cnn_model, model, rss=rss, train=train, echo=typer.echo)
    typer.echo("results: " + ", ".join(result["written"]))
