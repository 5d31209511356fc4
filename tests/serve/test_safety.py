"""Exposure and installs: a server bound beyond loopback refuses to start without SHIPML_API_TOKEN and then
wants the token on every route but the health probes; bad settings are one clear error; a server runs in a
process where torch, transformers, onnx, scikit-learn and the training code cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from servers import TOKEN, serving

from shipml.errors import ServeError
from shipml.serve import ServeSettings

ROW = {"inputs": [{"x": 1.0, "y": 2.0, "colour": "red"}]}


def test_binding_beyond_loopback_needs_a_token(packages: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHIPML_API_TOKEN"}
    got = subprocess.run([sys.executable, "-m", "shipml.cli", "serve", f"tab={packages['tab']}", "--host", "0.0.0.0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert got.returncode == 2 and "SHIPML_API_TOKEN" in got.stderr and "Traceback" not in got.stderr
    with serving([f"tab={packages['tab']}", "--host", "0.0.0.0"], tmp_path, env={"SHIPML_API_TOKEN": TOKEN}) as server:
        assert server.call("GET", "/v2/health/ready")[0] == 200  # probes stay open
        for method, path, body in [("POST", "/v1/models/tab/predict", ROW), ("GET", "/v2/models/tab", None),
                                   ("GET", "/metrics", None), ("GET", "/v2", None)]:
            status, headers, _ = server.call(method, path, body)
            assert status == 401 and headers.get("www-authenticate") == "Bearer", path
            assert server.call(method, path, body, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200, path


@pytest.mark.parametrize(("changes", "says"), [
    ({}, "nothing to serve"),
    ({"models": ("m",), "host": "10.0.0.5"}, "SHIPML_API_TOKEN"),
    ({"models": ("m",), "token": "short"}, "shorter than 16"),
    ({"models": ("m",), "max_batch_size": 0}, "max_batch_size"),
    ({"models": ("m",), "max_wait_ms": -1}, "cannot be negative"),
    ({"models": ("m",), "port": 70000}, "not a TCP port"),
    ({"models": ("m",), "sessions": 0}, "sessions"),
])
def test_bad_settings_are_one_clear_error(changes: dict, says: str) -> None:
    with pytest.raises(ServeError, match=says):
        ServeSettings(**changes).check()


@pytest.mark.parametrize(("cores", "given", "want"), [
    (2, {}, (2, 1)), (1, {}, (1, 1)), (16, {}, (2, 8)), (16, {"workers": 4}, (2, 2)), (16, {"workers": 16}, (1, 1)),
    (2, {"sessions": 1}, (1, 2)), (2, {"threads": 2}, (2, 2)), (8, {"sessions": 3}, (3, 2)),
])
def test_sessions_and_threads_default_to_the_measured_split(monkeypatch: pytest.MonkeyPatch, cores: int,
                                                            given: dict, want: tuple[int, int]) -> None:
    # two sessions of cores/2 threads where a worker has 2+ cores (bench/serve.py: 2 x 1 served 11% more than 1 x 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    settings = ServeSettings(models=("m",), **given).check()
    assert (settings.session_count(), settings.session_threads()) == want


def test_unknown_model_or_folder_is_one_clear_error(tmp_path: Path) -> None:
    got = subprocess.run([sys.executable, "-m", "shipml.cli", "serve", "nosuchmodel", "--registry",
                          str(tmp_path / "reg")], capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "no registered model 'nosuchmodel'" in got.stderr
    (tmp_path / "notapackage").mkdir()
    got = subprocess.run([sys.executable, "-m", "shipml.cli", "serve", str(tmp_path / "notapackage")],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "not a package folder" in got.stderr


BLOCKER = textwrap.dedent("""
    import runpy, sys
    class Blocked:
        NAMES = ("torch", "transformers", "accelerate", "safetensors", "onnx", "sklearn", "scipy", "matplotlib")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.NAMES or name.startswith(("shipml.training", "shipml.tasks",
                                                                    "shipml.export", "shipml.compress")):
                raise ImportError(f"{name} is blocked: a serving install has no training stack")
            return None
    sys.meta_path.insert(0, Blocked())
    sys.argv = ["shipml", *sys.argv[1:]]
    runpy.run_module("shipml.cli", run_name="__main__")
""")


def test_a_serving_install_without_torch_serves_a_package(packages: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "blocked.py").write_text(BLOCKER)
    launcher = [sys.executable, str(tmp_path / "blocked.py")]  # the blocker, then the cli
    with serving([f"txt={packages['txt']}"], tmp_path, launcher=launcher) as server:
        status, _, body = server.call("POST", "/v1/models/txt/predict", {"inputs": ["hello", "win money"]})
    assert status == 200 and len(body["predictions"]) == 2


def test_the_serve_extra_and_the_base_install_do_not_pull_torch() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    serve = " ".join(project["optional-dependencies"]["serve"]).lower()
    for heavy in ("torch", "accelerate", "transformers", "onnx>"):
        assert heavy not in base and heavy not in serve, heavy
    assert "torch" in " ".join(project["optional-dependencies"]["train"])
