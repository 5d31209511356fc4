"""`POST /v1/models/{name}/generate`: new images from an image-generation model, as PNGs in JSON.

Body `{"class": "7", "n": 4, "seed": 1}` (`class` left out for an unconditional generator; `seed` optional:
without it the server draws one and returns it, so any answer can be drawn again). The answer is JSON, the
same shape for any n: `{"model", "version", "request_id", "class", "seed", "images": [base64 PNG, ...]}` —
one response type a client parses, the images ready for an `<img src="data:image/png;base64,...">`. The same
(version, class, n, seed) always gives the same images, and the images `shipml generate` draws from the package.

Images are drawn on the worker threads the batcher uses, outside the batcher: a generation request has no
rows to group with others (its n images are one batch already). Errors are `{"detail": "..."}`: unknown model
404, a model that does not generate or a class it does not know 422.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shipml.errors import DataError
from shipml.runtime.generate import png
from shipml.serve.deps import client_auth, state

__all__ = ["MAX_GENERATE", "router"]

router = APIRouter(tags=["v1"], dependencies=[Depends(client_auth)])
MAX_GENERATE = 64  # images per request: 64 28x28 PNGs are ~20 KB of JSON, larger grids belong to `shipml generate`


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    class_: str | None = Field(None, alias="class", max_length=256,
                               description="The class to draw (conditional models); leave out for unconditional.")
    n: int = Field(1, ge=1, le=MAX_GENERATE, description="How many images.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Noise seed; left out: drawn by the server and "
                             "returned.")


class GenerateResponse(BaseModel):
    model: str
    version: int
    request_id: str
    class_: str | None = Field(None, alias="class")
    seed: int
    images: list[str] = Field(description="base64-encoded PNG files, one per image.")


class Detail(BaseModel):
    detail: str | list[Any]


@router.post("/v1/models/{name}/generate", response_model=GenerateResponse, response_model_by_alias=True,
             responses={code: {"model": Detail} for code in (404, 413, 422, 500, 503)})
async def generate(name: str, body: GenerateRequest, request: Request) -> Any:
    """Draw `n` images of `class` from the production version (or the canary, by its weight)."""
    st = state(request)
    t0 = time.perf_counter()
    label = name if name in st.models.slots else "_unknown"
    try:
        loaded = st.models.get(name, None, request.headers.get("x-client-key"))
    except LookupError as err:
        st.metrics.answered(label, None, "v1_generate", 404, time.perf_counter() - t0)
        return JSONResponse({"detail": str(err.args[0]) if err.args else str(err)}, 404)
    v, pkg = loaded.version, loaded.package
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    try:
        if pkg.kind != "generation":
            raise DataError(f"{name} is a {pkg.kind} model; it does not generate images (use /v1/models/{name}/"
                            "predict)")
        images = await asyncio.get_running_loop().run_in_executor(st.prep_executor, pkg.generate, body.class_,
                                                                  body.n, seed)
    except DataError as err:
        st.metrics.answered(label, v, "v1_generate", 422, time.perf_counter() - t0)
        return JSONResponse({"detail": str(err)}, 422)
    except Exception as err:  # the network failed: this request alone
        st.metrics.answered(label, v, "v1_generate", 500, time.perf_counter() - t0)
        return JSONResponse({"detail": f"the model failed on this request ({type(err).__name__})"}, 500)
    request_id = uuid.uuid4().hex
    st.metrics.answered(label, v, "v1_generate", 200, time.perf_counter() - t0)
    out = {"model": name, "version": v, "request_id": request_id, "class": body.class_, "seed": seed,
           "images": [base64.b64encode(png(img)).decode() for img in images]}
    return JSONResponse(out, headers={"X-Request-Id": request_id, "X-Model-Version": str(v)})
