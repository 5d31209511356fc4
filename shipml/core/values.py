"""How raw cell values become what a model sees: numbers and category text.

One owner for both training (`shipml.data.clean`, `shipml.tasks.tabular`) and prediction
(`shipml.runtime`): a value that is missing at training time is missing at prediction time. Numbers that
are not finite, or that overflow float32 (|x| > 3.4e38, e.g. 1e300), count as missing — float32 is what
the network computes in, and an overflow there turns every output into NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FLOAT32_MAX", "category_text", "finite_numbers", "map_values", "value_text"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite_numbers(values: pd.Series) -> tuple[np.ndarray, int]:
    """A column as float64 with non-numbers, non-finite and float32-overflowing values as NaN; also the count
    of values made missing for being infinite or too large (text that is not a number is counted by the
    caller as missing already)."""
    x = pd.to_numeric(values, errors="coerce").astype(np.float64).to_numpy(copy=True)
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(x) & ~(np.abs(x) <= FLOAT32_MAX)  # inf, -inf and |x| > float32 max
    x[bad] = np.nan
    return x, int(bad.sum())


def value_text(v: Any) -> str | None:
    """A value as category text: missing -> None, 1.0 -> "1", True -> "True"."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v)


def map_values(values: pd.Series, fn: Callable[[Any], str | None]) -> np.ndarray:
    """fn over every value, computed once per distinct value (columns repeat a few values many times)."""
    out = np.empty(len(values), dtype=object)
    seen: dict[tuple[type, Any], str | None] = {}  # keyed by type too: 1, 1.0 and True are equal keys
    for i, v in enumerate(values.to_numpy(dtype=object)):
        try:
            key = (type(v), v)
            out[i] = seen[key] if key in seen else seen.setdefault(key, fn(v))
        except TypeError:  # unhashable, e.g. a list from JSONL
            out[i] = fn(v)
    return out


def category_text(values: pd.Series) -> pd.Series:
    """Categorical values as strings (object dtype, missing kept as NaN)."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):  # fast path: already text
        return pd.Series(values.to_numpy(dtype=object, na_value=np.nan), index=values.index, dtype=object)
    out = map_values(values, value_text)
    out[pd.isna(out)] = np.nan  # None -> NaN
    return pd.Series(out, index=values.index, dtype=object)
