"""`shipml` in a child process, for the kill-and-resume tests of every trainer (supervised and adversarial)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def shipml(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "shipml.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ | {"PYTHONHASHSEED": "0"})


def finish(proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    _out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]


def run_dir(root: Path, name: str) -> Path:
    """The one run directory `<name>-*` under root/runs."""
    found = list((root / "runs").glob(f"{name}-*"))
    assert len(found) == 1, found
    return found[0]
