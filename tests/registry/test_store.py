"""The package store: round trips on a local folder, fsspec's memory filesystem and a real S3-compatible server
(moto's server mode on localhost, driven through s3fs), refusal of damaged packages and pickles, a flipped byte
caught on open, and puts that die half-way leaving nothing a reader would take for a package."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))  # the runtime tests' package builders
from test_runtime_package import image_package, table_package

import shipml.registry.store as store_mod
from shipml.core.files import bytes_sha256
from shipml.errors import RegistryError, ShipmlWarning
from shipml.registry.store import Store, package_digest
from shipml.runtime import Package
from shipml.runtime.format import write_manifest


def _leftovers(root: Path) -> list[str]:
    folder = root / "packages"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _flip(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------- local folder
def test_put_open_round_trip_locally(tmp_path: Path) -> None:
    pkg, _ = image_package(tmp_path / "pkg")
    store = Store(tmp_path / "store")
    assert store.digests() == [] and not store.has("0" * 64)
    digest = store.put(pkg)
    assert digest == bytes_sha256((pkg / "MANIFEST.json").read_bytes()) == package_digest(pkg)
    assert store.has(digest) and store.digests() == [digest]
    opened = store.open(digest)
    assert opened == tmp_path / "store" / "packages" / digest
    assert sorted(p.relative_to(opened) for p in opened.rglob("*")) == sorted(
        p.relative_to(pkg) for p in pkg.rglob("*"))
    assert len(Package.open(opened).predict(_pixels())) == 2  # runnable as stored
    other = store.put(table_package(tmp_path / "table")[0])
    assert store.digests() == sorted([digest, other])
    assert _leftovers(tmp_path / "store") == sorted([digest, other])  # no temp folders left behind


def _pixels() -> Any:
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, size=(2, 6, 5, 3), dtype=np.uint8)


def test_put_is_idempotent_and_the_digest_is_the_content(tmp_path: Path) -> None:
    pkg, _ = image_package(tmp_path / "pkg")
    store = Store(tmp_path / "store")
    digest = store.put(pkg)
    stored = store.open(digest) / "model.onnx"
    before = stored.stat()
    copy = shutil.copytree(pkg, tmp_path / "elsewhere" / "copy")
    assert store.put(copy) == digest and store.put(pkg) == digest
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert store.digests() == [digest]


def test_file_url_is_the_local_store(tmp_path: Path) -> None:
    digest = Store(f"file://{tmp_path / 'store'}").put(image_package(tmp_path / "pkg")[0])
    assert Store(tmp_path / "store").open(digest) == tmp_path / "store" / "packages" / digest


def _missing(pkg: Path) -> None:
    (pkg / "metrics.json").unlink()


def _changed(pkg: Path) -> None:
    _flip(pkg / "model.onnx")


def _extra(pkg: Path) -> None:
    (pkg / "notes.txt").write_text("hello")


def _symlink(pkg: Path) -> None:
    target = pkg.parent / "outside.json"
    (pkg / "metrics.json").rename(target)
    (pkg / "metrics.json").symlink_to(target)


def _listed(name: str, data: bytes) -> Callable[[Path], None]:
    def damage(pkg: Path) -> None:
        (pkg / "assets").mkdir(exist_ok=True)
        (pkg / "assets" / name).write_bytes(data)
        write_manifest(pkg)  # listed in the manifest: verification alone would accept it

    return damage


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": [1.0]}, protocol=2))
    return buf.getvalue()


@pytest.mark.parametrize(("damage", "says"), [
    (_missing, "metrics.json is listed in MANIFEST.json but missing"),
    (_changed, "model.onnx"),
    (_extra, "notes.txt is not listed"),
    (_symlink, "metrics.json is a symbolic link"),
    (_listed("weights.data", pickle.dumps({"w": [1.0, 2.0]}, protocol=4)),
     "assets/weights.data is a pickle (its bytes start with the pickle protocol-4"),
    (_listed("model.pt", b"not even a pickle inside"), "assets/model.pt is a pickle (its suffix .pt"),
    (_listed("weights.zip", _torch_zip()), "assets/weights.zip is a pickle (it is a zip archive holding the pickle"),
], ids=["missing", "changed-byte", "extra", "symlink", "pickle-bytes", "pickle-suffix", "torch-zip"])
def test_a_damaged_package_is_refused_and_nothing_is_written(tmp_path: Path, damage: Callable[[Path], None],
                                                             says: str) -> None:
    pkg, _ = image_package(tmp_path / "pkg")
    damage(pkg)
    store = Store(tmp_path / "store")
    with pytest.raises(RegistryError) as err:
        store.put(pkg)
    assert says in str(err.value) and str(pkg) in str(err.value)
    assert store.digests() == [] and _leftovers(tmp_path / "store") == []


@pytest.mark.parametrize("remote", [False, True], ids=["local", "memory"])
def test_a_file_changed_after_verification_is_not_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         remote: bool) -> None:
    """What is stored is what was checked: each byte is hashed as it is copied, not only before."""
    pkg, _ = image_package(tmp_path / "pkg")
    real = store_mod.pickle_reason

    def then_change(rel: str, path: Path) -> str | None:  # runs after verify_manifest, before the copy
        if rel == "model.onnx":
            _flip(path)
        return real(rel, path)

    monkeypatch.setattr(store_mod, "pickle_reason", then_change)
    root = f"memory://shipml-test-{uuid.uuid4().hex}/store" if remote else tmp_path / "store"
    store = Store(root, cache=tmp_path / "cache")
    with pytest.raises(RegistryError, match=r"model\.onnx changed while it was being stored"):
        store.put(pkg)
    assert store.digests() == [] and (remote or _leftovers(tmp_path / "store") == [])


def test_not_a_package_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match=r"has no MANIFEST\.json; export the run first"):
        store.put(tmp_path / "empty")
    with pytest.raises(RegistryError, match="is not a folder"):
        store.put(tmp_path / "nowhere")


def test_a_flipped_byte_in_the_store_is_caught_on_open_and_put_repairs_it(tmp_path: Path) -> None:
    pkg, _ = image_package(tmp_path / "pkg")
    store = Store(tmp_path / "store")
    digest = store.put(pkg)
    _flip(tmp_path / "store" / "packages" / digest / "model.onnx")
    with pytest.raises(RegistryError) as err:
        store.open(digest)
    assert f"package {digest}" in str(err.value) and "model.onnx does not match its sha256" in str(err.value)
    assert store.put(pkg) == digest  # put again from the source: the damaged copy is replaced
    assert store.open(digest) and _leftovers(tmp_path / "store") == [digest]


def test_a_replaced_manifest_is_caught_on_open(tmp_path: Path) -> None:
    """A consistent package moved under another package's digest is still not that package."""
    store = Store(tmp_path / "store")
    a = store.put(image_package(tmp_path / "a")[0])
    b = store.put(table_package(tmp_path / "b")[0])
    packages = tmp_path / "store" / "packages"
    os.rename(packages / a, packages / "gone")
    os.rename(packages / b, packages / a)
    with pytest.raises(RegistryError, match="does not hash to the digest"):
        store.open(a)


