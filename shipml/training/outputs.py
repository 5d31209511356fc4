"""Model outputs for given rows, batch by batch: validation, scoring, export parity and distillation all use it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shipml.tasks.base import Task, Tensors

__all__ = ["predict_outputs", "to_device"]


@torch.no_grad()
def predict_outputs(model: nn.Module, task: Task, inputs: Tensors, idx: np.ndarray, *, batch_size: int = 256,
                    precision: str = "fp32") -> torch.Tensor:
    """Raw model outputs for rows `idx`, in eval mode, batch by batch (float32)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs = []
    gen = torch.Generator()  # unused for eval batches, required by the signature
    idx = np.asarray(idx)
    perm = task.inference_order(inputs, idx)  # e.g. by length, so batches pad little
    order = idx[perm]
    for start in range(0, len(order), batch_size):
        b = torch.as_tensor(order[start : start + batch_size])
        batch = to_device(task.make_batch(inputs, b, train=False, gen=gen), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outs.append(model(**batch).float().cpu())
    model.train(was_training)
    if not outs:
        return torch.empty(0)
    out = torch.empty_like(torch.cat(outs))
    out[torch.as_tensor(perm)] = torch.cat(outs)  # back to the order of `idx`
    return out

def to_device(batch: Tensors, device: torch.device) -> Tensors:
    """A batch on the training device (inputs are encoded on the CPU once; a no-op there)."""
    return batch if device.type == "cpu" else {k: v.to(device, non_blocking=True) for k, v in batch.items()}
