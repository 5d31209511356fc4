"""A server following the registry: a new production version is loaded and warmed beside the old one and
switched to under load with zero failed requests; a version that cannot load never gets traffic (the old one
keeps serving, the error is on /admin/status and in /metrics); the canary gets its weight of traffic, sticky
per client key."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from servers import TOKEN, Server, serving
from test_runtime_package import IMAGE_PREP, INPUTS, image_model, write_package

from shipml.registry import Registry
from shipml.runtime.format import write_manifest

PIXELS = np.random.default_rng(1).integers(0, 256, size=(1, 6, 5, 3), dtype=np.uint8).tolist()
INFER = {"inputs": [{"name": "image", "shape": [1, 6, 5, 3], "datatype": "UINT8", "data": PIXELS}]}
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _package(folder: Path, seed: int) -> Path:
    return write_package(folder, image_model(3, 6, 5, 3, seed=seed)[0], data_kind="images",
                         inputs=INPUTS["images"](3, 6, 5), preprocessing=IMAGE_PREP, classes=["cat", "dog", "eel"])


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """pets v1, v2 (other weights), v3: a package whose manifest verifies but whose network cannot load."""
    reg = Registry(tmp_path / "reg")
    for seed in (0, 1):
        reg.register(_package(tmp_path / f"v{seed + 1}", seed), name="pets")
    broken = shutil.copytree(tmp_path / "v1", tmp_path / "v3")
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    write_manifest(broken)
    assert reg.register(broken, name="pets").version == 3
    reg.catalog.update_aliases("pets", {"production": (1, None)}, event="release", why="test")
    return reg


def _move(reg: Registry, changes: dict) -> None:
    reg.catalog.update_aliases("pets", changes, event="release", why="test")


def _wait_for(server: Server, version: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.call("POST", "/v2/models/pets/infer", INFER)[2].get("model_version") != version:
        assert time.monotonic() < deadline, f"v{version} never answered:\n{server.output()}"
        time.sleep(0.05)


def test_hot_swap_under_load_fails_nothing_and_a_broken_version_gets_no_traffic(registry: Registry,
                                                                                tmp_path: Path) -> None:
    args = ["pets", "--registry", str(registry.root), "--poll-s", "0.2"]
    with serving(args, tmp_path, env={"SHIPML_API_TOKEN": TOKEN}) as server:
        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                status, _, body = server.call("POST", "/v2/models/pets/infer", INFER)
                answers.append((status, body.get("model_version") if isinstance(body, dict) else None))

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        _move(registry, {"production": (2, None)})
        _wait_for(server, "2")
        time.sleep(0.5)
        _move(registry, {"production": (3, None)})  # cannot load: v2 keeps serving
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        body = server.call("GET", "/admin/status", headers=ADMIN)[2]
        metrics = server.call("GET", "/metrics")[2]
    assert answers and all(s == 200 for s, _ in answers), [a for a in answers if a[0] != 200][:5]
    versions = [v for _, v in answers]
    first_two = versions.index("2")
    assert set(versions[:first_two]) == {"1"} and "1" in versions and "3" not in versions
    assert versions[-1] == "2"
    assert body["models"]["pets"]["production"]["version"] == 2
    errors = body["models"]["pets"]["load_errors"]
    assert len(errors) == 1 and "onnxruntime cannot load" in next(iter(errors.values()))
    assert 'shipml_load_failures_total{model="pets"} 1.0' in metrics


def test_reload_route_loads_now_and_the_canary_split_is_sticky(registry: Registry, tmp_path: Path) -> None:
    args = ["pets", "--registry", str(registry.root), "--poll-s", "0"]  # no polling: only /admin/reload
    with serving(args, tmp_path, env={"SHIPML_API_TOKEN": TOKEN}) as server:
        _move(registry, {"canary": (2, 30)})
        assert server.call("POST", "/v2/models/pets/versions/2/infer", INFER)[0] == 404  # not loaded yet
        status, _, body = server.call("POST", "/admin/reload", headers=ADMIN)
        assert status == 200 and body["changes"]["pets"]["canary"] == {"version": 2}
        keys = [f"client-{i}" for i in range(300)]
        first = {k: server.call("POST", "/v2/models/pets/infer", INFER, headers={"X-Client-Key": k})[2]["model_version"]
                 for k in keys}
        again = {k: server.call("POST", "/v2/models/pets/infer", INFER, headers={"X-Client-Key": k})[2]["model_version"]
                 for k in keys[:50]}
        assert all(first[k] == again[k] for k in again)  # sticky per client key
        share = sum(v == "2" for v in first.values()) / len(first)
        assert 0.2 < share < 0.4, share  # 30% by weight (300 keys: +-8 points covers 3 sigma)
        status, _, meta = server.call("GET", "/v2/models/pets")
        assert meta["versions"] == ["1", "2"]
        _move(registry, {"production": (2, None), "canary": None})  # promote
        status, _, body = server.call("POST", "/admin/reload", headers=ADMIN)
        assert body["changes"]["pets"] == {"production": {"version": 2}, "canary": None, "retired": [1]}
        assert server.call("POST", "/v2/models/pets/infer", INFER)[2]["model_version"] == "2"
