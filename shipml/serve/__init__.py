"""The serving room: released models over HTTP, on the runtime (onnxruntime, no torch), docs/serving.md.

    settings.py      ServeSettings: one frozen object from the command line and environment; unsafe ones refused
    app.py           create_app(settings): lifespan (load, warm up, follow the registry, drain), body limit
    models.py        sources (registry aliases or one package), ModelSet: load + warm beside, then switch;
                     canary split by the alias weight, sticky per client key
    batcher.py       per-version queue -> batches (max size / wait, text grouped by length), run in threads,
                     a failing request fails alone, deadlines, bounded queue
    protocol.py      OIP v2 tensors and the v1 JSON body -> raw inputs (never a file path); outputs
    handling.py      one request: pick, decode, preprocess, queue, wait; errors -> status codes
    routes_v2.py     /v2 health, metadata, ready, infer       routes_v1.py   /v1/models/{name}/predict
    routes_admin.py  /admin/reload, /admin/status, /metrics   deps.py        state, token checks
    metrics.py       Prometheus metrics (prometheus-client)   server.py      uvicorn, workers, SIGTERM

Builds on `shipml.runtime` (the one input path) and reads the registry's catalog and store; never imports
torch, the training code or the release gates.
"""

from shipml.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]


def __getattr__(name: str) -> object:  # the app and the server import FastAPI / uvicorn: only when used
    if name == "create_app":
        from shipml.serve.app import create_app

        return create_app
    if name == "serve":
        from shipml.serve.server import serve

        return serve
    raise AttributeError(name)
