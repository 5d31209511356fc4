"""Dynamic batching: requests for one version queue together and run as one network call.

A request's rows are preprocessed before they queue (a bad input fails there, alone, with a 422). A batch
forms when `max_batch_size` rows wait or `max_wait_ms` has passed since its first request; the network runs
in a thread (onnxruntime releases the GIL), never on the event loop. Text rows are sorted by length and cut
into groups whose longest row is at most twice the shortest, run shortest first, and a request is answered
as soon as its own rows are done: a short email does not pay for a long one. If a network call fails, its
halves are run again (down to single requests), so one poisoned input fails only its own request. A request
whose deadline passes before its batch starts is answered 504 and never run; a full queue, or an estimated wait
(queued rows x the recent seconds per row) beyond `max_queue_ms`, answers 503 at once: under overload the
requests let in keep their latency, the rest are told to retry.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from shipml.errors import DataError, ServeError
from shipml.runtime import Package
from shipml.runtime.preprocess import Prepared

__all__ = ["Batcher", "DeadlineExceeded", "Job", "Overloaded"]

GROUP_RATIO = 2.0  # text groups: longest row at most this times the shortest (padding stays under half)
GROUP_FLOOR = 16  # ... rows shorter than this many tokens count as this long (no groups of tiny texts)


class Overloaded(ServeError):
    """The version's queue is full: 503 with Retry-After."""


class DeadlineExceeded(ServeError):
    """The request's deadline passed before its batch started: 504, and it was never run."""


@dataclass(eq=False)
class Job:
    """One request's rows, waiting for (or in) a batch."""

    prepared: Prepared
    future: asyncio.Future[np.ndarray]
    deadline: float  # time.monotonic() by which its batch must start
    enqueued: float
    out: np.ndarray | None = None  # (n, k) raw outputs, filled group by group
    remaining: int = 0  # rows not yet run
    failed: bool = False
    started: bool = False  # taken into a batch: from here on it runs, whatever its deadline

    def __len__(self) -> int:
        return len(self.prepared)


@dataclass
class BatchStats:
    """What the server reports per network call (metrics)."""

    rows: int
    requests: int
    seconds: float


