"""Resumable checkpoints: one safetensors file each, written atomically, verified on load.

A checkpoint holds the model, the optimizer state, the scheduler state, the loop position (step,
epoch, batch inside the epoch), early-stopping state and every RNG the loop draws from. Tensors go
into safetensors; everything else is JSON in the safetensors metadata, together with a sha256 over
all tensor bytes. Nothing is pickled, so a checkpoint from anywhere can be opened safely.

Writes go to a temp file in the same folder, are fsynced, then renamed over the final name and the
folder fsynced: a `kill -9` at any moment leaves either the old set of checkpoints or the new one. A
checkpoint that fails verification (truncated, corrupted) is skipped and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from shipml.core.files import TEMP_PREFIX, atomic_write_bytes

__all__ = ["Checkpoint", "atomic_write_bytes", "list_checkpoints", "load_latest", "save_checkpoint"]

_NAME = re.compile(r"^ckpt-(\d{9})\.safetensors$")


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]  # JSON part: loop position, optimizer/scheduler non-tensor state, rng, ...

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors saved under `prefix/`, with the prefix stripped."""
        p = prefix + "/"
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    folder: Path, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep: int
) -> Path:
    """Write checkpoint `step` into `folder`, then delete all but the newest `keep` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}  # no shared storage
    meta = {"shipml": json.dumps(state), "sha256": _digest(tensors)}
    path = folder / f"ckpt-{step:09d}.safetensors"
    atomic_write_bytes(path, save(tensors, metadata=meta))
    for old in list_checkpoints(folder)[keep:]:
        old.unlink(missing_ok=True)
    # temp files of a writer killed mid-write (the run lock is held, so no other writer is live here):
    # `.tmp-*` from core's atomic write, `.ckpt-*.tmp-*` from shipml before it
    for stale in [*folder.glob(f"{TEMP_PREFIX}*"), *folder.glob(".ckpt-*.tmp-*")]:
        stale.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files in `folder`, newest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def _load(path: Path) -> Checkpoint:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    if "shipml" not in meta or meta.get("sha256") != _digest(tensors):
        raise ValueError("checksum mismatch")
    return Checkpoint(path=path, tensors=tensors, state=json.loads(meta["shipml"]))


def load_latest(folder: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that verifies, and a note for each newer one that did not."""
    skipped: list[str] = []
    for path in list_checkpoints(folder):
        try:
            return _load(path), skipped
        except (SafetensorError, ValueError, OSError, json.JSONDecodeError) as err:
            skipped.append(f"{path.name}: unreadable ({err}); falling back to an older checkpoint")
    return None, skipped
