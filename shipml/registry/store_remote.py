"""The object-store backend of the package store: an fsspec URL (`s3://bucket/prefix`, `memory://...`).

Object stores have no rename, so nothing is published by one: files go straight under `packages/<digest>/` and
MANIFEST.json is written last, as the commit. A package is present if and only if its MANIFEST.json exists, so
a put killed at any point leaves files without a manifest: absent to every reader, and overwritten by the next
put of that digest (the prefix is named by its content, so they are nobody else's). Nothing is deleted after a
failed put: a second writer of the same digest may have completed it meanwhile. The small-file areas beside
the packages (holdouts) follow the same rule with their own commit file.

Packages run from a local copy: downloaded once into the cache (`$SHIPML_CACHE/store/<digest>`, to a temp folder,
each file hashed against the manifest, then one rename), and that copy verified on every open.

`Store` (store.py) is the facade: it checks digests and sources, translates errors and picks this backend for
any URL that is not a local folder. Copies go through `store._copy`, the one chunked copy-and-hash of both
backends.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from contextlib import nullcontext
from pathlib import Path, PurePosixPath
from typing import Any

from shipml.core.files import bytes_sha256, remove_stale, temp_name
from shipml.errors import RegistryError, ShipmlWarning
from shipml.registry import store as _store
from shipml.runtime.format import MANIFEST

__all__ = ["Remote", "filesystem"]

_NO_FOLDERS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}  # mkdir there may create a bucket


def filesystem(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem and path of a store URL; a missing backend names the package to install."""
    protocol = url.split("://", 1)[0]
    try:
        import fsspec

        return fsspec.core.url_to_fs(url, **options)
    except ImportError as err:
        fix = ("pip install 'shipml[s3]'" if protocol in ("s3", "s3a")
               else f"install the fsspec backend for {protocol}:// (fsspec's list of known implementations)")
        raise RegistryError(f"the store {url} needs a package that is not installed ({err}); {fix}") from None
    except ValueError as err:
        raise RegistryError(f"the store {url} is not a usable URL ({err}); give a local folder or an fsspec "
                            "URL such as s3://bucket/prefix") from None


class _Sink:
    """A write target that keeps nothing: hashing a remote file without storing it."""

    def write(self, data: bytes) -> int:
        return len(data)


def _name(path: str) -> str | None:
    """The digest folder of a `.../packages/<digest>/MANIFEST.json` path, if it is a digest."""
    name = PurePosixPath(path).parent.name
    return name if _store._DIGEST.match(name) else None


