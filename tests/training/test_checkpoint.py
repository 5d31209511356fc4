"""Checkpoint files: atomic, verified, pruned, and skipped (with a note) when damaged."""

from __future__ import annotations

from pathlib import Path

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


def test_stale_temp_file_ignored_and_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".ckpt-000000005.safetensors.tmp-123").write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path, 3, _tensors(3), {"loop": {"step": 3}}, keep=2)
    assert not list(tmp_path.glob(".ckpt-*"))
    ckpt, _ = load_latest(tmp_path)
    assert ckpt is not None and ckpt.state["loop"]["step"] == 3


def test_no_checkpoint(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "missing") == (None, [])
