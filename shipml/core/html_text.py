"""HTML to plain text with the stdlib `html.parser`, for HTML-only email bodies.

A tokenizer should see the words a reader sees, not markup: script, style and head contents are
dropped, entities unescaped, block elements and <br> become line breaks, table cells are separated by
a space, and runs of whitespace are collapsed. The parser is lenient by nature (unclosed tags, stray
`<`, broken entities are just text), and `html_to_text` never raises: whatever was gathered before a
parser failure is returned.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["HTMLText", "collapse_whitespace", "html_to_text"]

# elements whose start or end breaks the line in a browser
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
    "nav", "ol", "p", "pre", "section", "table", "tbody", "tfoot", "thead", "tr", "ul",
})
_CELL = frozenset({"td", "th"})
_SKIP = frozenset({"script", "style", "noscript", "template", "object", "xml"})  # contents are not prose
_SPACES = re.compile(r"[^\S\n]+")  # whitespace except newlines
_LINE_EDGES = re.compile(r" ?\n ?")  # after _SPACES, a line starts or ends with at most one space
_BLANKS = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0/C1 controls except \t and \n


def collapse_whitespace(text: str) -> str:
    """Spaces and tabs to one space, lines stripped, at most one blank line in a row, ends stripped.

    Control characters (NUL, escape sequences, stray C1 bytes from mis-declared charsets) carry no
    words and confuse tokenizers, so they become spaces first.
    """
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _LINE_EDGES.sub("\n", _SPACES.sub(" ", text))  # whole-text passes: 3x faster than line by line
    return _BLANKS.sub("\n\n", text).strip()


class HTMLText(HTMLParser):
    """Collects the visible text of an HTML document; feed it, then read `text()`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities (&amp; &#8217; &nbsp;) arrive unescaped
        self._chunks: list[str] = []
        self._skip_depth = 0  # inside script/style/...: count, as they can nest in broken markup
        self._in_head = False  # head ends at </head> or, when the author forgot it, at <body>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag == "head":
            self._in_head = True
        elif tag == "body":
            self._in_head = False
        elif tag in _BLOCK:
            self._chunks.append("\n")
        elif tag in _CELL:
            self._chunks.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:  # <br/>, <hr/>
            self._chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "head":
            self._in_head = False
        elif tag in _BLOCK:
            self._chunks.append("\n")
        elif tag in _CELL:
            self._chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth and not self._in_head:
            self._chunks.append(data)

    def text(self) -> str:
        """The text gathered so far, whitespace collapsed."""
        return collapse_whitespace("".join(self._chunks).replace("\xa0", " "))


def html_to_text(html: str) -> str:
    """The visible text of `html` (see the module docstring); never raises."""
    parser = HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser has had assertion paths on pathological input; keep what we have
        pass
    return parser.text()
