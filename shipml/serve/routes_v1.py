"""shipml's simple JSON route: `POST /v1/models/{name}/predict` with `{"inputs": [...]}` (texts, row objects or
base64 image files) or `{"emails": [...]}` (raw messages); answers label, confidence and probabilities (or
the value), the version that answered and a request id. Errors are `{"detail": "..."}`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shipml.serve.deps import client_auth, state
from shipml.serve.handling import Failure, run_request
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
