"""Counting on Apache Beam (``yamcap count --runner direct|dask|dataflow|flink|spark``).

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

On Dask (``--runner dask``) the job runs on a ``dask.distributed`` cluster: a LocalCluster of
``--workers`` processes started and closed here, or an existing one (``--dask-scheduler``, e.g.
workers on a SLURM cluster started by dask-jobqueue), which must see the audio and ``OUT`` on a
shared file system or an object store. Beam's and Dask's own log lines are hidden unless
``verbose``.

Remote ``OUT`` (``gs://...``): each output is written in a local temporary folder first and then
copied through ``FileSystems``, the state record last, so a file counts as done only once all
its outputs are there. Apache Beam is imported only here (``pip install 'yamnet-capuchin[beam]'``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
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

RUNNERS = {"direct": "DirectRunner", "dask": "DaskRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner",
           "spark": "SparkRunner"}
# runners Beam does not know by their short name
RUNNER_PATHS = {"dask": "apache_beam.runners.dask.dask_runner.DaskRunner"}
# how --workers reaches each runner (the rest: --beam-option KEY=VALUE); dask: the LocalCluster's size
WORKER_OPTIONS = {"direct": "direct_num_workers", "dask": None, "dataflow": "max_num_workers",
                  "flink": "parallelism", "spark": None}
DASK_CONNECT_TIMEOUT_S = 10
DASK_WORKER_WAIT_S = 120  # for the first worker of a cluster that is still starting (a batch queue)
# Dask partitions (one model load each) per worker thread: several, so that a slow file does not
# hold up a whole share of the run
DASK_PARTITIONS_PER_THREAD = 4
# what Beam and Dask print on stderr by themselves (their workers included): hidden unless verbose
RUNNER_CHATTER = re.compile(r"(?:(?:DEBUG|INFO|WARNING):(?:root|__main__|apache_beam|distributed|dask)[\w.]*:"
                            r"|\S.* - (?:distributed|dask|tornado)[\w.]* - (?:DEBUG|INFO|WARNING) - )")


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
    processes, in multi-process mode when > 1; Dataflow: the most workers; Flink: parallelism;
    Dask: no flag, the LocalCluster's size, :func:`dask_cluster`) and ``options`` (``KEY=VALUE``
    each, passed on as ``--KEY=VALUE``)."""
    if runner not in RUNNERS:
        raise YamcapError(f"unknown runner '{runner}' (one of: {', '.join(RUNNERS)})")
    args = [f"--runner={RUNNER_PATHS.get(runner, RUNNERS[runner])}"]
    if workers is not None:
        if workers < 1:
            raise YamcapError(f"--workers must be at least 1, got {workers}")
        flag = WORKER_OPTIONS[runner]
        if flag is None and runner != "dask":
            raise YamcapError(f"--workers is not used by the {runner} runner: set its parallelism with --beam-option")
        if flag:
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
_MODEL_LOADING = threading.Lock()


def _load_worker_model(job: Job, tmp: Path):
    """The job's model, loaded on a worker; one load at a time in a process (a Dask worker runs
    several partitions in threads, and TensorFlow imported by two threads at once fails with
    "partially initialized module"). A module-level function, so that the pickled DoFn refers
    to it (and its lock) by name."""
    with _MODEL_LOADING:
        return load_model(_local_model_dir(job.model_dir, tmp), yamnet=job.yamnet, runtime=job.runtime,
                          audio_backend=job.audio_backend)


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
            self.detector = _load_worker_model(job, Path(self._tmp.name))
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


