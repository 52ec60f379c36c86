"""``yamcap synth``, ``evaluate``, ``families``, ``panels`` and ``sources``: data and truth."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from ..config import MIN_IOU
from .common import (
    _SP,
    DataOpt,
    ModelOpt,
    ModelRun,
    QuietOpt,
    _fail,
    _guarded,
    _report_failures,
    _runs_a_model,
    app,
)


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
    from ..synth import SynthParams, select_sources, synthesize

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
    from ..evaluation import run_evaluate
    from ..fileio import expand_audio_paths

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
    from ..audio import load_audio
    from ..errors import AudioError, YamcapError
    from ..families import (
        background_profile,
        group_families,
        similarity,
        similarity_figure,
        write_families,
    )
    from ..fileio import expand_audio_paths, save_figure
    from ..progress import track

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
    from ..annotations import read_table, table_name
    from ..errors import YamcapError
    from ..spectrogram import Mark, file_panels

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

    from ..crossval import annotated_recordings
    from ..dataset import discover_clips
    from ..sources import match_calls, write_sources

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
