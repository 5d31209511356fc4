"""The app factory: `create_app(settings)` builds the FastAPI app; its lifespan loads and warms every served
model before the server reports ready, follows the registry's aliases (polling, and /admin/reload), and on
shutdown finishes every queued request before the sessions close.

Layout (FastAPI's "bigger applications"): one router per resource (routes_v2: OIP + health, routes_v1: the
simple JSON route, routes_admin: reload/status + /metrics), shared dependencies in deps.py, settings
injected. Request bodies above `max_body_bytes` are refused with 413 before they are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import shipml
from shipml.errors import ServeError
from shipml.serve.deps import State
from shipml.serve.metrics import ServerMetrics
from shipml.serve.models import ModelSet, PackageSource, RegistrySource, Source
from shipml.serve.monitor import FeedbackBook
from shipml.serve.settings import ENV_SETTINGS, ServeSettings

__all__ = ["app_from_env", "build_sources", "create_app"]

log = logging.getLogger("shipml.serve")


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over `limit` bytes: from Content-Length before reading, else while it streams in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any) -> None:
        body = b'{"detail": "request body too large: at most %d bytes; send fewer rows per request"}' % self.limit
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await self._refuse(send)


class JsonBodies:
    """Every POST body is JSON here, whatever its Content-Type says: `curl -d '{...}'` sends form encoding."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def _package_name(path: Path) -> str:
    from shipml.registry.names import check_name
    from shipml.runtime import Package

    pkg = Package.open(path)
    config = pkg.provenance.get("config") if isinstance(pkg.provenance, dict) else None
    name = (config or {}).get("name") if isinstance(config, dict) else None
    try:
        return check_name(name or path.parent.name)
    except Exception:
        return "model"


def build_sources(settings: ServeSettings) -> list[Source]:
    """`models` entries: `NAME=PATH` or a package folder (served as version 1), else a registered model name."""
    from shipml.registry.names import check_name

    sources: list[Source] = []
    registry = None
    for entry in settings.models:
        name, sep, target = entry.partition("=")
        path = Path(target if sep else entry).expanduser()
        if sep or path.is_dir():
            if not (path / "signature.json").is_file():
                raise ServeError(f"{path} is not a package folder (no signature.json); export a run first "
                                 "(`shipml export runs/<id>`) and serve runs/<id>/package")
            sources.append(PackageSource(check_name(name) if sep else _package_name(path), path))
            continue
        if registry is None:
            from shipml.registry import Registry

            registry = Registry(settings.registry, url=settings.registry_url, store=settings.store_url)
        name = check_name(entry)
        if all(m.name != name for m in registry.models()):
            known = ", ".join(m.name for m in registry.models()) or "none registered yet"
            raise ServeError(f"no registered model {name!r} (registered: {known}), and no folder of that name")
        sources.append(RegistrySource(name, registry))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ServeError(f"two served models have the same name: {names}; give names with NAME=PATH")
    return sources


