"""Unpacking .zip / .tar(.gz|.bz2|.xz) data sets into the cache, once, safely.

An archive is unpacked into `cache_dir()/archives/<sha256 of the archive>/`, so the same bytes are
unpacked once however often (and from wherever) they are loaded, and a changed archive gets a fresh
folder. Members that would land outside that folder (absolute paths, `..`, links pointing out) make
the whole archive rejected: a data set has no business writing elsewhere.

Unpacking is also bounded: a 2 MB zip of zeros can expand to 2 GB and fill the disk holding the cache.
The bytes written are counted *as they are written* (zip headers can lie about sizes; tar members are
written exactly as long as their headers say, which the count checks before each member) against
`data.archive.max_bytes` in all and `data.archive.max_ratio` times the archive's own size. Over either,
unpacking stops with a `DataError` naming the limit and the field that raises it, and the partial folder
is removed: nothing is left in the cache (and the next unpack removes what a killed one left).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from shipml.config import ArchiveConfig
from shipml.core.files import TEMP_PREFIX, remove_stale, temp_name
from shipml.data.cache import cache_subdir, file_sha256
from shipml.errors import DataError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "check_member_link",
    "check_member_name",
    "corrupt_archive",
    "is_archive",
    "unpack_archive",
]

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")

_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20
RATIO_FLOOR = 1 << 20  # the ratio is only checked past 1 MiB: tiny archives of repetitive text may exceed it


def _size(n: float) -> str:
    """Bytes in words: 21474836480 -> "20 GiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class _Budget:
    """Counts the bytes unpacked so far and refuses past `ArchiveConfig.max_bytes` or `max_ratio` x the
    archive's size (see the module docstring)."""

    def __init__(self, archive: Path, limits: ArchiveConfig) -> None:
        self.archive = archive
        self.limits = limits
        self.packed = max(archive.stat().st_size, 1)
        self.written = 0

    def add(self, n: int) -> None:
        """Count `n` more bytes; raise before the total crosses a limit."""
        self.written += n
        if self.written > self.limits.max_bytes:
            raise DataError(
                f"refusing to unpack {self.archive}: it expands to more than {_size(self.limits.max_bytes)} "
                f"(data.archive.max_bytes = {self.limits.max_bytes}). If the data set really is that large, raise "
                "data.archive.max_bytes (e.g. --set data.archive.max_bytes=100000000000) or unpack it yourself "
                "and point data.path at the folder"
            )
        ratio_cap = self.limits.max_ratio * self.packed
        if self.written > max(ratio_cap, RATIO_FLOOR):
            raise DataError(
                f"refusing to unpack {self.archive}: its {_size(self.packed)} expand to more than "
                f"{_size(ratio_cap)}, over {self.limits.max_ratio:g} times its size (data.archive.max_ratio = "
                f"{self.limits.max_ratio:g}); an archive that compresses this well is usually a decompression bomb. "
                "If you trust it, raise data.archive.max_ratio (e.g. --set data.archive.max_ratio=5000) or unpack "
                "it yourself and point data.path at the folder"
            )


def is_archive(path: Path) -> bool:
    """True when the file name ends in a suffix this module unpacks."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_archive(path: Path, limits: ArchiveConfig | None = None) -> tuple[Path, bool]:
    """The folder holding the unpacked archive, and whether it was unpacked now (False: cached).

    `limits` bounds what unpacking may write (default: `ArchiveConfig()`); a copy unpacked earlier is
    reused whatever the limits, since it already fitted on the disk."""
    base = cache_subdir("archives")
    target = base / file_sha256(path)
    if target.is_dir():
        return target, False
    budget = _Budget(path, limits or ArchiveConfig())
    remove_stale(base, legacy=(TEMP_PREFIX,))  # what an unpack killed mid-way (SIGKILL, OOM) left behind
    tmp = base / temp_name("unpack")
    tmp.mkdir()
    try:
        if path.name.lower().endswith(".zip"):
            _extract_zip(path, tmp, budget)
        else:
            _extract_tar(path, tmp, budget)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # another process finishing first is fine; anything else is not
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, True


def _unsafe(archive: Path, member: str, why: str) -> DataError:
    return DataError(
        f"refusing to unpack {archive}: member {member!r} {why}. A data archive must only hold "
        "relative paths inside itself; re-create it (e.g. `tar czf data.tar.gz folder/`)"
    )


def check_member_name(archive: Path, name: str) -> None:
    """Reject absolute member paths and `..`: unpacking must stay inside its folder."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise _unsafe(archive, name, "has an absolute path")
    if ".." in norm.split("/"):
        raise _unsafe(archive, name, "climbs out of the archive with '..'")


