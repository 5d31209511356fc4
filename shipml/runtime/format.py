"""The package format on disk: file names, the manifest, atomic writing (docs/package.md).

The writer (`shipml.export`) and the reader (`shipml.runtime.Package`) share this module, so the two can
never disagree about a file name or about what the manifest covers. It imports nothing heavy.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from shipml.core.files import atomic_dir, bytes_sha256, file_sha256
from shipml.errors import ExportError

__all__ = [
    "ASSETS",
    "FORMAT",
    "MANIFEST",
    "METRICS",
    "MODEL",
    "PROVENANCE",
    "SIGNATURE",
    "atomic_dir",
    "package_digest",
    "package_size",
    "read_json",
    "safe_rel",
    "verify_manifest",
    "write_manifest",
]

FORMAT = "shipml-package/1"
MODEL = "model.onnx"
SIGNATURE = "signature.json"
MANIFEST = "MANIFEST.json"
METRICS = "metrics.json"
PROVENANCE = "provenance.json"
ASSETS = "assets"



def _files(folder: Path) -> dict[str, Path]:
    """Every file below `folder` (hidden ones too: nothing may hide in a package) by relative posix path."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file() or path.is_symlink():
            out[path.relative_to(folder).as_posix()] = path
    return dict(sorted(out.items()))


def package_digest(folder: Path) -> str:
    """A package's identity: the sha256 of its MANIFEST.json, which holds the sha256 of every other file."""
    return bytes_sha256((Path(folder) / MANIFEST).read_bytes())


def write_manifest(folder: Path) -> dict[str, Any]:
    """Record sha256 and size of every file but MANIFEST.json itself; call it last, inside `atomic_dir`."""
    folder = Path(folder)
    files = {
        rel: {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        for rel, path in _files(folder).items()
        if rel != MANIFEST
    }
    manifest = {"format": FORMAT, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from `path`; a missing or broken file is an ExportError naming `what` it should be."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path} is missing: the {what} is not there; re-export the package") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ExportError(f"{path} is not valid JSON ({err}): the {what} is damaged; re-export the package") from None
    if not isinstance(obj, dict):
        raise ExportError(f"{path} holds a JSON {type(obj).__name__}, not an object: the {what} is damaged; "
                          "re-export the package")
    return obj


def safe_rel(rel: str) -> bool:
    """A manifest path that stays inside the package folder (a manifest can be untrusted input)."""
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and p.as_posix() == rel


def verify_manifest(folder: Path) -> dict[str, Any]:
    """Refuse a package whose files are not exactly those MANIFEST.json lists, byte for byte."""
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST, "package manifest")
    listed = manifest.get("files")
    if manifest.get("format") != FORMAT or not isinstance(listed, dict):
        raise ExportError(f"{folder / MANIFEST} is not a {FORMAT} manifest (format {manifest.get('format')!r}); "
                          "re-export the package with this version of shipml")
    fix = "the package was changed after export; re-export it (or copy it again from its source)"
    present = _files(folder)
    links = [rel for rel, path in present.items() if path.is_symlink()]
    links += [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_dir() and p.is_symlink()]
    if links:  # a link could point anywhere on the machine: what was verified would not be what runs
        raise ExportError(f"{folder}: {', '.join(sorted(set(links)))} {'is a' if len(set(links)) == 1 else 'are'} "
                          "symbolic link(s); a package holds plain files only. Copy the package with links "
                          "resolved (cp -rL) or re-export it")
    for rel, entry in listed.items():
        if not safe_rel(rel) or not isinstance(entry, dict):
            raise ExportError(f"{folder / MANIFEST} has a bad entry {rel!r}; re-export the package")
        if rel not in present:
            raise ExportError(f"{folder}: {rel} is listed in {MANIFEST} but missing; {fix}")
        try:
            size = present[rel].stat().st_size
            digest = file_sha256(present[rel]) if size == entry.get("bytes") else ""
        except OSError as err:
            raise ExportError(f"{folder}: cannot read {rel} ({err.strerror or err}); {fix}") from None
        if size != entry.get("bytes"):
            raise ExportError(f"{folder}: {rel} has {size} bytes, {MANIFEST} says {entry.get('bytes')}; {fix}")
        if digest != entry.get("sha256"):
            raise ExportError(f"{folder}: {rel} does not match its sha256 in {MANIFEST}; {fix}")
    extra = [rel for rel in present if rel != MANIFEST and rel not in listed]
    if extra:
        raise ExportError(f"{folder}: {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not listed in "
                          f"{MANIFEST}; {fix}")
    return manifest


def package_size(folder: Path) -> int:
    """Total bytes of every file in the package (the manifest included): what a release ships."""
    return sum(p.stat().st_size for p in _files(Path(folder)).values())
