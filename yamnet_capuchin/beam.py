"""Counting on Apache Beam (``yamcap count --runner direct|dataflow|flink|spark``).

The same per-file work as local ``yamcap count`` (:mod:`yamnet_capuchin.count`), spread over
Beam workers, with the same outputs:

1. the driver matches the inputs (local folders as local ``count`` searches them; any other
   path or glob through Beam's ``FileSystems``, so ``gs://`` and ``s3://`` work where their Beam
   extras are installed), loads the model once to check it and to fix the run's identity, and
   holds ``OUT/.yamcap-lock`` (local ``OUT``) while the job runs;
2. ``Create(paths) -> Reshuffle -> ParDo(CountFile)``: each worker loads the model once in
   ``setup``; per file it decodes in blocks, scores frames, finds events and writes the file's
   Raven table, Audacity labels and state record (:func:`count.score_file`,
   :func:`count.write_file_outputs`). A file that cannot be read becomes an ``errors.csv`` row,
   never a failed job; a file whose state record matches its content, the model and the
   parameters is taken from it (re-running resumes, as local ``count`` does);
3. ``ToList -> WriteRunTables``: counts.csv, events.csv, errors.csv, sources.csv, counts.png,
   summary.json and config.toml (:func:`count.write_summary_outputs`), rows sorted by file.

Remote ``OUT`` (``gs://...``): each output is written in a local temporary folder first and then
copied through ``FileSystems``, the state record last, so a file counts as done only once all
its outputs are there. Apache Beam is imported only here (``pip install 'yamnet-capuchin[beam]'``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .config import Config
from .count import (STATE_DIR, CountRun, FileCount, check_outputs, clip_names, content_sha, file_key, header_info,
                    input_failure, resumed_result, run_identity, score_file, state_from_text, write_file_outputs,
                    write_summary_outputs)
from .detectors import load_model
from .errors import AudioError, YamcapError
from .fileio import AUDIO_EXTENSIONS, expand_audio_paths, output_lock
from .outputs import output_stems

RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}
# how --workers reaches each runner (the rest: --beam-option KEY=VALUE)
WORKER_OPTIONS = {"direct": "direct_num_workers", "dataflow": "max_num_workers", "flink": "parallelism",
                  "spark": None}


def import_beam():
    """``apache_beam``, or a one-line :class:`YamcapError` naming the extra to install."""
    try:
        import apache_beam
    except ImportError:
        raise YamcapError("--runner needs Apache Beam: pip install 'yamnet-capuchin[beam]'") from None
    return apache_beam


def is_local(path: str | Path) -> bool:
    """True for a path on this machine's file system (no ``scheme://``)."""
    return "://" not in str(path)


def pipeline_args(runner: str, workers: int | None = None, options: Sequence[str] = ()) -> list[str]:
    """Beam pipeline flags for ``runner`` (a key of :data:`RUNNERS`), ``workers`` (DirectRunner:
    processes, in multi-process mode when > 1; Dataflow: the most workers; Flink: parallelism)
    and ``options`` (``KEY=VALUE`` each, passed on as ``--KEY=VALUE``)."""
    if runner not in RUNNERS:
        raise YamcapError(f"unknown runner '{runner}' (one of: {', '.join(RUNNERS)})")
    args = [f"--runner={RUNNERS[runner]}"]
    if workers is not None:
        if workers < 1:
            raise YamcapError(f"--workers must be at least 1, got {workers}")
        flag = WORKER_OPTIONS[runner]
        if flag is None:
            raise YamcapError(f"--workers is not used by the {runner} runner: set its parallelism with --beam-option")
        args.append(f"--{flag}={workers}")
        if runner == "direct":
            args.append(f"--direct_running_mode={'multi_processing' if workers > 1 else 'in_memory'}")
    if runner == "direct":  # the worker processes' own INFO lines would bury yamcap's
        args.append("--default_sdk_harness_log_level=ERROR")
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise YamcapError(f"--beam-option expects KEY=VALUE, got '{item}'")
        args.append(f"--{key.strip().lstrip('-')}={value}")
    return args


