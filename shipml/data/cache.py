"""Where shipml keeps what it derives from user data: unpacked archives and decoded images.

Everything derived is written under one cache folder, never beside the user's files, and always
atomically (temp name in the same folder, then rename), so a crash or two concurrent runs can never
leave a half-written entry that a later run would trust.
"""

from __future__ import annotations

from pathlib import Path

from shipml.core.files import atomic_write_bytes, cache_dir, file_sha256
from shipml.errors import DataError

__all__ = ["atomic_write_bytes", "cache_dir", "cache_subdir", "file_sha256"]


def cache_subdir(name: str) -> Path:
    """A created sub-folder of the cache; a clear DataError if the cache cannot be written."""
    path = cache_dir() / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the shipml cache folder {path} ({err.strerror or err}); "
            "set SHIPML_CACHE to a writable folder"
        ) from None
    return path
