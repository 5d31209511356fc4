"""Run the `shipml` command in this test process (tests/ is on sys.path through its conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def in_process(*args: str, cwd: Path, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> subprocess.CompletedProcess[str]:
    """`shipml ARGS` through the same entry point (`shipml.cli.main`: parsing, the command, the error handler and
    exit code) in this process: a user's mistake is refused before any heavy work, and a fresh interpreter for
    each of them (~4 s of imports) would be most of the cost. Tests of what a process does stay in `shipml()`."""
    from shipml.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["shipml", *args])
    env = dict(os.environ)
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        os.environ.clear()  # a command may export settings for its child processes (e.g. the training backend)
        os.environ.update(env)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["shipml", *args], code, out.out, out.err)
