"""How many cores this process may really use, how many of them are free right now, and how its thread pools
should wait: the one place that chooses intra-op threads for training (torch) and for packages (onnxruntime).

Why: a small model's intra-op threads meet at a barrier after every operator. When another process holds one
of the cores, the thread on that core is descheduled for a whole scheduler slice while the others spin at the
barrier, so two threads on two cores with one busy neighbour ran the quick start 5x slower, not 2x (issue 22).
So the thread count is chosen from

- the cores this process may run on: its affinity mask (taskset, cpuset), capped by a cgroup CPU quota
  (a container's `--cpus`), rounded up;
- the cores other processes are using right now: the machine's busy time over a short window (/proc/stat)
  minus this process's own, in cores; a core counts as free when at most 30% of it is taken;

and an onnxruntime session made on a busy machine does not spin its threads while they wait.

OpenMP's own wait policy (torch's threads spin briefly, then sleep) is left as it is: forcing
`OMP_WAIT_POLICY=PASSIVE` made the quick start's CNN train 20% slower on an idle machine (2 threads, median of 4
runs, 1,560 against 1,900 samples/s on a 2-core Xeon with AVX-512), while the thread count chosen here already
keeps two threads from meeting at a barrier beside a busy neighbour. The count is chosen once per run (a run's
weights depend on it, so a resume must find the same one); a user whose load comes and goes during a run can set
`OMP_WAIT_POLICY=PASSIVE` before starting shipml.
A thread count set by hand (`train.threads`, `--threads`) is always taken as given.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ThreadPlan", "busy_elsewhere", "plan_threads", "usable_cores"]

# a core whose time is taken by other processes up to this share still counts as free
_FREE_IF_BUSY_BELOW = 0.3
_CGROUP = Path("/sys/fs/cgroup")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cgroup_quota(root: Path = _CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "150000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 means unlimited
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cores(root: Path = _CGROUP) -> int:
    """Cores this process may run on: its affinity, capped by its cgroup's CPU quota (rounded up), at least 1."""
    cores = _affinity()
    quota = _cgroup_quota(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return max(1, cores)


def _machine_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from the first line of /proc/stat; None off Linux."""
    try:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    if len(fields) < 5:
        return None
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    idle = fields[3] + fields[4]
    return total - idle, total


def busy_elsewhere(interval: float = 0.1, stat: Path = Path("/proc/stat")) -> float:
    """Cores' worth of CPU time that other processes used over the next `interval` seconds (0.0 where the
    machine does not say, e.g. off Linux)."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    before, own_before, t0 = _machine_ticks(stat), _own_cpu_seconds(), time.perf_counter()
    if before is None:
        return 0.0
    time.sleep(interval)
    after, own_after, elapsed = _machine_ticks(stat), _own_cpu_seconds(), time.perf_counter() - t0
    if after is None or after[1] <= before[1]:
        return 0.0
    busy_ticks = after[0] - before[0] - (own_after - own_before) * hz
    # ticks per second of one core is hz: busy ticks / (hz * elapsed) is the number of cores kept busy
    return max(0.0, busy_ticks / (hz * max(elapsed, 1e-6)))


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class ThreadPlan:
    """The intra-op thread count chosen for this process, with what it was chosen from (for the run log)."""

    threads: int
    usable: int  # cores this process may use (affinity, cgroup quota)
    busy: float  # cores' worth of time other processes were using when it was chosen
    reason: str

    @property
    def contended(self) -> bool:
        """Other processes held at least one of this process's cores: threads must not spin waiting."""
        return self.busy >= 1 - _FREE_IF_BUSY_BELOW

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def plan_threads(requested: int | None = None, *, parallel: bool = True, share: int = 1,
                 interval: float = 0.1) -> ThreadPlan:
    """Intra-op threads for one process.

    `requested` (set by hand) is taken as given. Otherwise: the usable cores divided among `share` processes
    of one job (training under `--nproc`), less the cores other processes are busy on right now, at least 1.
    `parallel=False` says the work is too small to gain from a second thread (1 thread, no sampling)."""
    usable = usable_cores()
    if requested is not None:
        return ThreadPlan(int(requested), usable, 0.0, "set by hand")
    mine = max(1, usable // max(1, share))
    if not parallel:
        return ThreadPlan(1, usable, 0.0, "too small a model to gain from a second thread")
    if mine == 1:
        return ThreadPlan(1, usable, 0.0, f"{usable} usable core(s) for {share} process(es)")
    busy = busy_elsewhere(interval) / max(1, share)
    free = math.floor(mine - busy + _FREE_IF_BUSY_BELOW)
    threads = max(1, min(mine, free))
    reason = (f"{usable} usable core(s)" + (f" for {share} processes" if share > 1 else "")
              + f", {busy:.1f} busy with other processes")
    return ThreadPlan(threads, usable, round(busy, 2), reason)

