"""Pure logic of the review page: the run's events as candidates, their labels, statistics.

No web framework, no audio decoding and no TensorFlow here: reading a ``yamcap count`` run
(events.csv, the per-file state records), stable candidate ids, merging the labels read back
from Raven tables, precision against score threshold, counts per file before and after the
labels, and picking extra (active-learning) stretches from frame scores.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..annotations import Selection, is_call, is_other
from ..outputs import output_stems

EVENT = "event"  # a row of the run's events.csv
UNCERTAIN = "uncertain"  # frames scored in the uncertain band
HARD_NEGATIVE = "hard-negative"  # top-scoring stretch of a recording labelled call-free
RANDOM = "random"  # a seeded random stretch
LABELLED = "labelled"  # a reviewed selection no longer among the candidates (e.g. an extra pick)
NOTE_PREFIX = "review:"  # the Notes column of a reviewed selection: "review:<id> ..."
STATE_DIR = ".yamcap-state"


@dataclass
class Candidate:
    """One span to review. ``file`` is the recording's path as written in events.csv;
    ``start_s``/``end_s`` are the span shown (edited bounds replace the detected ones)."""

    id: str
    file: str
    start_s: float
    end_s: float
    score: float
    source: str = EVENT
    label: str | None = None
    event_start_s: float | None = None  # the detected bounds (None for extra picks)
    event_end_s: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def candidate_id(file: str, start_s: float, end_s: float) -> str:
    """A stable id: the first 12 hex digits of sha1(file|start|end), times rounded to 10 ms."""
    key = f"{file}|{round(float(start_s), 2):.2f}|{round(float(end_s), 2):.2f}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def read_events(run_dir: str | Path) -> list[Candidate]:
    """One candidate per row of ``run_dir/events.csv`` (file,start_s,end_s,score), in file order."""
    path = Path(run_dir) / "events.csv"
    if not path.exists():
        return []
    out, seen = [], set()
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            file, a, b = row["file"], float(row["start_s"]), float(row["end_s"])
            cid = candidate_id(file, a, b)
            if cid in seen:
                continue
            seen.add(cid)
            out.append(Candidate(cid, file, a, b, float(row.get("score") or 0.0), EVENT, None, a, b))
    return out


def read_recordings(run_dir: str | Path, events: Sequence[Candidate] = ()) -> dict[str, float | None]:
    """Every recording of the run (path as given -> duration in s, None if unknown): the files
    with events plus those without any, from the run's state records."""
    files: dict[str, float | None] = {}
    state = Path(run_dir) / STATE_DIR
    if state.is_dir():
        for p in sorted(state.glob("*.json")):
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
                files[str(data["path"])] = float(data.get("duration_s") or 0.0) or None
            except (OSError, ValueError, KeyError, TypeError):
                continue
    for c in events:
        files.setdefault(c.file, None)
    return dict(sorted(files.items()))


def recording_stems(files: Iterable[str]) -> dict[str, str]:
    """The table stem of each recording, as ``yamcap count`` names its outputs
    (:func:`yamnet_capuchin.outputs.output_stems`)."""
    return output_stems(files)


def review_note(cid: str, source: str = EVENT, score: float | None = None) -> str:
    """The Notes text of a reviewed selection; it carries the candidate id, so a reload finds
    the label again even after its bounds were edited."""
    note = f"{NOTE_PREFIX}{cid} {source}"
    return note + (f" score={score:.4f}" if score is not None else "")


def note_id(note: str) -> str | None:
    """The candidate id in a review note, else None."""
    note = (note or "").strip()
    if not note.startswith(NOTE_PREFIX):
        return None
    return note[len(NOTE_PREFIX):].split()[0] if note[len(NOTE_PREFIX):].strip() else None


def _same_span(a: tuple[float, float], b: tuple[float, float], tolerance_s: float) -> bool:
    return abs(a[0] - b[0]) <= tolerance_s and abs(a[1] - b[1]) <= tolerance_s


