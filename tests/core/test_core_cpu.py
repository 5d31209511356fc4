"""Threads from the cores a process may really use and the ones free right now (shipml/core/cpu.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipml.core import cpu
from shipml.core.cpu import ThreadPlan, busy_elsewhere, plan_threads, usable_cores
from shipml.core.machine import cpu_kind


def _cgroup(tmp: Path, v2: str | None = None, v1: tuple[str, str] | None = None) -> Path:
    if v2 is not None:
        (tmp / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp / "cpu").mkdir()
        (tmp / "cpu" / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (tmp / "cpu" / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    return tmp


@pytest.mark.parametrize(("v2", "v1", "affinity", "expected"), [
    ("max 100000", None, 8, 8),            # v2, no quota
    ("150000 100000", None, 8, 2),         # --cpus 1.5 -> 2 threads may run
    ("50000 100000", None, 8, 1),          # half a core -> still 1
    ("400000 100000", None, 2, 2),         # a quota above the affinity does not add cores
    (None, ("-1", "100000"), 4, 4),        # v1, unlimited
    (None, ("200000", "100000"), 16, 2),   # v1, 2 cores
    (None, None, 3, 3),                    # no cgroup files at all
])
def test_usable_cores_is_affinity_capped_by_the_cgroup_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            v2: str | None, v1: tuple[str, str] | None,
                                                            affinity: int, expected: int) -> None:
    monkeypatch.setattr(cpu, "_affinity", lambda: affinity)
    assert usable_cores(_cgroup(tmp_path, v2, v1)) == expected


@pytest.mark.parametrize(("usable", "busy", "expected"), [
    (2, 0.0, 2), (2, 0.2, 2),   # a browser tab's worth of load keeps both threads
    (2, 1.0, 1), (2, 0.8, 1),   # one busy neighbour: one thread, never two meeting at a barrier
    (2, 2.0, 1), (2, 5.0, 1),   # at least one
    (8, 3.0, 5), (8, 3.4, 4), (8, 2.6, 5),  # a core 40% taken is not free; 30% is
])
def test_threads_are_the_free_cores(monkeypatch: pytest.MonkeyPatch, usable: int, busy: float,
                                    expected: int) -> None:
    monkeypatch.setattr(cpu, "usable_cores", lambda: usable)
    monkeypatch.setattr(cpu, "busy_elsewhere", lambda interval=0.1: busy)
    plan = plan_threads()
    assert plan.threads == expected
    assert plan.contended == (busy >= 0.7)
    assert f"{busy:.1f} busy" in plan.reason


def test_hand_set_single_core_and_small_models_do_not_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(interval: float = 0.1) -> float:
        raise AssertionError("sampled the machine although nothing depends on it")

    monkeypatch.setattr(cpu, "usable_cores", lambda: 4)
    monkeypatch.setattr(cpu, "busy_elsewhere", never)
    assert plan_threads(3) == ThreadPlan(3, 4, 0.0, "set by hand")
    assert plan_threads(parallel=False).threads == 1
    assert plan_threads(share=4).threads == 1  # --nproc 4 on 4 cores: one each
    monkeypatch.setattr(cpu, "busy_elsewhere", lambda interval=0.1: 2.0)
    assert plan_threads(share=2).threads == 1  # 2 cores each, 2 busy shared by the 2 processes: 1 each


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat (Linux)")
def test_a_busy_process_is_seen() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        assert busy_elsewhere(0.5) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()


def test_this_process_own_time_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 1 s of a 100 Hz clock the machine was busy 150 ticks (1.5 cores), 100 of them ours: 0.5 elsewhere."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  1000 0 0 5000 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    own = iter([10.0, 11.0])
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(cpu, "_own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(cpu.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(cpu.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(cpu.time, "sleep", lambda s: stat.write_text("cpu  1120 0 30 5050 0 0 0 0 0 0\n"))
    assert busy_elsewhere(1.0, stat=stat) == pytest.approx(0.5)


def test_busy_elsewhere_is_zero_where_the_machine_does_not_say(tmp_path: Path) -> None:
    assert busy_elsewhere(0.01, stat=tmp_path / "missing") == 0.0
    (tmp_path / "stat").write_text("garbage\n")
    assert busy_elsewhere(0.01, stat=tmp_path / "stat") == 0.0


@pytest.mark.parametrize(("flags", "kind"), [
    ({"avx2", "avx512f", "avx512_vnni", "amx_bf16", "avx512_bf16"}, "AVX-512 + VNNI + AMX bf16"),
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "AVX-512 + VNNI + AVX512-BF16"),
    ({"avx2", "avx512f", "avx512_vnni"}, "AVX-512 + VNNI, no bf16"),
    ({"avx2", "fma"}, "AVX2 only (no VNNI, no bf16)"),
    ({"avx2", "avx_vnni"}, "AVX2 + AVX-VNNI"),
    ({"sse4_2"}, "no AVX2"),
])
def test_cpu_kind_names_what_decides_speed_and_arithmetic(flags: set[str], kind: str) -> None:
    assert cpu_kind(flags) == kind
