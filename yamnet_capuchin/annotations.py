"""Annotations of long recordings as Raven Pro selection tables with an ``Annotation`` column.

One table per recording, named ``<stem>.Table.1.selections.txt``. Each selection is a
:class:`Selection`: begin/end time (s), low/high frequency (Hz), a label and an optional note.
Labels are ``capuchin`` (a Capuchinbird call), ``other:<kind>`` (a sound that is not one,
e.g. ``other:harmonic-bird``, ``other:insect``) or ``unsure``.

A table holds only Raven's header row and selection rows (Raven rejects comment lines), so
"this recording was annotated completely" is said by the table's presence: an empty table
means no call and nothing noteworthy.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from .errors import YamcapError
from .fileio import atomic_write_text

CALL = "capuchin"
UNSURE = "unsure"
OTHER_PREFIX = "other:"
TABLE_SUFFIX = ".Table.1.selections.txt"
COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
           "High Freq (Hz)", "Annotation", "Notes")
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def check_label(label: str) -> str:
    """``label`` normalised (stripped, lower case) if it is valid, else :class:`YamcapError`.

    Valid: ``capuchin``, ``unsure``, ``other`` or ``other:<kind>`` with a kind of lower-case
    letters, digits, ``-``, ``_`` or ``.``."""
    norm = CALL if str(label).strip().lower() == "capuchinbird" else str(label).strip().lower()  # yamcap count's Raven label
    if norm in (CALL, UNSURE, "other"):
        return norm
    if norm.startswith(OTHER_PREFIX) and _KIND.match(norm[len(OTHER_PREFIX):]):
        return norm
    raise YamcapError(f"unknown label '{label}' (capuchin, unsure, or other:<kind>)")


def is_call(label: str) -> bool:
    return label == CALL


def is_other(label: str) -> bool:
    return label == "other" or label.startswith(OTHER_PREFIX)


@dataclass(frozen=True)
class Selection:
    """One annotated span of a recording (seconds from its start, Hz)."""

    begin_s: float
    end_s: float
    label: str
    low_hz: float = 0.0
    high_hz: float = 8000.0
    note: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.begin_s

    def interval(self) -> tuple[float, float]:
        return (self.begin_s, self.end_s)


def table_name(stem: str) -> str:
    return f"{stem}{TABLE_SUFFIX}"


def stem_of_table(path: str | Path) -> str:
    """The recording stem a table belongs to (``recording_08.Table.1.selections.txt`` -> ``recording_08``)."""
    name = Path(path).name
    for suffix in (TABLE_SUFFIX, ".selections.txt", ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def format_table(selections: Sequence[Selection]) -> str:
    """A Raven selection table (tab-separated), selections sorted by time."""
    lines = ["\t".join(COLUMNS)]
    for i, s in enumerate(sorted(selections, key=lambda s: (s.begin_s, s.end_s, s.label)), 1):
        note = " ".join(str(s.note).split())  # one line, no tabs
        lines.append("\t".join([str(i), "Spectrogram 1", "1", f"{s.begin_s:.3f}", f"{s.end_s:.3f}",
                                f"{s.low_hz:.1f}", f"{s.high_hz:.1f}", s.label, note]))
    return "\n".join(lines) + "\n"


def write_table(path: str | Path, selections: Sequence[Selection]) -> None:
    """Write (atomically) after checking every selection: valid label, 0 <= begin < end, low < high."""
    for s in selections:
        check_label(s.label)
        if not (0 <= s.begin_s < s.end_s):
            raise YamcapError(f"{path}: selection {s.begin_s}-{s.end_s} s: begin must be >= 0 and before end")
        if not (0 <= s.low_hz < s.high_hz):
            raise YamcapError(f"{path}: selection at {s.begin_s} s: low frequency must be below high frequency")
    atomic_write_text(path, format_table(selections))


def read_table(path: str | Path, default_label: str = CALL) -> list[Selection]:
    """Selections of a Raven table, sorted by time.

    The label comes from an ``Annotation`` column (case-insensitive name; also ``Label`` or
    ``Species``); a table without one (e.g. a plain yamcap output) gives ``default_label``.
    Raven lists a selection once per view; each ``Selection`` id is kept once."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            rows = list(reader)
            header = reader.fieldnames or []
    except OSError as exc:
        raise YamcapError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise YamcapError(f"{path}: not a Raven selection table (not UTF-8 text)") from None
    cols = {c.strip().lower(): c for c in header if c}
    for need in ("begin time (s)", "end time (s)"):
        if need not in cols:
            raise YamcapError(f"{path}: not a Raven selection table (no '{need}' column)")
    if not rows:
        return []
    label_col = next((cols[c] for c in ("annotation", "label", "species") if c in cols), None)

    def num(row, name, default):
        col = cols.get(name)
        value = (row.get(col) or "").strip() if col else ""
        return float(value) if value else default

    seen, out = set(), []
    for i, r in enumerate(rows, 2):
        key = (r.get(cols.get("selection", ""), "") or f"row{i}").strip()
        if key in seen:
            continue
        seen.add(key)
        try:
            label = check_label(r.get(label_col) or default_label) if label_col else default_label
            sel = Selection(num(r, "begin time (s)", 0.0), num(r, "end time (s)", 0.0), label,
                            num(r, "low freq (hz)", 0.0), num(r, "high freq (hz)", 8000.0),
                            (r.get(cols.get("notes", ""), "") or "").strip() if "notes" in cols else "")
        except (ValueError, YamcapError) as exc:
            raise YamcapError(f"{path}, line {i}: {exc}") from None
        out.append(sel)
    return sorted(out, key=lambda s: (s.begin_s, s.end_s))


def read_folder(folder: str | Path) -> dict[str, list[Selection]]:
    """All tables of a folder keyed by recording stem (``*.selections.txt``; sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise YamcapError(f"{folder}: annotation folder not found")
    tables = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(".selections.txt"))
    out: dict[str, list[Selection]] = {}
    for p in tables:
        stem = stem_of_table(p)
        if stem in out:
            raise YamcapError(f"{folder}: two tables for recording '{stem}'")
        out[stem] = read_table(p)
    return out


def calls(selections: Iterable[Selection]) -> list[tuple[float, float]]:
    """(begin, end) of the Capuchinbird calls among ``selections``."""
    return [s.interval() for s in selections if is_call(s.label)]


def upsert(selections: Sequence[Selection], new: Selection, tolerance_s: float = 0.25) -> list[Selection]:
    """``selections`` with ``new`` replacing any selection of the same span (both ends within
    ``tolerance_s``), else added: a second label of the same event replaces the first."""
    kept = [s for s in selections
            if not (abs(s.begin_s - new.begin_s) <= tolerance_s and abs(s.end_s - new.end_s) <= tolerance_s)]
    return sorted(kept + [new], key=lambda s: (s.begin_s, s.end_s))


def relabel(selection: Selection, label: str) -> Selection:
    return replace(selection, label=check_label(label))


def label_at(selections: Sequence[Selection], start_s: float, end_s: float, default: str = UNSURE) -> str:
    """The label of the selection that overlaps ``[start_s, end_s]`` most; ``default`` if none does."""
    best, label = 0.0, default
    for s in selections:
        overlap = min(end_s, s.end_s) - max(start_s, s.begin_s)
        if overlap > best:
            best, label = overlap, s.label
    return label
