"""Fixtures of the server tests (helpers in servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import EMAIL, slow_package  # (puts tests/runtime on sys.path)
from test_runtime_package import image_package, table_package, text_package, text_prep


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packages")
    return {"img": image_package(root / "img")[0], "tab": table_package(root / "tab")[0],
            "txt": text_package(root / "txt", text_prep(email=EMAIL))[0],
            "poison": slow_package(root / "poison", 1), "slow": slow_package(root / "slow", 60, 1024)}
