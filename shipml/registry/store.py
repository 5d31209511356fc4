"""The package store: every registered package, kept under its content digest and verified on every open.

    <root>/packages/<digest>/MANIFEST.json, model.onnx, signature.json, ...

`digest` is the sha256 of the package's MANIFEST.json bytes, which hold the sha256 of every other file: the
digest names the whole package, and equal packages are stored once. The catalog records digests only.

- **A package is present if and only if `packages/<digest>/MANIFEST.json` exists.** Every writer writes
  MANIFEST.json last and every reader (`has`, `digests`, `open`) looks for it, so a put killed at any point
  is simply absent, on every backend.
- **Local folder** (default; `file://` is the same): written to a `temp_name` folder beside the final name,
  every file fsynced, then one rename; a killed writer's temp folder is removed by the next put.
- **Object stores** (other fsspec URLs: `s3://bucket/prefix`, `memory://...`; the backend is in
  store_remote.py) have no rename: files go straight under `packages/<digest>/`, MANIFEST.json last as the
  commit. A killed put leaves files without a manifest: absent to every reader, overwritten by the next put
  of that digest.
- **Verification**: put refuses what the runtime refuses (`runtime.format.verify_manifest`: a missing, extra
  or changed file, a symbolic link) and any pickle (loading one runs code), and hashes every byte as it
  copies, so what is stored is what was checked. `open` verifies every time: a flipped byte is a
  RegistryError naming the digest and the file. A remote package is downloaded once into
  `$SHIPML_CACHE/store/<digest>` (default ~/.cache/shipml), verified, and that copy verified on every open.
- A pickle is recognised by its bytes (protocol 2-5 header `\\x80 <2..5>`; a zip holding a `.pkl`, as
  torch.save writes) and by PICKLE_SUFFIXES. Protocol 0/1 pickles have no header; the runtime never
  unpickles anything, so they cannot be loaded from a package either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from shipml.core.files import atomic_write_bytes, bytes_sha256, cache_dir, fsync_dir, remove_stale, temp_name
from shipml.errors import ExportError, RegistryError
from shipml.runtime.format import MANIFEST, package_digest, safe_rel, verify_manifest

if TYPE_CHECKING:
    from shipml.registry.store_remote import Remote, _Sink

__all__ = ["PACKAGES", "PICKLE_SUFFIXES", "Store", "package_digest", "pickle_reason"]

PACKAGES = "packages"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib"})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def pickle_reason(rel: str, path: Path) -> str | None:
    """Why the file at `path` (listed as `rel`) is a pickle, or None. Bytes are checked, not only names: a
    renamed torch.save file is still refused."""
    suffixes = [s.lower() for s in PurePosixPath(rel).suffixes]
    bad = [s for s in suffixes if s in PICKLE_SUFFIXES]
    if bad:
        return f"its suffix {bad[0]} is a pickle format (pickle, torch.save, joblib)"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"its bytes start with the pickle protocol-{head[1]} header"
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                inner = [n for n in zf.namelist() if PurePosixPath(n).suffix.lower() in PICKLE_SUFFIXES]
        except (zipfile.BadZipFile, OSError):
            inner = []
        if inner:
            return f"it is a zip archive holding the pickle {inner[0]} (what torch.save writes)"
    return None


def _safe_rel(rel: object) -> bool:
    """A manifest entry a remote package may hold: inside the folder (the format's rule), not the manifest."""
    return isinstance(rel, str) and rel != MANIFEST and "\\" not in rel and safe_rel(rel)


def _copy(src: IO[bytes], dst: IO[bytes] | _Sink) -> tuple[int, str]:
    """Copy a stream in chunks, returning (bytes, sha256) of exactly what was written."""
    h, n = hashlib.sha256(), 0
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        dst.write(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def _matches(got: tuple[int, str], entry: dict[str, Any]) -> bool:
    return got == (entry.get("bytes"), entry.get("sha256"))


def _why(err: OSError) -> str:
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return f"{err.strerror or err}{where}"


class Store:
    """Packages by content digest, in a local folder (default) or under an fsspec URL (`s3://bucket/prefix`).

    `storage_options` go to fsspec (e.g. `{"client_kwargs": {"endpoint_url": ...}}` for an S3-compatible
    server); `cache` is where a remote store's packages are downloaded to run (default
    `$SHIPML_CACHE/store`). Creating a Store touches nothing: a read-only store is fine for a server.
    """

    def __init__(self, root: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None,
                 cache: str | os.PathLike[str] | None = None) -> None:
        text = os.fspath(root)
        self.url = text
        self._fs: Any = None
        self._local: Path | None = None
        self._remote: Remote | None = None
        if text.startswith("file://"):
            text = text[len("file://"):]  # a local folder: it gets the real rename
        if "://" in text or "::" in text:
            from shipml.registry.store_remote import Remote

            self._remote = Remote(self, text, dict(storage_options or {}))
            self._fs, self._base = self._remote.fs, self._remote.base
        else:
            self._local = Path(text).expanduser()
            self._base = str(self._local / PACKAGES)
        self._cache = Path(cache).expanduser() if cache is not None else cache_dir() / "store"

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def _backend(self) -> Remote:
        """The object-store backend (store_remote.py), where the store is an fsspec URL."""
        assert self._remote is not None, "a local store has no object-store backend"
        return self._remote

    # ------------------------------------------------------------------------------------------- reading
    def has(self, digest: str) -> bool:
        """Whether a complete package with this digest is stored (its MANIFEST.json, written last, exists)."""
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            return False
        try:
            if self._local is not None:
                return (self._local / PACKAGES / digest / MANIFEST).is_file()
            return self._backend.has(digest)
        except OSError as err:
            raise RegistryError(f"cannot read the store {self.url} ({_why(err)}); check that it is reachable "
                                "and the credentials may read it") from None

    def digests(self) -> list[str]:
        """Every complete package in the store, sorted (temp folders and manifest-less prefixes are not)."""
        try:
            if self._local is not None:
                folder = self._local / PACKAGES
                if not folder.is_dir():
                    return []
                return sorted(p.name for p in folder.iterdir() if _DIGEST.match(p.name) and (p / MANIFEST).is_file())
            return self._backend.digests()
        except OSError as err:
            raise RegistryError(f"cannot list the store {self.url} ({_why(err)}); check that it is reachable "
                                "and the credentials may read it") from None

    def open(self, digest: str) -> Path:
        """A verified local folder holding the package, to run from. Verified on every call: a changed,
        missing or extra file is a RegistryError naming the digest and the file."""
        self._check_digest(digest)
        if self._local is not None:
            folder = self._local / PACKAGES / digest
            if not (folder / MANIFEST).is_file():
                raise self._absent(digest)
            self._verify(folder, digest)
            return folder
        return self._backend.open(digest)  # a verified copy in the cache

    # ------------------------------------------------------------------------------------------- writing
    def put(self, package: str | os.PathLike[str]) -> str:
        """Store a package folder under its digest and return the digest. The package is verified and
        checked for pickles before anything is written; a digest already stored intact is not rewritten
        (a damaged stored copy is replaced)."""
        folder = Path(package)
        manifest_bytes, files = self._check_source(folder)
        digest = bytes_sha256(manifest_bytes)
        try:
            if self._intact(digest):
                return digest
            if self._local is not None:
                self._put_local(folder, files, manifest_bytes, digest)
            else:
                self._backend.put(folder, files, manifest_bytes, digest)
        except OSError as err:
            raise RegistryError(f"cannot store {folder} in {self.url}: {_why(err)}; the store root must be a "
                                "writable folder (or a bucket the credentials may write to)") from None
        return digest

    def _check_source(self, folder: Path) -> tuple[bytes, dict[str, dict[str, Any]]]:
        """The manifest bytes and file entries of a package that verifies and holds no pickle."""
        if not folder.is_dir():
            raise RegistryError(f"{folder} is not a folder: register a package folder (runs/<id>/package or "
                                "runs/<id>/variants/<name>)")
        try:
            manifest_bytes = (folder / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{folder} is not a package: it has no {MANIFEST}; export the run first "
                                "(shipml export runs/<id>)") from None
        except OSError as err:
            raise RegistryError(f"cannot read {folder / MANIFEST} ({_why(err)})") from None
        try:
            manifest = verify_manifest(folder)
        except ExportError as err:
            raise RegistryError(f"{folder} cannot be stored: {err}") from None
        if json.loads(manifest_bytes) != manifest:
            raise RegistryError(f"{folder / MANIFEST} changed while it was read; register the package again "
                                "once nothing is writing to it")
        files: dict[str, dict[str, Any]] = manifest["files"]
        for rel in files:
            reason = pickle_reason(rel, folder / rel)
            if reason:
                raise RegistryError(f"{folder}: {rel} is a pickle ({reason}). A package holds no pickles (loading "
                                    "one runs arbitrary code): remove the file and re-export the package, with "
                                    "weights as ONNX or safetensors")
        return manifest_bytes, files

    def _intact(self, digest: str) -> bool:
        """Whether the digest is stored and verifies: put's idempotence, and its repair of a damaged copy."""
        if not self.has(digest):
            return False
        try:
            if self._local is not None:
                self._verify(self._local / PACKAGES / digest, digest)
            else:
                self._backend.verify(digest)
            return True
        except RegistryError:
            return False

    def _put_local(self, folder: Path, files: dict[str, dict[str, Any]], manifest_bytes: bytes,
                   digest: str) -> None:
        packages = self._local / PACKAGES  # type: ignore[operator]
        packages.mkdir(parents=True, exist_ok=True)
        remove_stale(packages)  # what killed puts left
        final = packages / digest
        tmp = packages / temp_name(digest[:12])
        tmp.mkdir()
        try:
            for rel, entry in files.items():
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                _write_local(folder, rel, dst, entry)
            with open(tmp / MANIFEST, "wb") as fh:
                fh.write(manifest_bytes)
                os.fsync(fh.fileno())
            for d in sorted({(tmp / rel).parent for rel in files} | {tmp}, key=lambda p: -len(p.parts)):
                fsync_dir(d)  # deepest first: every entry is durable before the rename publishes it
            if final.exists():  # a damaged copy (put only gets here when it does not verify): set it aside
                aside = packages / temp_name(f"{digest[:12]}-damaged")
                os.rename(final, aside)
                shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self._intact(digest):  # not another writer finishing the same digest first
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(packages)

    # ----------------------------------------------------------- small files beside the packages (holdouts)
    def _under(self, area: str, name: str, rel: str = "") -> str:
        if area == PACKAGES or not _DIGEST.match(name) or (rel and not _safe_rel(rel)):
            raise RegistryError(f"{area}/{name}/{rel} is not a place for files in the store {self.url}")
        base = str(self._local / area) if self._local is not None else self._backend.area(area)
        return f"{base}/{name}" + (f"/{rel}" if rel else "")

    def put_files(self, area: str, name: str, files: dict[str, bytes], commit: str) -> None:
        """Small files as one unit under `<root>/<area>/<name>/` (`name` a digest), `commit` written last.
        Local: a temp folder, fsynced, then one rename (a present unit is replaced whole); object stores: the
        files, then `commit`, so a reader that looks for `commit` never sees a partial unit."""
        final = self._under(area, name)
        try:
            if self._remote is not None:
                for rel in files:
                    self._under(area, name, rel)  # every name checked before anything is written
                self._remote.put_files(final, files, commit)
                return
            parent = Path(final).parent
            parent.mkdir(parents=True, exist_ok=True)
            remove_stale(parent)
            tmp = parent / temp_name(name[:12])
            tmp.mkdir()
            try:
                for rel in [r for r in files if r != commit] + [commit]:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    with open(tmp / rel, "wb") as fh:
                        fh.write(files[rel])
                        os.fsync(fh.fileno())
                fsync_dir(tmp)
                if Path(final).exists():  # a damaged unit (callers verify first): set it aside
                    aside = parent / temp_name(f"{name[:12]}-damaged")
                    os.rename(final, aside)
                    shutil.rmtree(aside, ignore_errors=True)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(parent)
        except OSError as err:
            raise RegistryError(f"cannot write {area}/{name} in the store {self.url}: {_why(err)}") from None

    def read_file(self, area: str, name: str, rel: str) -> bytes | None:
        """The bytes of `<root>/<area>/<name>/<rel>`, or None when it is absent."""
        path = self._under(area, name, rel)
        try:
            if self._local is not None:
                return Path(path).read_bytes()
            return self._backend.read_file(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise RegistryError(f"cannot read {area}/{name}/{rel} in the store {self.url} ({_why(err)})") from None

    def write_file(self, area: str, name: str, rel: str, data: bytes) -> None:
        """One file written whole or not at all (local: temp name + rename; object stores write objects whole)."""
        path = self._under(area, name, rel)
        try:
            if self._local is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(Path(path), data)
            else:
                self._backend.write_file(path, data)
        except OSError as err:
            raise RegistryError(f"cannot write {area}/{name}/{rel} in the store {self.url}: {_why(err)}") from None

    # ---------------------------------------------------------------------------------------------- errors
    def _verify(self, folder: Path, digest: str) -> None:
        try:
            verify_manifest(folder)
        except ExportError as err:
            raise self._damaged(digest, str(err)) from None
        if package_digest(folder) != digest:
            raise self._damaged(digest, f"{folder / MANIFEST} does not hash to the digest")

    def _check_digest(self, digest: str) -> None:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise RegistryError(f"{digest!r} is not a package digest (64 lowercase hex characters, the sha256 "
                                f"of a package's {MANIFEST})")

    def _absent(self, digest: str) -> RegistryError:
        return RegistryError(f"no package {digest} in the store {self.url}; register the package first")

    def _damaged(self, digest: str, why: str) -> RegistryError:
        return RegistryError(f"package {digest} in the store {self.url} is damaged: {why}. Put the package again "
                             "from its source (Store.put repairs it); until then it cannot be opened")


def _changed(folder: Path, rel: str) -> RegistryError:
    return RegistryError(f"{folder}: {rel} changed while it was being stored (it no longer matches {MANIFEST}); "
                         "register the package again once nothing is writing to it")


def _write_local(folder: Path, rel: str, dst: Path, entry: dict[str, Any]) -> None:
    """One file copied, hashed against its manifest entry and fsynced before the folder's rename."""
    with open(folder / rel, "rb") as s, open(dst, "wb") as d:
        got = _copy(s, d)
        d.flush()
        os.fsync(d.fileno())
    if not _matches(got, entry):
        raise _changed(folder, rel)
