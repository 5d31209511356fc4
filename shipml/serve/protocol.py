"""Request bodies -> raw inputs the runtime accepts, and predictions -> response bodies.

Two protocols share the models: the Open Inference Protocol v2 (KServe / Triton HTTP clients; tensors with
name, shape, datatype and data) and shipml's simple JSON route (`{"inputs": [...]}`). A request never names
a file: texts stay strings, raw emails become `RawEmails`, images are pixels or `EncodedImages` (bytes),
table rows become a frame, so nothing a client sends can be read as a server-side path. Each check names what
was wrong; the caller turns a `BadRequest` into a 400 (OIP) or 422 (v1).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from shipml.errors import ServeError
from shipml.runtime import EncodedImages, Package, RawEmails

__all__ = ["MAX_ROWS", "BadRequest", "InferRequest", "PredictRequest", "infer_raw", "infer_response",
           "model_inputs", "model_outputs", "predict_raw", "predictions"]

MAX_ROWS = 1024  # rows per request: more should be sent as several requests (each is batched anyway)


class BadRequest(ServeError):
    """The request does not fit the model's signature: 400 on OIP routes, 422 on the v1 route."""


# ---------------------------------------------------------------------------------------------- schemas
class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """The OIP inference request object."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class PredictRequest(BaseModel):
    """`inputs`: texts (text models), row objects (table models) or base64 image files (image models);
    `emails`: raw RFC 822 messages, for text models trained on emails."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[str | dict[str, str | float | int | bool | None]] | None = Field(default=None, max_length=MAX_ROWS)
    emails: list[str] | None = Field(default=None, max_length=MAX_ROWS)


# ---------------------------------------------------------------------------------------------- metadata
def model_inputs(pkg: Package) -> list[dict[str, Any]]:
    """The raw inputs a model takes over OIP (the server preprocesses them as trained)."""
    prep = pkg.signature["preprocessing"]
    if pkg.data_kind == "text":
        out = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        if prep.get("email") is not None:
            out.append({"name": "email", "datatype": "BYTES", "shape": [-1]})
        return out
    if pkg.data_kind == "images":
        (h, w), c = prep["size"], prep["channels"]
        return [{"name": "image", "datatype": "UINT8", "shape": [-1, h, w, c]}]
    return ([{"name": s["name"], "datatype": "FP64", "shape": [-1]} for s in prep["numeric"]]
            + [{"name": s["name"], "datatype": "BYTES", "shape": [-1]} for s in prep["categorical"]])


def model_outputs(pkg: Package) -> list[dict[str, Any]]:
    if pkg.kind == "classification":
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(pkg.classes or [])]}]
    return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]


# ---------------------------------------------------------------------------------------------- OIP
def _flat(data: list[Any]) -> list[Any]:
    """Row-major flattening of nested tensor data (OIP allows both forms)."""
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flat(x) if isinstance(x, list) else [x])
    return out


def _rows(inp: RequestInput, dims: int) -> int:
    """The batch size of an input, after checking its shape against its data."""
    shape = inp.shape
    if not shape or any(d < 0 for d in shape):
        raise BadRequest(f"input {inp.name!r}: shape {shape} must list non-negative sizes, the first being the "
                         "number of rows")
    if dims == 1 and len(shape) == 2 and shape[1] == 1:
        shape = shape[:1]  # [N, 1] is accepted for a column
    if len(shape) != dims:
        raise BadRequest(f"input {inp.name!r}: shape {inp.shape} has {len(inp.shape)} dimensions, expected {dims}")
    if not 0 < shape[0] <= MAX_ROWS:
        raise BadRequest(f"input {inp.name!r}: {shape[0]} rows; send 1 to {MAX_ROWS} per request")
    return shape[0]


def _check_len(inp: RequestInput, values: list[Any]) -> None:
    n = math.prod(inp.shape)
    if len(values) != n:
        raise BadRequest(f"input {inp.name!r}: shape {inp.shape} needs {n} values, data has {len(values)}")


def _strings(inp: RequestInput) -> list[str]:
    if inp.datatype != "BYTES":
        raise BadRequest(f"input {inp.name!r} is {inp.datatype}; it takes BYTES (strings)")
    _rows(inp, 1)
    values = _flat(inp.data)
    _check_len(inp, values)
    if not all(isinstance(v, str) for v in values):
        raise BadRequest(f"input {inp.name!r}: BYTES data must be strings")
    return values


