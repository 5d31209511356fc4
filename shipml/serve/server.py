"""Running the app: uvicorn in this process, or `workers` processes sharing the port (uvicorn's supervisor;
each worker builds its own app and sessions from $SHIPML_SERVE_SETTINGS). SIGTERM: the server reports
not ready, stops accepting connections, lets queued and in-flight requests finish (up to `graceful_s`),
then exits."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

from shipml.serve.settings import ENV_SETTINGS, ServeSettings

__all__ = ["serve"]


def serve(settings: ServeSettings) -> None:
    """Serve until SIGTERM / Ctrl-C."""
    import uvicorn

    settings.check()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "access_log": False,
                              "timeout_graceful_shutdown": int(settings.graceful_s), "log_level": "info"}
    if settings.workers == 1:
        from shipml.serve.app import create_app

        app = create_app(settings)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                """As uvicorn's, without re-raising the signal after the drain: a drained server exits 0."""
                sigs = (signal.SIGINT, signal.SIGTERM)
                before = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
                try:
                    yield
                finally:
                    for sig, handler in before.items():
                        signal.signal(sig, handler)

            def handle_exit(self, sig: int, frame: Any) -> None:
                st = getattr(app.state, "shipml", None)
                if st is not None:
                    st.ready = False  # readiness goes first, then the listener closes and requests drain
                super().handle_exit(sig, frame)

        Server(uvicorn.Config(app, **common)).run()
        return
    os.environ[ENV_SETTINGS] = settings.to_json()
    with tempfile.TemporaryDirectory(prefix="shipml-metrics-") as shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared  # the workers' metrics, summed at every scrape
        uvicorn.run("shipml.serve.app:app_from_env", factory=True, workers=settings.workers, **common)

