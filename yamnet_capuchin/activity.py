"""Calling activity: calls per recorded hour, by site and clock hour.

Pure functions on tables. A recording is (file, site, start time, duration); an event is
(file, begin offset in s). Recording effort is split by the clock: a file from 10:50 to 11:20
gives 600 s to hour 10 and 1200 s to hour 11, and each call goes to the hour its event begins
in. Hours are wall-clock hours in the reporting time zone (``tz``).

- Hours with effort and no call are rows with 0 calls: zero calls is data, not a gap.
- Hours without effort (gaps between files) have no row.
- Where files of one site overlap in time, the overlap is counted once: each file counts only
  from where the site's earlier files end, and its calls that begin before that are left out.
- Files without a start time are not in the table; :func:`activity_table` says how many.
- In the hour a daylight-saving change repeats, both passes fall in the same (date, hour) row,
  which then holds up to 7200 s of effort.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence

ACTIVITY_COLUMNS = ("site", "date", "hour", "recorded_s", "calls", "calls_per_hour")
# overlaps shorter than this are not reported (a compressed file's decoder adds a few ms, so
# back-to-back recordings overlap slightly); they still count once
OVERLAP_REPORT_S = 1.0


@dataclass(frozen=True)
class Recording:
    """file: the path as in events.csv; start: aware datetime or None; duration_s: seconds."""

    file: str
    site: str
    start: dt.datetime | None
    duration_s: float


@dataclass(frozen=True)
class ActivityRow:
    site: str
    date: dt.date
    hour: int
    recorded_s: float
    calls: int

    @property
    def calls_per_hour(self) -> float:
        return self.calls * 3600.0 / self.recorded_s if self.recorded_s > 0 else 0.0


def _next_hour(moment: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The first instant after ``moment`` at which the wall-clock hour in ``tz`` changes."""
    local = moment.astimezone(tz)
    floor = local.replace(minute=0, second=0, microsecond=0)
    step = (floor.replace(tzinfo=None) + dt.timedelta(hours=1)).replace(tzinfo=tz, fold=0)
    # a wall-clock hour that does not exist (spring forward), or a repeated one (fall back):
    # the hour's end is then one real hour after its start
    if step.astimezone(dt.timezone.utc) <= moment.astimezone(dt.timezone.utc) or step.utcoffset() != floor.utcoffset():
        step = floor.astimezone(dt.timezone.utc) + dt.timedelta(hours=1)
    return step.astimezone(dt.timezone.utc)


def split_by_hour(start: dt.datetime, end: dt.datetime, tz: dt.tzinfo) -> list[tuple[dt.date, int, float]]:
    """[(date, hour, seconds)] of the interval [start, end) cut at wall-clock hours in ``tz``."""
    out: list[tuple[dt.date, int, float]] = []
    t = start.astimezone(dt.timezone.utc)
    end = end.astimezone(dt.timezone.utc)
    while t < end:
        nxt = min(_next_hour(t, tz), end)
        local = t.astimezone(tz)
        out.append((local.date(), local.hour, (nxt - t).total_seconds()))
        t = nxt
    return out


def counted_spans(recordings: Sequence[Recording]) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """file -> the [begin, end) of it that counts: from its start, or from where the same site's
    earlier-starting files end, to its end (begin == end: wholly covered by other files)."""
    spans: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    by_site: dict[str, list[Recording]] = {}
    for r in recordings:
        if r.start is not None:
            by_site.setdefault(r.site, []).append(r)
    for files in by_site.values():
        covered: dt.datetime | None = None
        for r in sorted(files, key=lambda r: (r.start, r.file)):
            end = r.start + dt.timedelta(seconds=r.duration_s)
            begin = r.start if covered is None else min(max(r.start, covered), end)
            spans[r.file] = (begin, end)
            covered = end if covered is None else max(covered, end)
    return spans


def activity_table(recordings: Sequence[Recording], events: Iterable[tuple[str, float]],
                   tz: dt.tzinfo = dt.timezone.utc) -> tuple[list[ActivityRow], dict]:
    """Rows for every (site, date, hour) with effort, sorted, and a summary: files without a
    start time (``untimed``), files overlapping an earlier one of their site by more than
    OVERLAP_REPORT_S (``overlapping``), and calls left out because they fell in an overlap or in
    an untimed file."""
    spans = counted_spans(recordings)
    by_file = {r.file: r for r in recordings}
    effort: dict[tuple[str, dt.date, int], float] = {}
    calls: dict[tuple[str, dt.date, int], int] = {}
    for r in recordings:
        if r.file in spans:
            for date, hour, seconds in split_by_hour(*spans[r.file], tz):
                key = (r.site, date, hour)
                effort[key] = effort.get(key, 0.0) + seconds
    dropped = 0
    for file, begin_s in events:
        r = by_file.get(file)
        span = spans.get(file)
        moment = r.start + dt.timedelta(seconds=float(begin_s)) if (r is not None and span is not None) else None
        if moment is None or not span[0] <= moment < span[1]:
            dropped += 1
            continue
        local = moment.astimezone(tz)
        key = (r.site, local.date(), local.hour)
        calls[key] = calls.get(key, 0) + 1
    rows = [ActivityRow(site, date, hour, round(seconds, 3), calls.get((site, date, hour), 0))
            for (site, date, hour), seconds in sorted(effort.items()) if seconds > 0]
    summary = {"untimed": sorted(r.file for r in recordings if r.start is None),
               "overlapping": sorted(f for f, (b, _) in spans.items()
                                     if (b - by_file[f].start).total_seconds() > OVERLAP_REPORT_S),
               "calls_left_out": dropped}
    return rows, summary


def table_rows(rows: Sequence[ActivityRow]) -> list[tuple]:
    """activity.csv's rows, as strings in ACTIVITY_COLUMNS order."""
    return [(r.site, r.date.isoformat(), str(r.hour), f"{r.recorded_s:.1f}", str(r.calls), f"{r.calls_per_hour:.2f}")
            for r in rows]


def diel_profile(rows: Sequence[ActivityRow]) -> dict[str, list[float | None]]:
    """site -> 24 values: calls per recorded hour at each hour of day (None: no effort)."""
    out: dict[str, list[float | None]] = {}
    for site in sorted({r.site for r in rows}):
        effort, calls = [0.0] * 24, [0] * 24
        for r in rows:
            if r.site == site:
                effort[r.hour] += r.recorded_s
                calls[r.hour] += r.calls
        out[site] = [c * 3600.0 / e if e > 0 else None for c, e in zip(calls, effort)]
    return out


def daily_profile(rows: Sequence[ActivityRow]) -> dict[str, list[tuple[dt.date, float]]]:
    """site -> [(date, calls per recorded hour that day)] for the dates with effort."""
    out: dict[str, list[tuple[dt.date, float]]] = {}
    for site in sorted({r.site for r in rows}):
        per: dict[dt.date, list[float]] = {}
        for r in rows:
            if r.site == site:
                acc = per.setdefault(r.date, [0.0, 0.0])
                acc[0] += r.calls
                acc[1] += r.recorded_s
        out[site] = [(d, c * 3600.0 / e) for d, (c, e) in sorted(per.items()) if e > 0]
    return out
