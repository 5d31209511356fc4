"""`POST /v1/models/{name}/generate` on a real `shipml serve` process: PNGs in JSON, the package's images for a
seed, and clear 404 / 422 answers."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from servers import TOKEN, Server, serving

from shipml.export import export_run
from shipml.runtime import Package

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gan_package(generation_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(generation_run, tmp_path_factory.mktemp("gan") / "package", quiet=True)


@pytest.fixture(scope="module")
def server(gan_package: Path, packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [f"digits={gan_package}", f"img={packages['img']}"]
    with serving(args, tmp_path_factory.mktemp("serve-gan"), env={"SHIPML_API_TOKEN": TOKEN}) as s:
        yield s


def _decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_generate_returns_the_packages_images(server: Server, gan_package: Path) -> None:
    status, headers, body = server.call("POST", "/v1/models/digits/generate", {"class": "7", "n": 3, "seed": 1}, AUTH)
    assert status == 200, body
    assert body["model"] == "digits" and body["class"] == "7" and body["seed"] == 1 and len(body["images"]) == 3
    assert headers["x-request-id"] == body["request_id"]
    want = Package.open(gan_package).generate("7", 3, seed=1)[..., 0]  # (3, 8, 8) grey
    got = np.stack([_decode(b) for b in body["images"]])
    np.testing.assert_array_equal(got, want)


def test_without_a_seed_the_server_draws_one_and_says_which(server: Server) -> None:
    status, _, first = server.call("POST", "/v1/models/digits/generate", {"class": "2", "n": 2}, AUTH)
    assert status == 200 and isinstance(first["seed"], int)
    _, _, again = server.call("POST", "/v1/models/digits/generate", {"class": "2", "n": 2, "seed": first["seed"]},
                              AUTH)
    assert again["images"] == first["images"]


def test_bad_requests(server: Server) -> None:
    status, _, body = server.call("POST", "/v1/models/digits/generate", {"class": "12", "n": 1}, AUTH)
    assert status == 422 and "0, 1, 2" in body["detail"]
    status, _, body = server.call("POST", "/v1/models/digits/generate", {"n": 1}, AUTH)
    assert status == 422 and "give one of" in body["detail"]
    for n in (0, 65):
        assert server.call("POST", "/v1/models/digits/generate", {"class": "1", "n": n}, AUTH)[0] == 422
    status, _, body = server.call("POST", "/v1/models/nope/generate", {"class": "1"}, AUTH)
    assert status == 404
    status, _, body = server.call("POST", "/v1/models/img/generate", {"class": "1"}, AUTH)
    assert status == 422 and "does not generate" in body["detail"]
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    status, _, body = server.call("POST", "/v1/models/digits/predict", {"inputs": [image]}, AUTH)
    assert status == 422 and "shipml generate" in body["detail"]


def test_listed_as_a_generator(server: Server) -> None:
    status, _, body = server.call("GET", "/v1/models", None, AUTH)
    digits = next(m for m in body if m["name"] == "digits")
    assert status == 200 and digits["kind"] == "generation" and digits["classes"][:2] == ["0", "1"]
