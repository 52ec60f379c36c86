"""The review web app (Starlette): candidates, labels, media, statistics, retraining.

``create_app(run_dir, annotations_dir, ...)`` returns the ASGI app; ``yamcap review`` serves it
with uvicorn. Start-up only reads CSV/JSON/tables: audio is decoded and images drawn on request.
Audio and images are served by candidate id only; labels are written only into the
annotations folder, one Raven table per recording (:mod:`yamnet_capuchin.annotations`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from .. import annotations as ann
from ..errors import YamcapError
from . import candidates as cands
from .media import CACHE_DIR, AudioResolver, WaveCache, cached_png, span, spectrogram_png, wav_bytes
from .retrain import RetrainUnavailable, check_ready
from .security import Guard, new_token

HERE = Path(__file__).resolve().parent
_ID = re.compile(r"^[0-9a-f]{12}$")
EXTRA_FILE = "extra.json"

# (recordings to score) -> {file: FrameTrack}; the default loads the model and streams scores
Scorer = Callable[[Mapping[str, Path]], Mapping[str, cands.FrameTrack]]
# (run_dir, annotations_dir, data_dir, {file: path}) -> {"counts": {file: n}, ...}
Retrainer = Callable[..., dict]


class Job:
    """A background task's state: idle, running, done or error (with a message and a result)."""

    def __init__(self):
        self.state, self.message, self.result, self.started, self.finished = "idle", "", None, None, None
        self.lock = threading.Lock()

    def as_dict(self) -> dict:
        return {"state": self.state, "message": self.message, "result": self.result,
                "seconds": round((self.finished or time.time()) - self.started, 1) if self.started else None}

    def start(self, fn: Callable[[], dict], on_done: Callable[[dict], None] | None = None) -> bool:
        """Run ``fn`` in a daemon thread unless one is running; False if one is."""
        with self.lock:
            if self.state == "running":
                return False
            self.state, self.message, self.result, self.started, self.finished = "running", "", None, time.time(), None

        def work():
            try:
                result = fn()
                if on_done:
                    on_done(result)
                self.result, self.state = result, "done"
            except YamcapError as exc:
                self.message, self.state = str(exc), "error"
            except Exception as exc:  # noqa: BLE001 - shown on the page, not swallowed
                self.message, self.state = f"{type(exc).__name__}: {exc}", "error"
                traceback.print_exc()
            finally:
                self.finished = time.time()

        threading.Thread(target=work, daemon=True, name="yamcap-review-job").start()
        return True


def default_scorer(model_dir: str | Path | None = None, backend: str = "soundfile") -> Scorer:
    """Frame scores of each recording with the model ``model_dir`` (default: the shipped one)."""

    def score(paths: Mapping[str, Path]) -> dict[str, cands.FrameTrack]:
        from ..audio import SAMPLE_RATE
        from ..detectors import load_model
        from ..streaming import stream_frame_scores

        detector = load_model(str(model_dir) if model_dir else None)
        out = {}
        for file, path in paths.items():
            try:
                fs = stream_frame_scores(detector, path, audio_backend=backend)
            except (YamcapError, OSError):
                continue
            out[file] = cands.FrameTrack(fs.start_s.tolist(), fs.scores.tolist(),
                                         detector.window_samples / SAMPLE_RATE, fs.duration_s)
        return out

    return score


def default_retrainer(run_dir, annotations_dir, data_dir, recordings: Mapping[str, Path]) -> dict:
    from .retrain import retrain

    result = retrain(run_dir, annotations_dir, data_dir, list(recordings.values()), echo=lambda *_: None)
    back = {str(p): f for f, p in recordings.items()}
    result["counts"] = {back.get(p, p): n for p, n in result["counts"].items()}
    return result