# -- Dask clusters and the runners' own output ------------------------------------------------------
@contextmanager
def dask_cluster(workers: int | None = None, scheduler: str | None = None, verbose: bool = False) -> Iterator[tuple[str, int]]:
    """``(address, threads)`` of a Dask cluster for the block: the scheduler at ``scheduler``
    (``tcp://HOST:PORT``, or the JSON file ``dask scheduler --scheduler-file`` writes; TLS as set
    in the user's Dask configuration; waits up to :data:`DASK_WORKER_WAIT_S` for a first worker)
    or a LocalCluster of ``workers`` processes (default: one per core) with one thread each,
    closed when the block ends. ``threads``: the worker threads the cluster has at the start,
    which sets how many partitions the files are split into.

    The LocalCluster listens on loopback only, where any web page the user opens can reach it:
    its scheduler and workers talk TLS with a key and certificate made for this launch (held
    in memory; a connection without them is refused), and their HTTP servers (dashboard,
    metrics, health) have no pages at all."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster, Security
    except ImportError:
        raise YamcapError("--runner dask needs dask and distributed: pip install 'yamnet-capuchin[beam]'") from None
    quiet = logging.INFO if verbose else logging.ERROR
    if scheduler:
        if workers is not None:
            raise YamcapError("--workers starts a local Dask cluster: leave it out with --dask-scheduler (the "
                              "cluster's workers are started where it runs)")
        address = scheduler
        if "://" not in scheduler and Path(scheduler).is_file():
            try:
                address = json.loads(Path(scheduler).read_text(encoding="utf-8"))["address"]
            except (OSError, ValueError, KeyError, TypeError):
                raise YamcapError(f"--dask-scheduler {scheduler}: not a Dask scheduler file (JSON with an "
                                  "'address')") from None
        try:
            with Client(address, timeout=DASK_CONNECT_TIMEOUT_S) as client:
                try:
                    client.wait_for_workers(1, timeout=DASK_WORKER_WAIT_S)
                except TimeoutError:
                    raise YamcapError(f"--dask-scheduler {scheduler}: no worker joined the cluster within "
                                      f"{DASK_WORKER_WAIT_S} s") from None
                threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        except (OSError, TimeoutError, ValueError) as exc:
            raise YamcapError(f"--dask-scheduler {scheduler}: cannot connect ({str(exc).splitlines()[0][:200]})") from None
        yield address, threads
        return
    n = workers or os.cpu_count() or 1
    security = Security.temporary()
    closed = {  # what this process's clients (the DaskRunner's own) connect with; workers get it too
        "distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": security.tls_ca_file,
        "distributed.comm.tls.client.cert": security.tls_client_cert,
        "distributed.comm.tls.client.key": security.tls_client_key,
        "distributed.scheduler.http.routes": [], "distributed.worker.http.routes": [],
        # the workers' statistical profiler (for the dashboard, which is off) takes the GIL every 10 ms;
        # Dask's environment for worker processes (one OpenMP/BLAS thread, eager malloc trimming) made
        # each file about 20 % slower to count here (40 forest recordings: 38.0 s of work against 32.0 s)
        "distributed.worker.profile.enabled": False, "distributed.nanny.pre-spawn-environ": {},
    }
    with dask.config.set(closed), LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls", security=security,
            dashboard_address=None, scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=quiet) as cluster:
        yield cluster.scheduler_address, n


class ChatterFilter:
    """``keep(line)``: False for a line that matches ``chatter`` and for the lines of the same log
    record after it (a traceback logged with it: indented lines, "Traceback ...", the chained-
    exception lines, and the exception's own last line)."""

    CONTINUED = re.compile(r"(?:\s|Traceback \(most recent call last\)|During handling of|The above exception)")
    EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(?::|$)")

    def __init__(self, chatter: re.Pattern = RUNNER_CHATTER):
        self.chatter = chatter
        self.in_record = self.in_traceback = False

    def __call__(self, line: str) -> bool:
        if self.chatter.match(line):
            self.in_record, self.in_traceback = True, False
            return False
        if self.in_record:
            if self.CONTINUED.match(line):
                self.in_traceback = self.in_traceback or line.startswith("Traceback")
                return False
            last = self.in_traceback and self.EXCEPTION.match(line)  # the exception itself ends it
            self.in_record = self.in_traceback = False
            if last:
                return False
        return True


@contextmanager
def runner_chatter_hidden(enabled: bool = True, chatter: re.Pattern = RUNNER_CHATTER) -> Iterator[None]:
    """Within the block, lines written to this process's standard error (file descriptor 2, so
    also by the runner's worker processes, which inherit it) that match ``chatter`` are dropped
    and the rest passed on as they come. Beam's workers log through their own root loggers, out
    of reach of this process's ``logging`` settings."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    forward = os.dup(saved)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        keep = ChatterFilter(chatter)
        with os.fdopen(read_end, "rb") as src, os.fdopen(forward, "wb", buffering=0) as dst:
            for line in src:
                if keep(line.decode("utf-8", "replace")):
                    dst.write(line)

    thread = threading.Thread(target=pump, name="yamcap-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe ends once no worker process holds it either
        os.close(saved)
        thread.join(timeout=2)


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
    dask_scheduler: str | None = None,
    verbose: bool = False,
) -> dict:
    """Count calls in ``paths`` (files, folders, globs; local or remote) on a Beam runner and
    write the outputs of local ``count`` into ``out``. ``load_detector(local_model_dir)`` loads
    ``model_dir`` (None: the shipped model; a remote one copied here first) as the workers will:
    it is checked here first, and its resolved YAMNet handle is passed on. ``dask_scheduler``:
    the address of a running Dask cluster to use (``runner="dask"``; default: a LocalCluster of
    ``workers`` processes). ``verbose``: show Beam's and Dask's own log lines too. Returns the
    run as read back from the workers' outcomes."""
    started = time.time()
    if dask_scheduler and runner != "dask":
        raise YamcapError("--dask-scheduler needs --runner dask")
    with runner_chatter_hidden(not verbose):  # Beam's import warns about clients of Google services
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
    if not verbose:
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
    holder = output_lock(out, "yamcap count") if is_local(out) else contextlib.nullcontext()
    cluster = dask_cluster(workers, dask_scheduler, verbose) if runner == "dask" else contextlib.nullcontext()
    with runner_chatter_hidden(not verbose), holder, cluster as dask:
        if dask:
            address, threads = dask
            # Beam's Create makes the partitions and its Reshuffle is a no-op on Dask
            args += [f"--dask_client_address={address}",
                     f"--dask_npartitions={min(len(files), DASK_PARTITIONS_PER_THREAD * threads)}"]
        shown = " ".join(a for a in args[1:] if not a.startswith("--dask_npartitions"))
        echo(f"counting {len(files)} files on {RUNNERS[runner]} "
             f"({shown or 'default options'}{f'; {threads} worker threads' if dask else ''})")
        pipeline = beam.Pipeline(options=PipelineOptions(args))
        try:
            with pipeline:
                _ = (pipeline
                     | "Files" >> beam.Create(files)
                     | "Spread" >> beam.Reshuffle()
                     | "Count" >> beam.ParDo(_count_file_fn()(job))
                     | "Gather" >> beam.combiners.ToList()
                     | "Tables" >> beam.Map(write_run_tables, job, info, files))
        finally:  # the DaskRunner's own client, before its cluster goes
            client = getattr(getattr(pipeline, "result", None), "client", None)
            if client is not None:
                client.close()
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
