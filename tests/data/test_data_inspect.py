"""infer_data: what `shipml init` learns about a data set before writing a config."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.data import infer_data
from shipml.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache per test, so nothing is read from (or left in) ~/.cache/shipml."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SHIPML_CACHE", str(path))
    return path


def test_csv_profile_guesses_target_and_task(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Class": ["spam", "ham", "ham"] * 20, "length": rng.normal(size=60), "word": "x"})
    frame.to_csv(tmp_path / "mail.csv", index=False)
    p = infer_data(str(tmp_path / "mail.csv"))
    assert (p.kind, p.format, p.rows, p.target, p.task) == ("table", "csv", 60, "Class", "tabular-classification")
    assert list(p.columns) == ["Class", "length", "word"] and p.columns["length"] == "float64"
    assert p.classes == {"ham": 40, "spam": 20} and p.n_classes == 2
    assert json.loads(json.dumps(p.to_dict()))["target"] == "Class"  # JSON-able


def test_target_falls_back_to_the_last_column_and_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=50), "price": rng.normal(100, 10, size=50)})
    frame.to_parquet(tmp_path / "p.parquet")
    p = infer_data(str(tmp_path / "p.parquet"))
    assert (p.format, p.target, p.task, p.classes) == ("parquet", "price", "tabular-regression", None)
    small_ints = frame.assign(stars=rng.integers(1, 6, size=50))
    small_ints.to_csv(tmp_path / "s.csv", index=False)
    assert infer_data(str(tmp_path / "s.csv")).task == "tabular-classification"  # 5 integer values: classes


@pytest.mark.parametrize("source", ["small_data", "shared_data"])
def test_mnist5k_profile_is_quick(source: str, request: pytest.FixtureRequest) -> None:
    """mnist400.tar.gz from tests/fixtures (40 per digit) everywhere; mnist5k.tar.gz (500) where ../shared is."""
    name, per_digit = ("mnist400", 40) if source == "small_data" else ("mnist5k", 500)
    start = time.perf_counter()
    p = infer_data(str(request.getfixturevalue(source) / f"{name}.tar.gz"))
    assert (p.kind, p.task, p.rows, p.n_classes) == ("images", "image-classification", 10 * per_digit, 10)
    assert p.image_size == (28, 28) and p.channels == 1 and p.archive and not p.split_folders
    assert p.classes == {str(d): per_digit for d in range(10)}
    assert p.to_dict()["image_size"] == [28, 28]
    assert time.perf_counter() - start < 10  # unpacking once, no decoding: about a second for mnist5k


def test_sklearn_and_missing_paths() -> None:
    p = infer_data("sklearn:iris")
    assert (p.format, p.rows, p.target, p.n_classes) == ("sklearn", 150, "label", 3)
    with pytest.raises(DataError, match="does not exist"):
        infer_data("/nonexistent/data.csv")