def match_inputs(paths: Sequence[str]) -> list[str]:
    """The files to count, in order: local folders searched recursively for audio files (as local
    ``count`` does), local files as given (a missing one is reported when it is read), and
    globs or remote paths matched through Beam's ``FileSystems`` (audio extensions only when
    the pattern has a wildcard). Duplicates are dropped."""
    out: list[str] = []
    for p in paths:
        if is_local(p) and not any(ch in str(p) for ch in "*?["):
            out.extend(str(f) for f in expand_audio_paths([p]))
            continue
        from apache_beam.io.filesystems import FileSystems

        wildcard = any(ch in str(p) for ch in "*?[")
        try:
            found = [m.path for r in FileSystems.match([str(p)]) for m in r.metadata_list]
        except Exception as exc:  # BeamIOError, missing filesystem extra, ...
            raise YamcapError(f"{p}: cannot list ({str(exc).splitlines()[0][:200]})") from None
        out.extend(sorted(f for f in found if not wildcard or Path(f).suffix.lower() in AUDIO_EXTENSIONS))
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class DetectorInfo:
    """What the run's tables say about the model (summary.json), without the model itself."""

    kind: str
    threshold: float
    fingerprint_: str
    meta: dict

    @classmethod
    def of(cls, detector) -> "DetectorInfo":
        return cls(detector.kind, float(detector.threshold), detector.fingerprint(), dict(getattr(detector, "meta", {})))

    def fingerprint(self) -> str:
        return self.fingerprint_


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, as plain values (pickled to the workers)."""

    model_dir: str | None  # None: the shipped model
    yamnet: str | None  # the YAMNet handle the driver resolved
    runtime: str | None
    audio_backend: str | None  # asked for on the command line, else the model's
    config: dict
    out: str
    run_id: str
    stems: dict  # path -> table name (count's output_stems over all inputs)
    names: dict  # path -> clip_name in counts.csv
    plots: bool
    started: float  # time.time() when the driver started
    runner: str


# -- file access for local and remote paths --------------------------------------------------------
@contextmanager
def local_copy(path: str) -> Iterator[Path]:
    """``path`` itself where it is local, else a temporary local copy (same suffix)."""
    if is_local(path):
        yield Path(path)
        return
    from apache_beam.io.filesystems import FileSystems

    with tempfile.TemporaryDirectory(prefix="yamcap-in-") as tmp:
        local = Path(tmp) / f"input{Path(path).suffix}"
        try:
            with FileSystems.open(path) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except Exception as exc:  # BeamIOError: not found, no permission
            raise OSError(f"cannot fetch ({str(exc).splitlines()[0][:200]})") from None
        yield local


@contextmanager
def output_folder(out: str) -> Iterator[Path]:
    """A local folder to write outputs into: ``out`` itself where it is local, else a temporary
    folder whose files are copied to ``out`` (through ``FileSystems``) when the block ends
    without error, files under ``.yamcap-state`` last."""
    if is_local(out):
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="yamcap-out-") as tmp:
        yield Path(tmp)
        publish(Path(tmp), out)


def publish(local_dir: Path, out: str) -> None:
    """Copy every file under ``local_dir`` to the same relative path under ``out``; state
    records last (a file is done once its state is there)."""
    from apache_beam.io.filesystems import FileSystems

    files = sorted((f for f in local_dir.rglob("*") if f.is_file()), key=lambda f: (STATE_DIR in f.parts, str(f)))
    for f in files:
        target = FileSystems.join(out, *f.relative_to(local_dir).parts)
        with open(f, "rb") as src, FileSystems.create(target) as dst:
            shutil.copyfileobj(src, dst)


def previous_result(out: str, path: str, sha: str, run_id: str) -> FileCount | None:
    """The file's result from an earlier run into ``out`` (local or remote), else None."""
    if not sha:
        return None
    if is_local(out):
        return resumed_result(Path(out), path, sha, run_id)
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(FileSystems.join(out, STATE_DIR, f"{file_key(path)}.json")) as fh:
            return state_from_text(fh.read().decode("utf-8"), sha, run_id)
    except Exception:  # not there (yet)
        return None


