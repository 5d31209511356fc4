"""The one path from raw input to prediction: read -> preprocess -> network -> transform -> decide -> frame.

`Predictor` is built from a *spec*: the part of a package's signature.json that says what the network's
inputs and outputs mean (kind, data_kind, classes, preprocessing, output_transform, decision). Packages
carry it in signature.json; a run directory builds the same spec from its fitted task (`Run.spec()`).
The network itself is a callable `feeds -> (B, k) float32 outputs`: an onnxruntime session for a package,
the PyTorch model for a run (wrapped in `shipml.run`; this room never imports torch). So `Package.predict`,
`Run.predict`, export's parity check, the release gates and the server all run the same code, and a
served prediction is the prediction that was measured.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.errors import DataError, ExportError, ShipmlWarning
from shipml.runtime.preprocess import Prepared, Preprocessor, make_preprocessor

__all__ = ["Network", "Predictor", "check_spec", "decide", "softmax"]

Network = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds of one batch -> (B, k) float32 outputs
SPEC_KEYS = ("kind", "data_kind", "preprocessing", "output_transform")


def check_spec(spec: dict[str, Any], where: Path | str) -> None:
    """Refuse a spec this reader cannot honour, naming the field, instead of failing mid-prediction."""
    def bad(msg: str) -> ExportError:
        return ExportError(f"{where}: {msg}; re-export the package")

    for key in SPEC_KEYS:
        if key not in spec:
            raise bad(f"signature.json lacks {key!r}")
    transform = spec["output_transform"] or {}
    if spec["kind"] == "classification":
        classes = spec.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise bad("a classification signature needs `classes` (two or more names)")
        if transform.get("kind") != "softmax":
            raise bad(f"output_transform {transform!r} is not softmax, which classification needs")
        decision = spec.get("decision")
        thresholded = bool(decision) and decision.get("strategy", "argmax") != "argmax"
        if thresholded:
            t = decision.get("threshold")
            if (len(classes) != 2 or decision.get("positive") not in (0, 1) or isinstance(t, bool)
                    or not isinstance(t, (int, float)) or not 0 <= t <= 1):
                raise bad(f"decision {decision!r} needs a binary classifier, `positive` (0 or 1) and a "
                          "`threshold` between 0 and 1")
    elif spec["kind"] == "regression":
        ok = transform.get("kind") == "affine"
        for key in ("mean", "std"):
            v = transform.get(key)
            ok = ok and not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        if not ok or transform["std"] <= 0:
            raise bad(f"output_transform {transform!r} is not {{'kind': 'affine', 'mean', 'std' > 0}} (finite "
                      "numbers)")
    else:
        raise bad(f"kind {spec['kind']!r} is neither classification nor regression")


def softmax(outputs: np.ndarray) -> np.ndarray:
    """(N, C) logits -> probabilities, in float32 as the network computes."""
    z = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def decide(proba: np.ndarray, decision: dict[str, Any] | None) -> np.ndarray:
    """Class indices from (N, C) probabilities under a decision rule: None or strategy "argmax" -> argmax;
    otherwise {"positive": index, "threshold": t}: the positive class wherever its probability >= t."""
    if not decision or decision.get("strategy", "argmax") == "argmax":
        return proba.argmax(axis=1)
    pos = int(decision["positive"])
    return np.where(proba[:, pos] >= decision["threshold"], pos, 1 - pos)


class Predictor:
    """A spec's preprocessing, output transform and decision rule, around any network."""

    def __init__(self, spec: dict[str, Any], assets: Path, *, where: Path | str) -> None:
        if spec.get("kind") == "generation":
            raise DataError(f"{where} is an image generator: it makes images and does not predict from inputs; use "
                            "`shipml generate` (Run.generate, Package.generate)")
        check_spec(spec, where)
        self.spec = spec
        self.where = where
        self.preprocessor: Preprocessor = make_preprocessor(spec["data_kind"], spec["preprocessing"], Path(assets))

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def classes(self) -> list[str] | None:
        return self.spec.get("classes") if self.kind == "classification" else None

    @property
    def width(self) -> int:
        """Outputs per row: one per class, or one value."""
        return len(self.classes or []) if self.kind == "classification" else 1

    def prepare(self, raw: Any) -> Prepared:
        """Raw inputs -> preprocessed rows; a Prepared is passed through."""
        return raw if isinstance(raw, Prepared) else self.preprocessor.prepare(raw)

    def outputs(self, prepared: Prepared, network: Network, *, batch_size: int = 32) -> np.ndarray:
        """Raw network outputs (N, k) float32 in row order; batched in the preprocessor's order (text: longest
        first), then put back. Rows whose outputs are not finite are refused: no prediction is made from NaN."""
        n = len(prepared)
        out = np.zeros((n, self.width), dtype=np.float32)
        order = self.preprocessor.order(prepared)
        step = max(1, int(batch_size))
        for start in range(0, n, step):
            rows = order[start : start + step]
            got = np.asarray(network(self.preprocessor.feeds(prepared, rows)), dtype=np.float32)
            if got.ndim != 2 or got.shape != (len(rows), self.width):
                raise ExportError(f"the model in {self.where} returned shape {got.shape}, expected (N, {self.width}) "
                                  f"with N = {len(rows)}; re-export the package")
            out[rows] = got
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):
            which = prepared.sources if prepared.sources is not None else [f"row {i}" for i in range(n)]
            shown = ", ".join(str(which[i]) for i in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise DataError(f"the model gives non-finite outputs for {len(bad)} of {n} inputs ({shown}); no "
                            "prediction is made from them. Check those inputs for extreme values")
        return out

    def transform(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs -> predictions: (N, C) float32 probabilities (softmax), or (N,) values in target units."""
        if self.kind == "classification":
            return softmax(outputs)
        t = self.spec["output_transform"]
        return outputs[:, 0].astype(np.float64) * float(t["std"]) + float(t["mean"])

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class indices: argmax, or the tuned threshold on the positive class of a binary classifier."""
        return decide(proba, self.spec.get("decision"))

    def frame(self, prepared: Prepared, pred: np.ndarray) -> pd.DataFrame:
        """[source], prediction, confidence, proba:<class> (regression: [source], prediction); unreadable
        inputs that were skipped are listed in `frame.attrs["skipped"]`."""
        cols: dict[str, Any] = {"source": prepared.sources} if prepared.sources is not None else {}
        if self.kind == "classification":
            classes = self.classes or []
            decided = self.decide(pred)
            cols["prediction"] = [classes[i] for i in decided]
            cols["confidence"] = pred[np.arange(len(pred)), decided]
            cols |= {f"proba:{c}": pred[:, j] for j, c in enumerate(classes)}
        else:
            cols["prediction"] = pred
        out = pd.DataFrame(cols, index=pd.RangeIndex(len(pred)))
        out.attrs["skipped"] = list(prepared.skipped)
        return out

    def predict(self, raw: Any, network: Network, *, batch_size: int = 32) -> pd.DataFrame:
        """Raw inputs -> the prediction frame (see `frame`); skipped inputs are also warned about."""
        prepared = self.prepare(raw)
        if prepared.skipped:
            first = prepared.skipped[0]
            warnings.warn(f"skipped {len(prepared.skipped)} unreadable inputs (first: {first[0]}: {first[1]})",
                          ShipmlWarning, stacklevel=3)
        return self.frame(prepared, self.transform(self.outputs(prepared, network, batch_size=batch_size)))
