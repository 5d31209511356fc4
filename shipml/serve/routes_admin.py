"""Admin routes (always behind SHIPML_API_TOKEN) and /metrics (behind it when the server is exposed):
reload the registry's aliases now, see what is loaded and what failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from shipml.serve.deps import admin_auth, client_auth, state

__all__ = ["admin", "dashboard", "metrics"]

admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_auth)])
metrics = APIRouter(tags=["metrics"], dependencies=[Depends(client_auth)])
dashboard = APIRouter(tags=["dashboard"])
PAGE = Path(__file__).with_name("static") / "dashboard.html"


def _version(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"version": v.version, "digest": v.digest, "variant": v.package.variant, "loaded_at": v.loaded_at,
            "queue": len(v.batcher.queue), "inflight": v.inflight}


@admin.post("/reload")
async def reload(request: Request) -> dict[str, Any]:
    """Read every served model's aliases now and load what changed (versions that failed are retried)."""
    return {"changes": await state(request).models.sync(retry_failed=True)}


@admin.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Per model: production and canary (version, digest, queue), the canary's weight, load errors."""
    st = state(request)
    return {"ready": st.ready and st.models.ready(),
            "models": {name: {"production": _version(s.production), "canary": _version(s.canary),
                              "canary_weight": s.weight, "load_errors": dict(s.errors)}
                       for name, s in st.models.slots.items()}}


@metrics.get("/metrics", response_class=Response)
async def prometheus(request: Request) -> Response:
    """Prometheus text format: requests, latency, queue depth, batch sizes per model and version."""
    return Response(state(request).metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")


@dashboard.get("/", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The dashboard: one self-contained page (no external assets) that polls the monitor routes. The page holds
    no data; what it fetches needs the token when the server is exposed (it asks for it once)."""
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))