def test_open_refuses_bad_and_unknown_digests(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    for bad in ("../etc", "A" * 64, "abc", ""):
        assert not store.has(bad)
        with pytest.raises(RegistryError, match="is not a package digest"):
            store.open(bad)
    with pytest.raises(RegistryError, match=f"no package {'0' * 64} in the store"):
        store.open("0" * 64)


def test_a_store_root_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")  # works as root too, where permission bits do not stop writes
    with pytest.raises(RegistryError, match="the store root must be a writable folder"):
        Store(tmp_path / "a-file" / "store").put(image_package(tmp_path / "pkg")[0])


def _raise_after_first(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = getattr(store_mod, name)
    calls: list[int] = []

    def dying(*args: Any, **kwargs: Any) -> Any:
        if calls:
            raise KeyboardInterrupt("killed between two files")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store_mod, name, dying)


def test_a_put_that_dies_between_files_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg, _ = image_package(tmp_path / "pkg")
    store = Store(tmp_path / "store")
    with monkeypatch.context() as m:
        _raise_after_first(m, "_write_local")
        with pytest.raises(KeyboardInterrupt):
            store.put(pkg)
    assert not store.has(package_digest(pkg)) and store.digests() == [] and _leftovers(tmp_path / "store") == []
    assert store.has(store.put(pkg))


def test_a_put_killed_with_sigkill_is_absent_and_cleaned_by_the_next(tmp_path: Path) -> None:
    """A real process dies mid-put (no except clause runs): its temp folder is not a package, and the next put
    removes it."""
    pkg, _ = image_package(tmp_path / "pkg")
    root = tmp_path / "store"
    code = (
        "import os, signal, shipml.registry.store as s\n"
        "real = s._write_local\n"
        "def die(*a):\n"
        "    real(*a); os.kill(os.getpid(), signal.SIGKILL)\n"
        "s._write_local = die\n"
        f"s.Store({str(root)!r}).put({str(pkg)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = _leftovers(root)
    assert len(left) == 1 and left[0].startswith(".tmp-")  # what the killed writer had written so far
    store = Store(root)
    assert store.digests() == [] and not store.has(package_digest(pkg))
    digest = store.put(pkg)
    assert _leftovers(root) == [digest]


# ------------------------------------------------------------------------------------ fsspec object stores
def test_memory_store_round_trip_and_a_half_written_put(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object store has no rename: a put that dies after some files has not written MANIFEST.json, so the
    package is absent; the next put completes it."""
    pkg, _ = image_package(tmp_path / "pkg")
    store = Store(f"memory://shipml-test-{uuid.uuid4().hex}/store", cache=tmp_path / "cache")
    real_copy = store_mod._copy
    with monkeypatch.context() as m:
        _raise_after_first(m, "_copy")
        with pytest.raises(KeyboardInterrupt):
            store.put(pkg)
    digest = package_digest(pkg)
    assert store._fs.ls(f"{store._base}/{digest}")  # some files are there...
    assert not store.has(digest) and store.digests() == []  # ...but no manifest: absent
    with pytest.raises(RegistryError, match="no package"):
        store.open(digest)
    assert store_mod._copy is real_copy and store.put(pkg) == digest
    assert store.digests() == [digest]
    opened = store.open(digest)
    assert opened == tmp_path / "cache" / digest and Package.open(opened)


def test_s3fs_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec  # noqa: F401  (fsspec.registry is its mapping proxy; the module holds the mutable table)

    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now fails, as where it is not installed
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    with pytest.raises(RegistryError, match=r"pip install 'shipml\[s3\]'"):
        Store("s3://bucket/prefix")
    with pytest.raises(RegistryError, match="not a usable URL"):
        Store("nosuchprotocol://x/y")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A real S3-compatible HTTP server on localhost (moto's server mode) with a bucket; storage options for
    s3fs. Dummy credentials, so nothing can reach a real account."""
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():
            mp.setenv(key, value)
        for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            mp.delenv(key, raising=False)
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="shipml")
            yield {"endpoint": endpoint, "boto3": boto3,
                   "options": {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
                               "skip_instance_cache": True}}
        finally:
            server.stop()


def test_s3_round_trip_against_a_real_server(tmp_path: Path, s3: dict[str, Any]) -> None:
    prefix = f"runs-{uuid.uuid4().hex[:8]}"
    store = Store(f"s3://shipml/{prefix}", storage_options=s3["options"], cache=tmp_path / "cache")
    pkg, _ = image_package(tmp_path / "pkg")
    digest = store.put(pkg)
    assert store.put(pkg) == digest and store.has(digest) and store.digests() == [digest]
    client = s3["boto3"].client("s3", endpoint_url=s3["endpoint"], region_name="us-east-1")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="shipml", Prefix=prefix)["Contents"]}
    assert f"{prefix}/packages/{digest}/MANIFEST.json" in keys and f"{prefix}/packages/{digest}/model.onnx" in keys
    opened = store.open(digest)
    assert opened == tmp_path / "cache" / digest and len(Package.open(opened).predict(_pixels())) == 2
    assert store.open(digest) == opened  # from the cache, verified again

    _flip(opened / "signature.json", 5)  # a changed cached copy is fetched again, with a warning
    with pytest.warns(ShipmlWarning, match="signature.json"):
        assert store.open(digest) == opened

    key = f"{prefix}/packages/{digest}/model.onnx"  # a flipped byte in the bucket itself
    body = bytearray(client.get_object(Bucket="shipml", Key=key)["Body"].read())
    body[40] ^= 1
    client.put_object(Bucket="shipml", Key=key, Body=bytes(body))
    fresh = Store(f"s3://shipml/{prefix}", storage_options=s3["options"], cache=tmp_path / "cache2")
    with pytest.raises(RegistryError, match=f"package {digest} .* model.onnx does not match its sha256"):
        fresh.open(digest)
    assert not (tmp_path / "cache2" / digest).exists()
    assert fresh.put(pkg) == digest and fresh.open(digest)  # put repairs the bucket's copy


def test_s3_bucket_that_cannot_be_written(tmp_path: Path, s3: dict[str, Any]) -> None:
    store = Store("s3://no-such-bucket/x", storage_options=s3["options"], cache=tmp_path / "cache")
    with pytest.raises(RegistryError, match=r"cannot store .* in s3://no-such-bucket/x: .*writable"):
        store.put(image_package(tmp_path / "pkg")[0])
