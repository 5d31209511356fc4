"""`shipml serve` under load on loopback, against raw onnxruntime and a naive server (the serving issue's numbers).

    python bench/serve.py --run DIR [--work /tmp/bench-serve] [--only efficiency,naive,swap,overload,threads]

DIR is a finished spam run (examples/spam.yaml); its int8 and distill+int8 variants are built there with
`shipml compress` when missing. Texts are the run's test split (SpamAssassin parsed as the run parsed it),
shuffled with a fixed seed; every request is `POST /v1/models/spam/predict {"inputs": [one text]}`.

efficiency  per package (int8, distill+int8): raw onnxruntime throughput of the package without HTTP
            (`Package.predict_proba` over the same texts at batch = max_batch_size, tokenization included,
            in this process with the server's thread count), then `shipml serve` with 64 concurrent clients
            for 60 s: requests/s, p50/p99, errors, efficiency = served / raw (target >= 0.85)
naive       bench/naive_server.py (FastAPI + eager fp32 PyTorch, HF tokenizer, one forward per request)
            under the same load: shipml int8 >= 2.5x and distill+int8 >= 4x its requests/s
swap        a registry with int8 as v1 (production) and distill+int8 as v2; `shipml serve spam --poll-s 0.5`
            under the same load; the production alias moves to v2 a third into the run (the catalog write a
            release ends with): failed requests (target 0) and answers per version
overload    unloaded p50/p99 (one client, sequential requests), then open-loop Poisson arrivals at 3x the
            capacity measured in `efficiency` (int8): admitted p50/p99 (target p99 < 2x unloaded p99) and
            the 503s' latency; one row per --overload-cases entry (server settings: the defaults, then tighter
            admission)
threads     int8 served throughput for sessions x threads (1 x 2, 2 x 1) and max batch / max wait variants

The load generator is asyncio with persistent HTTP/1.1 keep-alive connections (raw streams, requests
pre-encoded, only the status line and headers parsed); its own CPU is reported. Before every row the script
waits until other processes use under --busy cores (polling every 30 s, at most --max-wait s), and prints
/proc/loadavg and the cores others used during the row.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONSOLE = Console(width=240)
HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")
VARIANTS = ("int8", "distill+int8")


# ------------------------------------------------------------------------------------------------ machine
def cpu_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process `pid` so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    parts = stat.rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def busiest() -> str:
    out = subprocess.run(["ps", "-eo", "pcpu,pid,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return "; ".join(" ".join(line.split())[:90] for line in out.splitlines()[1:4])


def wait_quiet(busy: float, max_wait: float) -> tuple[float, bool]:
    """Wait until other processes use under `busy` cores (3 s samples, polled every 30 s), at most max_wait s."""
    t0 = time.perf_counter()
    while True:
        b0 = cpu_busy()
        time.sleep(3.0)
        others = (cpu_busy() - b0) / 3.0
        if others < busy or time.perf_counter() - t0 > max_wait:
            return others, others < busy
        print(f"  waiting for a quiet machine: others use {others:.2f} cores; load {loadavg()}; busiest: {busiest()}",
              flush=True)
        time.sleep(27.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ servers
@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float = 0.0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start(cmd: list[str], port: int, log: Path, timeout: float = 600.0) -> Server:
    """Start a server process and wait until /v2/health/ready answers 200."""
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return Server(proc, port, log, time.perf_counter() - t0)
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{' '.join(cmd)} was not ready after {timeout:.0f} s; see {log}")


# `shipml serve` with onnxruntime's intra-op spin-waiting off (an experiment: shipml does not set it)
NO_SPIN = """
import onnxruntime as ort
_Options = ort.SessionOptions
def _options():
    opts = _Options()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
