"""What the loop records as it goes: its position (`LoopState`, in every checkpoint) and metrics.jsonl."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from shipml.core.files import atomic_write_bytes

__all__ = ["LoopState", "MetricsLog"]


class MetricsLog:
    """metrics.jsonl: one JSON record per line, appended and flushed as training goes."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is None:
            path.write_text("")
        else:  # resuming: drop what the killed process logged after the checkpoint (and torn lines)
            kept = []
            for line in path.read_text().splitlines() if path.exists() else []:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= keep_until_step:
                    kept.append(line + "\n")
            atomic_write_bytes(path, "".join(kept).encode())
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, rec: dict[str, Any]) -> None:
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()

    def train(self, st: LoopState, batches: int, loss: float, lr: float, samples_per_s: float,
              **extra: float) -> None:
        """A training record: the loop's position (epoch as a fraction), the loss the learning curve plots, any
        `extra` figures (the GAN's d_loss / g_loss), the learning rate and the recent throughput."""
        self.write({"kind": "train", "step": st.step, "epoch": round(st.epoch + st.batch / batches, 4),
                    "loss": loss, **extra, "lr": lr, "samples_per_s": samples_per_s})

    def close(self) -> None:
        self._f.close()

@dataclass
class LoopState:
    """Where the loop stands; saved as JSON in each checkpoint (`state["loop"]`), so a resumed run picks up
    at exactly this batch with the same early-stopping bookkeeping. The JSON is the plain dict the loop
    wrote before this class existed (same keys, same order), so checkpoints on disk stay readable."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs done
    batch: int = 0  # batches of the current epoch done (the next one to run)
    best: dict[str, Any] | None = None  # {"step", "epoch", "metric", "value"} of the best validation
    bad_evals: int = 0  # validations since the best one
    stopped: bool = False  # early stopping triggered
    seconds: float = 0.0  # loop wall time, summed over the processes that ran it
    samples: int = 0  # training rows seen, summed likewise

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoopState:
        """Read `to_json`'s dict or an older checkpoint's; keys it does not know are ignored, missing ones
        take their defaults (a checkpoint written before a field existed)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
