"""Holdouts: each model name's frozen evaluation set, stored by content and reused for every later version.

    <store root>/holdouts/<digest>/holdout.json         what it is, and the sha256 of every file (written last)
                                   rows.parquet         tables and texts: the feature / text columns
                                   pixels.npz           images: `pixels` (N, H, W, C) uint8 (allow_pickle=False)
                                   labels.parquet       `label`: class names (classification) or floats
                                   outputs/<package digest>.npy   a version's raw outputs on it (a cache)

A holdout holds raw inputs in the form the runtime accepts, plus labels; its digest is the sha256 of canonical
bytes (values, not file bytes: a Parquet writer of another version gives the same digest). It is taken from the
first released version's run (`holdout_from_run`: the test split, exactly as export's parity check uses it) or
from a user's file (`holdout_from_file`), checked against the package signature, written atomically through the
store, and verified on every read (file hashes and the digest recomputed: a changed byte is a RegistryError).
Never pickle: Parquet and npz with allow_pickle=False only.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.core.files import bytes_sha256
from shipml.core.values import category_text
from shipml.errors import RegistryError, ShipmlError
from shipml.registry.store import Store
from shipml.runtime import Package

__all__ = ["HOLDOUTS", "Holdout", "check_holdout", "holdout_from_file", "holdout_from_run", "holdout_outputs",
           "open_holdout", "put_holdout"]

HOLDOUTS = "holdouts"
FORMAT = "shipml-holdout/1"
INDEX = "holdout.json"
_KINDS = ("table", "text", "images")


def _value(v: Any) -> Any:
    """One cell as plain JSON data (missing values are null), for the canonical bytes."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return None if math.isnan(f) else f if math.isfinite(f) else str(f)
    return str(v)


@dataclass(frozen=True, eq=False)
class Holdout:
    """Raw rows (`rows`: a frame of feature or text columns, or (N, H, W, C) uint8 pixels) and their labels
    (`labels`: class names for classification, float64 values for regression)."""

    data_kind: str  # "table" | "text" | "images"
    task_kind: str  # "classification" | "regression"
    rows: pd.DataFrame | np.ndarray
    labels: np.ndarray
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        if self.data_kind not in _KINDS or self.task_kind not in ("classification", "regression"):
            raise RegistryError(f"a holdout is of table, text or images data and a classification or regression "
                                f"task, not {self.data_kind!r} / {self.task_kind!r}")
        if self.data_kind == "images":
            rows = np.asarray(self.rows)
            rows = rows[..., None] if rows.ndim == 3 else rows
            if rows.ndim != 4 or rows.dtype != np.uint8:
                raise RegistryError(f"holdout images must be uint8 pixels (N, H, W, C), not {rows.dtype} {rows.shape}")
            rows = np.ascontiguousarray(rows)
        else:
            if not isinstance(self.rows, pd.DataFrame):
                raise RegistryError(f"holdout rows of {self.data_kind} data must be a DataFrame of its columns")
            rows = self.rows.reset_index(drop=True)
            rows.columns = [str(c) for c in rows.columns]
        if self.task_kind == "classification":
            labels = np.array([str(v) for v in self.labels], dtype=object)
        else:
            labels = np.asarray(self.labels, dtype=np.float64).reshape(-1)
            if not np.isfinite(labels).all():
                raise RegistryError("holdout regression labels must all be finite numbers")
        if len(rows) != len(labels) or not len(labels):
            raise RegistryError(f"a holdout needs rows and one label each (got {len(rows)} rows, {len(labels)} labels)")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "digest", self._digest())

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Holdout({self.data_kind}, {self.task_kind}, {len(self)} rows, {self.digest[:12]})"

    def _digest(self) -> str:
        """sha256 over the canonical bytes: a header, the rows (pixels, or each column's values) and the labels."""
        h = hashlib.sha256()
        head: dict[str, Any] = {"format": FORMAT, "data_kind": self.data_kind, "task_kind": self.task_kind,
                                "n": len(self)}
        if isinstance(self.rows, np.ndarray):
            head["shape"] = list(self.rows.shape)
            h.update(json.dumps(head, sort_keys=True).encode() + b"\n")
            h.update(self.rows.tobytes())
        else:
            head["columns"] = list(self.rows.columns)
            h.update(json.dumps(head, sort_keys=True).encode() + b"\n")
            for col in self.rows.columns:
                h.update(json.dumps([_value(v) for v in self.rows[col].tolist()]).encode() + b"\n")
        h.update(json.dumps([_value(v) for v in self.labels.tolist()]).encode())
        return h.hexdigest()


