"""scikit-learn's bundled data sets, and the table readers (which live in `shipml.core.tables`, shared with
the runtime) re-exported for the data room."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from shipml.core.tables import read_table, table_format
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
