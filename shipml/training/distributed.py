"""Several training processes: the `--nproc` launcher, who is who in the process group, and rank 0's say.

One loop runs in every process (`loop.fit`); this module holds what only matters when there are several:

- `launch` relaunches `shipml train ...` under torch's elastic launcher (what `torchrun` runs) with N local
  processes; `torchrun ... -m shipml train ...` reaches the same code directly (multi-node too).
- `world()` reads the rank and world size torchrun put in the environment (one process: rank 0 of 1).
- `Group` is the loop's handle on the process group once Accelerate has joined it: object broadcasts,
  the all-reduce of a loss, the gather of every rank's RNG states, the final barrier. With one process
  every method is a cheap no-op, so the loop has one code path.

Rank 0 is the run: it holds the run lock, writes every file, prints progress. The other ranks (followers)
train their slice of each global batch and write nothing; `follow` is what a follower's `shipml train` does.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from shipml.core.cpu import usable_cores
from shipml.errors import TrainError

__all__ = ["BACKENDS", "FollowerStop", "Group", "World", "check_nproc", "choose_backend", "follow", "launch",
           "rank_seed", "resolve_backend", "share", "world"]

BACKENDS = ("auto", "gloo", "nccl")
_BACKEND_ENV = "SHIPML_DIST_BACKEND"  # what `launch` tells its processes; plain torchrun leaves it unset (auto)


class FollowerStop(TrainError):
    """Raised on ranks other than 0 when the whole group stops on an error rank 0 reports (a diverged loss,
    a failed validation hook): rank 0 prints the message, the others exit quietly with the same status."""


@dataclass(frozen=True)
class World:
    rank: int  # 0 .. size-1 over all nodes
    size: int
    local_rank: int  # index on this machine
    local_size: int  # processes on this machine

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place, from the variables torchrun sets (RANK, WORLD_SIZE, ...); none: rank 0 of 1."""
    def num(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            raise TrainError(f"the environment variable {name}={os.environ[name]!r} is not a number") from None

    size = num("WORLD_SIZE", 1)
    return World(rank=num("RANK", 0), size=size, local_rank=num("LOCAL_RANK", 0),
                 local_size=num("LOCAL_WORLD_SIZE", size))


def resolve_backend(backend: str | None = None) -> str:
    """gloo (CPU) or nccl (CUDA GPUs): `auto` is nccl where CUDA GPUs are visible, else gloo."""
    backend = backend or os.environ.get(_BACKEND_ENV) or "auto"
    if backend not in BACKENDS:
        raise TrainError(f"backend {backend!r} is not known; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA GPU visible"
        raise TrainError(f"--backend nccl needs CUDA GPUs, and this process has none ({build}); use --backend gloo "
                         "to train on CPU processes")
    return backend


def choose_backend(backend: str) -> str:
    """Resolve `backend` (an error if nccl has no GPUs) and hand it to this process's loop and its children."""
    chosen = resolve_backend(backend)
    os.environ[_BACKEND_ENV] = chosen
    return chosen


def _cpu_cores() -> int:
    return usable_cores()  # affinity and cgroup quota


def check_nproc(nproc: int, backend: str) -> None:
    """--nproc N: at least 1; on CPU at most one process per core, on GPU at most one per GPU."""
    if nproc < 1:
        raise TrainError(f"--nproc {nproc}: the number of training processes must be at least 1")
    if world().size > 1:
        raise TrainError("--nproc is for launching; this process already runs under torchrun "
                         f"(WORLD_SIZE={world().size}): drop --nproc")
    if backend == "nccl":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise TrainError(f"--nproc {nproc}: NCCL runs one process per GPU and {gpus} GPU(s) are visible; use "
                             f"--nproc {gpus} or fewer")
    elif nproc > _cpu_cores():
        raise TrainError(f"--nproc {nproc}: this machine gives this process {_cpu_cores()} CPU core(s); more CPU "
                         f"training processes than cores only slow each other down. Use --nproc {_cpu_cores()} or "
                         "fewer (or several machines: docs/scaling.md)")


def launch(nproc: int, args: list[str], backend: str) -> int:
    """Run `python -m shipml <args>` in `nproc` local processes under torch's elastic launcher (torchrun's
    engine, standalone rendezvous on a free local port); returns the exit status to leave with: 0, or the
    first failed process's own status (rank 0 has already printed the error)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ[_BACKEND_ENV] = backend
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cpu_cores() // nproc)))  # the loop sets it too
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"shipml-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # its failure summaries repeat what rank 0 printed, as a traceback
    try:
        elastic_launch(config, sys.executable)("-m", "shipml", *args)
    except ChildFailedError as err:
        codes = [f.exitcode for _, f in sorted(err.failures.items())]
        return next((c for c in codes if c > 0), 1)
    except SignalException as err:  # Ctrl-C / SIGTERM: the launcher has stopped the processes; a checkpoint resumes
        return 128 + int(err.sigval)
    finally:
        elastic.setLevel(level)
    return 0


def share(rows: np.ndarray, rank: int, size: int) -> tuple[np.ndarray, float]:
    """This rank's part of one global batch, and the weight of its mean loss.

    Ranks take contiguous slices (sizes differ by at most one row); weighting each rank's mean loss by
    n_rank * size / n makes DDP's gradient average equal the gradient of the global batch's mean loss, as
    one process computes it. A global batch too small to give every rank 2 rows (batch-norm needs them) is
    computed whole by rank 0; the others run it with weight 0, so the collective backward still matches."""
    n = len(rows)
    if size == 1:
        return rows, 1.0
    if n < 2 * size:
        return rows, float(size) if rank == 0 else 0.0
    lo, hi = rank * n // size, (rank + 1) * n // size
    return rows[lo:hi], (hi - lo) * size / n


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of rank > 0's own RNGs (dropout, augmentation) at `step`: ranks differ, runs repeat."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)


class Group:
    """The loop's view of the process group (after `Accelerator()` joined it). One process: all no-ops."""

    def __init__(self, device: torch.device) -> None:
        self.world = world() if dist.is_available() and dist.is_initialized() else World(0, 1, 0, 1)
        self.device = device

    @property
    def main(self) -> bool:
        return self.world.main

    @property
    def size(self) -> int:
        return self.world.size

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type != "cpu" else None)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, by rank, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def total(self, value: float) -> float:
        """The sum of `value` over the ranks."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def handshake(self, facts: dict[str, Any]) -> None:
        """Check that every rank trains the same thing (config, data, task, checkpoint); every rank raises
        the same error when one differs, so none is left waiting."""
        seen = self.gather(json.dumps(facts, sort_keys=True, default=str))
        for rank, other in enumerate(seen[1:], start=1):
            theirs, ours = json.loads(other), json.loads(seen[0])
            diff = sorted(k for k in ours if ours.get(k) != theirs.get(k))
            if diff:
                hint = {"data": "every machine needs the same data at the same path",
                        "checkpoint": "resuming on several machines needs the run directory on shared storage "
                                      "(docs/scaling.md)"}
                fixes = "; ".join(hint[k] for k in diff if k in hint) or "launch every process with the same command"
                raise TrainError(f"process {rank} does not train what process 0 trains: {', '.join(diff)} differ "
                                 f"(process 0: {[ours[k] for k in diff]}, process {rank}: "
                                 f"{[theirs.get(k) for k in diff]}); {fixes}")

    def stop(self, message: str) -> TrainError:
        """The error to raise when the whole group stops: rank 0 prints it, the others stop quietly."""
        return TrainError(message) if self.main else FollowerStop(message)

    def close(self) -> None:
        """Wait for rank 0's last writes, then leave the group (rank 0 goes on to evaluate alone)."""
        if self.size == 1:
            return
        dist.barrier()
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)  # this process is a single one again
        dist.destroy_process_group()


