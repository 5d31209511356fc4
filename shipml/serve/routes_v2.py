"""Open Inference Protocol v2 (KServe / Triton HTTP) routes, as specified: health, server and model metadata,
model readiness and inference, with and without a version in the path. Errors are `{"error": "..."}` with
status 400 for a request that does not fit (the spec's error object), plus 404 / 503 / 504 as for v1.
Health probes need no token; everything else follows `client_auth`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import shipml
from shipml.serve.deps import client_auth, state
from shipml.serve.handling import Failure, run_request
from shipml.serve.protocol import InferRequest, infer_raw, infer_response, model_inputs, model_outputs

__all__ = ["health", "router"]

health = APIRouter(tags=["health"])
router = APIRouter(tags=["v2"], dependencies=[Depends(client_auth)])


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ErrorBody(BaseModel):
    error: str


class Tensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class OutputTensor(Tensor):
    data: list[Any]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[Tensor]
    outputs: list[Tensor]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputTensor]


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 404, 503)}
INFER_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 404, 500, 503, 504)}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 9:  # '¹'.isdigit() is True, int('¹') fails
        raise LookupError(f"version {text!r} is not a version number")
    return int(text)


# ---------------------------------------------------------------------------------------------- health
@health.get("/v2/health/live", response_model=Live)
async def live() -> dict[str, bool]:
    """The process answers requests."""
    return {"live": True}


@health.get("/v2/health/ready", response_model=Ready, responses={400: {"model": Ready}})
async def ready(request: Request) -> Any:
    """Every served model has a production version loaded and warm, and the server is not shutting down.
    200 means ready; 400 (the protocol's 4xx) not ready."""
    st = state(request)
    ok = st.ready and st.models.ready()
    return JSONResponse({"ready": ok}, 200 if ok else 400)


# ---------------------------------------------------------------------------------------------- metadata
@router.get("/v2", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": "shipml", "version": shipml.__version__, "extensions": []}


def _metadata(request: Request, name: str, version: str | None) -> Any:
    st = state(request)
    try:
        chosen = st.models.get(name, _version(version)) if version else st.models.get(name, None, "metadata")
        loaded = st.models.loaded(name)
    except LookupError as err:
        return _error(404, str(err.args[0]))
    except Exception as err:  # no version loaded yet
        return _error(503, str(err))
    pkg = chosen.package
    return {"name": name, "versions": [str(v.version) for v in loaded], "platform": "onnxruntime_onnx",
            "inputs": model_inputs(pkg), "outputs": model_outputs(pkg)}


@router.get("/v2/models/{name}", response_model=ModelMetadata, responses=ERRORS)
async def model_metadata(name: str, request: Request) -> Any:
    """The production version's inputs and outputs (raw inputs: the server preprocesses them as trained)."""
    return _metadata(request, name, None)


@router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS)
async def version_metadata(name: str, version: str, request: Request) -> Any:
    return _metadata(request, name, version)


def _ready(request: Request, name: str, version: str | None) -> Any:
    st = state(request)
    try:
        if version is None:
            ok = st.models.slot(name).production is not None
        else:
            v = _version(version)
            ok = any(x.version == v for x in st.models.loaded(name))
    except LookupError as err:
        return _error(404, str(err.args[0]))
    return JSONResponse({"name": name, "ready": ok and st.ready}, 200 if ok and st.ready else 400)


@router.get("/v2/models/{name}/ready", response_model=ModelReady, responses={400: {"model": ModelReady},
                                                                              404: {"model": ErrorBody}})
async def model_ready(name: str, request: Request) -> Any:
    return _ready(request, name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", response_model=ModelReady,
            responses={400: {"model": ModelReady}, 404: {"model": ErrorBody}})
async def version_ready(name: str, version: str, request: Request) -> Any:
    return _ready(request, name, version)


# ---------------------------------------------------------------------------------------------- inference
async def _infer(request: Request, name: str, version: str | None, body: InferRequest) -> Any:
    st = state(request)
    t0 = time.perf_counter()
    label = name if name in st.models.slots else "_unknown"
    try:
        answer = await run_request(st, name, _version(version), request.headers.get("x-client-key"),
                                   lambda pkg: infer_raw(pkg, body), bad_request=400)
        out = infer_response(answer.loaded.package, name, answer.loaded.version, body, answer.values,
                             answer.request_id)
    except LookupError as err:  # a bad version text
        st.metrics.answered(label, None, "v2_infer", 404, time.perf_counter() - t0)
        return _error(404, str(err.args[0]))
    except Failure as f:
        st.metrics.answered(label, f.version, "v2_infer", f.status, time.perf_counter() - t0)
        return _error(f.status, f.message, f.headers)
    except Exception as err:  # an unknown requested output (BadRequest) after the run
        st.metrics.answered(label, answer.loaded.version, "v2_infer", 400, time.perf_counter() - t0)
        return _error(400, str(err))
    st.metrics.answered(label, answer.loaded.version, "v2_infer", 200, time.perf_counter() - t0)
    return JSONResponse(out, headers={"X-Request-Id": answer.request_id,
                                      "X-Model-Version": str(answer.loaded.version)})


@router.post("/v2/models/{name}/infer", response_model=InferResponse, responses=INFER_ERRORS)
async def infer(name: str, body: InferRequest, request: Request) -> Any:
    """Inference on the production version (or the canary, by its traffic weight; sticky per `X-Client-Key`)."""
    return await _infer(request, name, None, body)


@router.post("/v2/models/{name}/versions/{version}/infer", response_model=InferResponse, responses=INFER_ERRORS)
async def infer_version(name: str, version: str, body: InferRequest, request: Request) -> Any:
    """Inference on one live version (production or canary)."""
    return await _infer(request, name, version, body)
