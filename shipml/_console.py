"""Terminal output: Rich progress bars with ETA, silenced by --quiet. The one place that prints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["Reporter", "print_summary", "table"]


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


def print_summary(title: str, head: str, metrics: dict[str, Any], confidence: float = 0.95) -> None:
    """The test headline of a run and its baseline, with its confidence interval and the interval's method."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", head, f"{confidence:.0%} CI"):
        table.add_column(col)
    rows = [("shipml", metrics.get("test"))]
    if "baseline" in metrics:
        rows.append((metrics["baseline"]["name"], metrics["baseline"]["test"]))
    for name, m in rows:
        if m is None or head not in m:
            continue
        v = m[head]
        ci = "" if v.get("ci_low") is None else f"[{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
        if ci and v.get("ci_method"):
            ci += f" {v['ci_method']}"
        table.add_row(name, f"{v['value']:.4f}", ci)
    Console(stderr=True).print(table)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A Rich table of strings, printed (command output, not progress: not silenced by --quiet)."""
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for col in columns:
        out.add_column(col)
    for row in rows:
        out.add_row(*row)
    Console().print(out)
