"""Server settings: one frozen object, built from the command line and the environment, injected into the app
(so tests build their own). `check()` refuses unsafe or impossible settings before anything is loaded."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from shipml.core.cpu import usable_cores
from shipml.errors import ServeError

__all__ = ["ENV_SETTINGS", "ServeSettings", "is_loopback"]

ENV_SETTINGS = "SHIPML_SERVE_SETTINGS"  # JSON of the settings, how `--workers N` hands them to each worker


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """What `shipml serve` runs with (docs/serving.md lists each with its default and why)."""

    models: tuple[str, ...] = ()  # registered model names, or package folders (served as version 1)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # server processes on this box, each with its own sessions
    token: str | None = field(default=None, repr=False)  # SHIPML_API_TOKEN: admin routes; every route off loopback
    max_batch_size: int = 32  # rows per network call
    max_wait_ms: float = 2.0  # how long a batch waits for more requests after its first
    max_queue: int = 256  # requests waiting per version; more get 503 + Retry-After
    max_queue_ms: float = 2500.0  # 503 when the estimated wait in the queue is longer (0: only max_queue counts)
    max_body_bytes: int = 8 << 20  # larger request bodies get 413 before they are read
    deadline_ms: float = 10_000.0  # a request not started by then gets 504 and is never executed
    sessions: int | None = None  # onnxruntime sessions per version, each running batches concurrently (None: 2
    # where a worker has 2 or more cores, else 1; measured in bench/serve.py, docs/serving.md "Capacity")
    threads: int | None = None  # intra-op threads per session (None: the worker's cores / sessions)
    poll_s: float = 5.0  # how often the registry's aliases are read (0: never; /admin/reload still works)
    registry: str | None = None  # registry root folder (default: $SHIPML_REGISTRY or ~/.shipml/registry)
    registry_url: str | None = None  # catalog URL (default: $SHIPML_REGISTRY_URL or the root's SQLite file)
    store_url: str | None = None  # package store URL (default: $SHIPML_STORE_URL or the root's store/)
    graceful_s: float = 30.0  # on SIGTERM: how long queued and in-flight requests may take to finish
    monitor: bool = True  # drift and live accuracy per version (docs/monitoring.md)
    window_rows: int = 1000  # the monitoring window: at most this many rows ...
    window_s: float = 3600.0  # ... and this many seconds
    min_rows: int = 100  # no drift flag on a window of fewer rows
    feedback_capacity: int = 100_000  # answers remembered by request id for feedback (memory stays bounded)

    @classmethod
    def from_env(cls, **given: Any) -> ServeSettings:
        """Settings from `given` (None values ignored), the token from SHIPML_API_TOKEN when not given."""
        values = {k: v for k, v in given.items() if v is not None}
        if "models" in values:
            values["models"] = tuple(values["models"])
        values.setdefault("token", os.environ.get("SHIPML_API_TOKEN") or None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ServeError(f"unknown server settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        values = json.loads(text)
        values["models"] = tuple(values.get("models") or ())
        return cls(**values)

    def with_(self, **changes: Any) -> ServeSettings:
        return replace(self, **changes)

    def check(self) -> ServeSettings:
        """Refuse settings that are unsafe (an exposed server without a token) or cannot work, naming the fix."""
        if not self.models:
            raise ServeError("nothing to serve: name a registered model (`shipml serve spam`) or a package folder "
                             "(`shipml serve runs/<id>/package`)")
        if not is_loopback(self.host) and not self.token:
            raise ServeError(f"--host {self.host} exposes the server beyond this machine: set SHIPML_API_TOKEN (every "
                             "request then needs `Authorization: Bearer <token>`), or keep the default 127.0.0.1")
        if self.token is not None and len(self.token) < 16:
            raise ServeError("SHIPML_API_TOKEN is shorter than 16 characters; use a long random one, e.g. "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        positive = {"workers": self.workers, "max_batch_size": self.max_batch_size, "max_queue": self.max_queue,
                    "max_body_bytes": self.max_body_bytes, "deadline_ms": self.deadline_ms,
                    "sessions": self.session_count(), "graceful_s": self.graceful_s, "window_rows": self.window_rows,
                    "window_s": self.window_s, "min_rows": self.min_rows, "feedback_capacity": self.feedback_capacity}
        for name, value in positive.items():
            if isinstance(value, bool) or not value > 0:
                raise ServeError(f"{name} = {value!r}: give a number above 0")
        if self.max_wait_ms < 0 or self.poll_s < 0 or self.max_queue_ms < 0:
            raise ServeError(f"max_wait_ms ({self.max_wait_ms}), max_queue_ms ({self.max_queue_ms}) and poll_s "
                             f"({self.poll_s}) cannot be negative")
        if self.threads is not None and self.threads < 1:
            raise ServeError(f"threads = {self.threads}: give 1 or more intra-op threads per session")
        if not 0 < self.port < 65536:
            raise ServeError(f"port {self.port} is not a TCP port (1-65535)")
        return self

    def _worker_cores(self) -> int:
        return max(1, usable_cores() // self.workers)  # affinity and cgroup quota (a container's --cpus)

    def session_count(self) -> int:
        """Sessions per version: as set, else 2 where a worker has 2 or more cores. Two single-threaded sessions
        beat one with two threads on the 2-core machine (spam int8 76.4 against 68.8 requests/s, server efficiency
        0.93 against 0.89): their threads never wait for each other while the event loop takes a core."""
        if self.sessions is not None:
            return self.sessions
        return 2 if self._worker_cores() >= 2 else 1

    def session_threads(self) -> int:
        """Intra-op threads per session: as set, else the cores of this worker shared by its sessions."""
        if self.threads is not None:
            return self.threads
        return max(1, self._worker_cores() // self.session_count())
