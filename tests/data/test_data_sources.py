"""Tables in every format, their failure messages, and scikit-learn's bundled sets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.config import DataConfig
from shipml.data import load_dataset, read_table
from shipml.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache per test, so nothing is read from (or left in) ~/.cache/shipml."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SHIPML_CACHE", str(path))
    return path


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=30),
            "colour": rng.choice(["red", "green", "blue"], size=30),
            "flag": rng.choice([True, False], size=30),
            "label": ["a", "b", "c"] * 10,
        }
    )


def _write(frame: pd.DataFrame, path: Path) -> Path:
    name = path.name
    if name.endswith((".csv", ".csv.gz")):
        frame.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    elif name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as fh:
            for rec in frame.to_dict(orient="records"):
                fh.write(json.dumps(rec) + "\n")
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.csv.gz", "t.jsonl", "t.ndjson", "t.jsonl.gz", "t.parquet"])
def test_each_table_format_reads_the_same_content(tmp_path: Path, name: str) -> None:
    frame = _frame()
    got = read_table(_write(frame, tmp_path / name))
    assert list(got.columns) == list(frame.columns)
    np.testing.assert_allclose(got["x1"].to_numpy(float), frame["x1"].to_numpy())
    assert got["label"].tolist() == frame["label"].tolist()

    ds = load_dataset(DataConfig(path=str(tmp_path / name)), seed=0, task_kind="classification")
    assert ds.kind == "table" and ds.features == ["x1", "colour", "flag"]
    assert ds.categorical == ["colour", "flag"]  # strings and booleans are categories
    assert ds.frame["x1"].dtype == np.float64 and ds.frame["colour"].dtype == object
    assert set(ds.frame["flag"]) == {"True", "False"}
    assert ds.classes == ["a", "b", "c"] and isinstance(ds.frame.index, pd.RangeIndex)


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    _frame().to_csv(path, index=False)
    with pytest.raises(DataError, match="cannot tell the format"):
        read_table(path)
    assert len(read_table(path, "csv")) == 30
    ds = load_dataset(DataConfig(path=str(path), format="csv"), seed=0, task_kind="classification")
    assert len(ds.frame) == 30


def test_bad_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"x": 1, "label": "a"}\n\n{"x": 2, "label": "b"\n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 3: not valid JSON"):
        read_table(path)
    path.write_text('{"x": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        read_table(path)


def test_malformed_csv_and_parquet_are_data_errors(tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"bad\.csv is not a valid CSV: .*line 3"):
        read_table(bad_csv)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_table(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_table(latin)
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all")
    with pytest.raises(DataError, match=r"fake\.parquet is not a readable Parquet file"):
        read_table(fake)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(path=str(tmp_path / "nope.csv")), seed=0, task_kind="classification")


@pytest.mark.parametrize(
    ("name", "task_kind", "rows", "n_features", "classes"),
    [
        ("iris", "classification", 149, 4, ["setosa", "versicolor", "virginica"]),  # iris has 1 duplicate row
        ("wine", "classification", 178, 13, ["class_0", "class_1", "class_2"]),
        ("breast_cancer", "classification", 569, 30, ["benign", "malignant"]),
        ("digits", "classification", 1797, 64, [str(d) for d in range(10)]),
        ("diabetes", "regression", 442, 10, None),
    ],
)
def test_sklearn_bundled_sets(name: str, task_kind: str, rows: int, n_features: int, classes: list[str] | None) -> None:
    ds = load_dataset(DataConfig(path=f"sklearn:{name}"), seed=0, task_kind=task_kind)  # type: ignore[arg-type]
    assert len(ds.frame) == rows and len(ds.features) == n_features
    assert ds.classes == classes
    assert all(f.replace("_", "").isalnum() for f in ds.features)  # sanitised names: "mean radius" -> mean_radius
    if classes is None:
        assert ds.frame["label"].dtype == np.float64
    assert set(ds.split) == {"train", "val", "test"}


def test_sklearn_names_and_target_column() -> None:
    ds = load_dataset(DataConfig(path="sklearn:breast_cancer", target="diagnosis"), seed=0, task_kind="classification")
    assert "diagnosis" in ds.frame.columns and set(ds.frame["diagnosis"]) == {"malignant", "benign"}
    assert "mean_radius" in ds.features
    with pytest.raises(DataError, match="sklearn:iris, sklearn:wine"):
        load_dataset(DataConfig(path="sklearn:mnist"), seed=0, task_kind="classification")
    with pytest.raises(DataError, match="only sklearn:digits has images"):
        load_dataset(DataConfig(path="sklearn:wine"), seed=0, task_kind="classification", kind="images")


def test_sklearn_digits_as_images() -> None:
    ds = load_dataset(DataConfig(path="sklearn:digits"), seed=0, task_kind="classification", kind="images")
    assert ds.kind == "images" and ds.images is not None
    assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.uint8
    assert ds.images.max() == 255 and ds.images.min() == 0  # 0..16 scaled to 0..255
    assert ds.classes == [str(d) for d in range(10)] and ds.features == []
    bigger = load_dataset(
        DataConfig(path="sklearn:digits", image_size=(16, 16), channels=3),
        seed=0,
        task_kind="classification",
        kind="images",
    )
    assert bigger.images is not None and bigger.images.shape == (1797, 16, 16, 3)
