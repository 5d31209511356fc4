"""Writing files so that readers never see half of one, and hashing them.

Every durable write in shipml goes through here: the bytes go to a temporary name in the same folder,
are fsynced, and replace the final name in one rename (then the folder is fsynced, so the rename itself
survives a power cut). On any error the temporary file is removed. A process killed with SIGKILL cannot
clean up, so its temporaries are named `.tmp-<pid>-...` and `remove_stale` deletes them once that process
is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "TEMP_PREFIX",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "bytes_sha256",
    "cache_dir",
    "exclusive",
    "file_sha256",
    "fsync_dir",
    "remove_stale",
    "temp_name",
]

TEMP_PREFIX = ".tmp-"  # every temporary file or folder shipml writes starts with this
_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide results from other users
# the machine a temp name's pid belongs to: a run folder or cache shared between containers or hosts holds pids
# of other pid namespaces, which must not be judged alive or dead by this machine's pid table
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def cache_dir() -> Path:
    """Where shipml keeps what it derives: `$SHIPML_CACHE` if set (tests, shared caches), else ~/.cache/shipml."""
    env = os.environ.get("SHIPML_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "shipml"


def file_sha256(path: Path) -> str:
    """sha256 hex of a file's bytes, read in chunks so large files do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; file systems that cannot fsync a folder are skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path`: a reader (or a crash) sees either the old file or the complete new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{_HOST}.{os.getpid()}-",
                               suffix=f"-{path.name}")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _fsync_tree(folder: Path) -> None:
    """Flush file contents before the rename, so a crash cannot leave the final name over empty files."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; on success it replaces `final` in one rename.

    On an exception the temporary folder is removed and `final` is left as it was: no reader ever sees a
    half-written folder under the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / temp_name(final.name)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    try:
        if final.exists() or final.is_symlink():
            # not a temp name: if this process dies between the two renames, this is the only copy left
            old = final.parent / f".old-{final.name}-{secrets.token_hex(6)}"
            os.rename(final, old)
        try:
            os.rename(tmp, final)
        except BaseException:
            if old is not None:
                os.rename(old, final)  # put the previous folder back
            raise
    except BaseException:  # e.g. another writer published `final` first: leave theirs, drop ours
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    if old is not None:
        _remove(old)


@contextmanager
def exclusive(lock_file: Path, busy: Exception) -> Iterator[None]:
    """Hold an advisory lock on `lock_file` for the block; raise `busy` at once if another process holds it.
    The OS drops the lock when its holder dies, so a killed holder never blocks the next one."""
    import fcntl

    with open(lock_file, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def temp_name(label: str) -> str:
    """A temporary name that says who made it: `.tmp-<host>.<pid>-<label>-<random>`. `remove_stale` deletes it
    once that process is gone, so a writer killed with SIGKILL leaves nothing behind for long."""
    return f"{TEMP_PREFIX}{_HOST}.{os.getpid()}-{label}-{secrets.token_hex(6)}"


def _owner_alive(name: str) -> bool | None:
    """Whether the process named in a `temp_name` still runs; None when that cannot be told here (a name
    without a pid, or one made on another host or container)."""
    if not name.startswith(TEMP_PREFIX):
        return None
    host, _, pid = name[len(TEMP_PREFIX):].split("-", 1)[0].partition(".")
    if host != _HOST or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(folder: Path, *, legacy: tuple[str, ...] = (), older_than_s: float = 6 * 3600.0) -> list[str]:
    """Delete temporaries that killed processes left in `folder`: `temp_name` entries of this host whose process
    is gone; temp names of other hosts, and entries whose name contains one of the `legacy` markers (names
    from before `temp_name`), once they are older than `older_than_s`. Returns the names removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for entry in folder.iterdir():
        alive = _owner_alive(entry.name)
        if alive is None:
            ours = entry.name.startswith(TEMP_PREFIX)
            if not (ours or (entry.name.startswith(".") and any(m in entry.name for m in legacy))):
                continue
            try:
                if entry.lstat().st_mtime > cutoff:
                    continue
            except OSError:
                continue
        elif alive:
            continue
        _remove(entry)
        removed.append(entry.name)
    return sorted(removed)