def _local_model_dir(model_dir: str | None, tmp_root: Path) -> str | None:
    """A model directory on a remote file system copied here (workers read models locally)."""
    if model_dir is None or is_local(model_dir):
        return model_dir
    from apache_beam.io.filesystems import FileSystems

    local = tmp_root / "model"
    for result in FileSystems.match([FileSystems.join(model_dir, "**")]):
        for m in result.metadata_list:
            rel = m.path[len(model_dir.rstrip("/")) + 1:]
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(m.path) as src, open(local / rel, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return str(local)


# -- the pipeline's steps ---------------------------------------------------------------------------
def _count_file_fn():
    import apache_beam as beam

    class CountFile(beam.DoFn):
        """path -> ("counted" | "resumed", FileCount) or ("failed", (path, reason))."""

        def __init__(self, job: Job):
            self.job = job

        def setup(self):
            self._tmp = tempfile.TemporaryDirectory(prefix="yamcap-model-")
            job = self.job
            self.config = Config.from_dict(job.config)
            self.detector = load_model(_local_model_dir(job.model_dir, Path(self._tmp.name)), yamnet=job.yamnet,
                                       runtime=job.runtime, audio_backend=job.audio_backend)
            self.config.backbone, self.config.audio.backend = (self.detector.config.backbone,
                                                               self.detector.config.audio.backend)

        def teardown(self):
            self._tmp.cleanup()

        def process(self, path: str):
            job = self.job
            try:
                with local_copy(path) as local:
                    sha = content_sha(local)
                    done = previous_result(job.out, path, sha, job.run_id)
                    if done is not None:
                        done.path = path
                        yield "resumed", done
                        return
                    result, figure = score_file(self.detector, local, self.config, sha, job.plots, named_as=path)
                    native_rate = _native_rate(local)
            except (AudioError, OSError) as exc:
                yield "failed", (path, input_failure(exc))
                return
            result.path = path
            source = Path(path).absolute() if is_local(path) else path
            with output_folder(job.out) as out_dir:
                write_file_outputs(out_dir, job.stems[path], file_key(path), result, figure, job.run_id, source,
                                   native_rate, self.config.outputs)
            yield "counted", result

    return CountFile


def _native_rate(path: Path):
    info = header_info(path)
    return info.sample_rate if info else None


def write_run_tables(outcomes: list, job: Job, detector: DetectorInfo, order: Sequence[str]) -> CountRun:
    """The run's tables from the workers' outcomes, in the order of the inputs."""
    by_path = {}
    failures = {}
    for kind, value in outcomes:
        if kind == "failed":
            failures[value[0]] = value[1]
        else:
            value.resumed = kind == "resumed"
            by_path[value.path] = value
    run = CountRun([by_path[p] for p in order if p in by_path], [(p, failures[p]) for p in order if p in failures],
                   time.time() - job.started)
    config = Config.from_dict(job.config)
    with output_folder(job.out) as out_dir:
        write_summary_outputs(out_dir, run, job.names, config, detector, {Path(p): s for p, s in job.stems.items()},
                              {"runner": job.runner})
    return run


# -- the driver -------------------------------------------------------------------------------------
def count_on_beam(
    paths: Sequence[str],
    out: str,
    config: Config,
    load_detector: Callable[[str | None], object],
    runner: str = "direct",
    workers: int | None = None,
    beam_options: Sequence[str] = (),
    model_dir: str | None = None,
    audio_backend: str | None = None,
    plots: bool = False,
    echo: Callable[[str], None] = print,
) -> dict:
    """Count calls in ``paths`` (files, folders, globs; local or remote) on a Beam runner and
    write the outputs of local ``count`` into ``out``. ``load_detector(local_model_dir)`` loads
    ``model_dir`` (None: the shipped model; a remote one copied here first) as the workers will:
    it is checked here first, and its resolved YAMNet handle is passed on. Returns
    the run as read back from the workers' outcomes."""
    started = time.time()
    beam = import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    args = pipeline_args(runner, workers, beam_options)
    files = match_inputs(paths)
    if not files:
        raise YamcapError("no audio files found in the given paths")
    if is_local(out):
        check_outputs(out)
    with tempfile.TemporaryDirectory(prefix="yamcap-model-") as tmp:
        detector = load_detector(_local_model_dir(model_dir, Path(tmp)))
    yamnet = detector.kind == "yamnet"
    job = Job(
        model_dir=None if model_dir is None else str(model_dir),
        yamnet=(detector.config.backbone.handle or None) if yamnet else None,
        runtime=detector.config.backbone.runtime if yamnet else None,
        audio_backend=audio_backend, config=config.to_dict(), out=str(out), run_id=run_identity(detector, config),
        stems=output_stems(files), names=clip_names(files), plots=plots, started=started, runner=RUNNERS[runner],
    )
    info = DetectorInfo.of(detector)
    del detector
    echo(f"counting {len(files)} files on {RUNNERS[runner]} ({' '.join(args[1:]) or 'default options'})")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    holder = output_lock(out, "yamcap count") if is_local(out) else contextlib.nullcontext()
    with holder:
        with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
            _ = (pipeline
                 | "Files" >> beam.Create(files)
                 | "Spread" >> beam.Reshuffle()
                 | "Count" >> beam.ParDo(_count_file_fn()(job))
                 | "Gather" >> beam.combiners.ToList()
                 | "Tables" >> beam.Map(write_run_tables, job, info, files))
    return read_run_summary(out)


def read_run_summary(out: str) -> dict:
    """summary.json of the run in ``out``, with ``failures``: errors.csv's (file, reason) rows."""
    import csv
    import io

    def read(name: str) -> str:
        if is_local(out):
            return (Path(out) / name).read_text(encoding="utf-8")
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(FileSystems.join(out, name)) as fh:
            return fh.read().decode("utf-8")

    summary = json.loads(read("summary.json"))
    summary["failures"] = [(r["file"], r["reason"]) for r in csv.DictReader(io.StringIO(read("errors.csv")))]
    return summary
