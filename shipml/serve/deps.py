"""What every router shares: the server state on the app, and the two token checks.

Off loopback every route but the health probes needs `Authorization: Bearer <SHIPML_API_TOKEN>`; admin
routes need it always (with no token configured they are off). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

from shipml.serve.settings import ServeSettings, is_loopback

__all__ = ["State", "admin_auth", "client_auth", "state"]


@dataclass
class State:
    settings: ServeSettings
    models: Any  # ModelSet
    metrics: Any  # ServerMetrics
    prep_executor: Any
    feedback: Any = None  # FeedbackBook
    ready: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def state(request: Request) -> State:
    return request.app.state.shipml


def _bearer_ok(request: Request, token: str) -> bool:
    got = request.headers.get("authorization", "")
    scheme, _, value = got.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _unauthorized(why: str) -> HTTPException:
    return HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})


async def client_auth(request: Request) -> None:
    """Inference, metadata and metrics: open on loopback, token required when the server is exposed."""
    settings = state(request).settings
    if not is_loopback(settings.host) and not _bearer_ok(request, settings.token or ""):
        raise _unauthorized("this server needs `Authorization: Bearer <token>` (SHIPML_API_TOKEN)")


async def admin_auth(request: Request) -> None:
    """Admin routes: always the token; with none configured they are off."""
    token = state(request).settings.token
    if not token:
        raise HTTPException(403, "admin routes are off: start the server with SHIPML_API_TOKEN set to use them")
    if not _bearer_ok(request, token):
        raise _unauthorized("admin routes need `Authorization: Bearer <token>` (SHIPML_API_TOKEN)")