# ------------------------------------------------------------------------------------------ the store
def _files(holdout: Holdout) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if isinstance(holdout.rows, np.ndarray):
        buf = io.BytesIO()
        np.savez_compressed(buf, pixels=holdout.rows)
        out["pixels.npz"] = buf.getvalue()
    else:
        out["rows.parquet"] = holdout.rows.to_parquet(index=False)
    labels = pd.DataFrame({"label": holdout.labels.astype(str if holdout.task_kind == "classification" else float)})
    out["labels.parquet"] = labels.to_parquet(index=False)
    return out


def put_holdout(store: Store, holdout: Holdout) -> str:
    """Store a holdout under its digest (an intact stored copy is kept; a damaged one replaced); its digest."""
    try:
        open_holdout(store, holdout.digest)
        return holdout.digest
    except RegistryError:
        pass
    try:
        files = _files(holdout)
    except (ValueError, TypeError, ImportError) as err:  # pyarrow cannot write a column's values
        raise RegistryError(f"the holdout cannot be written as Parquet ({err}); give columns of numbers or text") \
            from None
    index = {"format": FORMAT, "digest": holdout.digest, "data_kind": holdout.data_kind,
             "task_kind": holdout.task_kind, "n": len(holdout),
             "files": {k: {"bytes": len(v), "sha256": bytes_sha256(v)} for k, v in files.items()}}
    files[INDEX] = (json.dumps(index, indent=2) + "\n").encode()
    store.put_files(HOLDOUTS, holdout.digest, files, commit=INDEX)
    return holdout.digest


def open_holdout(store: Store, digest: str) -> Holdout:
    """The stored holdout `digest`, verified: every file against its sha256, then the digest recomputed."""
    def damaged(why: str) -> RegistryError:
        return RegistryError(f"holdout {digest} in the store {store.url} is damaged: {why}; the model's versions "
                             "cannot be compared on it until it is restored")

    raw = store.read_file(HOLDOUTS, digest, INDEX)
    if raw is None:
        raise RegistryError(f"no holdout {digest} in the store {store.url}")
    try:
        index = json.loads(raw)
        kind, task, listed = index["data_kind"], index["task_kind"], index["files"]
        assert isinstance(listed, dict) and index.get("format") == FORMAT
    except (ValueError, KeyError, TypeError, AssertionError):
        raise damaged(f"its {INDEX} is not a holdout index") from None
    data: dict[str, bytes] = {}
    for rel in ("pixels.npz" if kind == "images" else "rows.parquet", "labels.parquet"):
        got = store.read_file(HOLDOUTS, digest, rel)
        entry = listed.get(rel) or {}
        if got is None:
            raise damaged(f"{rel} is missing")
        if (len(got), bytes_sha256(got)) != (entry.get("bytes"), entry.get("sha256")):
            raise damaged(f"{rel} does not match its sha256 in {INDEX}")
        data[rel] = got
    try:
        if kind == "images":
            with np.load(io.BytesIO(data["pixels.npz"]), allow_pickle=False) as npz:
                rows: Any = npz["pixels"]
        else:
            rows = pd.read_parquet(io.BytesIO(data["rows.parquet"]))
        labels = pd.read_parquet(io.BytesIO(data["labels.parquet"]))["label"].to_numpy()
        holdout = Holdout(kind, task, rows, labels)
    except (ShipmlError, ValueError, KeyError, OSError) as err:
        raise damaged(f"its files cannot be read ({err})") from None
    if holdout.digest != digest:
        raise damaged("its rows and labels do not hash to the digest")
    return holdout