def follow(config: Path | None, overrides: list[str], resume: Path | None) -> None:
    """A follower's `shipml train`: the same data, task and config as rank 0, then the loop's share of the
    work; rank 0 (`shipml.run`) creates, locks and writes the run directory. Fresh runs need nothing from
    rank 0's disk (the loop's handshake checks that both sides agree), so several machines can train without
    shared storage; a resume reads the run directory (shared storage)."""
    from shipml.config import load_config
    from shipml.data import load_dataset
    from shipml.tasks import get_task_class
    from shipml.training.loop import fit

    if resume is not None:
        status_file = resume / "run.json"
        if status_file.is_file():
            try:
                status = json.loads(status_file.read_text(encoding="utf-8")).get("status")
            except (OSError, ValueError, AttributeError):
                status = None  # rank 0 reports the damage
            if status == "finished" and (resume / "model" / "model.safetensors").is_file():
                return  # rank 0 has nothing to train either
        cfg = load_config(resume / "config.yaml")
        assets = json.loads((resume / "model" / "task.json").read_text(encoding="utf-8"))
        task = get_task_class(assets["task"]).from_assets(assets)
        task.load_files(resume / "model")
        data = load_dataset(cfg.data, seed=cfg.seed, task_kind=task.kind, kind=task.data_kind)
    else:
        assert config is not None
        cfg = load_config(config, overrides=overrides)
        task = get_task_class(cfg.task.name).from_config(cfg)
        data = load_dataset(cfg.data, seed=cfg.seed, task_kind=task.kind, kind=task.data_kind)
        task.fit(data)
    fit(task, data, cfg.train, resume, seed=cfg.seed, resume=resume is not None)