ort.SessionOptions = _options
from shipml.cli import main
main()
"""


def shipml_server(models: list[str], port: int, log: Path, *extra: str, spin: bool = True) -> Server:
    launcher = ["-m", "shipml.cli"] if spin else ["-c", NO_SPIN]
    cmd = [sys.executable, *launcher, "serve", *models, "--port", str(port), *extra]
    return start(cmd, port, log)


def naive_server(run: Path, port: int, log: Path, mode: str) -> Server:
    cmd = [sys.executable, str(ROOT / "bench" / "naive_server.py"), str(run), "--port", str(port), "--mode", mode]
    return start(cmd, port, log)


# ------------------------------------------------------------------------------------------------ load
def payloads(texts: list[str], port: int, model: str = "spam") -> list[bytes]:
    """One pre-encoded HTTP/1.1 keep-alive request per text."""
    out = []
    for text in texts:
        body = json.dumps({"inputs": [text]}).encode()
        head = (f"POST /v1/models/{model}/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, int, bool]:
    """Send one request, read its answer: (status, X-Model-Version or -1, connection closed by the server)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, version, close = 0, -1, False
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"x-model-version":
            version = int(value)
        elif key == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    return status, version, close


@dataclass
class Records:
    """One row per request: start (s since the run began), latency (s), status (-1: connection error), version."""

    start: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    version: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, start: float, latency: float, status: int, version: int) -> None:
        self.start.append(start)
        self.latency.append(latency)
        self.status.append(status)
        self.version.append(version)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"start": np.asarray(self.start), "latency": np.asarray(self.latency),
                "status": np.asarray(self.status, dtype=int), "version": np.asarray(self.version, dtype=int)}


