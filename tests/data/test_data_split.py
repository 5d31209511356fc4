"""Seeded stratified splits, given splits, small data, and the fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.config import DataConfig, SplitConfig
from shipml.data import CleaningLog, load_dataset
from shipml.data.split import assign_split
from shipml.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache per test, so nothing is read from (or left in) ~/.cache/shipml."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SHIPML_CACHE", str(path))
    return path


def test_same_seed_same_split_and_fingerprint_other_seed_differs() -> None:
    cfg = DataConfig(path="sklearn:wine")
    a = load_dataset(cfg, seed=3, task_kind="classification")
    b = load_dataset(cfg, seed=3, task_kind="classification")
    c = load_dataset(cfg, seed=4, task_kind="classification")
    assert np.array_equal(a.split, b.split) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.split, c.split) and a.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 64 and int(a.fingerprint, 16) >= 0
    d = load_dataset(
        DataConfig(path="sklearn:wine", dedupe=False, min_class_count=1), seed=3, task_kind="classification"
    )
    assert d.fingerprint == a.fingerprint  # same cleaned content and split: same fingerprint


def test_fingerprint_follows_the_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=40), "label": ["a", "b"] * 20})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.assign(x=frame["x"] + 1e-9).to_csv(tmp_path / "b.csv", index=False)
    fa = load_dataset(DataConfig(path=str(tmp_path / "a.csv")), seed=0, task_kind="classification").fingerprint
    fb = load_dataset(DataConfig(path=str(tmp_path / "b.csv")), seed=0, task_kind="classification").fingerprint
    assert fa != fb


def test_stratified_proportions_and_small_classes_in_every_split() -> None:
    groups = np.array(["big"] * 97 + ["small"] * 3, dtype=object)
    split = assign_split(groups, np.full(100, "", dtype=object), SplitConfig(), 0, CleaningLog())
    assert {s: int((split == s).sum()) for s in ("train", "val", "test")} == {"train": 80, "val": 10, "test": 10}
    assert sorted(split[groups == "small"]) == ["test", "train", "val"]  # 3 rows: one in each split


def test_tiny_classes_warn_instead_of_crashing(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(9.0), "label": ["a"] * 7 + ["b"] * 2})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_dataset(DataConfig(path=str(tmp_path / "t.csv"), min_class_count=1), seed=0, task_kind="classification")
    assert set(ds.split) <= {"train", "val", "test"} and (ds.split == "test").any() and (ds.split == "train").any()
    assert any("too small to appear in every split: b" in w for w in ds.log.warnings)
    pd.DataFrame({"x": [1.0], "label": [2.0]}).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError, match="single value"):
        load_dataset(DataConfig(path=str(tmp_path / "one.csv")), seed=0, task_kind="regression")


def test_regression_split_is_shuffled_not_stratified() -> None:
    ds = load_dataset(DataConfig(path="sklearn:diabetes"), seed=0, task_kind="regression")
    counts = {s: int((ds.split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 354, "val": 44, "test": 44}
    assert not np.array_equal(ds.split[:44], np.full(44, "train"))  # shuffled, not cut in file order
    assert ds.y("test").dtype == np.float64


def test_split_column_is_honoured_case_insensitively(tmp_path: Path) -> None:
    n = 40
    parts = ["Train"] * 28 + ["VAL"] * 6 + ["test "] * 6
    frame = pd.DataFrame({"x": np.arange(float(n)), "part": parts, "label": ["a", "b"] * (n // 2)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_dataset(DataConfig(path=str(tmp_path / "t.csv"), split_column="part"), seed=0, task_kind="classification")
    assert ds.split.tolist() == [p.strip().lower() for p in parts] and ds.features == ["x"]
    # no val given: val is carved from train, test stays exactly as given
    frame.assign(part=["train"] * 34 + ["test"] * 6).to_csv(tmp_path / "u.csv", index=False)
    carved = load_dataset(
        DataConfig(path=str(tmp_path / "u.csv"), split_column="part"), seed=0, task_kind="classification"
    )
    assert (carved.split[-6:] == "test").all() and (carved.split == "val").sum() == 4  # 34 * 0.1 / 0.9
    frame.assign(part=["train"] * 39 + ["dev"]).to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataError, match=r"must hold train, val or test; found 'dev' \(rows 40\)"):
        load_dataset(DataConfig(path=str(tmp_path / "v.csv"), split_column="part"), seed=0, task_kind="classification")
    with pytest.raises(DataError, match="split_column 'fold' not found"):
        load_dataset(DataConfig(path=str(tmp_path / "v.csv"), split_column="fold"), seed=0, task_kind="classification")


def test_val_can_be_empty() -> None:
    cfg = DataConfig(path="sklearn:iris", split=SplitConfig(train=0.7, val=0.0, test=0.3))
    ds = load_dataset(cfg, seed=0, task_kind="classification")
    assert len(ds.indices("val")) == 0 and len(ds.indices("test")) == 45
