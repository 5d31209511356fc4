"""Watching a served version: drift of its live inputs and predictions against the package's reference, live
accuracy from feedback, traffic, errors and latency, over a sliding window (docs/monitoring.md).

Each request's signals (`runtime.reference.signals`, the function export used to build the reference) are
computed beside its preprocessing, off the event loop, and kept with the request in the version's window: the
last `window_rows` rows and at most `window_s` seconds. Drift is `runtime.drift.compare` of that window with
reference.json: nothing is flagged below `min_rows` rows, a package without a reference says so. Feedback
gives a request's true labels later, by its request id: the ids of the last `feedback_capacity` answers are
kept (older ones are forgotten, an unknown id is a 404), and live accuracy is a Wilson interval beside the
package's test figure, flagged when the whole interval lies below it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipml.core.proportion import wilson_interval
from shipml.runtime import Package
from shipml.runtime.drift import compare

__all__ = ["AlreadyJudged", "Feedback", "FeedbackBook", "VersionMonitor"]


class AlreadyJudged(Exception):
    """Feedback for this request id was given before (409)."""


@dataclass(eq=False)
class VersionMonitor:
    """The window of one live version."""

    package: Package
    window_rows: int = 1000
    window_s: float = 3600.0
    min_rows: int = 100
    _signals: deque[tuple[float, int, dict[str, np.ndarray]]] = field(default_factory=deque)
    _rows: int = 0
    _answers: deque[tuple[float, float, int]] = field(default_factory=lambda: deque(maxlen=20_000))
    _feedback: deque[tuple[float, int, int]] = field(default_factory=deque)  # (time, correct, rows)
    _judged: int = 0  # rows in _feedback

    def _trim(self, now: float) -> None:
        while self._signals and (self._rows - self._signals[0][1] >= self.window_rows
                                 or now - self._signals[0][0] > self.window_s):
            self._rows -= self._signals.popleft()[1]
        while self._feedback and (now - self._feedback[0][0] > self.window_s or self._judged > self.window_rows):
            self._judged -= self._feedback.popleft()[2]

    def record(self, signals: dict[str, np.ndarray], rows: int) -> None:
        """A request's per-row signals (inputs and predictions)."""
        now = time.time()
        self._signals.append((now, rows, signals))
        self._rows += rows
        self._trim(now)

    def answered(self, seconds: float, status: int) -> None:
        self._answers.append((time.time(), seconds, status))

    def judged(self, correct: int, rows: int) -> None:
        now = time.time()
        self._feedback.append((now, correct, rows))
        self._judged += rows
        self._trim(now)

    # ------------------------------------------------------------------------------------------ reading
    def window(self) -> dict[str, np.ndarray]:
        self._trim(time.time())
        names = {k for _, _, s in self._signals for k in s}
        return {k: np.concatenate([s[k] for _, _, s in self._signals if k in s]) for k in sorted(names)}

    def drift(self) -> dict[str, Any]:
        return compare(self.package.reference, self.window(), min_rows=self.min_rows)

    def traffic(self) -> dict[str, Any]:
        now = time.time()
        recent = [a for a in self._answers if now - a[0] <= self.window_s]
        lat = np.array([s for _, s, code in recent if code == 200]) * 1000
        span = max(1e-9, now - recent[0][0]) if recent else 0.0
        pct = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)} if len(lat) else None
        return {"requests": len(recent), "ok": int(sum(code == 200 for *_, code in recent)),
                "client_errors": int(sum(400 <= code < 500 for *_, code in recent)),
                "server_errors": int(sum(code >= 500 for *_, code in recent)),
                "per_s": len(recent) / span if span else 0.0, "latency_ms": pct}

    def accuracy(self) -> dict[str, Any]:
        """Live accuracy over the window's feedback with a 95% Wilson interval, beside the package's test figure;
        `flag` when the whole interval lies below the test figure."""
        self._trim(time.time())
        correct = sum(c for _, c, _ in self._feedback)
        n = sum(r for _, _, r in self._feedback)
        test = ((self.package.metrics.get("test") or {}).get("accuracy") or {}).get("value")
        interval = wilson_interval(correct, n, 0.95)
        flag = bool(interval is not None and test is not None and n >= self.min_rows // 4 and interval[1] < test)
        return {"rows": n, "correct": correct, "value": correct / n if n else None,
                "ci_low": interval[0] if interval else None, "ci_high": interval[1] if interval else None,
                "test": test, "flag": flag}


@dataclass
class Feedback:
    """What an answer was, for judging it when its true labels arrive."""

    model: str
    version: int
    labels: list[str]  # the predicted labels, one per row
    monitor: VersionMonitor
    judged: bool = False


class FeedbackBook:
    """The last `capacity` answers by request id (older ones are forgotten: memory stays bounded)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Feedback] = OrderedDict()

    def remember(self, request_id: str, entry: Feedback) -> None:
        self._entries[request_id] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def give(self, model: str, request_id: str, labels: list[str], classes: list[str]) -> dict[str, Any]:
        """Judge an answer; LookupError (unknown id), ValueError (bad labels) or AlreadyJudged."""
        entry = self._entries.get(request_id)
        if entry is None or entry.model != model:
            raise LookupError(f"no answer with request_id {request_id!r} for {model!r}: unknown, or older than the "
                              f"last {self.capacity} answers this server remembers")
        if len(labels) != len(entry.labels):
            raise ValueError(f"request {request_id} had {len(entry.labels)} row(s); give that many labels")
        unknown = sorted({label for label in labels if label not in classes})
        if unknown:
            raise ValueError(f"labels {unknown} are not classes of {model} ({classes})")
        if entry.judged:
            raise AlreadyJudged(f"feedback for request {request_id} was given already")
        entry.judged = True
        correct = sum(a == b for a, b in zip(entry.labels, labels, strict=True))
        entry.monitor.judged(correct, len(labels))
        return {"request_id": request_id, "version": entry.version, "rows": len(labels), "correct": correct}


def version_report(loaded: Any, alias: str, weight: int | None) -> dict[str, Any]:
    """One live version's part of /v1/models/{name}/monitor."""
    pkg = loaded.package
    out: dict[str, Any] = {"version": loaded.version, "alias": alias, "weight": weight, "digest": loaded.digest,
                           "variant": pkg.variant, "queue": len(loaded.batcher.queue)}
    monitor = loaded.monitor
    if monitor is None:
        return out | {"monitoring": "off"}
    return out | {"traffic": monitor.traffic(), "drift": monitor.drift(), "accuracy": monitor.accuracy()}


def model_report(name: str, slot: Any, settings: Any) -> dict[str, Any]:
    """/v1/models/{name}/monitor: every live version, and canary against production on the same window."""
    versions = []
    if slot.production is not None:
        versions.append(version_report(slot.production, "production", None))
    if slot.canary is not None:
        versions.append(version_report(slot.canary, "canary", slot.weight))
    out: dict[str, Any] = {"model": name, "time": time.time(), "versions": versions,
                           "window": {"rows": settings.window_rows, "seconds": settings.window_s,
                                      "min_rows": settings.min_rows}}
    if len(versions) == 2 and all("accuracy" in v for v in versions):
        a, b = (v["accuracy"] for v in versions)
        out["canary_vs_production"] = {
            "accuracy_difference": (b["value"] - a["value"]) if a["value"] is not None and b["value"] is not None
            else None, "production_rows": a["rows"], "canary_rows": b["rows"],
            "drift_production": versions[0]["drift"]["moved"], "drift_canary": versions[1]["drift"]["moved"]}
    return out
