"""The package store: every registered package, kept under its content digest and verified on every open.

    <root>/packages/<digest>/MANIFEST.json, model.onnx, signature.json, ...

`digest` is the sha256 of the package's MANIFEST.json bytes, which hold the sha256 of every other file: the
digest names the whole package, and equal packages are stored once. The catalog records digests only.

- **A package is present if and only if `packages/<digest>/MANIFEST.json` exists.** Every writer writes
  MANIFEST.json last and every reader (`has`, `digests`, `open`) looks for it, so a put killed at any point
  is simply absent, on every backend.
- **Local folder** (default; `file://` is the same): written to a `temp_name` folder beside the final name,
  every file fsynced, then one rename; a killed writer's temp folder is removed by the next put.
- **Object stores** (other fsspec URLs: `s3://bucket/prefix`, `memory://...`) have no rename: files go
  straight under `packages/<digest>/`, MANIFEST.json last as the commit. A killed put leaves files without
  a manifest: absent to every reader, overwritten by the next put of that digest (the prefix is named by
  its content, so they are nobody else's). Nothing is deleted after a failed put: a second writer of the
  same digest may have completed it meanwhile.
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
import warnings
import zipfile
from contextlib import nullcontext
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shipml.core.files import atomic_write_bytes, bytes_sha256, cache_dir, fsync_dir, remove_stale, temp_name
from shipml.errors import ExportError, RegistryError, ShipmlWarning
from shipml.runtime.format import MANIFEST, package_digest, safe_rel, verify_manifest

__all__ = ["PACKAGES", "PICKLE_SUFFIXES", "Store", "package_digest", "pickle_reason"]

PACKAGES = "packages"
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib"})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_NO_FOLDERS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}  # mkdir there may create a bucket


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


def _filesystem(url: str, options: dict[str, Any]) -> tuple[Any, str]:
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
        if text.startswith("file://"):
            text = text[len("file://"):]  # a local folder: it gets the real rename
        if "://" in text or "::" in text:
            self._fs, path = _filesystem(text, dict(storage_options or {}))
            self._base = f"{path.rstrip('/')}/{PACKAGES}"
        else:
            self._local = Path(text).expanduser()
            self._base = str(self._local / PACKAGES)
        self._cache = Path(cache).expanduser() if cache is not None else cache_dir() / "store"

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------------------------------------- reading
    def has(self, digest: str) -> bool:
        """Whether a complete package with this digest is stored (its MANIFEST.json, written last, exists)."""
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            return False
        try:
            if self._local is not None:
                return (self._local / PACKAGES / digest / MANIFEST).is_file()
            self._fs.invalidate_cache(self._base)
            return bool(self._fs.exists(f"{self._base}/{digest}/{MANIFEST}"))
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
            self._fs.invalidate_cache(self._base)
            found = self._fs.glob(f"{self._base}/*/{MANIFEST}")
        except OSError as err:
            raise RegistryError(f"cannot list the store {self.url} ({_why(err)}); check that it is reachable "
                                "and the credentials may read it") from None
        return sorted({n for n in map(_name, found) if n})

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
        folder = self._cache / digest
        if (folder / MANIFEST).is_file():
            try:
                self._verify(folder, digest)
                return folder
            except RegistryError as err:  # the cached copy was changed: the store's copy is the truth
                warnings.warn(f"{err} — downloading it again", ShipmlWarning, stacklevel=2)
                aside = folder.parent / temp_name(f"{digest[:12]}-damaged")
                os.rename(folder, aside)
                shutil.rmtree(aside, ignore_errors=True)
        try:
            self._download(digest, folder)
        except OSError as err:
            raise RegistryError(f"cannot read package {digest} from the store {self.url} ({_why(err)}); check "
                                "that it is reachable and the credentials may read it") from None
        self._verify(folder, digest)
        return folder

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
                self._put_remote(folder, files, manifest_bytes, digest)
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
                self._verify_remote(digest)
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

    def _put_remote(self, folder: Path, files: dict[str, dict[str, Any]], manifest_bytes: bytes,
                    digest: str) -> None:
        fs, base = self._fs, f"{self._base}/{digest}"
        if fs.exists(f"{base}/{MANIFEST}"):  # a damaged copy: absent while it is rewritten
            fs.rm_file(f"{base}/{MANIFEST}")
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        for rel, entry in files.items():
            if not protocols & _NO_FOLDERS:
                fs.makedirs(PurePosixPath(f"{base}/{rel}").parent.as_posix(), exist_ok=True)
            with open(folder / rel, "rb") as src, fs.open(f"{base}/{rel}", "wb") as dst:
                if not _matches(_copy(src, dst), entry):
                    raise _changed(folder, rel)
        with fs.open(f"{base}/{MANIFEST}", "wb") as dst:  # the commit: written last
            dst.write(manifest_bytes)
        fs.invalidate_cache(self._base)

    # ----------------------------------------------------------- small files beside the packages (holdouts)
    def _under(self, area: str, name: str, rel: str = "") -> str:
        if area == PACKAGES or not _DIGEST.match(name) or (rel and not _safe_rel(rel)):
            raise RegistryError(f"{area}/{name}/{rel} is not a place for files in the store {self.url}")
        base = str(self._local / area) if self._local is not None else f"{self._base.rsplit('/', 1)[0]}/{area}"
        return f"{base}/{name}" + (f"/{rel}" if rel else "")

    def put_files(self, area: str, name: str, files: dict[str, bytes], commit: str) -> None:
        """Small files as one unit under `<root>/<area>/<name>/` (`name` a digest), `commit` written last.
        Local: a temp folder, fsynced, then one rename (a present unit is replaced whole); object stores: the
        files, then `commit`, so a reader that looks for `commit` never sees a partial unit."""
        final = self._under(area, name)
        try:
            if self._local is None:
                if self._fs.exists(f"{final}/{commit}"):
                    self._fs.rm_file(f"{final}/{commit}")
                for rel in [r for r in files if r != commit] + [commit]:
                    self._fs.pipe_file(self._under(area, name, rel), files[rel])
                self._fs.invalidate_cache(final)
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
            self._fs.invalidate_cache(path.rsplit("/", 1)[0])
            return bytes(self._fs.cat_file(path))
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
                self._fs.pipe_file(path, data)
        except OSError as err:
            raise RegistryError(f"cannot write {area}/{name}/{rel} in the store {self.url}: {_why(err)}") from None

    # --------------------------------------------------------------------------------------- remote reads
    def _remote_manifest(self, digest: str) -> tuple[bytes, dict[str, dict[str, Any]]]:
        """A stored manifest, checked against its digest and for paths that would leave the package folder."""
        try:
            data = self._fs.cat_file(f"{self._base}/{digest}/{MANIFEST}")
        except FileNotFoundError:
            raise self._absent(digest) from None
        if bytes_sha256(data) != digest:
            raise self._damaged(digest, f"its {MANIFEST} does not hash to the digest")
        try:
            files = json.loads(data)["files"]
            assert isinstance(files, dict) and all(_safe_rel(r) and isinstance(e, dict) for r, e in files.items())
        except (ValueError, KeyError, TypeError, AssertionError):
            raise self._damaged(digest, f"its {MANIFEST} is not a package manifest") from None
        return data, files

    def _fetch(self, digest: str, files: dict[str, dict[str, Any]], into: Path | None) -> None:
        """Read every stored file of a remote package, hashing it against its manifest entry; written under
        `into` when given (a download), else only hashed (put's check that a stored copy is intact)."""
        for rel, entry in files.items():
            if into is not None:
                (into / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                with self._fs.open(f"{self._base}/{digest}/{rel}", "rb") as src, \
                        (open(into / rel, "wb") if into is not None else nullcontext(_Sink())) as dst:
                    got = _copy(src, dst)
            except FileNotFoundError:
                raise self._damaged(digest, f"{rel} is missing") from None
            if not _matches(got, entry):
                raise self._damaged(digest, f"{rel} does not match its sha256 in {MANIFEST}")

    def _verify_remote(self, digest: str) -> None:
        self._fetch(digest, self._remote_manifest(digest)[1], None)

    def _download(self, digest: str, folder: Path) -> None:
        """Fetch a remote package into the cache: to a temp folder, each file hashed, then one rename."""
        try:
            self._cache.mkdir(parents=True, exist_ok=True)
            remove_stale(self._cache)
        except OSError as err:
            raise RegistryError(f"cannot create the store cache {self._cache} ({_why(err)}); set SHIPML_CACHE to "
                                "a writable folder") from None
        data, files = self._remote_manifest(digest)
        tmp = self._cache / temp_name(digest[:12])
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


class _Sink:
    """A write target that keeps nothing: hashing a remote file without storing it."""

    def write(self, data: bytes) -> int:
        return len(data)


def _name(path: str) -> str | None:
    """The digest folder of a `.../packages/<digest>/MANIFEST.json` path, if it is a digest."""
    name = PurePosixPath(path).parent.name
    return name if _DIGEST.match(name) else None


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
