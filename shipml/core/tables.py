"""Reading tables (CSV, TSV, JSONL, Parquet; CSV/TSV/JSONL also .gz/.bz2/.xz compressed) into frames.

Training (`shipml.data`) and prediction (`shipml.runtime`) read tables here, so a file that trains also
predicts. Every failure is a `DataError` naming the file and what is wrong ("data.jsonl line 17: not
valid JSON", "not UTF-8 at byte 1234"), never a traceback from deep inside pandas.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from shipml.errors import DataError, ShipmlWarning

__all__ = ["TABLE_SUFFIXES", "read_table", "table_format"]

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TABLE_SUFFIXES = tuple(_SUFFIX_FORMATS)
_OPENERS: dict[str, Callable[..., IO[Any]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _suffixes(path: Path) -> tuple[str, str | None]:
    """(data suffix, compression suffix or None), e.g. data.csv.gz -> (".csv", ".gz")."""
    parts = [s.lower() for s in path.suffixes]
    if len(parts) >= 2 and parts[-1] in _OPENERS:
        return parts[-2], parts[-1]
    return (parts[-1] if parts else ""), None


def table_format(path: Path) -> str | None:
    """The table format a file name implies ("csv", "jsonl", "parquet"), or None if it is not a table."""
    suffix, compression = _suffixes(path)
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt == "parquet" and compression:
        return None
    return fmt


def read_table(path: Path, format: str = "auto") -> pd.DataFrame:
    """Read a CSV / JSONL / Parquet file into a frame; `format="auto"` goes by the file suffix."""
    path = Path(path)
    fmt = table_format(path) if format == "auto" else format
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its suffix {''.join(path.suffixes)!r}; rename it to "
            ".csv/.jsonl/.parquet or set data.format to csv, jsonl or parquet"
        )
    if fmt not in ("csv", "jsonl", "parquet"):
        raise DataError(f"{path}: format {fmt!r} is not a table format; use csv, jsonl or parquet")
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    frame = readers[fmt](path)
    if len(frame) == 0:
        raise DataError(f"{path} holds no rows; a data set needs at least a few labelled examples")
    if len(frame.columns) == 0:
        raise DataError(f"{path} holds no columns")
    return frame


def _open_text_bytes(path: Path) -> IO[bytes]:
    _, compression = _suffixes(path)
    return _OPENERS.get(compression or "", open)(path, "rb")


def _first_bad_utf8(path: Path) -> tuple[int, int, int] | None:
    """(byte offset in the file's text, the byte, line number) of the first byte that is not UTF-8.
    pandas reports the offset inside its read buffer, which points the user at the wrong place."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with _open_text_bytes(path) as fh:
        while chunk := fh.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                # the decoder may hold up to 3 bytes of an unfinished character from the previous chunk
                pending = len(err.object) - len(chunk)
                bad = offset - pending + err.start
                line += err.object[: err.start].count(b"\n")
                return bad, err.object[err.start], line
            line += chunk.count(b"\n")
            offset += len(chunk)
    return None


def _warn_duplicate_columns(path: Path, sep: str) -> None:
    """pandas renames a repeated header name to name.1, name.2 without a word; say so."""
    try:
        with _open_text_bytes(path) as fh:
            first = fh.readline(1 << 20).decode("utf-8", errors="replace")
    except OSError:
        return
    header = next(csv.reader(io.StringIO(first), delimiter=sep), [])
    twice = sorted(name for name, n in Counter(header).items() if n > 1)
    if twice:
        warnings.warn(f"{path}: column name(s) {', '.join(repr(t) for t in twice)} appear more than once in the "
                      "header; the copies were renamed (e.g. 'name.1'). Give every column its own name",
                      ShipmlWarning, stacklevel=4)


def _read_csv(path: Path) -> pd.DataFrame:
    suffix, _ = _suffixes(path)
    sep = "\t" if suffix == ".tsv" else ","
    try:
        frame = pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: a CSV needs a header line and at least one row") from None
    except pd.errors.ParserError as err:
        msg = str(err).strip().splitlines()[-1]
        raise DataError(
            f"{path} is not a valid CSV: {msg}. Check the quoting and the number of fields on that line"
        ) from None
    except UnicodeDecodeError as err:
        found = _first_bad_utf8(path)
        where = (f"byte {found[1]:#04x} at offset {found[0]}, line {found[2]}" if found
                 else f"byte {err.object[err.start]:#04x}")
        raise DataError(f"{path} is not UTF-8 text ({where}); re-save it as UTF-8") from None
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as CSV: {err}") from None
    _warn_duplicate_columns(path, sep)
    return frame


def _read_jsonl(path: Path) -> pd.DataFrame:
    _, compression = _suffixes(path)
    opener = _OPENERS.get(compression or "", open)
    records: list[dict[str, Any]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(
                        f"{path} line {lineno}: not valid JSON ({err.msg} at column {err.colno}); "
                        "JSONL needs one complete JSON object per line"
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f'{path} line {lineno}: expected a JSON object like {{"text": ..., "label": ...}}, '
                        f"got a {type(obj).__name__}"
                    )
                records.append(obj)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (offset {err.start}); re-save it as UTF-8") from None
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    return pd.DataFrame.from_records(records)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path} is not a readable Parquet file: {err}") from None