def holdout_outputs(store: Store, package_digest: str, holdout: Holdout) -> np.ndarray:
    """A stored package's raw outputs (N, k) float32 on the holdout, run through the runtime once and then read
    from `holdouts/<holdout>/outputs/<package>.npy` (a cached file that does not load is computed again)."""
    rel = f"outputs/{package_digest}.npy"
    cached = store.read_file(HOLDOUTS, holdout.digest, rel)
    if cached is not None:
        try:
            out = np.load(io.BytesIO(cached), allow_pickle=False)
            if out.dtype == np.float32 and out.ndim == 2 and len(out) == len(holdout):
                return out
        except (ValueError, OSError, EOFError):
            pass
    pkg = Package.open(store.open(package_digest))
    check_holdout(holdout, pkg.signature)
    try:
        out = np.asarray(pkg.outputs(pkg.prepare(holdout.rows)), dtype=np.float32)
    except ShipmlError as err:
        raise RegistryError(f"package {package_digest} cannot run on holdout {holdout.digest}: {err}") from None
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    store.write_file(HOLDOUTS, holdout.digest, rel, buf.getvalue())
    return out


# ---------------------------------------------------------------------------------------- checks, sources
def _needed(signature: dict[str, Any]) -> list[str]:
    prep = signature.get("preprocessing") or {}
    if signature.get("data_kind") == "text":
        return [str(prep.get("text_column", "text"))]
    return [str(c["name"]) for c in list(prep.get("numeric") or []) + list(prep.get("categorical") or [])]


def check_holdout(holdout: Holdout, signature: dict[str, Any]) -> None:
    """Refuse a holdout the package cannot be scored on: another data kind or task kind, missing feature or text
    columns, images of another size, or class labels the package does not know."""
    kind, task = signature.get("data_kind"), signature.get("kind")
    if (holdout.data_kind, holdout.task_kind) != (kind, task):
        raise RegistryError(f"the holdout holds {holdout.data_kind} data for {holdout.task_kind}, but the package is "
                            f"a {task} model of {kind} data")
    if isinstance(holdout.rows, np.ndarray):
        prep = signature.get("preprocessing") or {}
        (h, w), c = prep.get("size", [None, None]), prep.get("channels")
        if holdout.rows.shape[1:] != (h, w, c):
            raise RegistryError(f"the holdout's images are {holdout.rows.shape[1:]} (height, width, channels); the "
                                f"package takes ({h}, {w}, {c})")
    else:
        missing = [c for c in _needed(signature) if c not in holdout.rows.columns]
        if missing:
            raise RegistryError(f"the holdout lacks the columns {missing} the package needs "
                                f"(it needs {_needed(signature)}; the holdout has {list(holdout.rows.columns)})")
    classes = signature.get("classes")
    if task == "classification" and classes:
        unknown = sorted(set(holdout.labels.tolist()) - {str(c) for c in classes})
        if unknown:
            raise RegistryError(f"the holdout has labels {unknown[:10]} that are not classes of the package "
                                f"({classes})")


