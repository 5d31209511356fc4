"""Checkpoint files: atomic, verified, pruned, and skipped (with a note) when damaged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shipml.training.checkpoint import list_checkpoints, load_latest, save_checkpoint


def _tensors(v: float) -> dict[str, torch.Tensor]:
    return {"model/w": torch.full((4, 3), v), "rng/torch": torch.get_rng_state()}


def test_roundtrip_and_pruning(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, _tensors(step), {"loop": {"step": step}}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt-000000030.safetensors", "ckpt-000000020.safetensors"]
    ckpt, notes = load_latest(tmp_path)
    assert ckpt is not None and not notes
    assert ckpt.state["loop"]["step"] == 30
    assert torch.equal(ckpt.section("model")["w"], torch.full((4, 3), 30.0))


def test_truncated_latest_falls_back(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _tensors(1), {"loop": {"step": 1}}, keep=3)
    latest = save_checkpoint(tmp_path, 2, _tensors(2), {"loop": {"step": 2}}, keep=3)
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    ckpt, notes = load_latest(tmp_path)
    assert ckpt is not None and ckpt.state["loop"]["step"] == 1
    assert len(notes) == 1 and "ckpt-000000002" in notes[0]


def test_corrupted_bytes_detected_by_checksum(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _tensors(1), {"loop": {"step": 1}}, keep=3)
    latest = save_checkpoint(tmp_path, 2, _tensors(2), {"loop": {"step": 2}}, keep=3)
    data = bytearray(latest.read_bytes())
    data[-5] ^= 0xFF  # flip a byte inside the tensor data: same length, wrong content
    latest.write_bytes(bytes(data))
    ckpt, notes = load_latest(tmp_path)
    assert ckpt is not None and ckpt.state["loop"]["step"] == 1 and notes


def test_stale_temp_file_ignored_and_cleaned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer killed mid-write leaves its temp file (a whole model + optimizer state); the next save removes it.
    The temp is made by the real atomic write, killed (simulated) after writing and before the rename."""
    import os

    from shipml.core import files

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # stands in for SIGKILL between write and rename

    monkeypatch.setattr(files.os, "replace", killed)
    monkeypatch.setattr(files.Path, "unlink", lambda self, missing_ok=False: None)  # a killed process cleans nothing
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 5, _tensors(5), {"loop": {"step": 5}}, keep=2)
    monkeypatch.undo()
    (tmp_path / ".ckpt-000000004.safetensors.tmp-123").write_bytes(b"half a checkpoint")  # an older shipml's name
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and left[1].startswith(".tmp-") and str(os.getpid()) in left[1]
    save_checkpoint(tmp_path, 3, _tensors(3), {"loop": {"step": 3}}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000003.safetensors"]
    ckpt, _ = load_latest(tmp_path)
    assert ckpt is not None and ckpt.state["loop"]["step"] == 3


def test_no_checkpoint(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "missing") == (None, [])