def merge_labels(candidates: Sequence[Candidate], tables: Mapping[str, Sequence[Selection]],
                 stems: Mapping[str, str], tolerance_s: float = 0.25) -> list[Candidate]:
    """``candidates`` with the labels (and edited bounds) of the selections in ``tables``
    (recording stem -> selections).

    A selection belongs to a candidate when its note names the candidate's id, else when its
    span equals the candidate's within ``tolerance_s`` (a table made by hand or by Raven). A
    reviewed selection (note with an id) that matches no candidate becomes a candidate of its
    own (source ``labelled``), so labels of extra picks stay visible after a reload."""
    out = [replace(c) for c in candidates]
    by_id = {c.id: c for c in out}
    file_of_stem = {stem: f for f, stem in stems.items()}
    for stem, selections in tables.items():
        file = file_of_stem.get(stem)
        if file is None:
            continue
        mine = [c for c in out if c.file == file]
        for s in selections:
            cid = note_id(s.note)
            target = by_id.get(cid) if cid else None
            if target is None and cid is None:
                target = next((c for c in mine if _same_span((c.start_s, c.end_s), s.interval(), tolerance_s)), None)
            if target is None and cid is not None:
                source = (s.note.split()[1] if len(s.note.split()) > 1 else LABELLED)
                target = Candidate(cid, file, s.begin_s, s.end_s, _note_score(s.note), source)
                out.append(target)
                by_id[cid] = target
                mine.append(target)
            if target is not None:
                target.label = s.label
                target.start_s, target.end_s = s.begin_s, s.end_s
    return out


def _note_score(note: str) -> float:
    for part in note.split():
        if part.startswith("score="):
            try:
                return float(part[len("score="):])
            except ValueError:
                return 0.0
    return 0.0


def label_state(label: str | None) -> str:
    """``unlabelled``, ``call``, ``other`` or ``unsure``."""
    if label is None:
        return "unlabelled"
    if is_call(label):
        return "call"
    if is_other(label):
        return "other"
    return "unsure"


def sort_candidates(candidates: Sequence[Candidate], key: str = "score") -> list[Candidate]:
    """``score`` (highest first), ``score-asc``, ``file`` (then time) or ``time``."""
    if key == "score":
        return sorted(candidates, key=lambda c: (-c.score, c.file, c.start_s))
    if key == "score-asc":
        return sorted(candidates, key=lambda c: (c.score, c.file, c.start_s))
    return sorted(candidates, key=lambda c: (c.file, c.start_s))


def filter_candidates(candidates: Sequence[Candidate], file: str | None = None, state: str | None = None,
                      min_score: float | None = None, max_score: float | None = None) -> list[Candidate]:
    """Candidates of ``file``, in label ``state`` (see :func:`label_state`), within a score range."""
    return [c for c in candidates
            if (file is None or c.file == file)
            and (state is None or state == "all" or label_state(c.label) == state)
            and (min_score is None or c.score >= min_score)
            and (max_score is None or c.score <= max_score)]


def progress(candidates: Sequence[Candidate]) -> dict:
    states = [label_state(c.label) for c in candidates]
    return {"total": len(states), "labelled": sum(s != "unlabelled" for s in states),
            **{s: states.count(s) for s in ("call", "other", "unsure", "unlabelled")}}


def precision_by_threshold(candidates: Sequence[Candidate], thresholds: Sequence[float] | None = None) -> list[dict]:
    """Precision of the run's events at each score threshold, from the labels so far.

    Only events (source ``event``) labelled call or not-a-call count; ``unsure`` and unlabelled
    ones are left out. Row: threshold, n (labelled events scoring >= it), calls, precision
    (None when n is 0)."""
    if thresholds is None:
        thresholds = [round(0.05 * i, 2) for i in range(20)]
    judged = [(c.score, is_call(c.label)) for c in candidates
              if c.source == EVENT and c.label is not None and (is_call(c.label) or is_other(c.label))]
    rows = []
    for t in thresholds:
        above = [call for score, call in judged if score >= t]
        rows.append({"threshold": float(t), "n": len(above), "calls": sum(above),
                     "precision": (sum(above) / len(above)) if above else None})
    return rows


def counts_before_after(candidates: Sequence[Candidate], recordings: Iterable[str] = ()) -> list[dict]:
    """Per recording: events of the run (``before``), events left once those labelled not a call
    are removed (``after``), and how many are labelled call / other / unsure / not yet."""
    rows: dict[str, dict] = {f: {"file": f, "before": 0, "after": 0, "call": 0, "other": 0, "unsure": 0,
                                 "unlabelled": 0} for f in recordings}
    for c in candidates:
        if c.source != EVENT:
            continue
        r = rows.setdefault(c.file, {"file": c.file, "before": 0, "after": 0, "call": 0, "other": 0,
                                     "unsure": 0, "unlabelled": 0})
        state = label_state(c.label)
        r["before"] += 1
        r[state] += 1
        if state != "other":
            r["after"] += 1
    return [rows[f] for f in sorted(rows)]


