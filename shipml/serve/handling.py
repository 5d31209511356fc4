"""One request, whatever its protocol: pick the version, decode, preprocess (off the loop), queue, wait.

Errors become one status each: unknown model or version 404, a body that does not fit the signature 400
(OIP) or 422 (v1), a full queue 503 with Retry-After, a deadline passed before the request could run 504
(it is then never run), a model failure on this request alone 500. The caller formats the body.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipml.errors import DataError, ServeError
from shipml.runtime import Package
from shipml.runtime.preprocess import Prepared
from shipml.runtime.reference import prediction_signals, signals
from shipml.serve.batcher import DeadlineExceeded, Overloaded
from shipml.serve.deps import State
from shipml.serve.models import Loaded
from shipml.serve.monitor import Feedback
from shipml.serve.protocol import MAX_ROWS, BadRequest

__all__ = ["Answer", "Failure", "run_request"]


@dataclass
class Answer:
    loaded: Loaded
    values: np.ndarray  # (n, C) probabilities, or (n,) predictions
    request_id: str


class Failure(Exception):
    """An HTTP error answer: status, message, extra headers; `version` when one had been picked."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 version: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.version = status, message, headers or {}, version


def _status(err: BaseException, bad_request: int) -> Failure:
    if isinstance(err, LookupError):
        return Failure(404, str(err.args[0]) if err.args else str(err))
    if isinstance(err, (BadRequest, DataError)):
        return Failure(bad_request, str(err))
    if isinstance(err, Overloaded):
        return Failure(503, str(err), {"Retry-After": "1"})
    if isinstance(err, DeadlineExceeded):
        return Failure(504, str(err))
    if isinstance(err, ServeError):
        return Failure(503 if "no version loaded" in str(err) or "shutting down" in str(err) else 500, str(err),
                       {"Retry-After": "1"})
    return Failure(500, f"the model failed on this request ({type(err).__name__})")


def _prepare(pkg: Package, raw: Any, monitored: bool) -> tuple[Prepared, dict[str, np.ndarray] | None]:
    """Preprocessing and, when monitored, the input signals of the rows (in a worker thread)."""
    prepared = pkg.prepare(raw)
    if not monitored or prepared.skipped or not len(prepared):
        return prepared, None
    return prepared, signals(pkg.predictor, prepared, pkg.reference)


async def run_request(st: State, name: str, version: int | None, key: str | None,
                      decode: Callable[[Package], Any], *, bad_request: int) -> Answer:
    """Run one request through its version's batcher; raises Failure. A monitored version records the request's
    signals, its answer (for feedback by request id) and its latency and status."""
    settings = st.settings
    started = time.monotonic()
    deadline = started + settings.deadline_ms / 1000
    try:
        loaded = st.models.get(name, version, key)
    except (LookupError, ServeError) as err:
        raise _status(err, bad_request) from None
    loaded.inflight += 1
    monitor = loaded.monitor
    status = 500
    try:
        try:
            loaded.batcher.admit()  # an overloaded server refuses before parsing and tokenizing anything
            raw = decode(loaded.package)
            loop = asyncio.get_running_loop()
            prepared, inputs = await loop.run_in_executor(st.prep_executor, _prepare, loaded.package, raw,
                                                          monitor is not None)
            if prepared.skipped:
                item, why = prepared.skipped[0]
                raise BadRequest(f"{len(prepared.skipped)} input(s) could not be read (first: {item}: {why})")
            if not 0 < len(prepared) <= MAX_ROWS:
                raise BadRequest(f"{len(prepared)} rows; send 1 to {MAX_ROWS} per request")
            job = loaded.batcher.submit(prepared, deadline)
            try:
                out = await asyncio.wait_for(asyncio.shield(job.future), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                if not job.started:  # still queued: it will never run
                    job.future.cancel()
                    raise DeadlineExceeded(f"no batch could start within the deadline of {settings.deadline_ms:g} "
                                           "ms; the request was not run. Retry later or with fewer rows") from None
                out = await job.future  # running already: its answer comes
            values = loaded.package.transform(out)
        except Exception as err:
            failure = _status(err, bad_request)
            status = failure.status
            raise failure from None
        answer = Answer(loaded, values, uuid.uuid4().hex)
        status = 200
        if monitor is not None and inputs is not None:
            predicted = prediction_signals(loaded.package.predictor, values)
            monitor.record(inputs | predicted, len(values))
            if st.feedback is not None and "predicted" in predicted:
                st.feedback.remember(answer.request_id, Feedback(name, loaded.version,
                                                                 [str(x) for x in predicted["predicted"]], monitor))
        return answer
    except Failure as failure:
        failure.version = loaded.version
        raise
    finally:
        loaded.inflight -= 1
        if monitor is not None:
            monitor.answered(time.monotonic() - started, status)
