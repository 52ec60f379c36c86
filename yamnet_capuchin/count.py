"""Counting calls in long recordings (``yamcap count``): files -> frame scores -> events -> outputs.

Resumable: each finished file leaves a small state record in ``OUT_DIR/.yamcap-state``;
a re-run skips files whose content, model and parameters are unchanged. Every output is
written atomically, so an interrupted run leaves complete files or none. Before the first
file is read, the outputs are checked to be writable (:class:`~yamnet_capuchin.fileio.OutputError`
otherwise), and ``OUT_DIR/.yamcap-lock`` keeps a second run out of the folder while one runs.
An output that cannot be written stops the run with an error naming the output; it never
lands in errors.csv, which lists the inputs that could not be read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .activity import ACTIVITY_COLUMNS, Recording, activity_table, daily_profile, diel_profile, table_rows
from .audio import SAMPLE_RATE, audio_info, iter_blocks
from .clock import UTC, RecordingClock, iso, parse_timezone, recording_clock
from .config import Config, OutputConfig
from .errors import AudioError, YamcapError
from .events import Event, EventParams, detect_events, notebook_rule_events
from .fileio import (
    as_output_error, atomic_write_csv, atomic_write_json, check_output_dir, check_unlocked, file_sha256, output_lock,
    save_figure, text_sha256,
)
from .outputs import (
    high_freq_hz, output_stems, write_audacity_labels, write_counts_csv, write_events_csv, write_raven_table,
    write_recordings_csv, write_sources_csv,
)
from .progress import audio_progress
from .streaming import FrameScores, stream_frame_scores

NOTEBOOK_THRESHOLD = 0.99
STATE_DIR = ".yamcap-state"
OUTPUT_SUBFOLDERS = ("raven", "audacity", "plots", STATE_DIR)
OUTPUT_FILES = ("counts.csv", "events.csv", "errors.csv", "sources.csv", "summary.json", "config.toml", "counts.png",
                "recordings.csv", "activity.csv", "activity.png")


def check_outputs(out_dir: str | Path) -> None:
    """Raise :class:`~yamnet_capuchin.fileio.OutputError` (one line naming the output) unless
    ``count_files`` can write into ``out_dir``. Creates nothing; cheap, so callers run it
    before loading a model."""
    check_output_dir(out_dir, OUTPUT_SUBFOLDERS, OUTPUT_FILES)
    check_unlocked(out_dir, "yamcap count")


@dataclass
class FileCount:
    path: str  # as given on the command line (or found in a given folder)
    sha256: str
    duration_s: float
    events: list[Event]
    seconds: float = 0.0  # processing wall time
    resumed: bool = False
    clock: RecordingClock | None = None  # when and where it was recorded (yamnet_capuchin.clock)


@dataclass
class CountRun:
    results: list[FileCount] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # warnings for the run, one line each

    @property
    def audio_s(self) -> float:
        return sum(r.duration_s for r in self.results if not r.resumed)

    @property
    def realtime_factor(self) -> float:
        processed = sum(r.seconds for r in self.results if not r.resumed)
        return self.audio_s / processed if processed > 0 else float("nan")


def event_params(config: Config, model_threshold: float) -> EventParams:
    ev = config.events
    on = ev.threshold if ev.threshold >= 0 else model_threshold
    off = ev.off_threshold if ev.off_threshold >= 0 else None
    return EventParams(on, off, ev.min_gap_s, ev.min_duration_s, ev.max_duration_s)


def notebook_window_samples(detector) -> int:
    """The notebook's counting window: the CNN's input length, or 54000 samples for YAMNet."""
    return int(getattr(detector, "selected_length", 0) or 54000)


def window_scores(detector, path, window_samples: int, audio_backend: str = "soundfile") -> FrameScores:
    """Scores of consecutive non-overlapping windows (a final partial window is dropped, as
    the notebook's ``timeseries_dataset_from_array`` does)."""
    per_block = 32
    starts, scores, total = [], [], 0
    carry = np.zeros(0, np.float32)
    offset = 0
    for block in iter_blocks(path, per_block * window_samples, 0, audio_backend):
        total = block.start + block.samples.size
        wave = np.concatenate([carry, block.samples]) if carry.size else block.samples
        n = wave.size // window_samples
        for k in range(n):
            starts.append((offset + k * window_samples) / SAMPLE_RATE)
            scores.append(detector.clip_score(wave[k * window_samples:(k + 1) * window_samples]))
        carry = wave[n * window_samples:]
        offset += n * window_samples
    return FrameScores(np.asarray(starts, float), np.asarray(scores, np.float32), total / SAMPLE_RATE)


@dataclass
class Detection:
    """One file scored: its frame scores, the events found in them, and the frame window and
    hop (s) the events were built with (the detector's frames, or the notebook's windows)."""

    frames: FrameScores
    events: list[Event]
    window_s: float
    hop_s: float


def score_and_detect(detector, path, config: Config, blocks=None) -> Detection:
    """The :class:`Detection` of one file under ``config``.

    ``blocks``: the file's 16 kHz blocks if they are already being decoded (prefetching)."""
    backend = config.audio.backend
    if config.events.notebook_rule:
        win = notebook_window_samples(detector)
        if detector.hop_samples == win and detector.window_samples == win:
            # the detector's own frames are the notebook's windows: stream them, keep whole ones
            fs = stream_frame_scores(detector, path, config.audio.block_seconds, backend, blocks)
            whole = fs.start_s * SAMPLE_RATE + win <= fs.duration_s * SAMPLE_RATE + 1e-6
            fs = FrameScores(fs.start_s[whole], fs.scores[whole], fs.duration_s)
        else:
            fs = window_scores(detector, path, win, backend)
        events = notebook_rule_events(fs.start_s, fs.scores, win / SAMPLE_RATE, NOTEBOOK_THRESHOLD)
        return Detection(fs, events, win / SAMPLE_RATE, win / SAMPLE_RATE)
    fs = stream_frame_scores(detector, path, config.audio.block_seconds, backend, blocks)
    window_s, hop_s = detector.window_samples / SAMPLE_RATE, detector.hop_samples / SAMPLE_RATE
    events = detect_events(fs.start_s, fs.scores, window_s, hop_s, event_params(config, detector.threshold))
    return Detection(fs, events, window_s, hop_s)


def run_identity(detector, config: Config) -> str:
    """What the results of a file depend on besides its content: model + counting parameters."""
    ev = config.events
    blob = json.dumps({
        "model": detector.fingerprint(),
        "events": [ev.threshold, ev.off_threshold, ev.min_gap_s, ev.min_duration_s, ev.max_duration_s,
                   ev.notebook_rule],
        "audio_backend": config.audio.backend,
    }, sort_keys=True)
    return text_sha256(blob)[:24]


def count_files(
    detector,
    paths: Sequence[Path],
    out_dir: str | Path,
    config: Config,
    plots: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> CountRun:
    """Count calls in each file and write all outputs into ``out_dir``.

    Raises :class:`~yamnet_capuchin.fileio.OutputError` before reading any file when
    ``out_dir`` cannot be written or another run holds it, and while running when an output
    cannot be written (files finished by then resume on the next run)."""
    out_dir = Path(out_dir)
    check_outputs(out_dir)
    with output_lock(out_dir, "yamcap count"):
        return _count_files(detector, paths, out_dir, config, plots, progress)


def file_key(path) -> str:
    """The name of a file's state record in ``OUT_DIR/.yamcap-state`` (from its path as given)."""
    return text_sha256(str(path))[:24]


def content_sha(path) -> str:
    """sha256 of the file's bytes, or "" where it cannot be read (it then fails when decoded)."""
    try:
        return file_sha256(path) if Path(path).is_file() else ""
    except OSError:
        return ""


def file_clock(path, config: Config, named_as: str | Path | None = None) -> RecordingClock:
    """The recording's start time and site under ``config.outputs`` (metadata read from
    ``path``; file name and folder from ``named_as``, default ``path``): names' times in UTC or
    in the sites' zone (``name_time``)."""
    o = config.outputs
    local = parse_timezone(o.timezone)
    return recording_clock(path, o.site_from, o.time_pattern or None, UTC if o.name_time == "utc" else local,
                           named_as, local)


def score_file(detector, path, config: Config, sha: str, plots: bool = False, blocks=None,
               named_as: str | Path | None = None):
    """(:class:`FileCount`, detection figure or None) of one file. Raises ``AudioError`` or
    ``OSError`` where the input cannot be read (:func:`input_failure` gives the reason).
    ``named_as``: the name the file goes by, where ``path`` is a local copy of it."""
    t0 = time.perf_counter()
    pieces: list[np.ndarray] = []
    if plots and blocks is not None:  # the plot draws the samples already decoded for scoring
        blocks = kept_samples(blocks, pieces)
    d = score_and_detect(detector, path, config, blocks)
    result = FileCount(str(path), sha, d.frames.duration_s, d.events, time.perf_counter() - t0,
                       clock=file_clock(path, config, named_as))
    figure = None
    if plots:
        from .plots import detection_plot
        wave = np.concatenate(pieces) if pieces else None
        figure = detection_plot(path, d.frames, d.events, config.audio.backend, d.window_s, d.hop_s, wave=wave)
    return result, figure


def kept_samples(blocks, into: list):
    """``blocks`` as they come, appending to ``into`` the samples each adds to the waveform
    (its part beyond the previous block's end): joined, they are the whole 16 kHz waveform."""
    end = 0
    for block in blocks:
        into.append(block.samples[max(0, end - block.start):])
        end = max(end, block.start + block.samples.size)
        yield block


def input_failure(exc: Exception) -> str:
    """The errors.csv reason for an input that :func:`score_file` could not read."""
    if isinstance(exc, AudioError):
        return exc.reason
    return f"cannot read ({getattr(exc, 'strerror', None) or exc})"


def write_file_outputs(out_dir: Path, stem: str, key: str, result: FileCount, figure, run_id: str,
                       source: str | Path, native_rate: float | None, outputs: OutputConfig | None = None) -> None:
    """One file's Raven table (band and time zone from ``outputs``), Audacity labels, plot
    (``figure``, if any) and state record (written last: a file counts as done only once its
    outputs are all there). Raises :class:`~yamnet_capuchin.fileio.OutputError` naming the
    output that cannot be written."""
    o = outputs or OutputConfig()
    start = result.clock.start if result.clock else None
    try:
        write_raven_table(out_dir / "raven" / f"{stem}.Table.1.selections.txt", result.events, source,
                          high_freq_hz(native_rate, o.raven_high_hz), o.raven_low_hz, start, parse_timezone(o.timezone))
        write_audacity_labels(out_dir / "audacity" / f"{stem}.txt", result.events)
        if figure is not None:
            save_figure(figure, out_dir / "plots" / f"{stem}.png")
        _save_state(out_dir / STATE_DIR / f"{key}.json", result, run_id)
    except OSError as exc:
        raise as_output_error(exc) from None


def resumed_result(out_dir: Path, path, sha: str, run_id: str) -> FileCount | None:
    """The file's result from an earlier run into ``out_dir`` with the same content, model and
    parameters, else None."""
    return _load_state(out_dir / STATE_DIR / f"{file_key(path)}.json", sha, run_id) if sha else None


def _count_files(detector, paths: Sequence[Path], out_dir: Path, config: Config, plots: bool,
                 progress: bool) -> CountRun:
    run_id = run_identity(detector, config)
    stems = {Path(p): name for p, name in output_stems(paths).items()}
    names = clip_names(paths)
    run = CountRun()
    t_start = time.perf_counter()
    # Files already done (same content, model and parameters) are taken from their state.
    todo: list[tuple[Path, str]] = []
    done: dict[str, FileCount] = {}
    for path in paths:
        sha = content_sha(path)
        state = resumed_result(out_dir, path, sha, run_id)
        if state is not None:
            done[str(path)] = state
        else:
            todo.append((Path(path), sha))
    infos = {p: header_info(p) for p, _ in todo}
    results: dict[str, FileCount] = {}
    failures: dict[str, str] = {}
    with audio_progress(progress) as bar:
        expected = {p: (info.duration_s if info else 0.0) for p, info in infos.items()}
        total_s = sum(expected.values())
        description = "Counting" + (f" ({len(done)} resumed)" if done else "")
        task = bar.add_task(description, total=total_s) if bar else None
        completed_s = 0.0
        shas = dict(todo)
        for path, blocks in _file_blocks(detector, [p for p, _ in todo], config):
            if bar is not None and blocks is not None:
                blocks = _advancing(blocks, bar, task, expected[path])
            try:  # reading and scoring: errors here are the input's
                result, figure = score_file(detector, path, config, shas[path], plots, blocks)
            except (AudioError, OSError) as exc:
                failures[str(path)] = input_failure(exc)
            else:  # writing: errors here are the outputs', and stop the run
                info = infos.get(path)
                write_file_outputs(out_dir, stems[Path(path)], file_key(path), result, figure, run_id,
                                   Path(path).absolute(), info.sample_rate if info else None, config.outputs)
                results[str(path)] = result
            if bar is not None:  # the headers' lengths, so the total never changes (that resets rich's rate)
                completed_s += expected[path]
                bar.update(task, completed=completed_s)
    results.update(done)
    run.results = [results[str(p)] for p in paths if str(p) in results]
    run.failures = [(str(p), failures[str(p)]) for p in paths if str(p) in failures]
    run.wall_s = time.perf_counter() - t_start
    write_summary_outputs(out_dir, run, names, config, detector, stems)
    return run


def header_info(path: Path):
    """The file's header (native rate, length), or None where it cannot be read (the file then
    fails when it is decoded, with the reason)."""
    try:
        return audio_info(path)
    except (AudioError, OSError):
        return None


def _advancing(blocks, bar, task, limit_s: float):
    """``blocks`` as they come, advancing ``task`` by the seconds of new audio in each one
    once the consumer asks for the next (i.e. once the block has been scored), up to the
    file's length as its header gives it (``limit_s``)."""
    end = 0
    for block in blocks:
        yield block
        new_end = min(block.start + block.samples.size, int(round(limit_s * SAMPLE_RATE)))
        if new_end > end:
            bar.advance(task, (new_end - end) / SAMPLE_RATE)
            end = new_end


def _file_blocks(detector, paths: list[Path], config: Config):
    """(path, blocks) per file: decoded ahead in a background thread for frame-wise counting;
    ``None`` blocks (each file read when scored) for the notebook rule."""
    if config.events.notebook_rule or not paths:
        for p in paths:
            yield p, None
        return
    from .streaming import block_layout, prefetch_blocks

    _, block_samples, overlap = block_layout(detector, config.audio.block_seconds)
    yield from prefetch_blocks(paths, block_samples, overlap, config.audio.backend)


def clip_names(paths: Sequence[Path]) -> dict[str, str]:
    """``clip_name`` for counts.csv: the file name, or the path as given where names repeat."""
    names = [Path(p).name for p in paths]
    return {str(p): (Path(p).name if names.count(Path(p).name) == 1 else str(p)) for p in paths}


def write_summary_outputs(out_dir: Path, run: CountRun, names: dict[str, str], config: Config, detector,
                          stems: dict[Path, str], extra: dict | None = None) -> None:
    """counts.csv, sources.csv, events.csv, errors.csv, counts.png, summary.json (plus
    ``extra``) and config.toml of a finished run. Raises
    :class:`~yamnet_capuchin.fileio.OutputError` naming the output that cannot be written."""
    try:
        _write_summary_outputs(out_dir, run, names, config, detector, stems, extra or {})
    except OSError as exc:
        raise as_output_error(exc) from None


def _write_summary_outputs(out_dir: Path, run: CountRun, names: dict[str, str], config: Config, detector,
                           stems: dict[Path, str], extra: dict) -> None:
    counts = {names[r.path]: len(r.events) for r in run.results}
    tz = parse_timezone(config.outputs.timezone)
    clocks = {r.path: r.clock for r in run.results if r.clock is not None}
    write_counts_csv(out_dir / "counts.csv", counts)
    write_sources_csv(out_dir / "sources.csv", {stems[Path(r.path)]: r.path for r in run.results})
    write_events_csv(out_dir / "events.csv", [(r.path, e) for r in sorted(run.results, key=lambda r: r.path)
                                               for e in r.events], clocks, tz)
    write_recordings_csv(out_dir / RECORDINGS_CSV, [(r.path, r.duration_s, len(r.events)) for r in run.results],
                         clocks, tz)
    run.notes[:] = write_activity(out_dir, run_recordings(run.results), [(r.path, e.start_s) for r in run.results
                                                                          for e in r.events], config.outputs)
    unread = [r for r in run.results if r.clock and r.clock.note]
    if unread:
        run.notes.append(f"{len(unread)} files: {unread[0].clock.note} (e.g. {Path(unread[0].path).name})")
    atomic_write_csv(out_dir / "errors.csv", ("file", "reason"), run.failures)
    if counts:
        from .plots import counts_bar

        ordered = sorted(counts)
        save_figure(counts_bar(ordered, {"calls": [counts[n] for n in ordered]},
                               f"Capuchinbird calls per recording ({detector.kind})"), out_dir / "counts.png")
    atomic_write_json(out_dir / "summary.json", {
        "files": len(run.results) + len(run.failures),
        "counted": len(run.results),
        "resumed": sum(r.resumed for r in run.results),
        "failed": len(run.failures),
        "total_calls": sum(counts.values()),
        "audio_seconds_processed": round(run.audio_s, 2),
        "wall_seconds": round(run.wall_s, 2),
        "realtime_factor": round(run.realtime_factor, 1) if run.audio_s else None,
        "model": {"kind": detector.kind, "threshold": detector.threshold, "fingerprint": detector.fingerprint(),
                  "backbone": getattr(detector, "meta", {}).get("backbone")},
        "event_params": event_params(config, detector.threshold).__dict__,
        "clock": {"timezone": config.outputs.timezone, "site_from": config.outputs.site_from,
                  "timed_files": sum(1 for r in run.results if r.clock and r.clock.start),
                  "untimed_files": sum(1 for r in run.results if not (r.clock and r.clock.start))},
        "notes": list(run.notes),
        "config": config.to_dict(),
        **extra,
    })
    config.save(out_dir / "config.toml")


def _save_state(path: Path, result: FileCount, run_id: str) -> None:
    c = result.clock
    atomic_write_json(path, {
        "run_id": run_id, "path": result.path, "sha256": result.sha256, "duration_s": result.duration_s,
        "seconds": result.seconds, "events": [e.as_dict() for e in result.events],
        "clock": None if c is None else {"start": iso(c.start), "source": c.source, "site": c.site,
                                         "serial": c.serial, "note": c.note},
    })


def _load_state(path: Path, sha: str, run_id: str) -> FileCount | None:
    try:
        return state_from_text(path.read_text(), sha, run_id)
    except FileNotFoundError:
        return None


def state_from_text(text: str, sha: str, run_id: str) -> FileCount | None:
    """The :class:`FileCount` a state record holds, if it is for this content and run identity."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if data.get("sha256") != sha or data.get("run_id") != run_id:
        return None
    events = [Event(**e) for e in data["events"]]
    c = data.get("clock")
    clock = None if not c else RecordingClock(dt.datetime.fromisoformat(c["start"]) if c.get("start") else None,
                                              c.get("source", ""), c.get("site", ""), c.get("serial", ""), c.get("note", ""))
    return FileCount(data["path"], sha, data["duration_s"], events, data.get("seconds", 0.0), resumed=True, clock=clock)


RECORDINGS_CSV = "recordings.csv"
ACTIVITY_CSV = "activity.csv"
ACTIVITY_PNG = "activity.png"


def run_recordings(results: Sequence[FileCount]) -> list[Recording]:
    """The activity table's recordings: each counted file, its site, start and length."""
    return [Recording(r.path, r.clock.site if r.clock else "", r.clock.start if r.clock else None, r.duration_s)
            for r in results]


def write_activity(out_dir: Path, recordings: Sequence[Recording], events: Sequence[tuple[str, float]],
                   outputs: OutputConfig) -> list[str]:
    """activity.csv (and activity.png where any hour has effort) in ``out_dir``; returns the
    run's warnings about time: files without a start time, overlaps, notes on metadata."""
    tz = parse_timezone(outputs.timezone)
    rows, summary = activity_table(recordings, events, tz)
    atomic_write_csv(out_dir / ACTIVITY_CSV, ACTIVITY_COLUMNS, table_rows(rows))
    png = out_dir / ACTIVITY_PNG
    if rows:
        from .plots import activity_plot

        save_figure(activity_plot(diel_profile(rows), daily_profile(rows), outputs.timezone), png)
    elif png.exists():
        png.unlink()
    notes = []
    untimed = summary["untimed"]
    if untimed and len(untimed) == len(recordings):
        notes.append("no file has a start time (GUANO, AudioMoth or a time in its name): counted as usual, "
                     "without clock times or activity rows (docs/monitoring.md)")
    elif untimed:
        notes.append(f"{len(untimed)} of {len(recordings)} files have no start time in their metadata or name "
                     f"(e.g. {Path(untimed[0]).name}): counted, but without clock times or activity rows")
    if summary["overlapping"]:
        notes.append(f"{len(summary['overlapping'])} files overlap an earlier file of their site in time "
                     f"(e.g. {Path(summary['overlapping'][0]).name}): the overlap counts once in activity.csv")
    return notes


def recompute_activity(run_dir: str | Path, min_score: float = 0.0, timezone: str | None = None) -> tuple[int, list[str]]:
    """Rewrite activity.csv/png of a finished count run from its recordings.csv and events.csv,
    without touching audio: only events scoring at least ``min_score``, hours in ``timezone``
    (default: the run's). Returns (rows written, warnings)."""
    import csv

    run_dir = Path(run_dir)
    tables = {name: run_dir / name for name in (RECORDINGS_CSV, "events.csv")}
    for path in tables.values():
        if not path.is_file():
            raise YamcapError(f"{path}: missing (not a yamcap count output folder of this version?)")
    outputs = OutputConfig()
    if (run_dir / "config.toml").is_file():
        outputs = Config.load(run_dir / "config.toml").outputs
    if timezone:
        outputs.timezone = timezone
    parse_timezone(outputs.timezone)
    try:
        with open(tables[RECORDINGS_CSV], newline="") as fh:
            recordings = [Recording(r["file"], r["site"], dt.datetime.fromisoformat(r["start_datetime"])
                                    if r["start_datetime"] else None, float(r["duration_s"])) for r in csv.DictReader(fh)]
        with open(tables["events.csv"], newline="") as fh:
            events = [(r["file"], float(r["start_s"])) for r in csv.DictReader(fh) if float(r["score"]) >= min_score]
    except (KeyError, ValueError) as exc:
        raise YamcapError(f"{run_dir}: recordings.csv or events.csv is not as count writes it ({exc})") from None
    notes = write_activity(run_dir, recordings, events, outputs)
    with open(run_dir / ACTIVITY_CSV, newline="") as fh:
        return sum(1 for _ in fh) - 1, notes
