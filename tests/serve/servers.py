"""Helpers of the server tests: small real packages (image, table, text with email settings, a slow one and
one that gives NaN for a poisoned row) and real `shipml serve` processes on loopback (`serving`). A module of
its own, not conftest.py: test modules import it by name, and every test folder has a conftest."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_runtime_package import (
    INPUTS,
    TABLE_PREP,
    write_package,
)

TOKEN = "test-token-0123456789abcdef"
EMAIL = {"headers": ["subject"], "body": True, "max_chars": 2000}
POISON = -1000.0  # x = POISON makes the slow/poison model answer NaN for that row


def slow_table_model(depth: int, width: int = 384) -> onnx.ModelProto:
    """Table logits plus 0 * (a chain of `depth` width x width MatMul+Tanh) plus 0 * sqrt(scaled x + 100): as
    slow as `depth` says, and NaN for a row whose x is POISON."""
    rng = np.random.default_rng(0)
    f = TensorProto.FLOAT
    wts = {"W": rng.normal(size=(3, 2)).astype(np.float32), "b": np.zeros(2, np.float32),
           "Win": rng.normal(size=(3, width)).astype(np.float32) / 3,
           "Wd": (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32),
           "Wout": rng.normal(size=(width, 2)).astype(np.float32), "zero": np.zeros(1, np.float32),
           "hundred": np.full(1, 100.0, np.float32), "s0": np.array([0], np.int64), "s1": np.array([1], np.int64)}
    n = helper.make_node
    nodes = [n("Cast", ["cat"], ["catf"], to=f), n("Concat", ["num", "catf"], ["x"], axis=1),
             n("MatMul", ["x", "W"], ["z"]), n("Add", ["z", "b"], ["base"]), n("MatMul", ["x", "Win"], ["h0"])]
    for i in range(depth):
        nodes += [n("MatMul", [f"h{i}", "Wd"], [f"m{i}"]), n("Tanh", [f"m{i}"], [f"h{i + 1}"])]
    nodes += [n("MatMul", [f"h{depth}", "Wout"], ["slow"]), n("Mul", ["slow", "zero"], ["slow0"]),
              n("Slice", ["num", "s0", "s1", "s1"], ["x0"]), n("Add", ["x0", "hundred"], ["xp"]),
              n("Sqrt", ["xp"], ["r"]), n("Mul", ["r", "zero"], ["r0"]),
              n("Add", ["base", "slow0"], ["t"]), n("Add", ["t", "r0"], ["logits"])]
    inputs = [helper.make_tensor_value_info("num", f, ["batch", 2]),
              helper.make_tensor_value_info("cat", TensorProto.INT64, ["batch", 1])]
    graph = helper.make_graph(nodes, "slow", inputs, [helper.make_tensor_value_info("logits", f, ["batch", 2])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in wts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def slow_package(folder: Path, depth: int, width: int = 384) -> Path:
    return write_package(folder, slow_table_model(depth, width), data_kind="table", inputs=INPUTS["table"](2, 1),
                         preprocessing=TABLE_PREP, classes=["no", "yes"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None, timeout: float = 30) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            text = resp.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text.decode(errors="replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed
        finally:
            conn.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serving(args: list[str], tmp: Path, *, env: dict[str, str] | None = None, ready: bool = True,
            launcher: list[str] | None = None) -> Iterator[Server]:
    """A real `shipml serve` process on a free loopback port, up (and ready) before the test goes on."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    cmd = [*(launcher or [sys.executable, "-m", "shipml.cli"]), "serve", *args, "--port", str(port)]
    full_env = {**os.environ, **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = Server(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}:\n{server.output()}")
            try:
                status, _, _ = server.call("GET", "/v2/health/ready" if ready else "/v2/health/live", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not come up in 60 s:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