@dataclass
class Batcher:
    """The queue and batch workers of one loaded version: one worker per onnxruntime session."""

    packages: list[Package]  # one per session; the same package opened `sessions` times
    executor: Executor
    max_batch_size: int
    max_wait_s: float
    max_queue: int
    max_queue_s: float = 0.0  # admission: refuse when the estimated wait exceeds this (0: no estimate)
    on_batch: Callable[[BatchStats], None] = lambda stats: None
    queue: deque[Job] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)
    _closing: bool = False
    busy: int = 0  # workers running a batch now
    taken: int = 0  # rows the workers have taken off the queue that are not done yet (running or next in the batch)
    _recent: tuple[float, float] | None = None  # moving averages of (seconds, rows) per network call

    @property
    def row_s(self) -> float | None:
        """Seconds per row of recent network calls, for admission: the averages' ratio, so each call counts by its
        rows (length grouping makes small calls, whose per-row time is several times a full call's)."""
        return None if self._recent is None else self._recent[0] / self._recent[1]

    def timed(self, seconds: float, rows: int) -> None:
        """Record a network call's duration for the admission estimate."""
        old = self._recent or (seconds, max(1, rows))
        self._recent = (0.9 * old[0] + 0.1 * seconds, 0.9 * old[1] + 0.1 * max(1, rows))

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(pkg)) for pkg in self.packages]

    @property
    def width(self) -> int:
        return self.packages[0].predictor.width

    def admit(self) -> None:
        """Refuse a request the queue cannot take (full, or the estimated wait over the limit). Called before a
        request is decoded and tokenized, so refusing costs almost nothing, and again when it is queued."""
        if self._closing:
            raise ServeError("this version is shutting down; retry the request")
        if len(self.queue) >= self.max_queue:
            raise Overloaded(f"the queue of this model version is full ({self.max_queue} requests); retry shortly")
        wait = self.expected_wait()
        if self.max_queue_s and wait > self.max_queue_s:
            raise Overloaded(f"the server is at capacity: this request would wait about {wait * 1000:.0f} ms in the "
                             f"queue (limit {self.max_queue_s * 1000:.0f} ms); retry shortly")

    def submit(self, prepared: Prepared, deadline: float) -> Job:
        """Queue a request's rows; its future gets the (n, k) raw outputs or the request's own error."""
        self.admit()
        loop = asyncio.get_running_loop()
        job = Job(prepared, loop.create_future(), deadline, time.monotonic(), remaining=len(prepared))
        job.out = np.zeros((len(prepared), self.width), dtype=np.float32)
        self.queue.append(job)
        self._wake.set()
        return job

    def expected_wait(self) -> float:
        """Seconds a request queued now would wait before its batch starts: the rows ahead of it (queued, and,
        when no session is free, taken by the running batches but not done) at the recent seconds per row, over
        the sessions. 0 when nothing is ahead, or before a first call has been timed."""
        row_s = self.row_s
        if row_s is None:
            return 0.0
        ahead = sum(len(j) for j in self.queue)
        if self.busy >= len(self.packages):  # every session is running a batch: their rows are ahead too
            ahead += self.taken
        return ahead * row_s / len(self.packages)

    async def drain(self) -> None:
        """Finish everything queued, then stop the workers."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(*self._workers, return_exceptions=True)

    # ------------------------------------------------------------------------------------------ forming
    async def _take(self) -> list[Job]:
        """The next batch: wait for a first request, then up to max_wait_s (from its arrival) for more rows."""
        while not self.queue:
            if self._closing:
                return []
            self._wake.clear()
            await self._wake.wait()
        first = self.queue[0]
        while sum(len(j) for j in self.queue) < self.max_batch_size and not self._closing:
            left = first.enqueued + self.max_wait_s - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                break
        jobs: list[Job] = []
        rows = 0
        now = time.monotonic()
        while self.queue and (not jobs or rows + len(self.queue[0]) <= self.max_batch_size):
            job = self.queue.popleft()
            if job.future.done():  # the client gave up (its deadline passed while it waited)
                continue
            if now > job.deadline:
                job.future.set_exception(DeadlineExceeded("the request's deadline passed before it could run; it "
                                                          "was not run. Retry, or send a longer deadline"))
                continue
            job.started = True
            jobs.append(job)
            rows += len(job)
        return jobs

    def _groups(self, jobs: list[Job]) -> list[list[tuple[Job, np.ndarray]]]:
        """Rows of the batch in network calls: text sorted by length and cut where padding would exceed the
        ratio (shortest first), everything else in order; each call at most max_batch_size rows."""
        pieces: list[tuple[Job, int, int]] = []  # (job, row, tokens)
        for job in jobs:
            lengths = job.prepared.lengths
            for r in range(len(job)):
                pieces.append((job, r, int(lengths[r]) if lengths is not None else 0))
        if jobs and jobs[0].prepared.lengths is not None:
            pieces.sort(key=lambda p: p[2])
        calls: list[list[tuple[Job, int, int]]] = []
        for piece in pieces:
            call = calls[-1] if calls else None
            if (call is None or len(call) >= self.max_batch_size
                    or max(piece[2], GROUP_FLOOR) > GROUP_RATIO * max(call[0][2], GROUP_FLOOR)):
                calls.append([piece])
            else:
                call.append(piece)
        out = []
        for call in calls:
            by_job: dict[int, tuple[Job, list[int]]] = {}
            for job, r, _ in call:
                by_job.setdefault(id(job), (job, []))[1].append(r)
            out.append([(job, np.asarray(rows)) for job, rows in by_job.values()])
        return out

    # ------------------------------------------------------------------------------------------ running
    @staticmethod
    def _run(pkg: Package, parts: list[tuple[Job, np.ndarray]]) -> np.ndarray:
        """One network call over the given rows of several requests (in a worker thread)."""
        keys = parts[0][0].prepared.arrays.keys()
        merged = Prepared({k: np.concatenate([job.prepared.arrays[k][rows] for job, rows in parts]) for k in keys})
        return pkg.predictor.outputs(merged, pkg.run, batch_size=max(1, len(merged)))

    async def _call(self, pkg: Package, parts: list[tuple[Job, np.ndarray]]) -> None:
        """Run one group; if it fails, run each half again (bisecting down to the culprit request), so one
        poisoned input fails only its own request and the rest still share calls."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            out = await loop.run_in_executor(self.executor, self._run, pkg, parts)
        except Exception as err:
            if len(parts) == 1:
                self._fail(parts[0][0], err)
                return
            half = len(parts) // 2
            await self._call(pkg, parts[:half])
            await self._call(pkg, parts[half:])
            return
        seconds = time.perf_counter() - start
        self.timed(seconds, len(out))
        self.on_batch(BatchStats(len(out), len(parts), seconds))
        at = 0
        for job, rows in parts:
            if not job.failed and job.out is not None:
                job.out[rows] = out[at : at + len(rows)]
                job.remaining -= len(rows)
                if job.remaining == 0 and not job.future.done():
                    job.future.set_result(job.out)
            at += len(rows)

    @staticmethod
    def _fail(job: Job, err: BaseException) -> None:
        job.failed = True
        if not job.future.done():
            job.future.set_exception(err if isinstance(err, (DataError, ServeError)) else ServeError(
                f"the model failed on this request: {err}"))

    async def _work(self, pkg: Package) -> None:
        while True:
            jobs = await self._take()
            if not jobs:
                if self._closing and not self.queue:
                    return
                continue
            self.busy += 1
            left = sum(len(j) for j in jobs)
            self.taken += left
            try:
                for parts in self._groups(jobs):
                    live = [(j, r) for j, r in parts if not j.failed]
                    if live:
                        await self._call(pkg, live)
                    done = sum(len(r) for _, r in parts)
                    self.taken -= done
                    left -= done
            except Exception as err:  # a bug here must not kill the worker: fail this batch, keep serving
                for job in jobs:
                    self._fail(job, err)
            finally:
                self.taken -= left
                self.busy -= 1

