"""The ``yamcap`` command line: a thin shell over the library.

Only typer and the standard library are imported at start-up; TensorFlow loads when a
command needs it, so ``yamcap --help`` answers at once.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from .config import DEFAULT_BLOCK_FRAMES, DEFAULT_CALIBRATION_BLOCKS, FAMILY_FOLDS, MIN_IOU, Config, SynthParams

app = typer.Typer(
    name="yamcap",
    help=(
        "Find and count Capuchinbird calls in forest recordings with a frozen YAMNet and a small "
        "trained head (or the original notebook's spectrogram CNN, as a baseline).\n\n"
        "Counting and prediction with the shipped model need no TensorFlow and no download: it is "
        "one TFLite file in the package. Training, export, evaluation and --yamnet need "
        "pip install 'yamnet-capuchin[train]'; they load YAMNet from $YAMCAP_YAMNET (a SavedModel "
        "folder, a .tflite file or a TF-Hub URL); offline, point it at a local copy:  "
        "export YAMCAP_YAMNET=/path/to/yamnet"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


def _tidy_help_metavars() -> None:
    """Typer's help shows a flag as ``--plots <bool>`` and a required argument in the usage
    line as ``{paths}...``: show flags bare and arguments as ``PATHS...`` (click's style).
    Help text only; parsing is untouched, and a typer without these hooks is left as it is."""
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover
        return
    if hasattr(TyperOption, "display_type_rich") and not getattr(TyperOption, "_yamcap_tidy", False):
        shown = TyperOption.display_type_rich

        def display_type_rich(self, ctx):
            return None if getattr(self, "is_flag", False) else shown(self, ctx)

        TyperOption.display_type_rich = display_type_rich
        TyperOption._yamcap_tidy = True
    if hasattr(TyperArgument, "_usage_display_name"):
        def _usage_display_name(self):
            name = (self.metavar or self.name or "").upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        TyperArgument._usage_display_name = _usage_display_name


_tidy_help_metavars()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("yamnet-capuchin")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"yamcap {_package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Show yamcap's version and exit."),
) -> None:
    pass


_CFG = Config()
_SP = SynthParams()  # synth's defaults, written once in config.py


def _default(dotted: str) -> str:
    """``[config KEY: VALUE]`` for a help text: the default as config.py writes it."""
    value = _CFG
    for part in dotted.split("."):
        value = getattr(value, part)
    return f"[config {dotted}: {value}]"
ConfigOpt = typer.Option(None, "--config", "-c", rich_help_panel="Configuration", help="TOML config file; CLI options override it. Every default, commented: yamnet_capuchin/configs/default.toml (installed with the package).")
SetOpt = typer.Option(None, "--set", rich_help_panel="Configuration", help="Override any config value, e.g. --set head.dropout=0.5 (repeatable).")
YamnetOpt = typer.Option(None, "--yamnet", rich_help_panel="Backbone", help="YAMNet handle: TF-Hub URL, SavedModel folder or .tflite file [env: YAMCAP_YAMNET]. With no --model, --yamnet or --runtime runs the shipped head on this YAMNet instead of the packaged TFLite file (needs [train]).")
RuntimeOpt = typer.Option(None, "--runtime", rich_help_panel="Backbone", help="YAMNet runtime: savedmodel or tflite (default: from the handle).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
DataOpt = typer.Option(..., "--data", "-d", help="Kaggle-layout data folder (Parsed_Capuchinbird_Clips/, Parsed_Not_Capuchinbird_Clips/, Forest Recordings/).")
ModelOpt = typer.Option(None, "--model", "-m", help="Model directory: trained, or an export (default: the model shipped with yamcap).")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _setup_runtime() -> None:
    """Quiet TensorFlow and show our warnings as one line each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "YamcapWarning":
            typer.secho(f"warning: {message}", fg="yellow", err=True)

    warnings.showwarning = show
    warnings.filterwarnings("ignore", module="keras.*")
    warnings.filterwarnings("ignore", module="tensorflow.*")


def _load_config(config: Optional[Path], sets: Optional[List[str]], overrides: dict):
    from .config import Config

    pairs = {}
    for item in sets or []:
        if "=" not in item:
            _fail(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    pairs.update({k: v for k, v in overrides.items() if v is not None})
    return Config.load(config, pairs)


def _requested_backend(config: Optional[Path], sets: Optional[List[str]]) -> Optional[str]:
    """The audio backend the user asked for (--set, else the --config file), or None: then a
    model is run with the backend it was trained with, not with the default one."""
    for item in reversed(sets or []):
        key, _, value = item.partition("=")
        if key.strip() == "audio.backend":
            return value.strip()
    if config is not None:
        from .config import tomllib

        with open(config, "rb") as fh:  # Config.load has already read and checked this file
            return tomllib.load(fh).get("audio", {}).get("backend")
    return None


def _load_detector(model, yamnet, runtime, cfg, config: Optional[Path], sets: Optional[List[str]]):
    """Load a model; ``cfg`` takes over its backbone and audio backend (unless one was asked for)."""
    from .detectors import load_model

    detector = load_model(model, yamnet=yamnet, runtime=runtime, audio_backend=_requested_backend(config, sets))
    cfg.backbone, cfg.audio.backend = detector.config.backbone, detector.config.audio.backend
    return detector


def _guard(fn, name: str = "this command"):
    """Run a command body (the command ``name``); YamcapError, or an optional dependency not
    installed -> one red line and exit 2; Ctrl-C -> exit 130."""
    from .errors import YamcapError, missing_extra

    try:
        return fn()
    except YamcapError as exc:
        _fail(str(exc))
    except ImportError as exc:
        message = missing_extra(exc, name)
        if message is None:
            raise
        _fail(message)
    except KeyboardInterrupt:
        typer.secho("interrupted: no partial output was left", fg="yellow", err=True)
        raise typer.Exit(130)


def _guarded(command):
    """A command's set-up and errors, once for all: TensorFlow quiet and our warnings as one line
    each (:func:`_setup_runtime`), then the command under :func:`_guard`. The signature, and so
    the options typer reads from it, stay the command's own."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        _setup_runtime()
        return _guard(lambda: command(*args, **kwargs), f"yamcap {command.__name__.replace('_', '-')}")

    return run


class ModelRun:
    """The options every command that runs a model shares (``--config``, ``--set``, ``--yamnet``,
    ``--runtime``, ``-q``), handed to it as one value by :func:`_runs_a_model`."""

    def __init__(self, config: Optional[Path] = None, sets: Optional[List[str]] = None, yamnet: Optional[str] = None,
                 runtime: Optional[str] = None, quiet: bool = False):
        self.config, self.sets, self.yamnet, self.runtime, self.quiet = config, sets, yamnet, runtime, quiet

    def configuration(self, overrides: dict):
        """The resolved Config: defaults, then --config, then --set, then the command's ``overrides``."""
        return _load_config(self.config, self.sets, overrides)

    def detector(self, model, cfg):
        """The model, loaded with --yamnet / --runtime; ``cfg`` takes over its backbone and audio backend."""
        return _load_detector(model, self.yamnet, self.runtime, cfg, self.config, self.sets)

    @property
    def audio_backend(self) -> Optional[str]:
        return _requested_backend(self.config, self.sets)


_MODEL_RUN_OPTIONS = (("config", Optional[Path], ConfigOpt), ("sets", Optional[List[str]], SetOpt),
                      ("yamnet", Optional[str], YamnetOpt), ("runtime", Optional[str], RuntimeOpt),
                      ("quiet", bool, QuietOpt))


def _runs_a_model(command):
    """Add the :class:`ModelRun` options after ``command``'s own and pass them to it as its
    ``run`` argument: declared once here instead of in every such command."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "run"]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
              for name, kind, option in _MODEL_RUN_OPTIONS]

    @functools.wraps(command)
    def with_run(*args, **kwargs):
        run = ModelRun(**{name: kwargs.pop(name) for name, _, _ in _MODEL_RUN_OPTIONS})
        return command(*args, run=run, **kwargs)

    with_run.__signature__ = inspect.Signature(own + shared)
    return with_run


def _report_failures(failures) -> None:
    for path, reason in failures:
        typer.secho(f"failed: {path}: {reason}", fg="red", err=True)


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
        from .train import train_yamnet

        metrics = train_yamnet(data, out, cfg, progress=not quiet, echo=typer.echo)
    elif cfg.backbone.name == "cnn":
        from .cnn import train_cnn

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
@_runs_a_model
def predict(
    paths: List[Path] = typer.Argument(..., help="Audio files or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write: path,score,label."),
    model: Optional[Path] = ModelOpt,
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Decision threshold (default: the model's)."),
    run: ModelRun = None,
):
    """Score clips: one row per file with the clip score and label (score >= threshold).

    Unreadable files are listed with the reason and skipped; the exit code is then 1, and
    the CSV holds the files that were scored (written whole or not at all).

    Example:

        yamcap predict clips/ --out scores.csv
    """
    from .fileio import as_output_error, atomic_write_csv, check_output_file, expand_audio_paths
    from .predict import predict_files

    cfg = run.configuration({})
    files = expand_audio_paths(paths)
    if not files:
        _fail("no audio files found in the given paths")
    check_output_file(out)  # before any file is scored
    detector = run.detector(model, cfg)
    preds, failures = predict_files(detector, files, threshold, cfg.audio.backend, not run.quiet,
                                    block_seconds=cfg.audio.block_seconds)
    if preds:
        try:
            atomic_write_csv(out, ("path", "score", "label"),
                             [(p.path, f"{p.score:.6f}", p.label) for p in preds])
        except OSError as exc:
            raise as_output_error(exc, out) from None
    _report_failures(failures)
    n_pos = sum(p.label for p in preds)
    typer.echo(f"scored {len(preds)} of {len(files)} files: {n_pos} with a call"
               + (f"; wrote {out}" if preds else "; nothing written"))
    if failures:
        typer.secho(f"{len(failures)} file(s) failed", fg="red", err=True)
        raise typer.Exit(1)


@app.command()
@_guarded
@_runs_a_model
def count(
    paths: List[str] = typer.Argument(..., help="Recordings or folders (searched recursively), any audio format; with --runner also globs and gs:// or s3:// paths."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder (created; re-running resumes); with --runner also gs:// or s3://."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory, YAMNet or CNN (default: the shipped model); with --runner also gs:// or s3://."),
    threshold: Optional[float] = typer.Option(None, "--threshold", rich_help_panel="Events", help=f"Event on-threshold on frame scores {_default('events.threshold')} (chosen on annotated forest recordings; negative = the model's clip threshold)."),
    off_threshold: Optional[float] = typer.Option(None, "--off-threshold", rich_help_panel="Events", help=f"Hysteresis off-threshold {_default('events.off_threshold')} (negative = the on-threshold)."),
    min_gap: Optional[float] = typer.Option(None, "--min-gap", rich_help_panel="Events", help=f"Merge events closer than this, s {_default('events.min_gap_s')}."),
    min_duration: Optional[float] = typer.Option(None, "--min-duration", rich_help_panel="Events", help=f"Drop events shorter than this, s {_default('events.min_duration_s')}."),
    max_duration: Optional[float] = typer.Option(None, "--max-duration", rich_help_panel="Events", help=f"Split events longer than this at score minima, s {_default('events.max_duration_s')} (0 = never)."),
    notebook_rule: bool = typer.Option(False, "--notebook-rule", rich_help_panel="Events", help="The original notebook's rule: non-overlapping 54000-sample windows, p > 0.99, runs = calls."),
    plots: bool = typer.Option(False, "--plots", help="Also write a spectrogram + score + events PNG per file."),
    timezone: Optional[str] = typer.Option(None, "--timezone", rich_help_panel="Recorder time and sites", help=f"The sites' time zone, which clock times and activity hours are written in: an IANA name (America/Manaus), UTC or an offset (-04:00) {_default('outputs.timezone')}."),
    name_time: Optional[str] = typer.Option(None, "--name-time", rich_help_panel="Recorder time and sites", help=f"Times in file names are utc (AudioMoth's default) or local (in --timezone; Song Meters) {_default('outputs.name_time')}. GUANO and AudioMoth metadata carry their own offset."),
    site_from: Optional[str] = typer.Option(None, "--site-from", rich_help_panel="Recorder time and sites", help=f"A recording's site: folder (its parent folder's name), metadata (the recorder's serial number) or none {_default('outputs.site_from')}."),
    time_pattern: Optional[str] = typer.Option(None, "--time-pattern", rich_help_panel="Recorder time and sites", help="strptime pattern of the start time in file names, e.g. 'REC%y%m%d-%H%M' (default: AudioMoth YYYYMMDD_HHMMSS and Song Meter PREFIX_YYYYMMDD_HHMMSS names; GUANO and AudioMoth metadata come first)."),
    runner: Optional[str] = typer.Option(None, "--runner", rich_help_panel="Scale-out (Apache Beam)", help="Run on Apache Beam: direct (this machine, one process per --workers), dataflow, flink or spark. Needs the [beam] extra; docs/scale.md."),
    workers: Optional[int] = typer.Option(None, "--workers", rich_help_panel="Scale-out (Apache Beam)", help="Worker processes (direct), the most workers (dataflow) or the parallelism (flink)."),
    beam_options: Optional[List[str]] = typer.Option(None, "--beam-option", rich_help_panel="Scale-out (Apache Beam)", help="A Beam pipeline option KEY=VALUE, e.g. project=my-project or temp_location=gs://b/tmp (repeatable)."),
    run: ModelRun = None,
):
    """Count Capuchinbird calls in long recordings and say where they are.

    Writes into OUT: counts.csv (the challenge's clip_name,call_count), events.csv, a Raven
    selection table and an Audacity label file per recording (raven/, audacity/), sources.csv
    (which recording each table name stands for), counts.png, errors.csv, summary.json and
    config.toml. Files of any length are read in blocks (flat memory). OUT is checked to be
    writable before the first file is read, and locked (OUT/.yamcap-lock) while the run lasts.
    A bad file is listed in errors.csv and skipped (exit code 1); re-running with the same OUT
    skips files already done with the same model and parameters.

    Examples:

        yamcap count "Forest Recordings/" --out counts/

        yamcap count rec.flac --out c/ --runtime tflite --yamnet yamnet.tflite --plots

        yamcap count "Forest Recordings/" --out counts/ --runner direct --workers 2
    """
    from .count import check_outputs, count_files
    from .fileio import expand_audio_paths

    cfg = run.configuration({
        "events.threshold": threshold, "events.off_threshold": off_threshold, "events.min_gap_s": min_gap,
        "events.min_duration_s": min_duration, "events.max_duration_s": max_duration,
        "events.notebook_rule": notebook_rule or None, "outputs.timezone": timezone, "outputs.site_from": site_from,
        "outputs.time_pattern": time_pattern, "outputs.name_time": name_time,
    })
    _check_clock_options(cfg)
    if run.runtime == "tflite" and not run.yamnet and not os.environ.get("YAMCAP_YAMNET", "").endswith(".tflite"):
        _fail("--runtime tflite needs a .tflite file: pass --yamnet PATH/yamnet.tflite")
    if runner:
        return _count_on_beam(paths, out, cfg, model, run, runner, workers, beam_options or [], plots)
    if workers is not None or beam_options:
        _fail("--workers and --beam-option need --runner (e.g. --runner direct)")
    remote = [p for p in [*paths, out, model or ""] if "://" in p]
    if remote:
        _fail(f"{remote[0]}: remote paths need --runner (e.g. --runner direct, with the [beam] extra)")
    files = expand_audio_paths(paths)
    if not files:
        _fail("no audio files found in the given paths")
    check_outputs(out)  # writable, not in use by another run: before the model loads
    detector = run.detector(model, cfg)
    result = count_files(detector, files, out, cfg, plots=plots, progress=not run.quiet, echo=typer.echo)
    _report_failures(result.failures)
    _print_count_summary(result, Path(out))
    if result.failures:
        raise typer.Exit(1)


@app.command()
@_guarded
def activity(
    run_dir: Path = typer.Argument(..., help="A `yamcap count` output folder (its recordings.csv and events.csv)."),
    min_score: float = typer.Option(0.0, "--min-score", help="Count only events whose peak frame score is at least this."),
    timezone: Optional[str] = typer.Option(None, "--timezone", help="Report hours in this zone (IANA name, UTC or -04:00; default: the run's)."),
):
    """Recompute calls per recorded hour (activity.csv, activity.png) of a count run, without audio.

    One row per site and clock hour with recording effort: site,date,hour,recorded_s,calls,
    calls_per_hour. Hours recorded with no call are rows with 0; gaps have no row. Overlapping
    files of one site count once. Recordings without a start time are left out, with a warning.

    Examples:

        yamcap activity counts/ --min-score 0.999

        yamcap activity counts/ --timezone America/Manaus
    """
    from .count import recompute_activity

    rows, notes = recompute_activity(run_dir, min_score, timezone)
    typer.echo(f"wrote {run_dir}/activity.csv ({rows} site-hours)" + (" and activity.png" if rows else ""))
    for note in notes:
        typer.secho(f"warning: {note}", fg="yellow", err=True)


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
    from .detectors import load_model
    from .export import calibration_blocks as cut_blocks, export_model

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
    from .compare import run_compare

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
def synth(
    calls: Optional[Path] = typer.Option(None, "--calls", help="Folder of call clips (one clip = one call)."),
    negatives: Optional[Path] = typer.Option(None, "--negatives", help="Folder of other-sound clips (distractors)."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="Folder of candidate background recordings."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: soundscape_NNN.flac, truth.csv, Raven tables."),
    n: int = typer.Option(_SP.n_files, "--n", help="Number of soundscapes."),
    seed: int = typer.Option(_SP.seed, "--seed", help="Same seed -> byte-identical output."),
    duration: float = typer.Option(_SP.duration_s, "--duration", help="Seconds per soundscape."),
    snr_range: Tuple[float, float] = typer.Option((_SP.snr_db_min, _SP.snr_db_max), "--snr-range", help="SNR range (dB) against the local background."),
    density: str = typer.Option(_SP.density, "--density", help=f"sparse (gaps >= {_SP.sparse_gap_min_s:g} s), dense (bouts with {_SP.dense_gap_s[0]:g}-{_SP.dense_gap_s[1]:g} s gaps) or mixed."),
    calls_per_file: Tuple[int, int] = typer.Option((_SP.calls_min, _SP.calls_max), "--calls-per-file", help="Range of calls per soundscape."),
    background_list: Optional[Path] = typer.Option(None, "--background-list", help="Text file of background stems/paths known to be call-free (skips the check)."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="Folder of complete annotation tables of the backgrounds: backgrounds = recordings annotated call-free, and their annotated calls join the call clips (no model check)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="A model's manifest.csv: take clips (and backgrounds) of --splits only."),
    splits: str = typer.Option("test", "--splits", help="With --manifest: comma-separated splits to draw from (train,val for tuning; test for reporting)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model for the call-free check of backgrounds (default: the shipped one)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Kaggle-layout folder: default for --calls, --negatives, --backgrounds."),
    quiet: bool = QuietOpt,
):
    """Build soundscapes with known calls: ground truth for counting.

    Call clips are mixed into real background recordings at known times and SNRs, other sounds
    added as distractors, nothing overlapping; dense bouts (0.3-2 s gaps) are included.
    Backgrounds must be free of calls: with `--annotations`, those annotated call-free (and
    the annotated calls, cut whole from their recordings, join the call clips); else those in
    `--background-list`; else those in which `yamcap count` finds none. With `--manifest`,
    clips come from the given splits only, and recordings used in training never serve test
    soundscapes.

    Examples:

        yamcap synth --data ../shared/data/capuchin --manifest runs/y/manifest.csv --splits train,val --n 20 --seed 1 --out soundscapes/val

        yamcap synth --data ../shared/data/capuchin --manifest runs/y/manifest.csv --splits test --n 20 --seed 2 --out soundscapes/test
    """
    from .synth import SynthParams, synthesize, select_sources

    sources = select_sources(calls, negatives, backgrounds, data, manifest, splits.split(","), background_list,
                             model, echo=typer.echo, progress=not quiet, annotations=annotations)
    params = SynthParams(n_files=n, seed=seed, duration_s=duration, snr_db_min=snr_range[0],
                         snr_db_max=snr_range[1], density=density, calls_min=calls_per_file[0],
                         calls_max=calls_per_file[1])
    truth = synthesize(*sources, out, params, progress=not quiet, echo=typer.echo)
    n_calls = sum(1 for e in truth if e.start_s == e.start_s)
    typer.echo(f"wrote {n} soundscapes with {n_calls} calls to {out}/ (truth.csv, Raven tables)")


@app.command()
@_guarded
@_runs_a_model
def evaluate(
    audio: List[Path] = typer.Argument(..., help="Soundscapes or recordings (files or folders)."),
    truth: Path = typer.Option(..., "--truth", help="truth.csv (from yamcap synth) or a folder of Raven selection tables."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder."),
    model: Optional[Path] = ModelOpt,
    min_iou: float = typer.Option(MIN_IOU, "--min-iou", help="IoU a detection needs to match a true call."),
    collar: Optional[float] = typer.Option(None, "--collar", help="Match by onset within this many seconds instead of IoU."),
    notebook_rule: bool = typer.Option(False, "--notebook-rule", help="Count with the notebook's rule instead."),
    tune: bool = typer.Option(False, "--tune", help="Grid-search the event parameters; writes tuned_events.toml (validation soundscapes only!)."),
    run: ModelRun = None,
):
    """Count calls with a model and score events and counts against ground truth.

    Event precision / recall / F1 with one-to-one (Hungarian) matching at IoU >= --min-iou, count
    MAE / RMSE / bias / exact-count rate per file, and a threshold sweep. Works with
    hand-made Raven annotations too.

    Example:

        yamcap evaluate soundscapes/test --truth soundscapes/test/truth.csv --out reports/eval
    """
    from .evaluation import run_evaluate
    from .fileio import expand_audio_paths

    cfg = run.configuration({"events.notebook_rule": notebook_rule or None})
    detector = run.detector(model, cfg)
    files = expand_audio_paths(audio)
    r = run_evaluate(detector, truth, files, out, cfg, min_iou, collar, progress=not run.quiet, echo=typer.echo,
                     tune=tune)
    typer.echo(f"{r['files']} files: event P {r['event_precision']:.3f} R {r['event_recall']:.3f} "
               f"F1 {r['event_f1']:.3f}; count MAE {r['count_mae']:.2f} (bias {r['count_bias']:+.2f}); "
               f"report in {out}/report.md")
    if r["failures"]:
        _report_failures([(f["file"], f["reason"]) for f in r["failures"]])
        raise typer.Exit(1)


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
    from .backbones import resolve_yamnet_handle
    from .benchmark import run_benchmark

    handle = resolve_yamnet_handle(yamnet)
    tfl = tflite
    if tfl is None and Path(handle).is_dir() and (Path(handle).parent / "yamnet.tflite").exists():
        tfl = str(Path(handle).parent / "yamnet.tflite")
    result = run_benchmark(data, out, handle, tfl, cnn_model, model, rss=rss, train=train, echo=typer.echo)
    typer.echo("results: " + ", ".join(result["written"]))


@app.command()
@_guarded
def families(
    paths: List[Path] = typer.Argument(..., help="Recordings or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="families.csv to write (a heat map PNG is written beside it)."),
    threshold: float = typer.Option(0.4, "--threshold", help="Aligned correlation at which two recordings share a background."),
    max_lag: float = typer.Option(60.0, "--max-lag", help="Largest shift between two recordings' backgrounds tried, s."),
    quiet: bool = QuietOpt,
):
    """Find recordings that share a background (families), for grouped cross-validation.

    Each recording's log-mel spectrogram, with every band's mean removed, is correlated with
    every other's over shifts up to --max-lag; pairs at or above --threshold are linked, and
    linked recordings form a family. Writes recording,family,closest,correlation,lag_s and a
    heat map. Keep a family inside one fold when evaluating on such recordings.

    Example:

        yamcap families "../shared/data/capuchin/Forest Recordings" --out data/annotations/forest/families.csv
    """
    from .audio import load_audio
    from .errors import AudioError, YamcapError
    from .families import background_profile, group_families, similarity, similarity_figure, write_families
    from .fileio import expand_audio_paths, save_figure
    from .progress import track

    files = expand_audio_paths(paths)
    if len(files) < 2:
        _fail("need at least two recordings")
    profiles, names, failures = [], [], []
    for f in track(files, "Profiles", len(files), not quiet):
        try:
            profiles.append(background_profile(load_audio(f)))
            names.append(f.stem)
        except AudioError as exc:
            failures.append((str(f), exc.reason))
    if len(set(names)) != len(names):
        raise YamcapError("two recordings share a file name stem; families are keyed by stem")
    sim = similarity(profiles, names, max_lag)
    fams = group_families(sim, threshold)
    write_families(out, sim, fams)
    save_figure(similarity_figure(sim, fams), out.with_suffix(".png"))
    groups = {}
    for name, fam in fams.items():
        groups.setdefault(fam, []).append(name)
    for fam, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        typer.echo(f"{fam}: {' '.join(members)}")
    typer.echo(f"{len(groups)} families among {len(names)} recordings; wrote {out}")
    _report_failures(failures)
    if failures:
        raise typer.Exit(1)


@app.command()
@_guarded
def panels(
    audio: Path = typer.Argument(..., help="A recording (any audio format)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    start: float = typer.Option(0.0, "--start", help="First second to show."),
    end: Optional[float] = typer.Option(None, "--end", help="Last second to show (default: the end of the file)."),
    row: float = typer.Option(30.0, "--row", help="Seconds per panel row (a 3-min file in 30 s rows = 6 rows)."),
    fmax: float = typer.Option(4000.0, "--fmax", help="Highest frequency shown, Hz."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", "-a", help="A Raven table, or a folder of them (<stem>.Table.1.selections.txt), to draw."),
    events: Optional[Path] = typer.Option(None, "--events", help="A `yamcap count` events.csv whose events of this file are drawn."),
):
    """Draw a recording's spectrogram as panel rows, with annotations and detected events.

    For looking at recordings and annotating them by eye: whole-file panels first, then zooms
    (--start/--end with short --row) on each candidate. Annotations are drawn in green
    (capuchin), blue (other:*) and yellow (unsure); events from events.csv in pink with their
    scores.

    Examples:

        yamcap panels rec.mp3 --out rec.png --events counts/events.csv

        yamcap panels rec.mp3 --out zoom.png --start 40 --end 55 --row 15 -a annotations/
    """
    from .errors import YamcapError

    from .annotations import read_table, table_name
    from .spectrogram import Mark, file_panels

    marks = []
    if annotations is not None:
        table = annotations / table_name(audio.stem) if annotations.is_dir() else annotations
        if table.exists():
            marks += [Mark(s.begin_s, s.end_s, s.label if s.label != "capuchin" else "call", s.label)
                      for s in read_table(table)]
        elif not annotations.is_dir():
            raise YamcapError(f"{annotations}: annotation table not found")
    if events is not None:
        import csv

        try:
            with open(events, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if Path(r["file"]).stem == audio.stem]
            marks += [Mark(float(r["start_s"]), float(r["end_s"]), f"{float(r['score']):.2f}", "event")
                      for r in rows]
        except (OSError, KeyError, ValueError) as exc:
            raise YamcapError(f"{events}: not a yamcap events.csv ({exc})") from None
    file_panels(audio, out, start, end, row, fmax, marks)
    typer.echo(f"wrote {out}")


@app.command()
@_guarded
def sources(
    annotations: Path = typer.Argument(..., help="Folder of complete annotation tables (Raven, Annotation column)."),
    data: Path = DataOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Table to write [default: ANNOTATIONS/sources.csv]."),
    audio: Optional[List[Path]] = typer.Option(None, "--audio", help="Folders with the annotated recordings, if not DATA/Forest Recordings (repeatable)."),
    min_peak: float = typer.Option(0.6, "--min-peak", help="Normalised correlation at which a call is a copy of a clip."),
    quiet: bool = QuietOpt,
):
    """Find the clip each annotated call was copied from: its call source, for CV by source.

    Every capuchin selection (with 5 s on each side) is correlated, band-passed to 400-3500 Hz,
    with every clip of DATA/Parsed_Capuchinbird_Clips; the best clip at or above --min-peak
    names the call's source (its xeno-canto recording, e.g. XC307385), and a call that matches
    no clip is a source of its own (rec:<recording>@<start>). Writes
    recording,begin_s,end_s,source,clip,peak,lag_s. See docs/evaluation.md.

    Example:

        yamcap sources data/annotations/forest --data ../shared/data/capuchin
    """
    from collections import Counter

    from .crossval import annotated_recordings
    from .dataset import discover_clips
    from .sources import match_calls, write_sources

    tables, recordings, _ = annotated_recordings(annotations, data, audio or [])
    clips = [c.path for c in discover_clips(data) if c.label == 1]
    if not clips:
        _fail(f"{data}: no call clips (Parsed_Capuchinbird_Clips/) to match against")
    failures: list = []
    rows = match_calls(recordings, tables, clips, min_peak, progress=not quiet, failures=failures)
    out = out or annotations / "sources.csv"
    if failures:
        _report_failures(failures)
        # a partial table would leave the skipped recordings' copies unmasked in source CV
        _fail(f"{out} not written: {len(failures)} recording(s) could not be read", 1)
    write_sources(out, rows)
    by_source = Counter(r.source for r in rows)
    matched = sum(1 for r in rows if r.clip)
    typer.echo(f"{len(rows)} calls: {matched} copies of {len({r.clip for r in rows if r.clip})} clips, "
               f"{len(rows) - matched} of no clip; sources: "
               + ", ".join(f"{k} {v}" for k, v in by_source.most_common(6)) + f"\nwrote {out}")


@app.command()
@_guarded
def review(
    run_dir: Path = typer.Argument(..., help="A `yamcap count` output folder (events.csv, summary.json)."),
    audio: Optional[List[Path]] = typer.Argument(None, help="The recordings (files or folders), if events.csv's paths do not lead to them from here."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", "-a", help="Folder for the Raven tables of labels [default: RUN_DIR/annotations]."),
    port: int = typer.Option(8765, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", rich_help_panel="Security", help="Address to bind (only this machine by default). Any other address prints a warning and needs the token."),
    token: Optional[str] = typer.Option(None, "--token", rich_help_panel="Security", help="The secret in the page's address [default: a new random one each launch]. Every API request needs it."),
    no_token: bool = typer.Option(False, "--no-token", rich_help_panel="Security", help="No token check (loopback only, with a warning): any local program can then label. Foreign hosts and origins are still refused."),
    allow_host: Optional[List[str]] = typer.Option(None, "--allow-host", rich_help_panel="Security", help="Another host name the page may be opened by, besides 127.0.0.1, localhost, [::1] and --host (repeatable)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Kaggle-layout training data for Retrain [env: YAMCAP_DATA]."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model for active-learning picks (default: the shipped one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
):
    """Review a count run's detections in the browser: listen, look, label, retrain.

    Serves a local page with each event's spectrogram (0-4 kHz, 2 s context) and audio. Keys:
    1 call, 2 not a call (with a kind, e.g. other:insect), 3 unsure, left/right arrows to move.
    Every label is written at once to a Raven table per recording (<stem>.Table.1.selections.txt,
    Annotation column) in RUN_DIR/annotations/; a reload resumes where you stopped. Needs the
    review extra: pip install -e ".[review]". See docs/review.md.

    The printed address carries a per-launch token; requests without it, from another host name
    or from another site's page are refused (docs/review.md, Security).

    Examples:

        yamcap review counts/

        yamcap review counts/ "Forest Recordings/" --annotations data/annotations/review --data ../shared/data/capuchin
    """
    from .review import REVIEW_EXTRA_HINT, missing_dependencies

    if missing_dependencies():
        _fail(f"yamcap review needs the 'review' extra ({', '.join(missing_dependencies())} missing): "
              f"{REVIEW_EXTRA_HINT}")
    import threading
    import webbrowser

    import uvicorn

    from .review.app import create_app
    from .review.security import launch_token

    secret, warnings = launch_token(token, no_token, host)
    for line in warnings:
        typer.secho(f"warning: {line}", fg="yellow", err=True)
    web = create_app(run_dir, annotations, audio or [], data, model_dir=model, token=secret, host=host, port=port,
                     extra_hosts=allow_host or ())
    state = web.state.review
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    url = f"http://{shown}:{port}/" + (f"?token={secret}" if secret else "")
    typer.echo(f"{len(state.by_id)} candidates from {len(state.recordings)} recordings; labels go to "
               f"{state.annotations_dir}/\nreview at {url}  (Ctrl-C to stop)")
    if not no_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(web, host=host, port=port, log_level="warning")


def _count_on_beam(paths, out, cfg, model, run: ModelRun, runner, workers, beam_options, plots):
    """``count --runner``: the same outputs, computed on Apache Beam (yamnet_capuchin.beam)."""
    from .beam import count_on_beam

    t0 = time.perf_counter()
    summary = count_on_beam(paths, out, cfg, lambda local: run.detector(local, cfg), runner, workers, beam_options,
                            model_dir=model, audio_backend=run.audio_backend, plots=plots, echo=typer.echo)
    _report_failures(summary["failures"])
    typer.echo(f"files: {summary['files']}  counted: {summary['counted']}  failed: {summary['failed']}  "
               f"resumed: {summary['resumed']}\ntotal calls: {summary['total_calls']}\n"
               f"{summary['audio_seconds_processed']:.0f} s of audio counted; wall {time.perf_counter() - t0:.1f} s "
               f"(start-up included)\noutputs in {out}/ (counts.csv, events.csv, recordings.csv, activity.csv, raven/, "
               "audacity/, counts.png)")
    for note in summary.get("notes", []):
        typer.secho(f"warning: {note}", fg="yellow", err=True)
    if summary["failures"]:
        raise typer.Exit(1)


def _check_clock_options(cfg) -> None:
    """One line for a time zone, site source or time pattern that cannot be used (before any file is read)."""
    from .clock import NAME_TIME, SITE_FROM, parse_timezone, pattern_regex

    parse_timezone(cfg.outputs.timezone)
    if cfg.outputs.name_time not in NAME_TIME:
        _fail(f"--name-time '{cfg.outputs.name_time}': one of {', '.join(NAME_TIME)}")
    if cfg.outputs.site_from not in SITE_FROM:
        _fail(f"--site-from '{cfg.outputs.site_from}': one of {', '.join(SITE_FROM)}")
    if cfg.outputs.time_pattern:
        pattern_regex(cfg.outputs.time_pattern)


def _print_count_summary(run, out: Path) -> None:
    counts = {r.path: len(r.events) for r in run.results}
    total = sum(counts.values())
    lines = [f"files: {len(run.results) + len(run.failures)}  counted: {len(run.results)}  "
             f"failed: {len(run.failures)}  resumed: {sum(r.resumed for r in run.results)}",
             f"total calls: {total}"]
    if counts and total:
        top = max(counts.values())
        lines.append(f"most calls ({top}): " + ", ".join(sorted(Path(p).name for p, c in counts.items() if c == top)))
    if run.audio_s:
        lines.append(f"speed: {run.audio_s:.0f} s of audio in {sum(r.seconds for r in run.results if not r.resumed):.1f} s "
                     f"= {run.realtime_factor:.0f}x real time (wall {run.wall_s:.1f} s)")
    lines.append(f"outputs in {out}/ (counts.csv, events.csv, recordings.csv, activity.csv, raven/, audacity/, counts.png)")
    typer.echo("\n".join(lines))
    for note in run.notes:
        typer.secho(f"warning: {note}", fg="yellow", err=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
