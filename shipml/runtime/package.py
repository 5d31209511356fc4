"""`Package`: open an exported package (docs/package.md), check it, and predict with onnxruntime.

This is the only reader of the package format. It needs numpy, pandas, Pillow, onnxruntime and, for text
packages, tokenizers; never torch or the training code, so a released model runs where those are not
installed. Predictions have the same columns as `Run.predict`, so callers can switch between the two.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.errors import DataError, ExportError
from shipml.runtime.format import ASSETS, FORMAT, METRICS, MODEL, PROVENANCE, SIGNATURE, read_json, verify_manifest
from shipml.runtime.preprocess import Prepared, Preprocessor, make_preprocessor

__all__ = ["Package"]

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(float16)": "float16", "tensor(double)": "float64"}
_NOT_A_PACKAGE = "export one with `shipml export <run>` and point at the package folder"


def _check_signature(sig: dict[str, Any], where: Path) -> None:
    """Refuse a signature this reader cannot honour, naming the field, instead of failing mid-prediction."""
    def bad(msg: str) -> ExportError:
        return ExportError(f"{where}: {msg}; re-export the package")

    for key in ("kind", "data_kind", "inputs", "outputs", "output_transform", "preprocessing"):
        if key not in sig:
            raise bad(f"signature.json lacks {key!r}")
    if not sig["inputs"] or not all(isinstance(i, dict) and {"name", "dtype"} <= i.keys() for i in sig["inputs"]):
        raise bad("signature.json inputs must be a list of {name, dtype, shape}")
    if not sig["outputs"] or not isinstance(sig["outputs"][0], dict) or "name" not in sig["outputs"][0]:
        raise bad("signature.json outputs must be a list of {name, dtype, shape}")
    transform = sig["output_transform"] or {}
    if sig["kind"] == "classification":
        classes = sig.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            raise bad("a classification signature needs `classes` (two or more)")
        if transform.get("kind") != "softmax":
            raise bad(f"output_transform {transform!r} is not softmax, which classification needs")
        decision = sig.get("decision")
        thresholded = bool(decision) and decision.get("strategy", "argmax") != "argmax"
        if thresholded and (len(classes) != 2 or "threshold" not in decision or decision.get("positive") not in (0, 1)):
            raise bad(f"decision {decision!r} needs a binary classifier, `positive` (0 or 1) and `threshold`")
    elif sig["kind"] == "regression":
        if transform.get("kind") != "affine" or "mean" not in transform or "std" not in transform:
            raise bad(f"output_transform {transform!r} is not {{'kind': 'affine', 'mean', 'std'}}")
    else:
        raise bad(f"kind {sig['kind']!r} is neither classification nor regression")


class Package:
    """An opened package: its signature, metrics and provenance, its preprocessing and its ONNX session."""

    def __init__(self, path: Path, signature: dict[str, Any], metrics: dict[str, Any], provenance: dict[str, Any],
                 *, threads: int | None = None) -> None:
        self._path = Path(path)
        self._signature = signature
        self._metrics = metrics
        self._provenance = provenance
        self.threads = int(threads or os.cpu_count() or 1)
        self._session: Any = None
        self._preprocessor = make_preprocessor(signature["data_kind"], signature["preprocessing"], self._path / ASSETS)

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True, threads: int | None = None) -> Package:
        """Open and check a package folder; `verify=False` skips the manifest (a writer reading its own work)."""
        path = Path(path)
        if not path.is_dir():
            raise ExportError(f"{path} is not a shipml package (not a folder); {_NOT_A_PACKAGE}")
        if not (path / SIGNATURE).is_file():
            raise ExportError(f"{path} is not a shipml package (no {SIGNATURE}); {_NOT_A_PACKAGE}")
        signature = read_json(path / SIGNATURE, "package signature")
        if signature.get("format") != FORMAT:
            raise ExportError(f"{path} is not a {FORMAT} package (format {signature.get('format')!r}); "
                              f"{_NOT_A_PACKAGE}, or upgrade shipml if it was written by a newer one")
        if verify:
            files = verify_manifest(path)["files"]
            missing = [f for f in (MODEL, SIGNATURE, METRICS, PROVENANCE) if f not in files]
            if missing:
                raise ExportError(f"{path} is incomplete: no {', '.join(missing)}; re-export the package")
        elif not (path / MODEL).is_file():
            raise ExportError(f"{path} has no {MODEL}; re-export the package")
        _check_signature(signature, path)
        metrics = read_json(path / METRICS, "package metrics") if (path / METRICS).exists() or verify else {}
        provenance = read_json(path / PROVENANCE, "package provenance") if (path / PROVENANCE).exists() or verify \
            else {}
        return cls(path, signature, metrics, provenance, threads=threads)

    def __repr__(self) -> str:
        return f"Package({str(self._path)!r}, {self.signature.get('task')}, variant={self.variant!r})"

    # ------------------------------------------------------------------ what it is
    @property
    def path(self) -> Path:
        return self._path

    @property
    def signature(self) -> dict[str, Any]:
        return self._signature

    @property
    def metrics(self) -> dict[str, Any]:
        return self._metrics

    @property
    def provenance(self) -> dict[str, Any]:
        return self._provenance

    @property
    def classes(self) -> list[str] | None:
        return self._signature.get("classes") if self.kind == "classification" else None

    @property
    def kind(self) -> str:
        return str(self._signature["kind"])

    @property
    def data_kind(self) -> str:
        return str(self._signature["data_kind"])

    @property
    def variant(self) -> str:
        return str((self._signature.get("variant") or {}).get("name", "fp32"))

    @property
    def preprocessor(self) -> Preprocessor:
        return self._preprocessor

    # ------------------------------------------------------------------ the network
    def session(self) -> Any:
        """The onnxruntime session, created on first use (import and graph optimisation cost a second)."""
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self.threads
            opts.log_severity_level = 3  # errors only: optimiser notes are not the user's business
            model = self._path / MODEL
            try:
                session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own exception types per failure
                raise ExportError(f"onnxruntime cannot load {model}: {err}; re-export the package") from None
            takes = {i.name: _ORT_TYPES.get(i.type, i.type) for i in session.get_inputs()}
            listed = {i["name"]: i["dtype"] for i in self._signature["inputs"]}
            if takes != listed:
                raise ExportError(f"{model} takes inputs {takes} but {SIGNATURE} lists {listed}; re-export the package")
            out = self._signature["outputs"][0]["name"]
            if out not in [o.name for o in session.get_outputs()]:
                raise ExportError(f"{model} has no output {out!r} ({SIGNATURE} names it); re-export the package")
            self._session = session
        return self._session

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Exactly the signature's inputs, each of its dtype and fixed dims (zero-width extras are dropped)."""
        out = {}
        for spec in self._signature["inputs"]:
            name = spec["name"]
            if name not in feeds:
                raise DataError(f"no input {name!r}; the model takes {[i['name'] for i in self._signature['inputs']]}")
            arr = np.asarray(feeds[name])
            if arr.dtype != np.dtype(spec["dtype"]):
                raise DataError(f"input {name!r} is {arr.dtype}, the model takes {spec['dtype']}")
            shape = spec.get("shape")
            if shape is not None and (arr.ndim != len(shape) or any(
                    isinstance(d, int) and d != n for d, n in zip(shape, arr.shape, strict=True))):
                raise DataError(f"input {name!r} has shape {arr.shape}, the model takes {shape}")
            out[name] = arr
        extra = [k for k, v in feeds.items() if k not in out and np.asarray(v).size]
        if extra:
            raise DataError(f"inputs {extra} are not inputs of the model ({sorted(out)})")
        return out

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One session call on ready feeds: the first output as float32 (N, k)."""
        checked = self._check_feeds(feeds)
        try:
            (out,) = self.session().run([self._signature["outputs"][0]["name"]], checked)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"the model in {self._path} failed on inputs of shapes "
                              f"{ {k: v.shape for k, v in checked.items()} }: {err}; its signature and preprocessing "
                              "do not match the network, re-export the package") from None
        out = np.asarray(out, dtype=np.float32)
        width = len(self.classes or []) if self.kind == "classification" else 1
        if out.ndim != 2 or out.shape[1] != width:
            raise ExportError(f"the model in {self._path} returned shape {out.shape}, expected (N, {width}); "
                              "re-export the package")
        return out

    # ------------------------------------------------------------------ prediction
    def prepare(self, raw: Any) -> Prepared:
        """Raw inputs (see the package's data kind) -> preprocessed rows; a Prepared is passed through."""
        return raw if isinstance(raw, Prepared) else self._preprocessor.prepare(raw)

    def outputs(self, prepared: Prepared | Any, *, batch_size: int = 32) -> np.ndarray:
        """Raw network outputs (N, k) float32 in row order; text is batched longest first, then put back."""
        prepared = self.prepare(prepared)
        n = len(prepared)
        width = len(self.classes or []) if self.kind == "classification" else 1
        out = np.zeros((n, width), dtype=np.float32)
        order = self._preprocessor.order(prepared)
        for start in range(0, n, max(1, int(batch_size))):
            rows = order[start : start + batch_size]
            out[rows] = self.run(self._preprocessor.feeds(prepared, rows))
        return out

    def transform(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs -> predictions: (N, C) float32 probabilities (softmax), or (N,) values in target units."""
        if self.kind == "classification":
            z = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        t = self._signature["output_transform"]
        return outputs[:, 0].astype(np.float64) * float(t["std"]) + float(t["mean"])

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class indices: argmax, or the tuned threshold on the positive class of a binary classifier."""
        decision = self._signature.get("decision")
        if not decision or decision.get("strategy", "argmax") == "argmax":
            return proba.argmax(axis=1)
        pos = int(decision["positive"])
        return np.where(proba[:, pos] >= decision["threshold"], pos, 1 - pos)

    def predict_proba(self, raw: Any, *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, C), or regression values (N,)."""
        return self.transform(self.outputs(raw, batch_size=batch_size))

    def predict(self, raw: Any, *, batch_size: int = 32) -> pd.DataFrame:
        """Run.predict's frame: [source], prediction, confidence, proba:<class> (regression: prediction).

        Unreadable image files are skipped with a warning and listed in `frame.attrs["skipped"]`.
        """
        prepared = self.prepare(raw)
        if prepared.skipped:
            first = prepared.skipped[0]
            warnings.warn(f"skipped {len(prepared.skipped)} unreadable inputs (first: {first[0]}: {first[1]})",
                          stacklevel=2)
        pred = self.transform(self.outputs(prepared, batch_size=batch_size))
        out = pd.DataFrame({"source": prepared.sources} if prepared.sources is not None else {})
        if self.kind == "classification":
            classes = self.classes or []
            decided = self.decide(pred)
            out["prediction"] = [classes[i] for i in decided]
            out["confidence"] = pred[np.arange(len(pred)), decided]
            for j, c in enumerate(classes):
                out[f"proba:{c}"] = pred[:, j]
        else:
            out["prediction"] = pred
        out.attrs["skipped"] = list(prepared.skipped)
        return out
