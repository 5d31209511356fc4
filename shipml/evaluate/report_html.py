"""The few HTML building blocks the report is made of; every user-controlled string goes through `esc`.

Cells and texts are escaped by default; only values wrapped in `Raw` (HTML this package built
itself, such as an <svg> from plots.py or a number in <b>) are inserted as they are.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Raw", "Section", "cell", "esc", "facts", "figure", "not_available", "num", "table"]


class Raw(str):
    """HTML that is already safe (built here, never from user input) and must not be escaped again."""

    __slots__ = ()


@dataclass(frozen=True)
class Section:
    """One titled part of the report; `anchor` is its id for the table of contents."""

    anchor: str
    title: str
    body: str  # HTML


def esc(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def num(value: object) -> str:
    """A number as a reader wants it: 4 significant digits, ints in full, missing as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return "–" if math.isnan(float(value)) else f"{float(value):.4g}"
    return str(value)


def cell(value: object) -> str:
    """HTML of a table cell's content: Raw as-is, numbers formatted, everything else escaped."""
    if isinstance(value, Raw):
        return value
    if value is None or isinstance(value, numbers.Real):
        return esc(num(value))
    return esc(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> Raw:
    """A table with a header row; numeric cells are right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td{_align(v)}>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return Raw(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>")


def _align(value: object) -> str:
    return ' class="n"' if isinstance(value, numbers.Real) and not isinstance(value, bool) else ""


def facts(pairs: Iterable[tuple[str, object]]) -> Raw:
    """A two-column key/value table (keys are our own labels, values are escaped)."""
    rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{cell(v)}</td></tr>" for k, v in pairs)
    return Raw(f'<table class="facts">\n{rows}\n</table>')


def figure(svg: str, caption: str) -> Raw:
    """An inline chart with a caption (the SVG comes from plots.py, whose text matplotlib escapes)."""
    return Raw(f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>")


def not_available(why: str) -> Raw:
    """The standard note for a part of the report whose input is missing."""
    return Raw(f'<p class="na">Not available: {esc(why)}.</p>')
