"""Progress bars for long work (training, distillation), drawn on stderr with rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """A handle to advance one progress bar and show a short status (e.g. the loss)."""

    def __init__(self, progress: Progress | None, task_id: int | None) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        if self._progress is None:
            return
        fields = {} if status is None else {"status": status}
        self._progress.update(self._task_id, advance=steps, **fields)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, done: int = 0) -> Iterator[Bar]:
    """A rich progress bar, or a no-op handle when disabled (inside Ray trials, in tests); `done` of
    `total` are done already (e.g. found in a cache)."""
    if not enabled:
        yield Bar(None, None)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    # Twice a second: runs last up to hours on shared cores; Rich's default redraws ten times.
    with Progress(*columns, console=Console(stderr=True), transient=False, refresh_per_second=2) as progress:
        task_id = progress.add_task(description, total=total, completed=done, status="")
        yield Bar(progress, task_id)
