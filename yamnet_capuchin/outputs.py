"""Writers for counting results: challenge CSV, events CSV, Raven selection tables, Audacity labels.

All writes are atomic (see :mod:`yamnet_capuchin.fileio`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .clock import UTC, RecordingClock, iso
from .events import Event
from .fileio import atomic_write_csv, atomic_write_text, text_sha256

# BirdNET-Analyzer's layout (its label and confidence columns are Annotation and Score here), so
# Raven, crowsetta, opensoundscape and yamcap's own annotation reader take the tables as they are.
RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Score", "Begin Path", "File Offset (s)")
RAVEN_LABEL = "Capuchinbird"
COUNTS_COLUMNS = ("clip_name", "call_count")
EVENTS_COLUMNS = ("file", "start_s", "end_s", "score", "site", "begin_datetime", "end_datetime")
# Raven's own clock-time measurements, added where a recording's start time is known, so Raven
# shows the selections at the time of day they were recorded
RAVEN_CLOCK_COLUMNS = ("Begin Date", "Begin Clock Time", "End Date", "End Clock Time")
RECORDINGS_COLUMNS = ("file", "site", "start_datetime", "end_datetime", "duration_s", "time_source", "calls")
SOURCES_COLUMNS = ("name", "path")
# Events are not localised in frequency: a selection spans a band given by the configuration
# (outputs.raven_low_hz / raven_high_hz: a Capuchinbird call's), capped at the file's Nyquist
# frequency; these are the widest band, the one the models analyse.
LOW_FREQ_HZ = 0.0
HIGH_FREQ_HZ = 8000.0


def high_freq_hz(native_rate: int | float | None, high: float = HIGH_FREQ_HZ) -> float:
    """A selection's upper edge: ``high`` (at most 8000 Hz, the models' band), or the file's
    Nyquist frequency where that is lower (4000 Hz for an 8 kHz file)."""
    high = min(float(high), HIGH_FREQ_HZ)
    if not native_rate or native_rate <= 0:
        return high
    return min(high, native_rate / 2.0)


def write_counts_csv(path: str | Path, counts: Mapping[str, int]) -> None:
    """The challenge's submission format: ``clip_name,call_count``, sorted by name."""
    atomic_write_csv(path, COUNTS_COLUMNS, [(name, counts[name]) for name in sorted(counts)])


def at(start: dt.datetime | None, offset_s: float, tz: dt.tzinfo = UTC) -> dt.datetime | None:
    """The clock time ``offset_s`` seconds into a recording that began at ``start``, in ``tz``,
    to the nearest millisecond."""
    if start is None:
        return None
    return (start + dt.timedelta(milliseconds=round(float(offset_s) * 1000))).astimezone(tz)


def write_events_csv(path: str | Path, events: Iterable[tuple[str, Event]],
                     clocks: Mapping[str, RecordingClock] | None = None, tz: dt.tzinfo = UTC) -> None:
    """``file,start_s,end_s,score,site,begin_datetime,end_datetime``: offsets in seconds from
    the file's start, and (where its start time is known, else blank) ISO 8601 clock times in
    ``tz`` with their UTC offset. ``clocks``: file -> its :class:`RecordingClock`."""
    clocks = clocks or {}
    rows = []
    for f, e in events:
        c = clocks.get(f)
        start = c.start if c else None
        rows.append((f, f"{e.start_s:.3f}", f"{e.end_s:.3f}", f"{e.peak_score:.4f}", c.site if c else "",
                     iso(at(start, e.start_s, tz)), iso(at(start, e.end_s, tz))))
    atomic_write_csv(path, EVENTS_COLUMNS, rows)


