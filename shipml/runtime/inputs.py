"""Raw inputs as a user or a client hands them over -> rows, nothing decoded or scaled yet.

The one reader of prediction inputs for every caller (`Package.predict`, `Run.predict`, export's parity
check, and the server): lists of strings, DataFrames, lists of row dicts, table files (CSV/TSV/JSONL/
Parquet, compressed too), uint8 image arrays and .npz files, image files, folders and path lists, raw
email files and folders. File formats are read by `shipml.core` (the same readers training uses).
Folder walks skip hidden files and folders and `__MACOSX`, never loop on links, and are sorted, so the
order of the output rows is the order of the sorted paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.core.email import read_message
from shipml.core.images import iter_files
from shipml.core.tables import read_table, table_format
from shipml.errors import DataError

__all__ = ["EncodedImages", "RawEmails", "existing", "file_texts", "frame_rows", "image_items", "message_texts",
           "text_items", "walk"]


class EncodedImages(list):  # type: ignore[type-arg]
    """Image files' bytes (PNG, JPEG, ...) as a client sends them: decoded like image files, never read as paths.
    A server wraps what it received in this (or RawEmails, or passes row dicts / plain text lists), so no string
    from a request can ever be taken for a server-side file path."""


class RawEmails(list):  # type: ignore[type-arg]
    """Raw RFC 822 messages as bytes: parsed to text exactly as email files are (the package's email settings)."""


def existing(raw: str | Path, what: str) -> Path:
    """`raw` as a path that exists, else a DataError that says what inputs are accepted."""
    p = Path(raw)
    try:
        found = p.exists()
    except OSError:  # e.g. a long text passed where a path was expected: "File name too long"
        found = False
    if not found:
        raise DataError(f"{str(p)[:200]!r} does not exist; give {what}")
    return p


def walk(folder: Path, keep: Callable[[str], bool] = lambda name: True) -> list[Path]:
    """Visible files below `folder` whose name passes `keep`, sorted by path."""
    return sorted(Path(e.path) for e in iter_files(folder, keep))


def frame_rows(raw: Any, what: str) -> pd.DataFrame:
    """A DataFrame, a list of row dicts, or a table file -> a frame."""
    if isinstance(raw, (list, tuple)) and raw and all(isinstance(r, dict) for r in raw):
        return pd.DataFrame(list(raw))
    if isinstance(raw, (str, Path)):
        return read_table(existing(raw, what))
    if not isinstance(raw, pd.DataFrame):
        raise DataError(f"cannot read table rows from a {type(raw).__name__}; give {what}")
    return raw


def text_items(raw: Any, column: str, what: str) -> list[str] | list[Path]:
    """The texts, or the files to read them from: a list of Path objects is files, a list of row dicts or a
    frame or a table file gives its `column`, a list of strings is texts (None/NaN -> ""), any other file
    or folder is files."""
    if isinstance(raw, RawEmails):
        return raw  # bytes: parsed by `message_texts`
    if isinstance(raw, (list, tuple)) and raw and all(isinstance(r, dict) for r in raw):
        raw = frame_rows(raw, what)  # row dicts (a JSON request body): the text column of each
    elif isinstance(raw, (list, tuple)):
        if raw and all(isinstance(t, Path) for t in raw):
            return list(raw)
        if any(isinstance(t, (dict, list, tuple, bytes)) for t in raw):
            bad = next(type(t).__name__ for t in raw if isinstance(t, (dict, list, tuple, bytes)))
            raise DataError(f"a list of texts holds a {bad}; give strings, or row dicts that all have the text "
                            "column")
        return ["" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in raw]
    if isinstance(raw, (str, Path)):
        p = existing(raw, what)
        if not (p.is_file() and table_format(p) is not None):
            files = walk(p) if p.is_dir() else [p]
            if not files:
                raise DataError(f"no files found in {p}")
            return files
        raw = read_table(p)
    if not isinstance(raw, pd.DataFrame):
        raise DataError(f"cannot read texts from a {type(raw).__name__}; give {what}")
    if column not in raw.columns:
        raise DataError(f"missing text column {column!r}; the model reads {column!r}")
    return ["" if pd.isna(t) else str(t) for t in raw[column]]


def message_texts(messages: list[bytes], email: dict[str, Any] | None) -> list[str]:
    """Each message's text: a raw email parsed as in training when `email` settings are given, else UTF-8."""
    from shipml.core.email import MAX_MESSAGE_BYTES, message_text

    if email is None:
        return [m.decode("utf-8", errors="replace") for m in messages]
    return [message_text(m[:MAX_MESSAGE_BYTES], headers=email["headers"], body=email["body"],
                         max_chars=email["max_chars"]) for m in messages]


def file_texts(files: list[Path], email: dict[str, Any] | None) -> list[str]:
    """Each file's text: a raw email parsed as in training when `email` settings are given, else UTF-8."""
    texts = []
    for path in files:
        try:
            texts.extend(message_texts([path.read_bytes() if email is None else read_message(path)], email))
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    return texts


def image_items(raw: Any, check: Callable[[np.ndarray, str], np.ndarray], what: str,
                suffixes: tuple[str, ...]) -> np.ndarray | list[Path] | EncodedImages:
    """An array of pixels (checked by `check`), or the image files (paths, or EncodedImages' bytes) to decode."""
    if isinstance(raw, EncodedImages):
        return raw
    if isinstance(raw, np.ndarray):
        return check(raw, "the array")
    if isinstance(raw, (list, tuple)) and all(isinstance(p, (str, Path)) for p in raw):
        return [Path(p) for p in raw]
    if not isinstance(raw, (str, Path)):
        raise DataError(f"cannot read images from a {type(raw).__name__}; give {what}")
    p = existing(raw, what)
    if p.is_file() and p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as npz:
                if "images" not in npz.files:
                    raise DataError(f"{p} holds {npz.files}, no 'images' array; save it with np.savez(images=...)")
                return check(npz["images"], str(p))
        except (OSError, ValueError) as err:
            raise DataError(f"{p} is not a readable .npz file ({err})") from None
    paths = walk(p, lambda name: name.lower().endswith(suffixes)) if p.is_dir() else [p]
    if not paths:
        raise DataError(f"no images ({', '.join(suffixes)}) found in {p}")
    return paths