class Remote:
    """The packages under one fsspec URL (`store` is the facade, for its url, cache and error messages)."""

    def __init__(self, store: _store.Store, url: str, options: dict[str, Any]) -> None:
        self.store = store
        self.fs, path = filesystem(url, options)
        self.root = path.rstrip("/")
        self.base = f"{self.root}/{_store.PACKAGES}"

    # ------------------------------------------------------------------------------------------- reading
    def has(self, digest: str) -> bool:
        self.fs.invalidate_cache(self.base)
        return bool(self.fs.exists(f"{self.base}/{digest}/{MANIFEST}"))

    def digests(self) -> list[str]:
        self.fs.invalidate_cache(self.base)
        return sorted({n for n in map(_name, self.fs.glob(f"{self.base}/*/{MANIFEST}")) if n})

    def open(self, digest: str) -> Path:
        """The package's verified copy in the cache, downloaded first when there is none (or it was changed)."""
        store = self.store
        folder = store._cache / digest
        if (folder / MANIFEST).is_file():
            try:
                store._verify(folder, digest)
                return folder
            except RegistryError as err:  # the cached copy was changed: the store's copy is the truth
                warnings.warn(f"{err} — downloading it again", ShipmlWarning, stacklevel=3)
                aside = folder.parent / temp_name(f"{digest[:12]}-damaged")
                os.rename(folder, aside)
                shutil.rmtree(aside, ignore_errors=True)
        try:
            self._download(digest, folder)
        except OSError as err:
            raise RegistryError(f"cannot read package {digest} from the store {store.url} ({_store._why(err)}); "
                                "check that it is reachable and the credentials may read it") from None
        store._verify(folder, digest)
        return folder

    def verify(self, digest: str) -> None:
        """Every stored file hashed against the manifest (put's check that a stored copy is intact)."""
        self._fetch(digest, self._manifest(digest)[1], None)

    def _manifest(self, digest: str) -> tuple[bytes, dict[str, dict[str, Any]]]:
        """A stored manifest, checked against its digest and for paths that would leave the package folder."""
        try:
            data = self.fs.cat_file(f"{self.base}/{digest}/{MANIFEST}")
        except FileNotFoundError:
            raise self.store._absent(digest) from None
        if bytes_sha256(data) != digest:
            raise self.store._damaged(digest, f"its {MANIFEST} does not hash to the digest")
        try:
            files = json.loads(data)["files"]
            assert isinstance(files, dict) and all(_store._safe_rel(r) and isinstance(e, dict)
                                                   for r, e in files.items())
        except (ValueError, KeyError, TypeError, AssertionError):
            raise self.store._damaged(digest, f"its {MANIFEST} is not a package manifest") from None
        return data, files

    def _fetch(self, digest: str, files: dict[str, dict[str, Any]], into: Path | None) -> None:
        """Read every stored file of a package, hashing it against its manifest entry; written under `into`
        when given (a download), else only hashed."""
        for rel, entry in files.items():
            if into is not None:
                (into / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                with self.fs.open(f"{self.base}/{digest}/{rel}", "rb") as src, \
                        (open(into / rel, "wb") if into is not None else nullcontext(_Sink())) as dst:
                    got = _store._copy(src, dst)
            except FileNotFoundError:
                raise self.store._damaged(digest, f"{rel} is missing") from None
            if not _store._matches(got, entry):
                raise self.store._damaged(digest, f"{rel} does not match its sha256 in {MANIFEST}")

    def _download(self, digest: str, folder: Path) -> None:
        """Fetch a package into the cache: to a temp folder, each file hashed, then one rename."""
        cache = self.store._cache
        try:
            cache.mkdir(parents=True, exist_ok=True)
            remove_stale(cache)
        except OSError as err:
            raise RegistryError(f"cannot create the store cache {cache} ({_store._why(err)}); set SHIPML_CACHE "
                                "to a writable folder") from None
        data, files = self._manifest(digest)
        tmp = cache / temp_name(digest[:12])
        tmp.mkdir()
        try:
            self._fetch(digest, files, tmp)
            (tmp / MANIFEST).write_bytes(data)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / MANIFEST).is_file():  # not another process caching it first
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ------------------------------------------------------------------------------------------- writing
    def put(self, folder: Path, files: dict[str, dict[str, Any]], manifest_bytes: bytes, digest: str) -> None:
        """Every file of a verified package, hashed as it is copied, then MANIFEST.json: the commit."""
        fs, base = self.fs, f"{self.base}/{digest}"
        if fs.exists(f"{base}/{MANIFEST}"):  # a damaged copy: absent while it is rewritten
            fs.rm_file(f"{base}/{MANIFEST}")
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        for rel, entry in files.items():
            if not protocols & _NO_FOLDERS:
                fs.makedirs(PurePosixPath(f"{base}/{rel}").parent.as_posix(), exist_ok=True)
            with open(folder / rel, "rb") as src, fs.open(f"{base}/{rel}", "wb") as dst:
                if not _store._matches(_store._copy(src, dst), entry):
                    raise _store._changed(folder, rel)
        with fs.open(f"{base}/{MANIFEST}", "wb") as dst:  # the commit: written last
            dst.write(manifest_bytes)
        fs.invalidate_cache(self.base)

    # ----------------------------------------------------------- small files beside the packages (holdouts)
    def area(self, area: str) -> str:
        return f"{self.root}/{area}"

    def put_files(self, final: str, files: dict[str, bytes], commit: str) -> None:
        """The files of one unit under `final`, then `commit` (a present unit loses its commit first)."""
        if self.fs.exists(f"{final}/{commit}"):
            self.fs.rm_file(f"{final}/{commit}")
        for rel in [r for r in files if r != commit] + [commit]:
            self.fs.pipe_file(f"{final}/{rel}", files[rel])
        self.fs.invalidate_cache(final)

    def read_file(self, path: str) -> bytes:
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        return bytes(self.fs.cat_file(path))

    def write_file(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)  # objects are written whole
