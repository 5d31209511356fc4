"""Terminal output: Rich progress bars with ETA, silenced by --quiet. The one place that prints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["Reporter"]


class _Bar:
    def __init__(self, progress: Progress | None, task_id: int | None) -> None:
        self._progress, self._id = progress, task_id

    def update(self, completed: int | None = None, advance: int = 0, note: str = "") -> None:
        if self._progress is not None and self._id is not None:
            kw: dict[str, Any] = {"note": note}
            if completed is not None:
                kw["completed"] = completed
            self._progress.update(self._id, advance=advance, **kw)


class Reporter:
    """What long-running stages use to talk to the user; `quiet=True` keeps only warnings."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False)

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg)

    def warn(self, msg: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {msg}")

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[_Bar]:
        if self.quiet:
            yield _Bar(None, None)
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=False,
        )
        with progress:
            tid = progress.add_task(description, total=total, note="")
            yield _Bar(progress, tid)
