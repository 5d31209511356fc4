"""The machine and the libraries a result was produced with: written into run records and package
provenance, so a number can be traced to the hardware and versions that gave it."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from functools import cache
from importlib import metadata

__all__ = ["cpu_flags", "cpu_has_vnni", "cpu_kind", "cpu_name", "cpu_supports_bf16", "library_versions",
           "machine_info"]


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


def cpu_supports_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU (or the given flags) has native bf16 instructions (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() if flags is None else flags))


def cpu_has_vnni(flags: set[str] | None = None) -> bool:
    """True when onnxruntime's int8 kernels get VNNI here (AVX512-VNNI or AVX-VNNI), not AVX2's VPMADDUBSW."""
    return bool({"avx512_vnni", "avx_vnni"} & (cpu_flags() if flags is None else flags))


def cpu_kind(flags: set[str] | None = None) -> str:
    """The vector instructions that decide shipml's speed and arithmetic, in words: `AVX-512 + VNNI + AMX bf16`,
    `AVX-512 + VNNI, no bf16`, `AVX2 only (no VNNI, no bf16)`, ... (bf16 training needs AVX512-BF16 or AMX;
    onnxruntime's int8 kernels use VNNI where present). Figures in README and bench/ name it beside the CPU model."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return "unknown (no /proc/cpuinfo)"
    if "avx512f" in flags:
        parts = ["AVX-512"]
        parts += ["VNNI"] if cpu_has_vnni(flags) else []
        parts += ["AMX bf16"] if "amx_bf16" in flags else ["AVX512-BF16"] if "avx512_bf16" in flags else []
        return " + ".join(parts) + ("" if cpu_supports_bf16(flags) else ", no bf16")
    if "avx2" in flags:
        return "AVX2 + AVX-VNNI" if cpu_has_vnni(flags) else "AVX2 only (no VNNI, no bf16)"
    return "no AVX2"


def library_versions(*names: str) -> dict[str, str]:
    """Python, the platform, shipml and each named distribution that is installed (absent ones are left out:
    a serving install has no torch). Read from package metadata, so nothing heavy is imported."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("shipml", *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def machine_info() -> dict[str, object]:
    return {"cpu": cpu_name(), "cpu_kind": cpu_kind(), "cores": os.cpu_count(), "bf16": cpu_supports_bf16()}
