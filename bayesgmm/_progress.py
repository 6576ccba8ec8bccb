"""Progress display for long work (model-selection sweeps, validation runs), via rich."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _Tracker:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress = progress
        self._task = task

    def describe(self, text: str) -> None:
        """Show what runs now (e.g. ``"K=3 full: EM"``)."""
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True) -> Iterator[_Tracker]:
    """A progress bar on stderr with ``total`` steps; a silent tracker when ``enabled`` is False."""
    if not enabled:
        yield _Tracker(None, None)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield _Tracker(progress, progress.add_task(description, total=total))


def tracker_or_bar(
    tracker: Any, total: int, description: str, enabled: bool
) -> contextlib.AbstractContextManager:
    """The caller's progress tracker, or a bar of our own."""
    if tracker is not None:
        return contextlib.nullcontext(tracker)
    return progress_bar(total, description, enabled=enabled)
