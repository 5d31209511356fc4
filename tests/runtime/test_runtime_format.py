"""The package format helpers: the manifest refuses any changed, missing or extra file; atomic_dir never
leaves a half-written package under the final name."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from shipml.core.files import _HOST
from shipml.errors import ExportError
from shipml.runtime import FORMAT, atomic_dir, package_size, verify_manifest, write_manifest
from shipml.runtime.format import read_json


def _package(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x00" * 100)
    (folder / "signature.json").write_text('{"format": "shipml-package/1"}')
    (folder / "assets").mkdir()
    (folder / "assets" / "tokenizer.json").write_text("{}")
    write_manifest(folder)
    return folder


def test_manifest_lists_every_file_but_itself(tmp_path: Path) -> None:
    folder = _package(tmp_path / "p")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["format"] == FORMAT == "shipml-package/1"
    assert list(manifest["files"]) == ["assets/tokenizer.json", "model.onnx", "signature.json"]
    assert manifest["files"]["model.onnx"] == {"sha256": hashlib.sha256(b"\x00" * 100).hexdigest(), "bytes": 100}
    assert verify_manifest(folder) == manifest
    assert package_size(folder) == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "model.onnx").write_bytes(b"\x01" + b"\x00" * 99), "model.onnx does not match its sha256"),
        (lambda f: (f / "model.onnx").write_bytes(b"\x00" * 99), "model.onnx has 99 bytes"),
        (lambda f: (f / "assets" / "tokenizer.json").unlink(), "assets/tokenizer.json is listed .* but missing"),
        (lambda f: (f / "assets" / "extra.bin").write_bytes(b"x"), "assets/extra.bin is not listed"),
        (lambda f: (f / ".model.onnx.swp").write_bytes(b"x"), r"\.model\.onnx\.swp is not listed"),
        (lambda f: (f / "MANIFEST.json").unlink(), "MANIFEST.json is missing"),
        (lambda f: (f / "MANIFEST.json").write_text("{not json"), "MANIFEST.json is not valid JSON"),
        (lambda f: (f / "MANIFEST.json").write_text('{"format": "other/2", "files": {}}'), "not a shipml-package/1"),
        (lambda f: (f / "MANIFEST.json").write_text(json.dumps({"format": FORMAT, "files": {
            "../outside": {"sha256": "", "bytes": 0}}})), "bad entry '../outside'"),
    ],
    ids=["changed", "resized", "missing", "extra", "hidden-extra", "no-manifest", "bad-json", "other-format",
         "escaping-path"],
)
def test_verify_refuses_a_changed_package(tmp_path: Path, damage: object, message: str) -> None:
    folder = _package(tmp_path / "p")
    damage(folder)  # type: ignore[operator]
    with pytest.raises(ExportError, match=message):
        verify_manifest(folder)


def test_atomic_dir_publishes_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "runs" / "package"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(f".tmp-{_HOST}.{os.getpid()}-package-")
        (tmp / "model.onnx").write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert list(final.parent.iterdir()) == []  # no final folder, no temp folder left behind

    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("1")
        write_manifest(tmp)
        assert not final.exists()  # nothing under the final name until the block ends
    assert (final / "v").read_text() == "1"
    verify_manifest(final)


def test_atomic_dir_replaces_an_existing_package_and_keeps_it_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "package"
    with atomic_dir(final) as tmp:
        (tmp / "old-only").write_text("old")
        (tmp / "v").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as tmp:
        (tmp / "v").write_text("2")
        raise KeyboardInterrupt
    assert (final / "v").read_text() == "1" and (final / "old-only").exists()
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["v"] and (final / "v").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["package"]  # the old one and the temp one are gone


def test_read_json_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="the package signature is not there"):
        read_json(tmp_path / "signature.json", "package signature")
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(ExportError, match="holds a JSON list, not an object"):
        read_json(tmp_path / "a.json", "package metrics")
    (tmp_path / "b.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ExportError, match="not valid JSON"):
        read_json(tmp_path / "b.json", "package metrics")


@pytest.mark.parametrize("target", ["file", "folder", "outside"])
def test_verify_refuses_symbolic_links(tmp_path: Path, target: str) -> None:
    """A link could point anywhere on the machine: what was hashed would not be what runs."""
    folder = _package(tmp_path / "p")
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes((folder / "model.onnx").read_bytes())
    if target == "file":  # same bytes, so only the link itself can make verification fail
        (folder / "model.onnx").unlink()
        (folder / "model.onnx").symlink_to(outside)
    elif target == "folder":
        (tmp_path / "assets2").mkdir()
        (folder / "linked").symlink_to(tmp_path / "assets2", target_is_directory=True)
    else:
        (folder / "assets" / "tokenizer.json").unlink()
        (folder / "assets" / "tokenizer.json").symlink_to(outside)
    with pytest.raises(ExportError, match="symbolic link"):
        verify_manifest(folder)
