"""``yamcap count``, ``predict`` and ``activity``: run a model over recordings."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from .common import (
    ModelOpt,
    ModelRun,
    _default,
    _fail,
    _guarded,
    _report_failures,
    _runs_a_model,
    app,
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
    from ..fileio import (
        as_output_error,
        atomic_write_csv,
        check_output_file,
        expand_audio_paths,
    )
    from ..predict import predict_files

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
    runner: Optional[str] = typer.Option(None, "--runner", rich_help_panel="Scale-out (Apache Beam)", help="Run on Apache Beam: direct (this machine, one process per --workers), dask (a Dask cluster: local, or an HPC one with --dask-scheduler), dataflow, flink or spark. Needs the [beam] extra; docs/scale.md."),
    workers: Optional[int] = typer.Option(None, "--workers", rich_help_panel="Scale-out (Apache Beam)", help="Worker processes (direct; dask: of the local cluster, default one per core), the most workers (dataflow) or the parallelism (flink)."),
    dask_scheduler: Optional[str] = typer.Option(None, "--dask-scheduler", rich_help_panel="Scale-out (Apache Beam)", help="With --runner dask: join the running Dask cluster at this address (tcp://HOST:PORT) or scheduler file (dask scheduler --scheduler-file) instead of starting one; its workers must see the audio and OUT."),
    beam_options: Optional[List[str]] = typer.Option(None, "--beam-option", rich_help_panel="Scale-out (Apache Beam)", help="A Beam pipeline option KEY=VALUE, e.g. project=my-project or temp_location=gs://b/tmp (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", rich_help_panel="Scale-out (Apache Beam)", help="Also show Beam's and Dask's own log lines (hidden by default)."),
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

        yamcap count /scratch/pam/ --out /scratch/counts/ --runner dask --dask-scheduler tcp://node1:8786
    """
    from ..count import check_outputs, count_files
    from ..fileio import expand_audio_paths

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
        return _count_on_beam(paths, out, cfg, model, run, runner, workers, beam_options or [], plots,
                              dask_scheduler, verbose)
    if workers is not None or beam_options or dask_scheduler or verbose:
        _fail("--workers, --dask-scheduler, --beam-option and --verbose need --runner (e.g. --runner direct)")
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
    from ..count import recompute_activity

    rows, notes = recompute_activity(run_dir, min_score, timezone)
    typer.echo(f"wrote {run_dir}/activity.csv ({rows} site-hours)" + (" and activity.png" if rows else ""))
    for note in notes:
        typer.secho(f"warning: {note}", fg="yellow", err=True)


def _count_on_beam(paths, out, cfg, model, run: ModelRun, runner, workers, beam_options, plots, dask_scheduler,
                   verbose):
    """``count --runner``: the same outputs, computed on Apache Beam (yamnet_capuchin.beam)."""
    from ..beam import count_on_beam

    t0 = time.perf_counter()
    summary = count_on_beam(paths, out, cfg, lambda local: run.detector(local, cfg), runner, workers, beam_options,
                            model_dir=model, audio_backend=run.audio_backend, plots=plots, echo=typer.echo,
                            dask_scheduler=dask_scheduler, verbose=verbose)
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
    from ..clock import NAME_TIME, SITE_FROM, parse_timezone, pattern_regex

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
