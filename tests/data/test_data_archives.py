"""Archives: unpacked once into the cache, never outside it; user files never touched."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from shipml.config import DataConfig
from shipml.data import cache_dir, infer_data, load_dataset
from shipml.errors import DataError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache per test, so nothing is read from (or left in) ~/.cache/shipml."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SHIPML_CACHE", str(path))
    return path


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def image_members(n_per_class: int = 5) -> dict[str, bytes]:
    return {
        f"pets/{c}/{i}.png": png_bytes(k * 100 + i) for k, c in enumerate(["cat", "dog"]) for i in range(n_per_class)
    }


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("maker", [make_zip, make_tar], ids=["zip", "tar.gz"])
def test_image_archive_unpacks_once(tmp_path: Path, maker: object) -> None:
    archive = maker(tmp_path / ("pets.zip" if maker is make_zip else "pets.tar.gz"), image_members())  # type: ignore[operator]
    ds = load_dataset(DataConfig(path=str(archive)), seed=0, task_kind="classification")
    assert ds.kind == "images" and ds.classes == ["cat", "dog"] and len(ds.frame) == 10
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (cache_dir() / "archives" / digest / "pets" / "cat" / "0.png").is_file()
    assert [p.name for p in (cache_dir() / "archives").iterdir()] == [digest]  # no temp folders left
    again = load_dataset(DataConfig(path=str(archive)), seed=0, task_kind="classification")
    assert any("reused the unpacked copy" in a for a in again.log.actions)


def test_table_inside_an_archive(tmp_path: Path) -> None:
    csv = pd.DataFrame({"x": np.arange(12.0), "label": ["a", "b", "c"] * 4}).to_csv(index=False).encode()
    archive = make_zip(tmp_path / "t.zip", {"export/data.csv": csv, "export/README": b"hello"})
    ds = load_dataset(DataConfig(path=str(archive)), seed=0, task_kind="classification")
    assert ds.kind == "table" and len(ds.frame) == 12 and ds.features == ["x"]
    two = make_zip(tmp_path / "two.zip", {"a.csv": csv, "b.csv": csv})
    with pytest.raises(DataError, match=r"several tables \(a\.csv, b\.csv\)"):
        load_dataset(DataConfig(path=str(two)), seed=0, task_kind="classification")


@pytest.mark.parametrize(
    ("kind", "members", "links", "why"),
    [
        ("zip", {"../evil.txt": b"x"}, None, "climbs out"),
        ("zip", {"/tmp/evil.txt": b"x"}, None, "absolute path"),
        ("tar", {"ok/../../evil.txt": b"x"}, None, "climbs out"),
        ("tar", {"/evil.txt": b"x"}, None, "absolute path"),
        ("tar", {"a/1.png": b"x"}, {"a/link": "../../../etc/passwd"}, "pointing outside"),
        ("tar", {"a/1.png": b"x"}, {"a/link": "/etc/passwd"}, "link to the absolute path"),
    ],
)
def test_path_traversal_is_rejected(
    tmp_path: Path, kind: str, members: dict[str, bytes], links: dict[str, str] | None, why: str
) -> None:
    if kind == "zip":
        archive = make_zip(tmp_path / "bad.zip", members)
    else:
        archive = make_tar(tmp_path / "bad.tar.gz", members, links)
    with pytest.raises(DataError, match=f"refusing to unpack .*{why}"):
        load_dataset(DataConfig(path=str(archive)), seed=0, task_kind="classification")
    assert not (tmp_path / "evil.txt").exists() and not (cache_dir() / "evil.txt").exists()
    assert list((cache_dir() / "archives").iterdir()) == []  # the half-unpacked temp folder is gone


def test_corrupt_archives_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b" + bytes(range(200)))
    with pytest.raises(DataError, match=r"cannot unpack .*junk\.tar\.gz.*corrupt or truncated"):
        load_dataset(DataConfig(path=str(tmp_path / "junk.tar.gz")), seed=0, task_kind="classification")
    whole = make_zip(tmp_path / "whole.zip", image_members()).read_bytes()
    (tmp_path / "cut.zip").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.zip"):
        load_dataset(DataConfig(path=str(tmp_path / "cut.zip")), seed=0, task_kind="classification")


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_user_files_are_never_modified_or_added_to(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    make_zip(user / "pets.zip", image_members())
    make_tar(user / "pets.tar.gz", image_members())
    for name, data in image_members().items():
        (user / "folder" / name).parent.mkdir(parents=True, exist_ok=True)
        (user / "folder" / name).write_bytes(data)
    (user / "folder" / "pets" / "cat" / "broken.png").write_bytes(b"not a png")
    frame = pd.DataFrame({"x": [*range(19), np.nan], "label": [" A", "a", "b", "b"] * 5})  # cleaning has work
    frame.to_csv(user / "t.csv", index=False)
    frame.to_parquet(user / "t.parquet")
    before = _snapshot(user)
    for path in ["pets.zip", "pets.tar.gz", "folder", "t.csv", "t.parquet"]:
        load_dataset(DataConfig(path=str(user / path), missing="drop"), seed=0, task_kind="classification")
        infer_data(str(user / path))
    assert _snapshot(user) == before
