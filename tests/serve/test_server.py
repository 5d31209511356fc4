"""A real `shipml serve` process on loopback with every kind of package: both protocols, errors with their
status codes, batches that really form, a poisoned input that fails alone, the body limit, auth on every
admin route (enumerated from the OpenAPI document), metrics."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from servers import POISON, TOKEN, Server, serving

from shipml.runtime import Package


@pytest.fixture(scope="module")
def server(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [f"{k}={packages[k]}" for k in ("img", "tab", "txt", "poison")]
    with serving([*args, "--max-wait-ms", "100", "--max-body-bytes", "200000"], tmp_path_factory.mktemp("srv"),
                 env={"SHIPML_API_TOKEN": TOKEN}) as srv:
        yield srv


def _png(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (10, 12), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_health_and_server_metadata(server: Server) -> None:
    assert server.call("GET", "/v2/health/live")[::2] == (200, {"live": True})
    assert server.call("GET", "/v2/health/ready")[::2] == (200, {"ready": True})
    status, _, meta = server.call("GET", "/v2")
    assert status == 200 and meta["name"] == "shipml" and meta["extensions"] == []


def test_v1_predictions_equal_the_package(server: Server, packages: dict[str, Path]) -> None:
    texts = ["hello there, lunch at 1?", "WIN MONEY NOW " * 30, "/etc/passwd"]  # a path is just a text here
    status, headers, body = server.call("POST", "/v1/models/txt/predict", {"inputs": texts})
    assert status == 200, body
    want = Package.open(packages["txt"]).predict(texts)
    assert [p["label"] for p in body["predictions"]] == list(want["prediction"])
    np.testing.assert_allclose([p["probabilities"]["spam"] for p in body["predictions"]], want["proba:spam"], rtol=1e-5)
    assert body["version"] == 1 and headers["x-model-version"] == "1" and headers["x-request-id"] == body["request_id"]
    rows = [{"x": 1.0, "y": None, "colour": "blue"}, {"x": -3, "y": 2.5, "colour": "unseen"}]
    status, _, body = server.call("POST", "/v1/models/tab/predict", {"inputs": rows})
    want = Package.open(packages["tab"]).predict([{**r, "y": float("nan") if r["y"] is None else r["y"]} for r in rows])
    assert status == 200 and [p["label"] for p in body["predictions"]] == list(want["prediction"])
    status, _, body = server.call("POST", "/v1/models/img/predict", {"inputs": [_png((200, 10, 10)), _png((0, 0, 90))]})
    assert status == 200 and len(body["predictions"]) == 2


def test_raw_emails_are_parsed_as_in_training(server: Server, packages: dict[str, Path], tmp_path: Path) -> None:
    message = "Subject: cheap meds\nFrom: a@b.c\nContent-Type: text/html\n\n<p>Buy <b>now</b></p>"
    (tmp_path / "m1").write_text(message)
    status, _, body = server.call("POST", "/v1/models/txt/predict", {"emails": [message]})
    want = Package.open(packages["txt"]).predict(tmp_path / "m1")  # the file path, read the training way
    assert status == 200 and body["predictions"][0]["probabilities"]["spam"] == pytest.approx(want["proba:spam"][0],
                                                                                              rel=1e-5)


def test_oip_infer_and_metadata(server: Server, packages: dict[str, Path]) -> None:
    status, _, meta = server.call("GET", "/v2/models/img")
    assert status == 200 and meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 6, 5, 3]}]
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 6, 5, 3), dtype=np.uint8)
    req = {"id": "abc", "inputs": [{"name": "image", "shape": [2, 6, 5, 3], "datatype": "UINT8",
                                    "data": pixels.tolist()}]}  # nested data: allowed by the protocol
    status, _, body = server.call("POST", "/v2/models/img/versions/1/infer", req)
    assert status == 200 and body["id"] == "abc" and body["model_version"] == "1"
    proba = next(o for o in body["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(np.reshape(proba["data"], proba["shape"]),
                               Package.open(packages["img"]).predict_proba(pixels), rtol=1e-5)
    req = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [2.0]},
                      {"name": "y", "shape": [1, 1], "datatype": "FP32", "data": [[0.5]]},
                      {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}],
           "outputs": [{"name": "label"}]}
    status, _, body = server.call("POST", "/v2/models/tab/infer", req)
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["label"] and body["outputs"][0]["shape"] == [1]
    assert server.call("GET", "/v2/models/txt/versions/1/ready")[::2] == (200, {"name": "txt", "ready": True})


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/v1/models/nope/predict", {"inputs": ["a"]}, 404, "not served here"),
    ("/v2/models/txt/versions/9/infer", {"inputs": []}, 404, "live versions: [1]"),
    ("/v1/models/txt/predict", {"inputs": [1]}, 422, "valid string"),
    ("/v1/models/txt/predict", {"inputs": []}, 422, "non-empty"),
    ("/v1/models/txt/predict", {"inputs": ["a"], "emails": ["b"]}, 422, "exactly one"),
    ("/v1/models/tab/predict", {"inputs": [{"x": 1}]}, 422, "missing feature columns"),
    ("/v1/models/img/predict", {"inputs": ["/etc/passwd"]}, 422, "not valid base64"),
    ("/v1/models/img/predict", {"inputs": [base64.b64encode(b"not an image").decode()]}, 422, "not a readable image"),
    ("/v1/models/img/predict", {"emails": ["x"]}, 422, "for text models"),
    ("/v2/models/img/infer", {"inputs": [{"name": "image", "shape": [1, 6, 5, 3], "datatype": "UINT8",
                                          "data": [1, 2]}]}, 400, "needs 90 values"),
    ("/v2/models/img/infer", {"inputs": [{"name": "image", "shape": [1, 7, 5, 3], "datatype": "UINT8",
                                          "data": [0] * 105}]}, 400, "[N, 6, 5, 3]"),
    ("/v2/models/txt/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, 400,
     "takes BYTES"),
    ("/v2/models/tab/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
     "missing inputs"),
    ("/v2/models/txt/infer", {"inputs": "nope"}, 400, "invalid request"),
])
def test_bad_requests_get_one_clear_error(server: Server, path: str, body: dict, status: int, says: str) -> None:
    got, _, answer = server.call("POST", path, body)
    message = answer.get("error") if path.startswith("/v2") else answer.get("detail")
    assert got == status and says in message, answer


def test_batches_form_and_a_poisoned_input_fails_alone(server: Server) -> None:
    def one(i: int) -> tuple[int, dict]:
        x = POISON if i == 7 else float(i)
        row = {"x": x, "y": 1, "colour": "red"}
        status, _, body = server.call("POST", "/v1/models/poison/predict", {"inputs": [row]})
        return status, body

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(24)))
    assert [s for s, _ in results] == [422 if i == 7 else 200 for i in range(24)], results
    assert "non-finite" in results[7][1]["detail"]
    metrics = server.call("GET", "/metrics")[2]
    count = float(next(line.split()[-1] for line in metrics.splitlines()
                        if line.startswith('shipml_batch_requests_count{model="poison"')))
    total = float(next(line.split()[-1] for line in metrics.splitlines()
                        if line.startswith('shipml_batch_requests_sum{model="poison"')))
    assert total == 23 and count <= 12, metrics  # each good request answered once, in calls shared: batches formed


def test_body_limit_is_413_before_reading(server: Server) -> None:
    status, _, body = server.call("POST", "/v1/models/txt/predict", {"inputs": ["x" * 300_000]})
    assert status == 413 and "too large" in body["detail"]
    status, _, _ = server.call("POST", "/v1/models/txt/predict", headers={"Content-Length": "999999999"}, raw=b"{}")
    assert status == 413


def test_every_admin_route_needs_the_token(server: Server) -> None:
    spec = server.call("GET", "/openapi.json")[2]
    admin = [(m.upper(), p) for p, ops in spec["paths"].items() for m, op in ops.items()
             if "admin" in op.get("tags", [])]
    assert {p for _, p in admin} >= {"/admin/reload", "/admin/status"}
    for method, path in admin:
        assert server.call(method, path)[0] == 401, path
        assert server.call(method, path, headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        status, _, body = server.call(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, (path, body)
    status, _, body = server.call("GET", "/admin/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert body["models"]["txt"]["production"]["version"] == 1


def test_openapi_lists_what_the_server_answers(server: Server) -> None:
    spec = server.call("GET", "/openapi.json")[2]
    assert {"/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/{name}", "/v2/models/{name}/versions/{version}",
            "/v2/models/{name}/ready", "/v2/models/{name}/versions/{version}/ready", "/v2/models/{name}/infer",
            "/v2/models/{name}/versions/{version}/infer", "/v1/models/{name}/predict", "/metrics"} <= set(spec["paths"])
    assert not any("path" in json.dumps(op.get("parameters", [])).lower().replace('"in": "path"', "")
                   for ops in spec["paths"].values() for op in ops.values())  # no parameter takes a file path


def test_a_body_that_is_not_json_is_bad_input_on_both_protocols(server: Server) -> None:
    status, _, body = server.call("POST", "/v1/models/txt/predict", raw=b"?c\xff9")
    assert status == 422 and "parsing the body" in body["detail"]
    status, _, body = server.call("POST", "/v2/models/txt/infer", raw=b"?c\xff9")
    assert status == 400 and "parsing the body" in body["error"]
