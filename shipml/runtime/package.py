"""`Package`: open an exported package (docs/package.md), check it, and predict with onnxruntime.

This is the only reader of the package format. It needs numpy, pandas, Pillow, onnxruntime and, for text
packages, tokenizers; never torch or the training code, so a released model runs where those are not
installed. Predictions have the same columns as `Run.predict`, so callers can switch between the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.core.cpu import ThreadPlan, plan_threads
from shipml.errors import DataError, ExportError
from shipml.runtime.format import ASSETS, FORMAT, METRICS, MODEL, PROVENANCE, SIGNATURE, read_json, verify_manifest
from shipml.runtime.generate import ImageGenerator
from shipml.runtime.predict import Predictor
from shipml.runtime.preprocess import Prepared, Preprocessor
from shipml.runtime.reference import REFERENCE

__all__ = ["Package"]

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(float16)": "float16", "tensor(double)": "float64"}
_UNREAD = object()  # reference.json not read yet
_NOT_A_PACKAGE = "export one with `shipml export <run>` and point at the package folder"


def _check_signature(sig: dict[str, Any], where: Path) -> None:
    """The network half of the signature (inputs, outputs); the rest is the predictor's spec (`check_spec`)."""
    if not sig.get("inputs") or not all(isinstance(i, dict) and {"name", "dtype"} <= i.keys() for i in sig["inputs"]):
        raise ExportError(f"{where}: signature.json inputs must be a list of {{name, dtype, shape}}; re-export the "
                          "package")
    if not sig.get("outputs") or not isinstance(sig["outputs"][0], dict) or "name" not in sig["outputs"][0]:
        raise ExportError(f"{where}: signature.json outputs must be a list of {{name, dtype, shape}}; re-export the "
                          "package")


class Package:
    """An opened package: its signature, metrics and provenance, its preprocessing and its ONNX session."""

    def __init__(self, path: Path, signature: dict[str, Any], metrics: dict[str, Any], provenance: dict[str, Any],
                 *, threads: int | None = None) -> None:
        self._path = Path(path)
        self._signature = signature
        self._metrics = metrics
        self._provenance = provenance
        self._threads = threads  # None: chosen when the session is made (core/cpu.py: free cores, not all cores)
        self._plan: ThreadPlan | None = None
        self._session: Any = None
        self._reference: Any = _UNREAD
        # an image generator has no input path to prediction: it draws images from noise (runtime/generate.py)
        self._generator = ImageGenerator(signature, where=self._path) if signature.get("kind") == "generation" \
            else None
        self._predictor = (Predictor(signature, self._path / ASSETS, where=self._path) if self._generator is None
                           else None)

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
        if self._generator is not None:
            return self._generator.classes
        return self.predictor.classes

    @property
    def reference(self) -> dict[str, Any] | None:
        """reference.json (what live traffic is compared with, `runtime.reference`); None in packages made before
        it existed: they still predict, drift then says "no reference"."""
        if self._reference is _UNREAD:
            path = self._path / REFERENCE
            self._reference = read_json(path, "package reference statistics") if path.is_file() else None
        return self._reference  # type: ignore[return-value]

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
        return self.predictor.preprocessor

    @property
    def predictor(self) -> Predictor:
        """The one input path (raw input -> feeds -> prediction) this package runs through."""
        if self._predictor is None:
            raise DataError(f"{self._path} is an image generator: it makes images and does not predict from inputs; "
                            "use `shipml generate` (Package.generate)")
        return self._predictor

    @property
    def generator(self) -> ImageGenerator:
        """(class, n, seed) -> images, for an image-generation package."""
        if self._generator is None:
            raise DataError(f"{self._path} is a {self.kind} model, not an image generator; it cannot generate")
        return self._generator

    def generate(self, label: str | int | None, n: int = 1, seed: int = 0) -> np.ndarray:
        """(n, H, W, C) uint8 images of class `label` (None: an unconditional generator), the same for a seed as
        `Run.generate` draws from the run it was exported from."""
        names = [i["name"] for i in self._signature["inputs"]]  # an unconditional graph takes no class input

        def network(feeds: dict[str, np.ndarray]) -> np.ndarray:
            checked = self._check_feeds({k: v for k, v in feeds.items() if k in names})
            (out,) = self.session().run([self._signature["outputs"][0]["name"]], checked)
            return np.asarray(out)

        return self.generator.generate(label, n, seed, network)

    # ------------------------------------------------------------------ the network
    @property
    def threads(self) -> int:
        """onnxruntime's intra-op threads: as given to `open`, else the cores free when first asked."""
        return self.thread_plan.threads

    @property
    def thread_plan(self) -> ThreadPlan:
        if self._plan is None:
            self._plan = plan_threads(self._threads)
        return self._plan

    def session(self) -> Any:
        """The onnxruntime session, created on first use (import and graph optimisation cost a second)."""
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = self.threads
            if self.thread_plan.contended:  # a spinning thread keeps a core another process needs, and waits longer
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
        return np.asarray(out, dtype=np.float32)

    # ------------------------------------------------------------------ prediction
    def prepare(self, raw: Any) -> Prepared:
        """Raw inputs (see the package's data kind) -> preprocessed rows; a Prepared is passed through."""
        return self.predictor.prepare(raw)

    def outputs(self, prepared: Prepared | Any, *, batch_size: int = 32) -> np.ndarray:
        """Raw network outputs (N, k) float32 in row order (non-finite outputs are refused)."""
        return self.predictor.outputs(self.prepare(prepared), self.run, batch_size=batch_size)

    def transform(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs -> predictions: (N, C) float32 probabilities (softmax), or (N,) values in target units."""
        return self.predictor.transform(outputs)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class indices: argmax, or the tuned threshold on the positive class of a binary classifier."""
        return self.predictor.decide(proba)

    def predict_proba(self, raw: Any, *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, C), or regression values (N,)."""
        return self.transform(self.outputs(raw, batch_size=batch_size))

    def predict(self, raw: Any, *, batch_size: int = 32) -> pd.DataFrame:
        """Run.predict's frame: [source], prediction, confidence, proba:<class> (regression: prediction).

        Unreadable image files are skipped with a warning and listed in `frame.attrs["skipped"]`.
        """
        return self.predictor.predict(raw, self.run, batch_size=batch_size)
