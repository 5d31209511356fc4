"""shipml's simple JSON route: `POST /v1/models/{name}/predict` with `{"inputs": [...]}` (texts, row objects or
base64 image files) or `{"emails": [...]}` (raw messages); answers label, confidence and probabilities (or
the value), the version that answered and a request id. Errors are `{"detail": "..."}`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shipml.serve.deps import client_auth, state
from shipml.serve.handling import Failure, run_request
from shipml.serve.monitor import AlreadyJudged, model_report
from shipml.serve.protocol import PredictRequest, predict_raw, predictions

__all__ = ["router"]

router = APIRouter(tags=["v1"], dependencies=[Depends(client_auth)])


class Prediction(BaseModel):
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None


class PredictResponse(BaseModel):
    model: str
    version: int
    request_id: str
    predictions: list[Prediction]


class Detail(BaseModel):
    detail: str | list[Any]


class FeedbackRequest(BaseModel):
    """The true label of an answered request (`label`), or one per row (`labels`), by its request id."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(max_length=64)
    label: str | None = None
    labels: list[str] | None = Field(default=None, max_length=1024)


class FeedbackResponse(BaseModel):
    request_id: str
    version: int
    rows: int
    correct: int


class LiveVersion(BaseModel):
    version: int
    alias: str
    weight: int | None = None


class ServedModel(BaseModel):
    name: str
    kind: str | None = None
    data_kind: str | None = None
    classes: list[str] | None = None
    versions: list[LiveVersion]


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Detail} for code in (404, 413, 422, 500, 503, 504)}


@router.post("/v1/models/{name}/predict", response_model=PredictResponse, responses=ERRORS)
async def predict(name: str, body: PredictRequest, request: Request) -> Any:
    """Predict on the production version (or the canary, by its weight; sticky per `X-Client-Key`)."""
    st = state(request)
    t0 = time.perf_counter()
    label = name if name in st.models.slots else "_unknown"
    try:
        answer = await run_request(st, name, None, request.headers.get("x-client-key"),
                                   lambda pkg: predict_raw(pkg, body), bad_request=422)
    except Failure as f:
        st.metrics.answered(label, f.version, "v1_predict", f.status, time.perf_counter() - t0)
        return JSONResponse({"detail": f.message}, f.status, headers=f.headers)
    v = answer.loaded.version
    st.metrics.answered(label, v, "v1_predict", 200, time.perf_counter() - t0)
    out = {"model": name, "version": v, "request_id": answer.request_id,
           "predictions": predictions(answer.loaded.package, answer.values)}
    return JSONResponse(out, headers={"X-Request-Id": answer.request_id, "X-Model-Version": str(v)})


@router.get("/v1/models", response_model=list[ServedModel])
async def served(request: Request) -> Any:
    """The served models, their kind and classes, and their live versions (production, canary with weight)."""
    out = []
    for name, slot in state(request).models.slots.items():
        live = [{"version": v.version, "alias": alias, "weight": slot.weight if alias == "canary" else None}
                for alias, v in (("production", slot.production), ("canary", slot.canary)) if v is not None]
        pkg = (slot.production or slot.canary).package if live else None
        out.append({"name": name, "kind": pkg.kind if pkg else None, "data_kind": pkg.data_kind if pkg else None,
                    "classes": pkg.classes if pkg else None, "versions": live})
    return out


@router.post("/v1/models/{name}/feedback", response_model=FeedbackResponse,
             responses={404: {"model": Detail}, 409: {"model": Detail}, 422: {"model": Detail}})
async def feedback(name: str, body: FeedbackRequest, request: Request) -> Any:
    """The true label(s) of an earlier answer, by its request id: live accuracy per version."""
    st = state(request)
    if st.feedback is None:
        return JSONResponse({"detail": "monitoring is off on this server (--no-monitor)"}, 404)
    if (body.label is None) == (body.labels is None):
        return JSONResponse({"detail": "give exactly one of `label` (one row) or `labels` (one per row)"}, 422)
    try:
        slot = st.models.slot(name)
        live = slot.production or slot.canary
        classes = (live.package.classes if live else None) or []
        if not classes:
            return JSONResponse({"detail": f"{name} is not a classifier: feedback takes class labels"}, 422)
        return st.feedback.give(name, body.request_id, [body.label] if body.label is not None else body.labels,
                                classes)
    except AlreadyJudged as err:
        return JSONResponse({"detail": str(err)}, 409)
    except LookupError as err:
        return JSONResponse({"detail": str(err.args[0])}, 404)
    except ValueError as err:
        return JSONResponse({"detail": str(err)}, 422)


@router.get("/v1/models/{name}/monitor", responses={404: {"model": Detail}})
async def monitor(name: str, request: Request) -> Any:
    """Traffic, latency, errors, drift per signal and live accuracy of every live version (docs/monitoring.md)."""
    st = state(request)
    try:
        slot = st.models.slot(name)
    except LookupError as err:
        return JSONResponse({"detail": str(err.args[0])}, 404)
    return model_report(name, slot, st.settings)