class ReviewState:
    """Everything the app knows: the run's candidates, their labels (read back from the tables),
    caches and background jobs. Thread-safe."""

    def __init__(self, run_dir: str | Path, annotations_dir: str | Path | None = None,
                 audio: Iterable[str | Path] = (), data_dir: str | Path | None = None,
                 scorer: Scorer | None = None, retrainer: Retrainer | None = None,
                 extra_params: cands.ExtraParams | None = None, wave_cache_size: int = 6):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "events.csv").is_file() and not (self.run_dir / "summary.json").is_file():
            raise YamcapError(f"{run_dir}: not a `yamcap count` output folder (no events.csv or summary.json)")
        self.annotations_dir = Path(annotations_dir) if annotations_dir else self.run_dir / "annotations"
        self.cache_dir = self.run_dir / CACHE_DIR
        self.data_dir = Path(data_dir) if data_dir else None
        self.summary = self._read_json(self.run_dir / "summary.json")
        self.resolver = AudioResolver(audio, self.run_dir, self.data_dir)
        self.waves = WaveCache(wave_cache_size)
        self.scorer = scorer or default_scorer(None, (self.summary.get("config") or {}).get("audio", {}).get(
            "backend", "soundfile"))
        self.retrainer = retrainer or default_retrainer
        self.extra_params = extra_params or cands.ExtraParams()
        self.lock = threading.RLock()
        self.events = cands.read_events(self.run_dir)
        self.recordings = cands.read_recordings(self.run_dir, self.events)
        self.stems = cands.recording_stems(self.recordings)
        self.extra = [cands.Candidate(**c) for c in self._read_json(self.cache_dir / EXTRA_FILE, [])]
        self.extra_job, self.retrain_job = Job(), Job()
        self.by_id: dict[str, cands.Candidate] = {}
        self.reload()

    @staticmethod
    def _read_json(path: Path, default=None):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {} if default is None else default

    # --- labels ----------------------------------------------------------------------------
    def table_path(self, file: str) -> Path:
        return self.annotations_dir / ann.table_name(self.stems[file])

    def read_tables(self) -> dict[str, list[ann.Selection]]:
        tables = {}
        for file, stem in self.stems.items():
            path = self.annotations_dir / ann.table_name(stem)
            if path.is_file():
                tables[stem] = ann.read_table(path)
        return tables

    def reload(self) -> None:
        """Candidates = events + extra picks, with the labels now in the tables."""
        with self.lock:
            merged = cands.merge_labels(self.events + self.extra, self.read_tables(), self.stems)
            self.by_id = {c.id: c for c in merged}

    def candidates(self) -> list[cands.Candidate]:
        with self.lock:
            return list(self.by_id.values())

    def label(self, cid: str, label: str, start_s: float | None = None, end_s: float | None = None) -> cands.Candidate:
        """Label a candidate (bounds optional) and rewrite its recording's table at once."""
        label = ann.check_label(label)
        with self.lock:
            c = self.by_id[cid]
            a = float(c.start_s if start_s is None else start_s)
            b = float(c.end_s if end_s is None else end_s)
            if not (0 <= a < b):
                raise ValueError(f"bounds {a}-{b} s: start must be >= 0 and before end")
            duration = self.recordings.get(c.file)
            if duration and a >= duration:
                raise ValueError(f"bounds {a}-{b} s: start lies beyond the recording's end ({duration:.1f} s)")
            path = self.table_path(c.file)
            current = ann.read_table(path) if path.is_file() else []
            # this candidate's earlier label goes, wherever its bounds were
            current = [s for s in current if cands.note_id(s.note) != cid]
            new = ann.Selection(round(a, 3), round(b, 3), label, note=cands.review_note(cid, c.source, c.score))
            ann.write_table(path, ann.upsert(current, new))
            updated = replace(c, label=label, start_s=new.begin_s, end_s=new.end_s)
            self.by_id[cid] = updated
            return updated

    # --- media -----------------------------------------------------------------------------
    def _samples(self, c: cands.Candidate):
        path = self.resolver.resolve(c.file)
        if path is None:
            raise FileNotFoundError(c.file)
        return span(self.waves.get(path), c.start_s, c.end_s)

    def image(self, cid: str) -> bytes:
        c = self.by_id[cid]
        key = f"{cid}-{c.start_s:.2f}-{c.end_s:.2f}.png"

        def make():
            samples, offset = self._samples(c)
            title = f"{Path(c.file).name}  {c.start_s:.2f}-{c.end_s:.2f} s  score {c.score:.2f}"
            return spectrogram_png(samples, offset, c.start_s, c.end_s, title, f"{c.score:.2f}")

        return cached_png(self.cache_dir, key, make)

    def audio(self, cid: str) -> bytes:
        samples, _ = self._samples(self.by_id[cid])
        return wav_bytes(samples)

    # --- extra candidates --------------------------------------------------------------------
    def start_extra(self) -> bool:
        def work():
            paths = {f: p for f in self.recordings if (p := self.resolver.resolve(f)) is not None}
            if not paths:
                raise YamcapError("none of the run's recordings was found; pass them as AUDIO arguments")
            tracks = self.scorer(paths)
            picks = cands.pick_extra(tracks, self.candidates(), self.extra_params)
            return {"added": len(picks), "scored": len(tracks), "picks": [p.as_dict() for p in picks]}

        def done(result):
            with self.lock:
                known = {c.id for c in self.extra}
                self.extra += [cands.Candidate(**p) for p in result["picks"] if p["id"] not in known]
                from ..fileio import atomic_write_json

                atomic_write_json(self.cache_dir / EXTRA_FILE, [c.as_dict() for c in self.extra])
            self.reload()
            result.pop("picks")

        return self.extra_job.start(work, done)

    # --- statistics and retraining -------------------------------------------------------------
    def stats(self) -> dict:
        out = cands.stats(self.candidates(), self.recordings)
        out["extra"] = self.extra_job.as_dict()
        out["retrain"] = self.retrain_job.as_dict()
        return out

    def start_retrain(self) -> bool:
        check_ready(self.data_dir)  # RetrainUnavailable -> 409 before any thread starts
        before = {r["file"]: r["before"] for r in cands.counts_before_after(self.candidates(), self.recordings)}
        after = {r["file"]: r["after"] for r in cands.counts_before_after(self.candidates(), self.recordings)}

        def work():
            paths = {f: p for f in self.recordings if (p := self.resolver.resolve(f)) is not None}
            result = self.retrainer(self.run_dir, self.annotations_dir, self.data_dir, paths)
            new = result.get("counts", {})
            result["per_file"] = [{"file": f, "old": before.get(f, 0), "labelled": after.get(f, 0),
                                   "new": new.get(f)} for f in sorted(set(before) | set(new))]
            result["total_old"] = sum(before.values())
            result["total_new"] = sum(n for n in new.values() if n is not None)
            return result

        return self.retrain_job.start(work)


