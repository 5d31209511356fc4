"""The bottom layer's file helpers: atomic writes leave nothing half-written, temporaries of killed processes
are removed (and a live writer's are kept), the lock refuses a second holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipml.core.files import (
    _HOST,
    atomic_write_bytes,
    atomic_write_json,
    exclusive,
    file_sha256,
    remove_stale,
    temp_name,
)
from shipml.core.values import FLOAT32_MAX, category_text, finite_numbers


def test_atomic_write_replaces_whole_and_cleans_up_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    assert target.read_text() == '{\n  "v": 1\n}\n'

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    assert target.read_text() == '{\n  "v": 1\n}\n'  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # and no temp file is left behind


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 << 20)  # more than one read chunk
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_remove_stale_removes_only_what_dead_processes_left(tmp_path: Path) -> None:
    dead = tmp_path / f".tmp-{_HOST}.{_dead_pid()}-package-abc"
    dead.mkdir()
    (dead / "model.onnx").write_bytes(b"x" * 100)
    live = tmp_path / temp_name("package")  # this process: alive
    live.mkdir()
    old_legacy = tmp_path / ".int8-work-q1w2"
    old_legacy.mkdir()
    os.utime(old_legacy, (time.time() - 7 * 3600,) * 2)
    new_legacy = tmp_path / ".distill-work-zz"  # may belong to a writer still running: kept
    new_legacy.mkdir()
    user = tmp_path / "my-notes-work-1"  # not hidden: never ours
    user.mkdir()
    os.utime(user, (time.time() - 7 * 3600,) * 2)
    # another container's (its pid means nothing here): kept while it may be live, removed once old
    foreign_new = tmp_path / f".tmp-0badc0de.{_dead_pid()}-package-x"
    foreign_new.mkdir()
    foreign_old = tmp_path / f".tmp-0badc0de.{_dead_pid()}-package-y"
    foreign_old.mkdir()
    os.utime(foreign_old, (time.time() - 7 * 3600,) * 2)
    removed = remove_stale(tmp_path, legacy=("-work-",))
    assert removed == sorted([dead.name, old_legacy.name, foreign_old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, new_legacy.name, user.name,
                                                                 foreign_new.name])


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; results must be readable as open() would have made them (umask applied)."""
    old = os.umask(0o022)
    try:
        from importlib import reload

        from shipml.core import files

        reload(files)  # the mode is read from the umask at import
        files.atomic_write_bytes(tmp_path / "run.json", b"{}")
        assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_exclusive_refuses_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    code = ("import sys, time\nfrom pathlib import Path\nfrom shipml.core.files import exclusive\n"
            "with exclusive(Path(sys.argv[1]), RuntimeError('busy')):\n    print('held', flush=True)\n"
            "    time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match="busy"), exclusive(lock, RuntimeError("busy")):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(lock, RuntimeError("busy")):  # the OS dropped the killed holder's lock
        pass


def test_finite_numbers_treats_overflow_and_infinity_as_missing() -> None:
    s = pd.Series(["1.5", 2, "inf", "-inf", 1e300, -1e39, FLOAT32_MAX, "abc", None, np.nan, 3e38])
    got, too_big = finite_numbers(s)
    assert too_big == 4  # inf, -inf, 1e300, -1e39 (text and missing are not counted)
    expected = [1.5, 2.0, np.nan, np.nan, np.nan, np.nan, FLOAT32_MAX, np.nan, np.nan, np.nan, 3e38]
    np.testing.assert_array_equal(got, np.array(expected))
    assert np.isfinite(got[~np.isnan(got)].astype(np.float32)).all()  # everything kept fits float32


def test_category_text_forms() -> None:
    s = pd.Series([1, 1.0, 2.5, True, None, "x", np.int64(3)], dtype=object)
    assert category_text(s).tolist()[:4] == ["1", "1", "2.5", "True"]
    assert pd.isna(category_text(s)[4]) and category_text(s).tolist()[5:] == ["x", "3"]