def stats(candidates: Sequence[Candidate], recordings: Iterable[str] = ()) -> dict:
    """What the page's statistics panel shows."""
    per_file = counts_before_after(candidates, recordings)
    return {
        "progress": progress(candidates),
        "precision": precision_by_threshold(candidates),
        "counts": per_file,
        "total_before": sum(r["before"] for r in per_file),
        "total_after": sum(r["after"] for r in per_file),
    }


# --- extra candidates (active learning) ------------------------------------------------------

@dataclass
class FrameTrack:
    """Frame scores of one recording: frame start times (s), scores, frame length (s), duration."""

    start_s: Sequence[float]
    scores: Sequence[float]
    window_s: float = 0.96
    duration_s: float = 0.0


@dataclass
class ExtraParams:
    low: float = 0.2  # the uncertain band
    high: float = 0.8
    span_s: float = 3.0  # length of an extra stretch
    n_uncertain: int = 20
    n_hard_negative: int = 10
    n_random: int = 5
    seed: int = 0


def call_free_files(candidates: Sequence[Candidate]) -> list[str]:
    """Recordings whose labels say call-free: at least one label, none a call or unsure, and
    every event of the recording labelled not a call."""
    files = sorted({c.file for c in candidates})
    out = []
    for f in files:
        mine = [c for c in candidates if c.file == f]
        labelled = [c for c in mine if c.label is not None]
        if not labelled or any(not is_other(c.label) for c in labelled):
            continue
        if all(c.label is not None for c in mine if c.source == EVENT):
            out.append(f)
    return out


def _overlaps(a: float, b: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(a < y and x < b for x, y in spans)


def _centred(centre: float, span_s: float, duration_s: float) -> tuple[float, float]:
    a = max(0.0, centre - span_s / 2)
    b = a + span_s
    if duration_s and b > duration_s:
        b = duration_s
        a = max(0.0, b - span_s)
    return round(a, 2), round(b, 2)


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def pick_extra(tracks: Mapping[str, FrameTrack], candidates: Sequence[Candidate],
               params: ExtraParams | None = None) -> list[Candidate]:
    """Extra stretches to label, none overlapping a candidate or another pick:

    * ``uncertain``: runs of frames scoring within [low, high], the ones nearest 0.5 first;
    * ``hard-negative``: the highest-scoring stretches of recordings labelled call-free;
    * ``random``: seeded random stretches of any recording."""
    import random

    p = params or ExtraParams()
    taken: dict[str, list[tuple[float, float]]] = {}
    for c in candidates:
        taken.setdefault(c.file, []).append((c.start_s, c.end_s))
    picks: list[Candidate] = []

    def add(file: str, centre: float, score: float, source: str) -> bool:
        tr = tracks[file]
        a, b = _centred(centre, p.span_s, tr.duration_s or 0.0)
        if b <= a or _overlaps(a, b, taken.setdefault(file, [])):
            return False
        taken[file].append((a, b))
        picks.append(Candidate(candidate_id(file, a, b), file, a, b, round(float(score), 4), source))
        return True

    uncertain = []
    for file, tr in tracks.items():
        scores = list(tr.scores)
        for i, j in _runs([p.low <= s <= p.high for s in scores]):
            k = max(range(i, j), key=lambda n: -abs(scores[n] - 0.5))
            centre = (tr.start_s[i] + tr.start_s[j - 1] + tr.window_s) / 2
            uncertain.append((abs(scores[k] - 0.5), file, centre, scores[k]))
    n = 0
    for _, file, centre, score in sorted(uncertain):
        if n >= p.n_uncertain:
            break
        n += add(file, centre, score, UNCERTAIN)

    free = [f for f in call_free_files(candidates) if f in tracks]
    tops = []
    for file in free:
        tr = tracks[file]
        tops += [(-float(s), file, float(t) + tr.window_s / 2) for t, s in zip(tr.start_s, tr.scores)]
    n = 0
    for neg, file, centre in sorted(tops):
        if n >= p.n_hard_negative:
            break
        n += add(file, centre, -neg, HARD_NEGATIVE)

    rng = random.Random(p.seed)
    files = sorted(f for f, tr in tracks.items() if len(tr.start_s))
    n = tries = 0
    while files and n < p.n_random and tries < 50 * max(1, p.n_random):
        tries += 1
        file = rng.choice(files)
        tr = tracks[file]
        k = rng.randrange(len(tr.start_s))
        n += add(file, float(tr.start_s[k]) + tr.window_s / 2, float(tr.scores[k]), RANDOM)
    return picks
