"""Layering is a test: imports may only point down the room order of DESIGN.md.

    errors, _console  <-  core  <-  runtime  (torch-free, pydantic-free: a predict-only install)
    errors, core  <-  config  <-  data  <-  tasks (+ runtime)  <-  training, evaluate  <-  scorecard
        <-  run  <-  export  <-  compress  <-  quickstart, scaffold  <-  cli
    errors, config, core, data, runtime, evaluate  <-  registry  (torch-free: a server reads the catalog and store)
    errors, core, runtime, registry  <-  serve  (torch-free: `pip install shipml[serve]` has no torch)

registry may import data (torch-free; its pydantic already comes with config): a model's holdout is its first
run's test split, loaded exactly as export's parity check loads it (registry/holdout.py). It may import evaluate
(torch-free, NO_TORCH below): the release gates (registry/gates.py) score candidate and production with the same
metrics every report shows and decide with its paired tests (evaluate/paired/), one owner of each statistic.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "shipml"

# room -> rooms it may import from (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_console": set(),
    "core": {"errors"},
    "config": {"errors"},
    "runtime": {"errors", "core"},
    "data": {"errors", "config", "core"},
    "tasks": {"errors", "config", "data", "core", "runtime"},
    "evaluate": {"errors", "config", "data", "core"},
    "training": {"errors", "config", "data", "core", "tasks", "_console"},
    "judge": {"errors", "config", "data", "core", "runtime", "tasks", "training", "evaluate", "_console"},
    "scorecard": {"errors", "config", "data", "core", "runtime", "tasks", "training", "evaluate", "_console", "judge"},
    "run": {"errors", "config", "data", "core", "runtime", "tasks", "training", "evaluate", "scorecard", "_console",
            "__init__"},
    "export": {"errors", "config", "data", "core", "tasks", "training", "evaluate", "runtime", "run", "scorecard",
               "_console", "__init__"},
    "compress": {
        "errors", "config", "data", "core", "tasks", "training", "evaluate", "runtime", "run", "scorecard", "export",
        "_console"
    },
    "registry": {"errors", "config", "core", "data", "runtime", "evaluate"},
    "serve": {"errors", "core", "runtime", "registry", "__init__"},
    "tune": {"errors", "config", "core", "tasks", "run", "_console", "__init__"},
    "quickstart": {"errors", "config", "core", "run", "export", "compress", "runtime", "_console"},
    "scaffold": {"errors", "config", "core", "data", "tasks"},
    "cli": {"*"},
    "cli_ship": {"*"},
    "__main__": {"cli"},
    "__init__": {"errors", "config", "run", "tasks"},
}
# rooms that must never import torch (they run where torch is not installed, or need not be)
NO_TORCH = {"errors", "config", "data", "evaluate", "_console", "runtime", "core", "registry", "serve"}
# rooms a predict-only install runs: no pydantic (config), no data room either
NO_PYDANTIC = {"errors", "core", "runtime"}


def _room(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


FILES = sorted(PKG.rglob("*.py"))


def test_every_room_is_known() -> None:
    rooms = {_room(f) for f in FILES}
    assert rooms <= set(ALLOWED), f"new room(s) {rooms - set(ALLOWED)}: add them to ALLOWED with their layer"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    room = _room(path)
    allowed = ALLOWED[room]
    for mod in _imports(path):
        parts = mod.split(".")
        if parts[0] == "torch" or parts[0] == "accelerate":
            assert room not in NO_TORCH, f"{path.relative_to(PKG)} imports {mod}; room {room!r} must not use torch"
        if parts[0] in ("pydantic", "yaml"):
            assert room not in NO_PYDANTIC, f"{path.relative_to(PKG)} imports {mod}; room {room!r} must not"
        if parts[0] != "shipml":
            continue
        target = parts[1] if len(parts) > 1 else "__init__"
        if target == room or "*" in allowed:
            continue
        assert target in allowed, (
            f"{path.relative_to(PKG)} imports {mod}: room {room!r} may only import from {sorted(allowed)}"
        )


def test_checker_catches_a_wrong_import(tmp_path: Path) -> None:
    """The rule has teeth: an upward import in a data module is reported."""
    bad = tmp_path / "x.py"
    bad.write_text("from shipml.training import fit\nimport torch\n")
    mods = _imports(bad)
    assert "shipml.training" in mods and "torch" in mods
    assert "training" not in ALLOWED["data"] and "data" in NO_TORCH
