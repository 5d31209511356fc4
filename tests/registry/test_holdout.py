"""Holdouts: stored by content and read back verified (table, text, images), tampering refused, the catalog's
holdout set once (both backends, and after upgrading from 0001), outputs cached by package digest, a run's
holdout equal to the rows export's parity check used, and bad user files refused with one clear error."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_runtime_package import image_package, table_package, text_package

from shipml.errors import RegistryError
from shipml.registry.catalog import Catalog, migrate
from shipml.registry.holdout import (
    Holdout,
    holdout_from_file,
    holdout_from_run,
    holdout_outputs,
    open_holdout,
    put_holdout,
)
from shipml.registry.store import Store
from shipml.runtime import Package


def _table_rows(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    x[3] = np.nan  # a missing value survives the round trip
    return pd.DataFrame({"x": x, "y": rng.normal(size=n), "colour": ["red", "blue", "1", None] * (n // 4)})


def _setup(tmp: Path, kind: str) -> tuple[Store, str, Holdout, Package]:
    store = Store(tmp / "store")
    if kind == "images":
        folder = image_package(tmp / "pkg")[0]
        rows = np.random.default_rng(1).integers(0, 256, size=(10, 6, 5, 3), dtype=np.uint8)
        holdout = Holdout("images", "classification", rows, ["cat", "dog", "eel", "cat", "dog"] * 2)
    elif kind == "table":
        folder = table_package(tmp / "pkg")[0]
        holdout = Holdout("table", "classification", _table_rows(), ["no", "yes"] * 6)
    else:
        folder = text_package(tmp / "pkg")[0]
        texts = pd.DataFrame({"text": ["win money now", "meeting at noon", "free offer!!", "lunch?", "ünïcode ok"]})
        holdout = Holdout("text", "classification", texts, ["spam", "ham", "spam", "ham", "ham"])
    digest = store.put(folder)
    return store, digest, holdout, Package.open(store.open(digest))


# ---------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("kind", ["table", "text", "images"])
def test_round_trip_and_outputs_equal_the_runtime(tmp_path: Path, kind: str) -> None:
    store, pkg_digest, holdout, pkg = _setup(tmp_path, kind)
    assert put_holdout(store, holdout) == holdout.digest
    folder = tmp_path / "store" / "holdouts" / holdout.digest
    files = sorted(p.name for p in folder.iterdir())
    assert files == (["holdout.json", "labels.parquet", "pixels.npz"] if kind == "images"
                     else ["holdout.json", "labels.parquet", "rows.parquet"])
    back = open_holdout(store, holdout.digest)
    assert back.digest == holdout.digest and len(back) == len(holdout)
    assert back.labels.tolist() == holdout.labels.tolist()
    if kind == "images":
        np.testing.assert_array_equal(back.rows, holdout.rows)
    else:
        pd.testing.assert_frame_equal(back.rows, holdout.rows, check_dtype=False)
    out = holdout_outputs(store, pkg_digest, back)
    np.testing.assert_array_equal(out, pkg.outputs(pkg.prepare(holdout.rows)))
    assert (folder / "outputs" / f"{pkg_digest}.npy").is_file()
    assert put_holdout(store, back) == holdout.digest  # idempotent


def test_an_object_store_keeps_holdouts_and_outputs(tmp_path: Path) -> None:
    """fsspec stores (memory:// here; s3:// the same code path) write the files, then holdout.json as the commit."""
    import uuid

    store = Store(f"memory://holdout-{uuid.uuid4().hex}", cache=tmp_path / "cache")
    pkg_digest = store.put(table_package(tmp_path / "pkg")[0])
    holdout = Holdout("table", "classification", _table_rows(), ["no", "yes"] * 6)
    assert put_holdout(store, holdout) == holdout.digest
    back = open_holdout(store, holdout.digest)
    assert back.digest == holdout.digest
    first = holdout_outputs(store, pkg_digest, back)
    assert store.read_file("holdouts", holdout.digest, f"outputs/{pkg_digest}.npy") is not None
    np.testing.assert_array_equal(holdout_outputs(store, pkg_digest, back), first)


def test_digest_is_of_the_content_not_the_files() -> None:
    a = Holdout("table", "regression", _table_rows(), np.arange(12.0))
    assert Holdout("table", "regression", _table_rows(), list(np.arange(12.0))).digest == a.digest
    changed = _table_rows()
    changed.loc[0, "y"] += 1e-9
    assert Holdout("table", "regression", changed, np.arange(12.0)).digest != a.digest
    assert Holdout("table", "regression", _table_rows(), np.arange(1.0, 13.0)).digest != a.digest


def test_a_changed_byte_or_value_is_refused(tmp_path: Path) -> None:
    store, _, holdout, _ = _setup(tmp_path, "table")
    put_holdout(store, holdout)
    folder = tmp_path / "store" / "holdouts" / holdout.digest
    data = bytearray((folder / "rows.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "rows.parquet").write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=r"damaged: rows\.parquet does not match"):
        open_holdout(store, holdout.digest)
    put_holdout(store, holdout)  # a damaged copy is replaced
    assert open_holdout(store, holdout.digest).digest == holdout.digest
    # other labels with a consistent index: the files verify, the content does not hash to the digest
    labels = pd.DataFrame({"label": ["yes"] * 12}).to_parquet(index=False)
    index = json.loads((folder / "holdout.json").read_text())
    index["files"]["labels.parquet"] = {"bytes": len(labels), "sha256": hashlib.sha256(labels).hexdigest()}
    (folder / "labels.parquet").write_bytes(labels)
    (folder / "holdout.json").write_text(json.dumps(index))
    with pytest.raises(RegistryError, match="do not hash to the digest"):
        open_holdout(store, holdout.digest)
    (folder / "labels.parquet").unlink()
    with pytest.raises(RegistryError, match=r"labels\.parquet is missing"):
        open_holdout(store, holdout.digest)
    with pytest.raises(RegistryError, match="no holdout"):
        open_holdout(store, "0" * 64)


# -------------------------------------------------------------------------------------------- output cache
def test_outputs_are_cached_by_package_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, pkg_digest, holdout, _ = _setup(tmp_path, "images")
    put_holdout(store, holdout)
    calls = []
    real = Package.run
    monkeypatch.setattr(Package, "run", lambda self, feeds: calls.append(1) or real(self, feeds))
    first = holdout_outputs(store, pkg_digest, holdout)
    assert calls
    n = len(calls)
    np.testing.assert_array_equal(holdout_outputs(store, pkg_digest, holdout), first)
    assert len(calls) == n  # the second call read the cache
    cached = tmp_path / "store" / "holdouts" / holdout.digest / "outputs" / f"{pkg_digest}.npy"
    cached.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(holdout_outputs(store, pkg_digest, holdout), first)
    assert len(calls) > n  # a cache that does not load is computed again, and rewritten
    assert np.load(cached, allow_pickle=False).shape == first.shape


def test_outputs_refuse_a_holdout_of_another_shape(tmp_path: Path) -> None:
    store, pkg_digest, _, _ = _setup(tmp_path, "images")
    small = Holdout("images", "classification", np.zeros((2, 4, 4, 3), np.uint8), ["cat", "dog"])
    with pytest.raises(RegistryError, match=r"images are \(4, 4, 3\).*takes \(6, 5, 3\)"):
        holdout_outputs(store, pkg_digest, small)
    store, pkg_digest, _, _ = _setup(tmp_path / "t", "table")
    lacking = Holdout("table", "classification", _table_rows().drop(columns="y"), ["no", "yes"] * 6)
    with pytest.raises(RegistryError, match=r"lacks the columns \['y'\]"):
        holdout_outputs(store, pkg_digest, lacking)
    regression = Holdout("table", "regression", _table_rows(), np.arange(12.0))
    with pytest.raises(RegistryError, match="holds table data for regression, but the package is a classification"):
        holdout_outputs(store, pkg_digest, regression)


# ------------------------------------------------------------------------------------------------- catalog
def test_the_catalog_holdout_is_set_once(catalog_url: str) -> None:
    with Catalog(catalog_url) as cat:
        cat.add_version("spam", "1" * 64, signature={}, metrics={}, provenance={})
        assert cat.holdout("spam") is None
        cat.set_holdout("spam", "a" * 64)
        cat.set_holdout("spam", "a" * 64)  # the same again: a no-op
        with pytest.raises(RegistryError, match="frozen at the first release"):
            cat.set_holdout("spam", "b" * 64)
        assert cat.holdout("spam") == "a" * 64
        with pytest.raises(RegistryError, match="no model named"):
            cat.set_holdout("ham", "a" * 64)
        with pytest.raises(RegistryError, match="not a sha256"):
            cat.set_holdout("spam", "../x")


def _sql(url: str, statement: str | None = None, downgrade_to: str | None = None) -> set[str]:
    """Behind the catalog's back: run a statement or a downgrade; the columns of `models` afterwards."""
    import sqlalchemy as sa
    from alembic import command

    from shipml.registry.migrations.database import alembic_config

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if downgrade_to:
                command.downgrade(alembic_config(conn), downgrade_to)
            if statement:
                conn.exec_driver_sql(statement)
        return {c["name"] for c in sa.inspect(engine).get_columns("models")}
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_models_and_adds_the_holdout(catalog_url: str) -> None:
    migrate(catalog_url, "0001")
    assert "holdout" not in _sql(catalog_url, "INSERT INTO models (name, created) VALUES ('old', CURRENT_TIMESTAMP)")
    with Catalog(catalog_url) as cat:  # opening upgrades 0001 -> 0002: the old model has no holdout yet
        assert cat.holdout("old") is None
        cat.set_holdout("old", "c" * 64)
        assert cat.holdout("old") == "c" * 64
    assert "holdout" not in _sql(catalog_url, downgrade_to="0001")  # 0002 downgrades: the column goes
    with Catalog(catalog_url) as cat:
        assert [m.name for m in cat.models()] == ["old"] and cat.holdout("old") is None


# ---------------------------------------------------------------------------------------------- from a run
def test_holdout_from_run_is_the_rows_export_parity_used(table_run: Path) -> None:
    from shipml.export.package import load_context

    holdout = holdout_from_run(table_run)
    ctx = load_context(table_run)
    expected = ctx.raw(ctx.test_idx)
    assert (holdout.data_kind, holdout.task_kind) == ("table", "classification")
    pd.testing.assert_frame_equal(holdout.rows, expected, check_dtype=False)
    assert holdout.labels.tolist() == [ctx.data.classes[i] for i in ctx.y(ctx.test_idx)]
    assert holdout_from_run(table_run).digest == holdout.digest  # the same rows every time


def test_holdout_from_run_refuses_changed_data_or_no_run(table_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    for rel in ("config.yaml", "data.json", "model/task.json"):
        shutil.copy(table_run / rel, run / rel)
    meta = json.loads((run / "data.json").read_text())
    meta["fingerprint"] = "0" * 64
    (run / "data.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match=r"changed since .* was trained"):
        holdout_from_run(run)
    with pytest.raises(RegistryError, match="is not a finished run"):
        holdout_from_run(tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------- user files
def test_user_files_are_read_and_checked(tmp_path: Path) -> None:
    _, _, _, table = _setup(tmp_path / "t", "table")
    frame = _table_rows().assign(target=["no", "yes"] * 6, extra=1)
    frame.to_csv(tmp_path / "h.csv", index=False)
    frame.to_parquet(tmp_path / "h.parquet", index=False)
    a = holdout_from_file(tmp_path / "h.csv", table.signature)
    b = holdout_from_file(tmp_path / "h.parquet", table.signature)
    assert list(a.rows.columns) == ["x", "y", "colour"] and a.labels.tolist() == ["no", "yes"] * 6
    assert len(b) == 12 and b.labels.tolist() == a.labels.tolist()
    _, _, _, image = _setup(tmp_path / "i", "images")
    px = np.zeros((4, 6, 5, 3), np.uint8)
    np.savez(tmp_path / "ok.npz", images=px, labels=np.array(["cat", "dog", "eel", "cat"]))
    assert len(holdout_from_file(tmp_path / "ok.npz", image.signature)) == 4


@pytest.mark.parametrize("case, message", [
    ("missing-column", r"lacks the columns \['y'\]"),
    ("no-label", "no label column"),
    ("unknown-class", r"labels \['maybe'\] that are not classes"),
    ("npz-for-table", "takes a .csv or .parquet holdout"),
    ("wrong-size", r"images are \(4, 4, 3\).*takes \(6, 5, 3\)"),
    ("no-images-array", r"no \['images'\] array"),
    ("pickled-npz", "cannot be read"),
    ("csv-for-images", "takes a .npz holdout"),
    ("absent", "does not exist"),
])
def test_bad_user_files_are_refused(tmp_path: Path, case: str, message: str) -> None:
    _, _, _, table = _setup(tmp_path / "t", "table")
    _, _, _, image = _setup(tmp_path / "i", "images")
    labels = ["no", "yes"] * 6
    path, sig = tmp_path / "h.csv", table.signature
    if case == "missing-column":
        _table_rows().drop(columns="y").assign(label=labels).to_csv(path, index=False)
    elif case == "no-label":
        _table_rows().to_csv(path, index=False)
    elif case == "unknown-class":
        _table_rows().assign(label=["maybe", *labels[1:]]).to_csv(path, index=False)
    elif case == "npz-for-table":
        path = tmp_path / "h.npz"
        np.savez(path, images=np.zeros((1, 6, 5, 3), np.uint8), labels=np.array(["no"]))
    else:
        path, sig = tmp_path / "h.npz", image.signature
        if case == "wrong-size":
            np.savez(path, images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array(["cat", "dog"]))
        elif case == "no-images-array":
            np.savez(path, pixels=np.zeros((2, 6, 5, 3), np.uint8), labels=np.array(["cat", "dog"]))
        elif case == "pickled-npz":
            np.savez(path, images=np.array([{"a": 1}], dtype=object), labels=np.array(["cat"]))
        elif case == "csv-for-images":
            path = tmp_path / "h.csv"
            path.write_text("label\ncat\n")
        else:
            path = tmp_path / "absent.npz"
    with pytest.raises(RegistryError, match=message):
        holdout_from_file(path, sig)