def check_member_link(archive: Path, name: str, target: str, relative_to_member: bool) -> None:
    """Reject links whose target is absolute or resolves outside the unpack folder."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise _unsafe(archive, name, f"is a link to the absolute path {target!r}")
    base = posixpath.dirname(name.replace("\\", "/")) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, norm))
    if resolved == ".." or resolved.startswith("../"):
        raise _unsafe(archive, name, f"is a link pointing outside the archive ({target!r})")


def corrupt_archive(archive: Path, err: BaseException) -> DataError:
    """The error for an archive that cannot be read to the end (or, with ENOSPC, cannot be written)."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return DataError(
            f"cannot unpack {archive}: no space left in the shipml cache ({cache_subdir('archives')}); free some "
            "space or set SHIPML_CACHE to a folder on a larger disk"
        )
    detail = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else type(err).__name__
    return DataError(
        f"cannot unpack {archive}: {detail}. The archive looks corrupt or truncated; re-download or re-create it"
    )


def _check_headers(archive: Path, sizes: list[int], budget: _Budget) -> None:
    """What the member headers claim, checked first: an honest bomb is refused before a byte is written (a
    dishonest one is stopped by the count while writing)."""
    _Budget(archive, budget.limits).add(sum(sizes))


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    def vet(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        # the "data" filter is a second line of defence: it also refuses devices and strips modes
        checked = tarfile.data_filter(member, path)
        if checked is not None and checked.isreg():
            budget.add(checked.size)  # tarfile writes exactly `size` bytes, or fails on a short stream
        return checked

    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            _check_headers(archive, [m.size for m in members if m.isreg()], budget)
            for m in members:
                check_member_name(archive, m.name)
                if m.issym():
                    check_member_link(archive, m.name, m.linkname, relative_to_member=True)
                elif m.islnk():
                    check_member_link(archive, m.name, m.linkname, relative_to_member=False)
            tf.extractall(dest, members=members, filter=vet)
    except DataError:
        raise
    except tarfile.FilterError as err:
        raise _unsafe(archive, err.tarinfo.name, str(err)) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as err:
        raise corrupt_archive(archive, err) from None


def _copy_counted(src: BinaryIO, dst: BinaryIO, budget: _Budget) -> None:
    """Copy in chunks, counting each chunk before it is written (a zip header's size is not trusted)."""
    while chunk := src.read(_CHUNK):
        budget.add(len(chunk))
        dst.write(chunk)


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                check_member_name(archive, info.filename)
            _check_headers(archive, [i.file_size for i in infos if not i.is_dir()], budget)
            for info in infos:
                if stat.S_ISLNK(info.external_attr >> 16):
                    # zip links are not materialised (nothing in a data set needs them), only vetted
                    check_member_link(archive, info.filename, zf.read(info).decode("utf-8", "replace"), True)
                    continue
                out = dest / info.filename
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    _copy_counted(src, dst, budget)
    except DataError:
        raise
    except RuntimeError as err:  # zipfile's way of saying "encrypted, needs a password"
        raise DataError(
            f"cannot unpack {archive}: {err}; unzip it yourself and point data.path at the folder"
        ) from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, NotImplementedError) as err:
        raise corrupt_archive(archive, err) from None
