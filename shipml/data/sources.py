"""Reading tables (CSV, JSONL, Parquet) and scikit-learn's bundled data sets.

Every reader turns a failure into a `DataError` that names the file and what is wrong with it, so a
user sees "data.jsonl line 17: not valid JSON" rather than a traceback from deep inside pandas.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from shipml.errors import DataError

__all__ = [
    "SKLEARN_SETS",
    "read_table",
    "sklearn_digits_images",
    "sklearn_name",
    "sklearn_table",
    "table_format",
]

SKLEARN_SETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
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


def _read_csv(path: Path) -> pd.DataFrame:
    suffix, _ = _suffixes(path)
    try:
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: a CSV needs a header line and at least one row") from None
    except pd.errors.ParserError as err:
        msg = str(err).strip().splitlines()[-1]
        raise DataError(
            f"{path} is not a valid CSV: {msg}. Check the quoting and the number of fields on that line"
        ) from None
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); re-save it as UTF-8"
        ) from None
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as CSV: {err}") from None


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


# --------------------------------------------------------------------------------- sklearn bundled sets


def sklearn_name(path: str) -> str:
    """The set name of a `sklearn:<name>` path, checked against the sets that ship offline."""
    name = path.split(":", 1)[1].strip().lower()
    if name not in SKLEARN_SETS:
        raise DataError(f"unknown bundled data set {path!r}; choose one of: sklearn:{', sklearn:'.join(SKLEARN_SETS)}")
    return name


def _load_bunch(name: str) -> Any:
    from sklearn import datasets  # imported here: sklearn is slow to import and only this needs it

    return getattr(datasets, f"load_{name}")()


def _sanitise(name: str) -> str:
    return re.sub(r"[^0-9a-z_]+", "_", str(name).lower()).strip("_")


def sklearn_table(name: str, target: str) -> pd.DataFrame:
    """A bundled set as a frame: sanitised feature columns plus `target` (class names as strings)."""
    bunch = _load_bunch(name)
    columns = [_sanitise(c) for c in bunch.feature_names]
    if target in columns:
        raise DataError(f"data.target {target!r} is also a feature of sklearn:{name}; pick another name")
    frame = pd.DataFrame(np.asarray(bunch.data, dtype=np.float64), columns=columns)
    if name == "diabetes":
        frame[target] = np.asarray(bunch.target, dtype=np.float64)
    else:
        names = np.asarray([str(n) for n in bunch.target_names], dtype=object)
        frame[target] = names[bunch.target]
    return frame


def sklearn_digits_images() -> tuple[np.ndarray, list[str]]:
    """sklearn's 8x8 digits as (N, 8, 8, 1) uint8 pixels (0..16 scaled to 0..255) and "0".."9" labels."""
    bunch = _load_bunch("digits")
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255)
    return pixels.astype(np.uint8)[..., None], [str(int(t)) for t in bunch.target]
