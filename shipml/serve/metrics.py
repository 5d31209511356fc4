"""Prometheus metrics (prometheus-client, a registry per app so tests and several apps in one process do not
collide): requests, errors, latency, queue depth, batch sizes, per model and version. Queue depth and in-flight
counts are read from the batchers when /metrics is scraped.

With `--workers N` the server sets PROMETHEUS_MULTIPROC_DIR before the workers start: counters and histograms
then live in files shared by the workers and /metrics answers the sum over all of them, whichever worker the
scrape lands on; the live gauges are the answering worker's, labelled with its pid."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["ServerMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Live(Collector):
    """Gauges read at scrape time: queue depth, busy workers and requests in flight per live version."""

    def __init__(self, versions: Callable[[], list[Any]]) -> None:
        self.versions = versions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names = ["model", "version", "pid"]
        queue = GaugeMetricFamily("shipml_queue_depth", "requests waiting for a batch", labels=names)
        busy = GaugeMetricFamily("shipml_busy_sessions", "sessions running a batch now", labels=names)
        inflight = GaugeMetricFamily("shipml_inflight_requests", "requests being handled", labels=names)
        psi = GaugeMetricFamily("shipml_drift_psi", "PSI of a signal over the monitoring window",
                                labels=[*names, "signal"])
        flag = GaugeMetricFamily("shipml_drift_flag", "1 when some signal moved (docs/monitoring.md)", labels=names)
        accuracy = GaugeMetricFamily("shipml_live_accuracy", "accuracy from feedback over the window", labels=names)
        low = GaugeMetricFamily("shipml_live_accuracy_flag", "1 when live accuracy's interval is below the test "
                                "figure", labels=names)
        for v in self.versions():
            labels = [v.name, str(v.version), str(os.getpid())]
            queue.add_metric(labels, len(v.batcher.queue))
            busy.add_metric(labels, v.batcher.busy)
            inflight.add_metric(labels, v.inflight)
            if v.monitor is not None:
                drift, acc = v.monitor.drift(), v.monitor.accuracy()
                for signal, got in drift["signals"].items():
                    psi.add_metric([*labels, signal], got["psi"])
                flag.add_metric(labels, float(drift["flag"]))
                if acc["value"] is not None:
                    accuracy.add_metric(labels, acc["value"])
                low.add_metric(labels, float(acc["flag"]))
        yield from (queue, busy, inflight, psi, flag, accuracy, low)


class ServerMetrics:
    def __init__(self, versions: Callable[[], list[Any]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("shipml_requests", "requests answered", ["model", "version", "route", "code"],
                                registry=r)
        self.latency = Histogram("shipml_request_seconds", "request latency, received to answered",
                                 ["model", "version", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("shipml_batch_rows", "rows per network call", ["model", "version"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("shipml_batch_requests", "requests per network call", ["model", "version"],
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("shipml_batch_seconds", "network call time", ["model", "version"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.load_failures = Counter("shipml_load_failures", "versions that failed to load or warm up", ["model"],
                                     registry=r)
        self.live = _Live(versions)
        r.register(self.live)

    def batch(self, model: str, version: int, stats: Any) -> None:
        labels = (model, str(version))
        self.batch_rows.labels(*labels).observe(stats.rows)
        self.batch_requests.labels(*labels).observe(stats.requests)
        self.batch_seconds.labels(*labels).observe(stats.seconds)

    def answered(self, model: str, version: int | None, route: str, code: int, seconds: float) -> None:
        v = "" if version is None else str(version)
        self.requests.labels(model, v, route, str(code)).inc()
        self.latency.labels(model, v, route).observe(seconds)

    def text(self) -> bytes:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        merged = CollectorRegistry()  # every worker's counters and histograms, from the shared files
        multiprocess.MultiProcessCollector(merged)
        merged.register(self.live)
        return generate_latest(merged)
