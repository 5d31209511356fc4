"""Unpacking .zip / .tar(.gz|.bz2|.xz) data sets into the cache, once, safely.

An archive is unpacked into `cache_dir()/archives/<sha256 of the archive>/`, so the same bytes are
unpacked once however often (and from wherever) they are loaded, and a changed archive gets a fresh
folder. Members that would land outside that folder (absolute paths, `..`, links pointing out) make
the whole archive rejected: a data set has no business writing elsewhere.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

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


def is_archive(path: Path) -> bool:
    """True when the file name ends in a suffix this module unpacks."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_archive(path: Path) -> tuple[Path, bool]:
    """The folder holding the unpacked archive, and whether it was unpacked now (False: cached)."""
    base = cache_subdir("archives")
    target = base / file_sha256(path)
    if target.is_dir():
        return target, False
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-"))
    try:
        if path.name.lower().endswith(".zip"):
            _extract_zip(path, tmp)
        else:
            _extract_tar(path, tmp)
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
    """The error for an archive that cannot be read to the end."""
    detail = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else type(err).__name__
    return DataError(
        f"cannot unpack {archive}: {detail}. The archive looks corrupt or truncated; re-download or re-create it"
    )


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for m in members:
                check_member_name(archive, m.name)
                if m.issym():
                    check_member_link(archive, m.name, m.linkname, relative_to_member=True)
                elif m.islnk():
                    check_member_link(archive, m.name, m.linkname, relative_to_member=False)
            # the "data" filter is a second line of defence: it also refuses devices and strips modes
            tf.extractall(dest, members=members, filter="data")
    except DataError:
        raise
    except tarfile.FilterError as err:
        raise _unsafe(archive, err.tarinfo.name, str(err)) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as err:
        raise corrupt_archive(archive, err) from None


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                check_member_name(archive, info.filename)
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
                    shutil.copyfileobj(src, dst, 1 << 20)
    except DataError:
        raise
    except RuntimeError as err:  # zipfile's way of saying "encrypted, needs a password"
        raise DataError(
            f"cannot unpack {archive}: {err}; unzip it yourself and point data.path at the folder"
        ) from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, NotImplementedError) as err:
        raise corrupt_archive(archive, err) from None
