"""Monitoring on a real server: drift against the package's reference (no flag on traffic like the training
data, a flag naming the signals after shifted traffic, none on too few rows, "no reference" for an old
package), live accuracy from feedback with its interval and flag, bounded feedback memory, the monitor JSON
and the Prometheus gauges."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from servers import Server, serving
from test_runtime_package import image_package

from shipml.runtime import Package, write_manifest
from shipml.runtime.reference import build_reference

RNG = np.random.default_rng(7)


def _pixels(n: int, low: int = 0, high: int = 256) -> np.ndarray:
    return RNG.integers(low, high, size=(n, 6, 5, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An image package with a reference built from uniform random images (its 'training data'), and the same
    package without reference.json (as packages exported before monitoring existed)."""
    root = tmp_path_factory.mktemp("pets")
    folder = image_package(root / "pets")[0]
    pkg = Package.open(folder)
    train = pkg.prepare(_pixels(2000))
    (folder / "reference.json").write_text(json.dumps(build_reference(pkg.predictor, train, pkg.predict_proba(train))))
    metrics = {"test": {"accuracy": {"value": 0.9}}, "parity": {}, "run": {}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    write_manifest(folder)
    old = shutil.copytree(folder, root / "old")
    (old / "reference.json").unlink()
    write_manifest(old)
    return {"pets": folder, "old": old}


@pytest.fixture(scope="module")
def server(pets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [f"pets={pets['pets']}", f"old={pets['old']}", "--min-rows", "60", "--window-rows", "120",
            "--feedback-capacity", "50"]
    with serving(args, tmp_path_factory.mktemp("monitor")) as srv:
        yield srv


def _send(server: Server, model: str, pixels: np.ndarray, per_request: int = 4) -> list[dict]:
    out = []
    for start in range(0, len(pixels), per_request):
        chunk = pixels[start : start + per_request]
        req = {"inputs": [{"name": "image", "shape": list(chunk.shape), "datatype": "UINT8",
                           "data": chunk.reshape(-1).tolist()}]}
        status, _, body = server.call("POST", f"/v2/models/{model}/infer", req)
        assert status == 200, body
        out.append(body)
    return out


def _drift(server: Server, model: str) -> dict:
    status, _, report = server.call("GET", f"/v1/models/{model}/monitor")
    assert status == 200, report
    return report["versions"][0]["drift"]


def test_drift_is_flagged_after_shifted_traffic_and_not_before(server: Server) -> None:
    _send(server, "pets", _pixels(20))
    few = _drift(server, "pets")
    assert few["status"] == "too few rows" and not few["flag"]  # 20 rows: nothing is said
    _send(server, "pets", _pixels(120))  # like the training data: the window now holds 120 of them
    same = _drift(server, "pets")
    assert same["status"] == "ok" and not same["flag"] and same["rows"] == 120, same["moved"]
    _send(server, "pets", _pixels(120, 0, 90))  # darker images: the whole window is the shifted traffic
    moved = _drift(server, "pets")
    assert moved["flag"] and {"brightness", "channel_mean:r"} <= set(moved["moved"])
    assert moved["signals"]["brightness"]["live_median"] < moved["signals"]["brightness"]["reference_median"]
    metrics = server.call("GET", "/metrics")[2]
    assert any(line.startswith('shipml_drift_flag{model="pets"') and line.endswith(" 1.0")
               for line in metrics.splitlines()), metrics
    assert 'signal="brightness"' in metrics


def test_a_package_without_reference_still_serves(server: Server) -> None:
    _send(server, "old", _pixels(80))
    report = _drift(server, "old")
    assert report["status"] == "no reference" and report["flag"] is False


def test_feedback_gives_live_accuracy_and_bad_feedback_is_refused(server: Server) -> None:
    answers = _send(server, "pets", _pixels(40), per_request=1)
    ids = [a["parameters"]["request_id"] for a in answers]
    labels = [a["outputs"][0]["data"][0] for a in answers]
    other = {"cat": "dog", "dog": "eel", "eel": "cat"}
    for i, (rid, label) in enumerate(zip(ids, labels, strict=True)):  # the first 10 answers were wrong
        body = {"request_id": rid, "label": other[label] if i < 10 else label}
        status, _, got = server.call("POST", "/v1/models/pets/feedback", body)
        assert status == 200 and got["correct"] == (0 if i < 10 else 1), got
    acc = server.call("GET", "/v1/models/pets/monitor")[2]["versions"][0]["accuracy"]
    assert acc["rows"] == 40 and acc["value"] == pytest.approx(0.75) and acc["ci_low"] < 0.75 < acc["ci_high"]
    assert acc["test"] == 0.9 and acc["ci_high"] < 0.9 and acc["flag"] is True  # 30/40: [0.60, 0.86], below 0.9
    cases = [({"request_id": "nope", "label": "cat"}, 404, "unknown"),
             ({"request_id": ids[0], "label": "cat"}, 409, "given already"),
             ({"request_id": ids[1], "label": "zebra"}, 422, "not classes"),
             ({"request_id": ids[1], "labels": ["cat", "dog"]}, 422, "had 1 row"),
             ({"request_id": ids[1]}, 422, "exactly one")]
    for body, code, says in cases:
        status, _, got = server.call("POST", "/v1/models/pets/feedback", body)
        assert status == code and says in got["detail"], (body, got)


def test_feedback_memory_is_bounded(server: Server) -> None:
    first = _send(server, "pets", _pixels(1), per_request=1)[0]["parameters"]["request_id"]
    _send(server, "pets", _pixels(60), per_request=1)  # capacity 50: the first id is forgotten
    status, _, got = server.call("POST", "/v1/models/pets/feedback", {"request_id": first, "label": "cat"})
    assert status == 404 and "last 50 answers" in got["detail"]


def test_shipml_monitor_prints_the_view(server: Server) -> None:
    import subprocess
    import sys

    _send(server, "pets", _pixels(8))
    got = subprocess.run([sys.executable, "-m", "shipml.cli", "monitor", "pets", "--url",
                          f"http://127.0.0.1:{server.port}", "--once"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "200"})
    assert got.returncode == 0, got.stderr
    assert "pets" in got.stdout and "production" in got.stdout and "drift per signal" in got.stdout
    assert "brightness" in got.stdout
    bad = subprocess.run([sys.executable, "-m", "shipml.cli", "monitor", "--url", "http://127.0.0.1:9", "--once"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot reach a shipml server" in bad.stderr