async def closed_loop(port: int, requests: list[bytes], clients: int, seconds: float,
                      at: dict[float, Any] | None = None) -> tuple[Records, float]:
    """`clients` connections, each sending its next request as soon as the last is answered, for `seconds`.
    `at` maps seconds-into-the-run to callables run in a thread then (e.g. moving an alias)."""
    rec = Records()
    t_begin = time.perf_counter()
    t_end = t_begin + seconds
    n = len(requests)

    async def client(i: int) -> None:
        k = (i * 7919) % n
        conn = None
        while time.perf_counter() < t_end:
            if conn is None:
                conn = await asyncio.open_connection(HOST, port)
            t0 = time.perf_counter()
            try:
                status, version, close = await exchange(*conn, requests[k % n])
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
                rec.errors.append(f"{type(err).__name__}: {err}")
                status, version, close = -1, -1, True
            rec.add(t0 - t_begin, time.perf_counter() - t0, status, version)
            k += 1
            if close:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    async def scheduled() -> None:
        loop = asyncio.get_running_loop()
        for when, fn in sorted((at or {}).items()):
            await asyncio.sleep(max(0.0, t_begin + when - time.perf_counter()))
            await loop.run_in_executor(None, fn)

    cpu0 = own_cpu()
    await asyncio.gather(*(client(i) for i in range(clients)), scheduled())
    return rec, own_cpu() - cpu0


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, pool: int,
                    seed: int = 0) -> tuple[Records, float, int]:
    """Poisson arrivals at `rate` per second for `seconds`, whatever the server does (latency counted from the
    scheduled arrival); each arrival takes an idle keep-alive connection, or opens one."""
    rec = Records()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(pool):
        idle.append(await asyncio.open_connection(HOST, port))
    opened = 0
    rng = random.Random(seed)
    tasks: set[asyncio.Task[None]] = set()
    t_begin = time.perf_counter()

    async def one(request: bytes, due: float) -> None:
        nonlocal opened
        pooled = bool(idle)
        if pooled:
            conn = idle.pop()
        else:
            conn = await asyncio.open_connection(HOST, port)
            opened += 1
        try:
            try:
                status, version, close = await exchange(*conn, request)
            except (OSError, asyncio.IncompleteReadError):
                if not pooled:
                    raise
                # a pooled connection the server closed while idle (uvicorn's keep-alive timeout, 5 s): as HTTP
                # clients do, send the request again once on a new connection
                conn[1].close()
                conn = await asyncio.open_connection(HOST, port)
                opened += 1
                status, version, close = await exchange(*conn, request)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
            rec.errors.append(f"{type(err).__name__}: {err}")
            status, version, close = -1, -1, True
        rec.add(due - t_begin, time.perf_counter() - due, status, version)
        if close:
            conn[1].close()
        else:
            idle.append(conn)

    cpu0 = own_cpu()
    due, k = t_begin, 0
    while True:
        due += rng.expovariate(rate)
        if due > t_begin + seconds:
            break
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        task = asyncio.create_task(one(requests[k % len(requests)], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    await asyncio.gather(*tasks)
    cpu = own_cpu() - cpu0
    for _, w in idle:
        w.close()
    return rec, cpu, opened


def summary(rec: Records, t0: float, t1: float) -> dict[str, Any]:
    """Requests that started in [t0, t1): answered/s, p50/p99 of the 200s, failures (anything but 200)."""
    a = rec.arrays()
    inside = (a["start"] >= t0) & (a["start"] < t1)
    ok = inside & (a["status"] == 200)
    lat = a["latency"][ok] * 1000
    return {"requests": int(inside.sum()), "ok": int(ok.sum()), "failed": int((a["status"] != 200).sum()),
            "rps": float(ok.sum()) / (t1 - t0),
            "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "statuses": {int(s): int(c) for s, c in zip(*np.unique(a["status"], return_counts=True), strict=True)}}


# ------------------------------------------------------------------------------------------------ rows
@dataclass
class Bench:
    run: Path
    work: Path
    texts: list[str]
    clients: int
    seconds: float
    warm: float
    busy: float
    max_wait: float
    serve_args: list[str] = field(default_factory=list)  # given to `shipml serve` in every row but overload
    raw_repeats: int = 2
    notes: list[str] = field(default_factory=list)

    def quiet(self, what: str) -> str:
        others, ok = wait_quiet(self.busy, self.max_wait)
        state = f"load {loadavg()}, others {others:.2f} cores" + ("" if ok else " (NOT QUIET: waited too long)")
        print(f"{what}: {state}", flush=True)
        return state

    def load_row(self, server: Server, clients: int | None = None, seconds: float | None = None,
                 at: dict[float, Any] | None = None) -> dict[str, Any]:
        """The closed-loop load against a started server: summary over the measured window + CPU shares."""
        clients = clients or self.clients
        seconds = seconds or self.seconds
        reqs = payloads(self.texts, server.port)
        busy0, srv0 = cpu_busy(), proc_cpu(server.proc.pid)
        t0 = time.perf_counter()
        rec, gen_cpu = asyncio.run(closed_loop(server.port, reqs, clients, self.warm + seconds, at))
        wall = time.perf_counter() - t0
        srv = proc_cpu(server.proc.pid) - srv0
        busy = cpu_busy() - busy0
        out = summary(rec, self.warm, self.warm + seconds)
        out.update(records=rec, wall=wall, server_cores=srv / wall, gen_cores=gen_cpu / wall,
                   others_cores=max(0.0, busy - srv - gen_cpu) / wall, load_after=loadavg())
        if rec.errors:
            out["error_sample"] = rec.errors[:3]
        return out


def raw_throughput(package: Path, texts: list[str], batch: int, threads: int, repeats: int = 2) -> tuple[float, float]:
    """Rows/s of Package.predict_proba over `texts` at `batch` (tokenization included), no HTTP; and rows per
    CPU-second this process used meanwhile (comparable with the server's when the machine is shared)."""
    from shipml.runtime import Package

    pkg = Package.open(package, threads=threads)
    pkg.predict_proba(texts[: 2 * batch], batch_size=batch)  # session creation + warm-up
    t0, cpu0 = time.perf_counter(), own_cpu()
    for _ in range(repeats):
        pkg.predict_proba(texts, batch_size=batch)
    rate = repeats * len(texts) / (time.perf_counter() - t0)
    per_cpu = repeats * len(texts) / (own_cpu() - cpu0)
    del pkg
    gc.collect()
    return rate, per_cpu


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def efficiency(b: Bench, packages: dict[str, Path], results: dict[str, Any], names: list[str]) -> None:
    for name in names:
        path = packages[name]
        state = b.quiet(f"raw onnxruntime {name}")
        raw, raw_cpu = raw_throughput(path, b.texts, 32, threads=os.cpu_count() or 1, repeats=b.raw_repeats)
        print(f"  raw {name}: {raw:.1f} rows/s, {raw_cpu:.1f} rows per CPU-s", flush=True)
        results[f"raw:{name}"] = {"rps": raw, "per_cpu": raw_cpu, "state": state}
        state = b.quiet(f"served {name}")
        server = shipml_server([f"spam={path}"], free_port(), b.work / f"serve-{name}.log", "--poll-s", "0",
                               *b.serve_args)
        try:
            row = b.load_row(server)
        finally:
            rc = server.stop()
        row.update(state=state, raw=raw, efficiency=row["rps"] / raw, rc=rc, startup=server.started, raw_cpu=raw_cpu,
                   cpu_efficiency=(row["rps"] / row["server_cores"]) / raw_cpu)
        results[f"served:{name}"] = row
        print(f"  served {name}: {row['rps']:.1f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, "
              f"failed {row['failed']}, efficiency {row['efficiency']:.3f}, server {row['server_cores']:.2f} cores, "
              f"generator {row['gen_cores']:.2f} cores, others {row['others_cores']:.2f}", flush=True)


def naive(b: Bench, results: dict[str, Any], modes: list[str]) -> None:
    for mode in modes:
        state = b.quiet(f"naive server ({mode})")
        server = naive_server(b.run, free_port(), b.work / f"naive-{mode}.log", mode)
        try:
            row = b.load_row(server)
        finally:
            rc = server.stop()
        row.update(state=state, rc=rc, startup=server.started)
        results[f"naive:{mode}"] = row
        print(f"  naive {mode}: {row['rps']:.1f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, failed "
              f"{row['failed']}, server {row['server_cores']:.2f} cores, generator {row['gen_cores']:.2f} cores",
              flush=True)


def swap(b: Bench, packages: dict[str, Path], results: dict[str, Any]) -> None:
    from shipml.registry import Registry

    root = b.work / "registry"
    shutil.rmtree(root, ignore_errors=True)
    with Registry(root) as reg:
        v1 = reg.register(packages["int8"], name="spam").version
        v2 = reg.register(packages["distill+int8"], name="spam").version
        reg.catalog.update_aliases("spam", {"production": (v1, None)}, event="release", why="bench/serve.py swap",
                                   details={})
    moved: dict[str, float] = {}

    def move() -> None:
        t = time.perf_counter()
        with Registry(root) as reg:
            reg.catalog.update_aliases("spam", {"production": (v2, None)}, event="release",
                                       why="bench/serve.py: release under load", details={},
                                       expect={"production": v1})
        moved["at"] = time.perf_counter()
        moved["took"] = moved["at"] - t

    state = b.quiet("swap under load")
    server = shipml_server(["spam"], free_port(), b.work / "serve-swap.log", "--registry", str(root), "--poll-s",
                           "0.5", *b.serve_args)
    when = b.warm + b.seconds / 3
    try:
        t_start = time.perf_counter()
        row = b.load_row(server, at={when: move})
    finally:
        rc = server.stop()
    a = row["records"].arrays()
    alias_at = moved["at"] - t_start  # seconds into the run (start of the load ~ t_start)
    per_version = {int(v): int(c) for v, c in zip(*np.unique(a["version"][a["status"] == 200], return_counts=True),
                                                  strict=True)}
    end = a["start"] + a["latency"]
    first_v2 = float(end[(a["version"] == v2)].min()) if (a["version"] == v2).any() else float("nan")
    last_v1 = float(end[(a["version"] == v1)].max()) if (a["version"] == v1).any() else float("nan")
    bad = a["status"] != 200
    phases = {"before the move": end < alias_at, "move to last v1 answer": (end >= alias_at) & (end <= last_v1),
              "after": end > last_v1}
    failed_when = {k: int((bad & m).sum()) for k, m in phases.items()}
    row.update(state=state, rc=rc, v1=v1, v2=v2, per_version=per_version, alias_at=alias_at,
               first_v2=first_v2, last_v1=last_v1, all_failed=int(bad.sum()), failed_when=failed_when)
    results["swap"] = row
    print(f"  swap: answers per version {per_version}, failed {row['all_failed']}, alias moved at {alias_at:.1f} s, "
          f"first v{v2} answer at {first_v2:.2f} s, last v{v1} answer at {last_v1:.2f} s; failed {failed_when}",
          flush=True)


def overload(b: Bench, packages: dict[str, Path], results: dict[str, Any], cases: list[str],
             factor: float, seconds: float, unloaded_s: float) -> None:
    capacity = results.get("served:int8", {}).get("rps") or results.get("capacity")
    if not capacity:
        raise SystemExit("overload needs the int8 capacity: run it with `efficiency` (or give --capacity)")
    path = packages["int8"]
    for i, case in enumerate(cases):
        extra = ["--poll-s", "0"] + ([] if case == "default" else case.split())
        label = "defaults (max_queue_ms 1000, max_queue 256, batch 32)" if case == "default" else case
        state = b.quiet(f"overload, {label}")
        server = shipml_server([f"spam={path}"], free_port(), b.work / f"serve-overload-{i}.log", *extra)
        try:
            reqs = payloads(b.texts, server.port)
            unloaded = b.load_row(server, clients=1, seconds=unloaded_s)
            rate = factor * capacity
            busy0, srv0 = cpu_busy(), proc_cpu(server.proc.pid)
            t0 = time.perf_counter()
            rec, gen_cpu, opened = asyncio.run(open_loop(server.port, reqs, rate, seconds, pool=512))
            wall = time.perf_counter() - t0
            srv, busy = proc_cpu(server.proc.pid) - srv0, cpu_busy() - busy0
        finally:
            rc = server.stop()
        a = rec.arrays()
        ok, rej = a["status"] == 200, a["status"] == 503
        other = ~(ok | rej)
        lat_ok, lat_rej = a["latency"][ok] * 1000, a["latency"][rej] * 1000

        def pct(x: np.ndarray, q: float) -> float:
            return float(np.percentile(x, q)) if x.size else float("nan")

        row = {"state": state, "label": label, "rate": rate, "offered": len(a["status"]),
               "admitted": int(ok.sum()), "rejected": int(rej.sum()), "other": int(other.sum()),
               "other_statuses": sorted({int(s) for s in a["status"][other]}),
               "admitted_rps": float(ok.sum()) / seconds,
               "ok_p50": pct(lat_ok, 50), "ok_p99": pct(lat_ok, 99), "rej_p50": pct(lat_rej, 50),
               "rej_p99": pct(lat_rej, 99), "unloaded_p50": unloaded["p50"], "unloaded_p99": unloaded["p99"],
               "unloaded_rps": unloaded["rps"], "opened": opened, "gen_cores": gen_cpu / wall,
               "server_cores": srv / wall, "others_cores": max(0.0, busy - srv - gen_cpu) / wall, "rc": rc}
        results[f"overload:{i}"] = row
        print(f"  overload {label}: {json.dumps({k: v for k, v in row.items() if k != 'state'})}", flush=True)


THREAD_CASES = {
    "1x2": ["--sessions", "1", "--threads", "2"],
    "2x1": ["--sessions", "2", "--threads", "1"],
    "1x2-b16": ["--sessions", "1", "--threads", "2", "--max-batch-size", "16"],
    "1x2-w5": ["--sessions", "1", "--threads", "2", "--max-wait-ms", "5"],
    "2x1-b16": ["--sessions", "2", "--threads", "1", "--max-batch-size", "16"],
    "2x1-w5": ["--sessions", "2", "--threads", "1", "--max-wait-ms", "5"],
    "2x1-b8": ["--sessions", "2", "--threads", "1", "--max-batch-size", "8"],
    "1x2-nospin": ["--sessions", "1", "--threads", "2"],
    "2x1-nospin": ["--sessions", "2", "--threads", "1"],
}


def threads(b: Bench, packages: dict[str, Path], results: dict[str, Any], cases: list[str], seconds: float) -> None:
    for case in cases:
        state = b.quiet(f"threads {case}")
        server = shipml_server([f"spam={packages['int8']}"], free_port(), b.work / f"serve-threads-{case}.log",
                               "--poll-s", "0", *b.serve_args, *THREAD_CASES[case], spin=not case.endswith("-nospin"))
        try:
            row = b.load_row(server, seconds=seconds)
        finally:
            rc = server.stop()
        row.update(state=state, rc=rc, case=case)
        results[f"threads:{case}"] = row
        print(f"  threads {case}: {row['rps']:.1f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, failed "
              f"{row['failed']}", flush=True)


# ------------------------------------------------------------------------------------------------ setup
def test_texts(run: Any, data: Path | None, work: Path) -> list[str]:
    from shipml.data import fetch_dataset, load_dataset

    cfg = run.config
    path = Path(cfg.data.path)
    if data is not None:
        path = data
    elif not path.exists():
        path = work / "spam-data"
        if not (path / "MANIFEST.json").is_file():
            fetch_dataset("spamassassin", path, from_dir=SHARED / "spamassassin")
    ds = load_dataset(cfg.data.model_copy(update={"path": str(path)}), seed=cfg.seed, task_kind=run.task.kind,
                      kind=run.task.data_kind)
    col = run.task.prep["text_column"]
    texts = [str(t) for t in ds.frame[col].iloc[ds.indices("test")]]
    random.Random(0).shuffle(texts)
    return texts


def variants(run: Any) -> dict[str, Path]:
    missing = [v for v in VARIANTS if not (run.path / "variants" / v / "signature.json").is_file()]
    if missing:
        from shipml.compress import compress_run

        t0 = time.perf_counter()
        compress_run(run, methods=",".join(VARIANTS), measure=False, quiet=True)
        print(f"built variants {missing} in {time.perf_counter() - t0:.0f} s", flush=True)
    return {v: run.path / "variants" / v for v in VARIANTS}


# ------------------------------------------------------------------------------------------------ tables
def print_tables(b: Bench, results: dict[str, Any], run_desc: str) -> None:
    cores = os.cpu_count()
    naive_rows = {k.split(":", 1)[1]: v for k, v in results.items() if k.startswith("naive:")}
    naive_best = max((v["rps"] for v in naive_rows.values()), default=float("nan"))
    naive_cpu = max((v["rps"] / v["server_cores"] for v in naive_rows.values()), default=float("nan"))
    t = Table(title=f"spam served on loopback: {b.clients} clients x {b.seconds:.0f} s (after {b.warm:.0f} s warm-up), "
                    f"1 text per request, {len(b.texts)} test-split texts; {run_desc}; {cores} cores")
    for col in ("row", "req/s", "p50 ms", "p99 ms", "failed", "raw ORT rows/s @32", "efficiency", "x naive",
                "server cores", "req per server CPU-s", "per-CPU efficiency", "per-CPU x naive", "generator cores",
                "others cores", "load before"):
        t.add_column(col, justify="left" if col in ("row", "load before") else "right")
    for mode, r in naive_rows.items():
        t.add_row(f"naive: FastAPI + eager fp32 PyTorch ({mode})", fmt(r["rps"]), fmt(r["p50"]), fmt(r["p99"]),
                  str(r["failed"]), "", "", fmt(r["rps"] / naive_best, 2), fmt(r["server_cores"], 2),
                  fmt(r["rps"] / r["server_cores"]), "", fmt(r["rps"] / r["server_cores"] / naive_cpu, 2),
                  fmt(r["gen_cores"], 2), fmt(r["others_cores"], 2), r["state"])
    for name in VARIANTS:
        r = results.get(f"served:{name}")
        if r is None:
            continue
        t.add_row(f"shipml serve {name} ({' '.join(b.serve_args) or 'defaults'})", fmt(r["rps"]),
                  fmt(r["p50"]), fmt(r["p99"]), str(r["failed"]), fmt(r["raw"]), fmt(r["efficiency"], 3),
                  fmt(r["rps"] / naive_best, 2), fmt(r["server_cores"], 2), fmt(r["rps"] / r["server_cores"]),
                  fmt(r.get("cpu_efficiency", float("nan")), 3), fmt(r["rps"] / r["server_cores"] / naive_cpu, 2),
                  fmt(r["gen_cores"], 2), fmt(r["others_cores"], 2), r["state"])
    if naive_rows or any(k.startswith("served:") for k in results):
        CONSOLE.print(t)
    targets = {"int8": 2.5, "distill+int8": 4.0}
    for name in VARIANTS:
        r = results.get(f"served:{name}")
        if r is None:
            continue
        b.notes.append(f"{name}: 0 errors: {'MET' if r['failed'] == 0 else 'NOT MET'} ({r['failed']} failed)")
        b.notes.append(f"{name}: efficiency >= 0.85: {'MET' if r['efficiency'] >= 0.85 else 'NOT MET'} "
                       f"({r['rps']:.1f} / {r['raw']:.1f} = {r['efficiency']:.3f})")
        if naive_rows:
            x = r["rps"] / naive_best
            verdict = "MET" if x >= targets[name] else "NOT MET"
            b.notes.append(f"{name}: >= {targets[name]}x the naive server: {verdict} ({x:.2f}x, naive best "
                           f"{naive_best:.1f} req/s)")
    if "swap" in results:
        r = results["swap"]
        t = Table(title=f"release under load: v{r['v1']} (int8) -> v{r['v2']} (distill+int8), `--poll-s 0.5`, "
                        f"{b.clients} clients x {b.seconds:.0f} s")
        for col in ("req/s", "p50 ms", "p99 ms", "failed", "answers per version", "alias moved at s",
                    "first new-version answer s", "last old-version answer s", "load before"):
            t.add_column(col, justify="right")
        t.add_row(fmt(r["rps"]), fmt(r["p50"]), fmt(r["p99"]), str(r["all_failed"]),
                  ", ".join(f"v{v}: {c}" for v, c in r["per_version"].items()), fmt(r["alias_at"], 2),
                  fmt(r["first_v2"], 2), fmt(r["last_v1"], 2), r["state"])
        CONSOLE.print(t)
        switched = r["per_version"].get(r["v2"], 0) > 0 and r["per_version"].get(r["v1"], 0) > 0
        b.notes.append(f"swap: zero failed requests: {'MET' if r['all_failed'] == 0 else 'NOT MET'} "
                       f"({r['all_failed']}); responses switch version: {'MET' if switched else 'NOT MET'}")
    rows = [v for k, v in results.items() if k.startswith("overload:")]
    if rows:
        t = Table(title="overload: open-loop Poisson arrivals at 3x the int8 capacity measured above")
        for col in ("settings", "offered req/s", "unloaded p50 / p99 ms", "admitted", "admitted req/s",
                    "admitted p50 / p99 ms", "p99 x unloaded", "503", "503 p50 / p99 ms", "other", "generator cores",
                    "load before"):
            t.add_column(col, justify="right")
        for r in rows:
            x = r["ok_p99"] / r["unloaded_p99"]
            t.add_row(r["label"], fmt(r["rate"]), f"{fmt(r['unloaded_p50'])} / {fmt(r['unloaded_p99'])}",
                      str(r["admitted"]), fmt(r["admitted_rps"]), f"{fmt(r['ok_p50'])} / {fmt(r['ok_p99'])}",
                      fmt(x, 2), str(r["rejected"]), f"{fmt(r['rej_p50'])} / {fmt(r['rej_p99'])}",
                      f"{r['other']} {r['other_statuses'] or ''}", fmt(r["gen_cores"], 2), r["state"])
            b.notes.append(f"overload ({r['label']}): admitted p99 < 2x unloaded p99: "
                           f"{'MET' if x < 2 else 'NOT MET'} ({r['ok_p99']:.1f} vs {r['unloaded_p99']:.1f} ms, "
                           f"{x:.2f}x); 503 p99 {r['rej_p99']:.1f} ms")
        CONSOLE.print(t)
    rows = [v for k, v in results.items() if k.startswith("threads:")]
    if rows:
        t = Table(title="sessions x intra-op threads and batching, int8, served")
        for col in ("sessions x threads, batching", "req/s", "p50 ms", "p99 ms", "failed", "server cores",
                    "generator cores", "load before"):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(r["case"], fmt(r["rps"]), fmt(r["p50"]), fmt(r["p99"]), str(r["failed"]),
                      fmt(r["server_cores"], 2), fmt(r["gen_cores"], 2), r["state"])
        CONSOLE.print(t)
        best = max(rows, key=lambda r: r["rps"])
        b.notes.append(f"threads: best {best['case']} at {best['rps']:.1f} req/s")
    for n in b.notes:
        print(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished spam run (examples/spam.yaml)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-serve"))
    ap.add_argument("--data", type=Path, default=None, help="the SpamAssassin folder (default: the run's data.path, "
                    "else fetched from ../shared/data/spamassassin)")
    ap.add_argument("--only", default="efficiency,naive,swap,overload,threads")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="packages of the `efficiency` rows")
    ap.add_argument("--serve-args", default="", help="extra `shipml serve` options for every row but overload, "
                    "e.g. '--max-queue-ms 0'")
    ap.add_argument("--raw-repeats", type=int, default=2, help="passes over the texts for the raw throughput")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warm", type=float, default=3.0, help="seconds of load before the measured window")
    ap.add_argument("--naive-modes", default="sync,async")
    ap.add_argument("--overload-s", type=float, default=30.0)
    ap.add_argument("--unloaded-s", type=float, default=20.0)
    ap.add_argument("--overload-cases", default="default;--max-queue-ms 50",
                    help="server settings for the overload rows, ';'-separated ('default': none given)")
    ap.add_argument("--capacity", type=float, default=None, help="int8 req/s for overload without `efficiency`")
    ap.add_argument("--threads-cases", default="1x2,2x1")
    ap.add_argument("--threads-s", type=float, default=30.0)
    ap.add_argument("--busy", type=float, default=0.3, help="wait until other processes use under this many cores")
    ap.add_argument("--max-wait", type=float, default=1800.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    only = set(args.only.split(","))

    import shipml

    run = shipml.Run(args.run)
    args.work.mkdir(parents=True, exist_ok=True)
    epochs = max((json.loads(line).get("epoch", 0) for line in (run.path / "metrics.jsonl").read_text().splitlines()
                  if line.strip()), default=0)
    acc = (run.metrics.get("test", {}).get("accuracy") or {}).get("value")
    run_desc = f"run {run.id} ({run.config.train.epochs} epoch(s) configured, {epochs:g} trained, test accuracy {acc})"
    print(run_desc, flush=True)
    packages = variants(run)
    texts = test_texts(run, args.data, args.work)
    print(f"{len(texts)} test texts, median {int(np.median([len(t) for t in texts]))} characters", flush=True)
    b = Bench(run.path, args.work, texts, args.clients, args.seconds, args.warm, args.busy, args.max_wait,
              args.serve_args.split(), args.raw_repeats)
    results: dict[str, Any] = {}
    if args.capacity:
        results["capacity"] = args.capacity
    try:
        if "efficiency" in only:
            efficiency(b, packages, results, args.variants.split(","))
        if "naive" in only:
            naive(b, results, args.naive_modes.split(","))
        if "swap" in only:
            swap(b, packages, results)
        if "overload" in only:
            overload(b, packages, results, args.overload_cases.split(";"), 3.0, args.overload_s, args.unloaded_s)
        if "threads" in only:
            threads(b, packages, results, args.threads_cases.split(","), args.threads_s)
    finally:
        print_tables(b, results, run_desc)
        if args.json:
            clean = {k: {kk: vv for kk, vv in v.items() if kk != "records"} for k, v in results.items()}
            args.json.write_text(json.dumps(clean, indent=1, default=str))


if __name__ == "__main__":
    threading.excepthook = lambda hook_args: print(f"thread error: {hook_args.exc_value}", file=sys.stderr)
    main()
