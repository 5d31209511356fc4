"""The machine and the libraries a result was produced with: written into run records and package
provenance, so a number can be traced to the hardware and versions that gave it."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from functools import cache
from importlib import metadata

__all__ = ["cpu_flags", "cpu_name", "cpu_supports_bf16", "library_versions", "machine_info"]


@cache
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:  # not Linux
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def library_versions(*names: str) -> dict[str, str]:
    """Python, the platform, shipml and each named distribution that is installed (absent ones are left out:
    a serving install has no torch). Read from package metadata, so nothing heavy is imported."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("shipml", *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def machine_info() -> dict[str, object]:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "bf16": cpu_supports_bf16()}