def _json(data, status: int = 200):
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status)


def _error(status: int, message: str):
    return _json({"error": message}, status)


def create_app(run_dir: str | Path, annotations_dir: str | Path | None = None, audio: Sequence[str | Path] = (),
               data_dir: str | Path | None = None, scorer: Scorer | None = None,
               retrainer: Retrainer | None = None, extra_params: cands.ExtraParams | None = None,
               model_dir: str | Path | None = None, warm_up: bool = True, token: str | None = "",
               host: str = "127.0.0.1", port: int | None = None, extra_hosts: Sequence[str] = ()):
    """The review app for the ``yamcap count`` output folder ``run_dir``.

    ``audio``: recordings or folders, where events.csv's paths do not lead to them;
    ``data_dir``: Kaggle-layout training data for retraining (default $YAMCAP_DATA);
    ``model_dir``: model for extra candidates (default: the shipped one); ``scorer`` and
    ``retrainer`` replace the model-backed functions (tests); ``warm_up``: import the plotting
    libraries in a background thread.

    Security (:mod:`.security`): ``token`` is the launch secret ("": a fresh one, kept as
    ``app.state.token``; None: no token check); ``host``/``port``: where it is served, for the
    Host allow-list (port None: any); ``extra_hosts``: more host names to accept."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.templating import Jinja2Templates

    if data_dir is None and os.environ.get("YAMCAP_DATA"):
        data_dir = os.environ["YAMCAP_DATA"]
    state = ReviewState(run_dir, annotations_dir, audio, data_dir, scorer, retrainer, extra_params)
    token = new_token() if token == "" else token
    if model_dir is not None and scorer is None:
        backend = (state.summary.get("config") or {}).get("audio", {}).get("backend", "soundfile")
        state.scorer = default_scorer(model_dir, backend)
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def candidate_or_404(request: Request) -> cands.Candidate:
        name = request.path_params.get("name", "")
        cid = name.rsplit(".", 1)[0]
        if not _ID.match(cid) or cid not in state.by_id:
            raise HTTPException(404, "no such candidate")
        return state.by_id[cid]

    async def index(request: Request):
        state.reload()
        summary = state.summary.get("model") or {}
        return templates.TemplateResponse(request, "index.html", {
            "run_name": state.run_dir.resolve().name, "n_recordings": len(state.recordings),
            "n_candidates": len(state.by_id), "annotations_dir": str(state.annotations_dir),
            "model": summary, "retrain_ready": state.data_dir is not None, "token": token or "",
        }, headers={"Cache-Control": "no-store"})

    def list_candidates(request: Request):
        q = request.query_params
        if q.get("extra") in ("1", "true", "yes"):
            state.start_extra()
        state.reload()
        items = cands.filter_candidates(state.candidates(), q.get("file") or None, q.get("state") or None)
        items = cands.sort_candidates(items, q.get("sort") or "score")
        return _json([{"id": c.id, "file": c.file, "start_s": c.start_s, "end_s": c.end_s, "score": c.score,
                       "label": c.label, "source": c.source, "event_start_s": c.event_start_s,
                       "event_end_s": c.event_end_s} for c in items])

    async def post_label(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "expected a JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return _error(400, "expected {\"id\": ..., \"label\": ...}")
        cid = body["id"]
        try:
            ann.check_label(str(body.get("label", "")))
        except YamcapError as exc:
            return _error(422, str(exc))
        if cid not in state.by_id:
            return _error(404, f"unknown candidate id '{cid}'")
        try:
            start = None if body.get("start_s") is None else float(body["start_s"])
            end = None if body.get("end_s") is None else float(body["end_s"])
            c = state.label(cid, str(body["label"]), start, end)
        except (ValueError, TypeError, YamcapError) as exc:
            return _error(422, str(exc))
        except OSError as exc:  # the table is left as it was (atomic write)
            return _error(500, f"label not saved: {exc}")
        return _json({"candidate": c.as_dict(), "progress": cands.progress(state.candidates())})

    def media(request: Request, render, media_type: str):
        c = candidate_or_404(request)
        try:
            data = render(c.id)
        except FileNotFoundError:
            return _error(404, f"recording not found: {c.file} (pass it as an AUDIO argument)")
        except YamcapError as exc:
            return _error(404, str(exc))
        return Response(data, media_type=media_type, headers={"Cache-Control": "no-cache"})

    def image(request: Request):
        return media(request, state.image, "image/png")

    def audio_span(request: Request):
        return media(request, state.audio, "audio/wav")

    def get_stats(request: Request):
        return _json(state.stats())

    def extra_status(request: Request):
        return _json(state.extra_job.as_dict())

    def start_extra(request: Request):
        started = state.start_extra()
        return _json(state.extra_job.as_dict(), 202 if started else 409)

    def retrain_status(request: Request):
        return _json(state.retrain_job.as_dict())

    def start_retrain(request: Request):
        try:
            started = state.start_retrain()
        except RetrainUnavailable as exc:
            return _error(409, str(exc))
        except YamcapError as exc:
            return _error(500, str(exc))
        if not started:
            return _error(409, "retraining is already running")
        return _json(state.retrain_job.as_dict(), 202)

    async def not_found(request: Request, exc):
        status = getattr(exc, "status_code", 500)
        return _error(status, getattr(exc, "detail", "error") or "error")

    routes = [
        Route("/", index),
        Route("/api/candidates", list_candidates),
        Route("/api/labels", post_label, methods=["POST"]),
        Route("/api/stats", get_stats),
        Route("/api/extra", extra_status, methods=["GET"]),
        Route("/api/extra", start_extra, methods=["POST"]),
        Route("/api/retrain", retrain_status, methods=["GET"]),
        Route("/api/retrain", start_retrain, methods=["POST"]),
        Route("/api/image/{name}", image),
        Route("/api/audio/{name}", audio_span),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.review = state
    app.state.token = token
    app.add_middleware(Guard, token=token, bind_host=host, port=port, extra_hosts=extra_hosts)
    if warm_up:
        threading.Thread(target=_warm_up, daemon=True, name="yamcap-review-warm-up").start()
    return app


def _warm_up() -> None:
    """Load the plotting stack in the background, so the first image comes sooner: librosa's
    first STFT takes seconds (lazy imports, compilation); here it runs on 0.1 s of silence.
    No recording is decoded and no image drawn."""
    try:
        import numpy as np

        from ..spectrogram import log_spectrogram

        log_spectrogram(np.zeros(1600, np.float32))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except Exception:  # noqa: BLE001 - only a speed-up
        pass