def write_recordings_csv(path: str | Path, recordings: Iterable[tuple[str, float, int]],
                         clocks: Mapping[str, RecordingClock], tz: dt.tzinfo = UTC) -> None:
    """One row per counted file (``recordings``: (file, duration in s, calls)): its site, start
    and end in ``tz`` (blank where unknown), duration, where the time came from, and its calls."""
    rows = []
    for f, duration, calls in recordings:
        c = clocks.get(f) or RecordingClock(None, "", "")
        rows.append((f, c.site, iso(at(c.start, 0.0, tz)), iso(at(c.start, duration, tz)), f"{duration:.3f}",
                     c.source, str(calls)))
    atomic_write_csv(path, RECORDINGS_COLUMNS, sorted(rows))


def raven_table(events: Sequence[Event], source: str | Path = "", high_freq: float = HIGH_FREQ_HZ,
                label: str = RAVEN_LABEL, low_freq: float = LOW_FREQ_HZ, start: dt.datetime | None = None,
                tz: dt.tzinfo = UTC) -> str:
    """A Raven Pro selection table (tab-separated, one row per event): times, band
    (``low_freq``-``high_freq`` Hz), the label (``Annotation``), the peak score, the source
    recording (``Begin Path``) and the event's offset in it (``File Offset (s)``, = its begin
    time, as BirdNET-Analyzer writes it). With the recording's ``start``: Raven's clock-time
    measurements too, in ``tz`` (``Begin Date`` as yyyy/mm/dd, ``Begin Clock Time`` as
    hh:mm:ss.sss; the same for the end)."""
    lines = ["\t".join(RAVEN_COLUMNS + (RAVEN_CLOCK_COLUMNS if start is not None else ()))]
    for i, e in enumerate(events, 1):
        row = [str(i), "Spectrogram 1", "1", f"{e.start_s:.6f}", f"{e.end_s:.6f}",
               f"{low_freq:.1f}", f"{high_freq:.1f}", label, f"{e.peak_score:.4f}", str(source).replace("\t", " "),
               f"{e.start_s:.6f}"]
        if start is not None:
            for moment in (at(start, e.start_s, tz), at(start, e.end_s, tz)):
                row += [moment.strftime("%Y/%m/%d"), moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def write_raven_table(path: str | Path, events: Sequence[Event], source: str | Path = "",
                      high_freq: float = HIGH_FREQ_HZ, low_freq: float = LOW_FREQ_HZ,
                      start: dt.datetime | None = None, tz: dt.tzinfo = UTC) -> None:
    atomic_write_text(path, raven_table(events, source, high_freq, low_freq=low_freq, start=start, tz=tz))


def write_sources_csv(path: str | Path, sources: Mapping[str, str]) -> None:
    """``name,path``: the name each recording's tables have in raven/, audacity/ and plots/
    (its stem, or stem_<hash> where two inputs share a stem) and the recording it came from."""
    atomic_write_csv(path, SOURCES_COLUMNS, [(name, sources[name]) for name in sorted(sources)])


def audacity_labels(events: Sequence[Event], label: str = "capuchinbird") -> str:
    """Audacity label track: ``start<TAB>end<TAB>label`` per line."""
    return "".join(f"{e.start_s:.6f}\t{e.end_s:.6f}\t{label} {e.peak_score:.2f}\n" for e in events)


def write_audacity_labels(path: str | Path, events: Sequence[Event]) -> None:
    atomic_write_text(path, audacity_labels(events))


def output_stems(paths: Iterable[str | Path]) -> dict[str, str]:
    """The name each input's tables get (keyed by the path as a string): the file's stem, or
    ``<stem>_<6 hex of sha256(path)>`` where several inputs share a stem (``sources.csv`` maps
    the names back to the paths)."""
    paths = list(dict.fromkeys(str(p) for p in paths))
    counts: dict[str, int] = {}
    for p in paths:
        counts[Path(p).stem] = counts.get(Path(p).stem, 0) + 1
    return {p: (Path(p).stem if counts[Path(p).stem] == 1 else f"{Path(p).stem}_{text_sha256(p)[:6]}") for p in paths}