def holdout_from_file(path: str | Path, signature: dict[str, Any], *, label: str | None = None) -> Holdout:
    """A user's holdout (`--holdout FILE`): CSV or Parquet of feature / text columns plus a label column (`label`
    or `target`, or the one named), or an .npz of `images` (N, H, W, C) uint8 and `labels`; checked against the
    package signature."""
    path = Path(path).expanduser()
    kind, task = str(signature.get("data_kind")), str(signature.get("kind"))
    suffix = path.suffix.lower()
    if not path.is_file():
        raise RegistryError(f"holdout file {path} does not exist")
    want = ".npz" if kind == "images" else ".csv or .parquet"
    if (kind == "images") != (suffix == ".npz") or suffix not in (".npz", ".csv", ".parquet"):
        raise RegistryError(f"holdout file {path}: a {kind} package takes a {want} holdout, not {suffix or 'this'}")
    try:
        if kind == "images":
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in ("images", "labels") if k not in npz.files]
                if missing:
                    raise RegistryError(f"holdout file {path} has no {missing} array(s); it needs `images` (N, H, W, "
                                        f"C) uint8 and `labels` (it has {npz.files})")
                rows: Any = npz["images"]
                labels = npz["labels"]
        else:
            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            column = label or next((c for c in ("label", "target") if c in frame.columns), None)
            if column is None or column not in frame.columns:
                raise RegistryError(f"holdout file {path} has no label column {column or '`label` or `target`'} "
                                    f"(its columns: {list(frame.columns)[:20]}); name it with --label")
            missing = [c for c in _needed(signature) if c not in frame.columns]
            if missing:
                raise RegistryError(f"holdout file {path} lacks the columns {missing} the package needs "
                                    f"(it needs {_needed(signature)})")
            rows = frame[_needed(signature)]
            labels = frame[column]
            if task == "classification":
                labels = category_text(labels)
                if labels.isna().any():
                    raise RegistryError(f"holdout file {path}: {int(labels.isna().sum())} rows have no label")
            labels = labels.to_numpy()
    except (ValueError, OSError, UnicodeDecodeError) as err:  # object arrays (a pickle inside), unreadable files
        raise RegistryError(f"holdout file {path} cannot be read ({err}); give {want}") from None
    if kind == "images" and task == "classification":
        labels = np.asarray([str(v) for v in np.asarray(labels).reshape(-1)], dtype=object)
    try:
        holdout = Holdout(kind, task, rows, labels)
    except (ValueError, TypeError) as err:
        raise RegistryError(f"holdout file {path}: {err}") from None
    except RegistryError as err:
        raise RegistryError(f"holdout file {path}: {err}") from None
    check_holdout(holdout, signature)
    return holdout


def holdout_from_run(run_dir: str | Path) -> Holdout:
    """A finished run's test split (its validation split if it has none) as export's parity check uses it: the
    run's config and data loaded again, refused if the data changed since the run was trained."""
    from shipml.config import load_config
    from shipml.data import load_dataset

    run = Path(run_dir).expanduser()
    try:
        task = json.loads((run / "model" / "task.json").read_text())
        meta = json.loads((run / "data.json").read_text())  # the data kind the run loaded, and its fingerprint
        recorded = meta["fingerprint"]
        cfg = load_config(run / "config.yaml")
        data = load_dataset(cfg.data, seed=cfg.seed, task_kind=task["kind"], kind=meta["kind"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RegistryError(f"{run} is not a finished run (model/task.json, data.json, config.yaml: {err}); give "
                            "a run directory that trained, or a holdout file with --holdout") from None
    except ShipmlError as err:
        raise RegistryError(f"cannot load the data of {run} for its holdout: {err}") from None
    if recorded != data.fingerprint:
        raise RegistryError(f"the data at {cfg.data.path} changed since {run.name} was trained (fingerprint "
                            f"{str(recorded)[:12]} then, {data.fingerprint[:12]} now); its test rows are not the ones "
                            "it was measured on: restore the data, or give the holdout with --holdout FILE")
    idx = data.indices("test")
    idx = idx if len(idx) else data.indices("val")
    if not len(idx):
        raise RegistryError(f"{run.name}: the data set has no test or validation rows to hold out")
    if data.kind == "images":
        assert data.images is not None
        rows: Any = data.images[idx]
    else:
        rows = data.frame.iloc[idx][list(data.features)].reset_index(drop=True)
    labels = data.frame[data.target].iloc[idx].to_numpy()
    return Holdout(data.kind, str(task["kind"]), rows, labels)
