"""Writers for counting results: challenge CSV, events CSV, Raven selection tables, Audacity labels.

All writes are atomic (see :mod:`yamnet_capuchin.fileio`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .events import Event
from .fileio import atomic_write_csv, atomic_write_text, text_sha256

# BirdNET-Analyzer's layout (its label and confidence columns are Annotation and Score here), so
# Raven, crowsetta, opensoundscape and yamcap's own annotation reader take the tables as they are.
RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Score", "Begin Path", "File Offset (s)")
RAVEN_LABEL = "Capuchinbird"
COUNTS_COLUMNS = ("clip_name", "call_count")
EVENTS_COLUMNS = ("file", "start_s", "end_s", "score")
SOURCES_COLUMNS = ("name", "path")
# Events are not localised in frequency: selections span the band the models analyse, up to
# the file's own Nyquist frequency.
LOW_FREQ_HZ = 0.0
HIGH_FREQ_HZ = 8000.0


def high_freq_hz(native_rate: int | float | None) -> float:
    """A selection's upper edge: 8000 Hz (the models' band), or the file's Nyquist frequency
    where that is lower (4000 Hz for an 8 kHz file)."""
    if not native_rate or native_rate <= 0:
        return HIGH_FREQ_HZ
    return min(HIGH_FREQ_HZ, native_rate / 2.0)


def write_counts_csv(path: str | Path, counts: Mapping[str, int]) -> None:
    """The challenge's submission format: ``clip_name,call_count``, sorted by name."""
    atomic_write_csv(path, COUNTS_COLUMNS, [(name, counts[name]) for name in sorted(counts)])


def write_events_csv(path: str | Path, events: Iterable[tuple[str, Event]]) -> None:
    rows = [(f, f"{e.start_s:.3f}", f"{e.end_s:.3f}", f"{e.peak_score:.4f}") for f, e in events]
    atomic_write_csv(path, EVENTS_COLUMNS, rows)


def raven_table(events: Sequence[Event], source: str | Path = "", high_freq: float = HIGH_FREQ_HZ,
                label: str = RAVEN_LABEL) -> str:
    """A Raven Pro selection table (tab-separated, one row per event): times, band, the label
    (``Annotation``), the peak score, the source recording (``Begin Path``) and the event's
    offset in it (``File Offset (s)``, = its begin time, as BirdNET-Analyzer writes it)."""
    lines = ["\t".join(RAVEN_COLUMNS)]
    for i, e in enumerate(events, 1):
        lines.append("\t".join([
            str(i), "Spectrogram 1", "1", f"{e.start_s:.6f}", f"{e.end_s:.6f}",
            f"{LOW_FREQ_HZ:.1f}", f"{high_freq:.1f}", label, f"{e.peak_score:.4f}", str(source).replace("\t", " "),
            f"{e.start_s:.6f}",
        ]))
    return "\n".join(lines) + "\n"


def write_raven_table(path: str | Path, events: Sequence[Event], source: str | Path = "",
                      high_freq: float = HIGH_FREQ_HZ) -> None:
    atomic_write_text(path, raven_table(events, source, high_freq))


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