def create_app(settings: ServeSettings, sources: list[Source] | None = None) -> FastAPI:
    """The server app; `sources` default to `build_sources(settings)` (tests may pass their own)."""
    settings.check()
    sources = sources if sources is not None else build_sources(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(settings.session_count(), thread_name_prefix="shipml-infer")
        prep = ThreadPoolExecutor(2, thread_name_prefix="shipml-prep")
        holder: dict[str, Any] = {}
        metrics = ServerMetrics(lambda: [v for s in holder["models"].slots.values()
                                         for v in (s.production, s.canary) if v is not None])
        models = ModelSet(sources, settings, executor, on_batch=metrics.batch,
                          on_failure=lambda name: metrics.load_failures.labels(name).inc())
        holder["models"] = models
        st = State(settings, models, metrics, prep,
                   feedback=FeedbackBook(settings.feedback_capacity) if settings.monitor else None)
        app.state.shipml = st
        await models.sync(retry_failed=True)
        st.ready = True
        poller = asyncio.create_task(_poll(st)) if settings.poll_s > 0 else None
        watcher = asyncio.create_task(_watch(st)) if settings.monitor else None
        log.info("shipml serve: %s on http://%s:%d (ready: %s)", ", ".join(models.slots), settings.host,
                 settings.port, models.ready())
        try:
            yield
        finally:
            st.ready = False
            for task in (poller, watcher):
                if task is not None:
                    task.cancel()
            await models.close()  # queued requests finish before the sessions go
            executor.shutdown(wait=True)
            prep.shutdown(wait=True)

    app = FastAPI(title="shipml serve", version=shipml.__version__, lifespan=lifespan,
                  description="Predictions from released shipml models: the Open Inference Protocol v2 routes and "
                              "a simple JSON route. See docs/serving.md.")
    from shipml.serve import routes_admin, routes_generate, routes_v1, routes_v2

    app.include_router(routes_v2.health)
    app.include_router(routes_v2.router)
    app.include_router(routes_v1.router)
    app.include_router(routes_generate.router)
    app.include_router(routes_admin.admin)
    app.include_router(routes_admin.metrics)
    app.include_router(routes_admin.dashboard)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors())
        if request.url.path.startswith("/v2"):
            return JSONResponse({"error": f"invalid request: {problems}"}, 400)  # the protocol's error object
        return JSONResponse({"detail": f"invalid request: {problems}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if request.url.path.startswith("/v2"):  # OIP routes: the protocol's error object
            return JSONResponse({"error": str(err.detail)}, err.status_code, headers=getattr(err, "headers", None))
        status = 422 if err.status_code == 400 else err.status_code  # v1: a body that is not JSON is bad input too
        return JSONResponse({"detail": str(err.detail)}, status, headers=getattr(err, "headers", None))

    app.add_middleware(JsonBodies)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)  # added last: outermost, before anything reads
    return app


async def _poll(st: State) -> None:
    """Follow the registry: read the aliases every poll_s; a failure is logged, what is loaded keeps serving."""
    while True:
        await asyncio.sleep(st.settings.poll_s)
        try:
            report = await st.models.sync()
        except Exception as err:  # the poller must survive anything (a catalog hiccup, a bad package)
            log.error("reading the registry failed: %s (serving what is loaded)", err)
            continue
        for name, changes in report.items():
            if changes:
                log.info("%s: %s", name, changes)


async def _watch(st: State, every_s: float = 10.0) -> None:
    """Log when a version's drift or live-accuracy flag goes up or down, naming the signals and by how much."""
    seen: dict[tuple[str, int], tuple[bool, bool]] = {}
    while True:
        await asyncio.sleep(every_s)
        for name, slot in st.models.slots.items():
            for v in (slot.production, slot.canary):
                if v is None or v.monitor is None:
                    continue
                try:
                    drift, accuracy = v.monitor.drift(), v.monitor.accuracy()
                except Exception as err:  # the watcher must not die on a bad window
                    log.error("%s v%s: monitoring failed: %s", name, v.version, err)
                    continue
                now = (drift["flag"], accuracy["flag"])
                if now != seen.get((name, v.version), (False, False)):
                    moved = ", ".join(f"{s} (PSI {drift['signals'][s]['psi']:.2f})" for s in drift["moved"])
                    if now[0]:
                        log.warning("%s v%s: drift over the last %d rows in %s", name, v.version, drift["rows"], moved)
                    if now[1]:
                        log.warning("%s v%s: live accuracy %.3f [%.3f, %.3f] on %d rows is below the test figure %.3f",
                                    name, v.version, accuracy["value"], accuracy["ci_low"], accuracy["ci_high"],
                                    accuracy["rows"], accuracy["test"])
                    if not any(now):
                        log.info("%s v%s: drift and live accuracy back within bounds", name, v.version)
                seen[(name, v.version)] = now


def app_from_env() -> FastAPI:
    """For `--workers N`: each worker process builds its app from the settings in $SHIPML_SERVE_SETTINGS."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        raise ServeError(f"{ENV_SETTINGS} is not set; start the server with `shipml serve`")
    return create_app(ServeSettings.from_json(text))