def infer_raw(pkg: Package, req: InferRequest) -> Any:
    """An OIP request's tensors -> the runtime's raw input for this package."""
    expected = {i["name"]: i for i in model_inputs(pkg)}
    given = {i.name: i for i in req.inputs}
    if len(given) != len(req.inputs):
        raise BadRequest("an input name appears twice")
    unknown = sorted(set(given) - set(expected))
    if unknown:
        raise BadRequest(f"unknown inputs {unknown}; the model takes {sorted(expected)}")
    if pkg.data_kind == "text":
        if len(given) != 1:
            raise BadRequest(f"give exactly one of the inputs {sorted(expected)} (texts, or raw emails)")
        (inp,) = given.values()
        values = _strings(inp)
        return RawEmails(v.encode("utf-8", errors="surrogatepass") for v in values) if inp.name == "email" else values
    if pkg.data_kind == "images":
        if "image" not in given:
            raise BadRequest("missing input 'image'")
        inp, spec = given["image"], expected["image"]
        if inp.datatype != "UINT8":
            raise BadRequest(f"input 'image' is {inp.datatype}; it takes UINT8 pixels of shape {spec['shape']}")
        h, w, c = spec["shape"][1:]
        if inp.shape[1:] == [h, w] and c == 1:
            inp = inp.model_copy(update={"shape": [*inp.shape, 1]})
        _rows(inp, 4)
        if inp.shape[1:] != [h, w, c]:
            raise BadRequest(f"input 'image' has shape {inp.shape}; the model takes [N, {h}, {w}, {c}]")
        values = _flat(inp.data)
        _check_len(inp, values)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
            raise BadRequest("input 'image': UINT8 data must be whole numbers 0-255")
        return np.asarray(values, dtype=np.uint8).reshape(inp.shape)
    missing = sorted(set(expected) - set(given))
    if missing:
        raise BadRequest(f"missing inputs {missing}; the model takes {sorted(expected)}")
    columns: dict[str, list[Any]] = {}
    for name, spec in expected.items():
        inp = given[name]
        if spec["datatype"] == "BYTES":
            columns[name] = _strings(inp)
            continue
        if inp.datatype not in ("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16",
                                "UINT32", "UINT64"):
            raise BadRequest(f"input {name!r} is {inp.datatype}; it takes numbers (FP64)")
        _rows(inp, 1)
        values = _flat(inp.data)
        _check_len(inp, values)
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
            raise BadRequest(f"input {name!r}: data must be numbers (null for a missing value)")
        columns[name] = [math.nan if v is None else v for v in values]
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise BadRequest(f"inputs have different numbers of rows: { {k: len(v) for k, v in columns.items()} }")
    return pd.DataFrame(columns)


def infer_response(pkg: Package, name: str, version: int, req: InferRequest, values: np.ndarray,
                   request_id: str) -> dict[str, Any]:
    """Predictions as OIP output tensors (only the requested outputs, when the request names some)."""
    outputs = {o["name"]: o for o in model_outputs(pkg)}
    wanted = [o.name for o in req.outputs] if req.outputs else list(outputs)
    unknown = sorted(set(wanted) - set(outputs))
    if unknown:
        raise BadRequest(f"unknown outputs {unknown}; the model gives {sorted(outputs)}")
    n = len(values)
    tensors = []
    for out in wanted:
        if out == "label":
            labels = [(pkg.classes or [])[i] for i in pkg.decide(values)]
            tensors.append({"name": "label", "datatype": "BYTES", "shape": [n], "data": labels})
        elif out == "probabilities":
            tensors.append({"name": "probabilities", "datatype": "FP32", "shape": [n, values.shape[1]],
                            "data": [float(v) for v in values.reshape(-1)]})
        else:
            tensors.append({"name": "prediction", "datatype": "FP64", "shape": [n],
                            "data": [float(v) for v in values]})
    body: dict[str, Any] = {"model_name": name, "model_version": str(version), "outputs": tensors,
                            "parameters": {"request_id": request_id}}
    if req.id is not None:
        body["id"] = req.id
    return body


# ---------------------------------------------------------------------------------------------- v1
def _image_bytes(values: list[Any]) -> EncodedImages:
    out = EncodedImages()
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise BadRequest(f"inputs[{i}]: an image model takes base64-encoded image files (strings)")
        try:
            out.append(base64.b64decode(v.split(",", 1)[1] if v.startswith("data:") else v, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"inputs[{i}] is not valid base64 (an image file, e.g. PNG, base64-encoded)") from None
    return out


def predict_raw(pkg: Package, req: PredictRequest) -> Any:
    """A v1 request -> the runtime's raw input for this package."""
    if (req.inputs is None) == (req.emails is None):
        raise BadRequest("give exactly one of `inputs` (a list) or `emails` (raw messages, text models)")
    values = req.inputs if req.inputs is not None else req.emails
    if not values:
        raise BadRequest("no inputs: send a non-empty list")
    if req.emails is not None:
        if pkg.data_kind != "text":
            raise BadRequest(f"`emails` is for text models; this model takes {pkg.data_kind}")
        return RawEmails(e.encode("utf-8", errors="surrogatepass") for e in req.emails)
    if pkg.data_kind == "text":
        if not all(isinstance(v, str) for v in values):
            raise BadRequest("a text model takes `inputs` as a list of strings")
        return list(values)
    if pkg.data_kind == "images":
        return _image_bytes(values)
    if not all(isinstance(v, dict) for v in values):
        raise BadRequest("a table model takes `inputs` as a list of objects, one per row: {column: value}")
    return [{k: (math.nan if v is None else v) for k, v in row.items()} for row in values]  # type: ignore[union-attr]


def predictions(pkg: Package, values: np.ndarray) -> list[dict[str, Any]]:
    """One object per row: label, confidence and probabilities per class; or the predicted value."""
    if pkg.kind != "classification":
        return [{"value": float(v)} for v in values]
    classes = pkg.classes or []
    decided = pkg.decide(values)
    return [{"label": classes[k], "confidence": float(row[k]),
             "probabilities": {c: float(p) for c, p in zip(classes, row, strict=True)}}
            for k, row in zip(decided, values, strict=True)]
