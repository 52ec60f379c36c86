"""Progress bars for long work (rich), silent when ``enabled`` is False."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@contextmanager
def progress_bar(enabled: bool = True):
    """A rich Progress with a bar, counts and elapsed/remaining time (or None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    ) as bar:
        yield bar


def format_duration(seconds: float) -> str:
    """``m:ss`` below an hour, else ``h:mm:ss``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@contextmanager
def audio_progress(enabled: bool = True):
    """A rich Progress whose tasks count seconds of audio: bar, ``done/total`` audio time,
    speed as a multiple of real time, elapsed time and time remaining (None when disabled).

    Advance a task by the seconds of audio just processed, across files, so the rate and the
    ETA hold for long and short files alike."""
    if not enabled:
        yield None
        return
    from rich.progress import (BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class AudioColumn(ProgressColumn):
        def render(self, task) -> Text:
            total = format_duration(task.total) if task.total is not None else "?"
            return Text(f"{format_duration(task.completed)}/{total} audio", style="progress.download")

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if not speed else f"{speed:,.0f}x real time", style="progress.data.speed")

    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), AudioColumn(), RateColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    ) as bar:
        yield bar


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar advancing once per item (``total``: the
    number of items, needed when ``items`` has no length)."""
    if not enabled:
        yield from items
        return
    with progress_bar(True) as bar:
        task = bar.add_task(description, total=total if total is not None else len(items))  # type: ignore[arg-type]
        for item in items:
            yield item
            bar.advance(task)
