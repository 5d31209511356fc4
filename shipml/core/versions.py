"""Installed library versions known to break shipml, found before they fail as a traceback deep inside a library.

pyproject.toml's bounds keep pip from choosing a bad version, but an environment can still hold one: a
version forced in afterwards (`pip install numpy==1.26`), or a combination pip cannot see because a library
under-declares what it needs. `check_known_bad()` names each one with the reason and the fix; constraints.txt
(the lock, refreshed by .ci/refresh-lock) is the set the whole suite passed with.

An entry goes into KNOWN_BAD only once the break has been reproduced, with how in its `reason`. Versions are
compared by their release numbers alone ("2.13.0+cpu" and "2.0.0rc1" count as 2.13.0 and 2.0.0): enough for
ranges drawn at release boundaries, and it needs no `packaging`, which shipml does not depend on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

__all__ = ["KNOWN_BAD", "KnownBad", "check_known_bad", "in_range"]


@dataclass(frozen=True)
class KnownBad:
    """One distribution's versions that break shipml."""

    dist: str  # the distribution name pip knows, e.g. "numpy"
    bad: str  # the broken versions, comma-joined clauses that must all hold: "<2", ">=9.2,<9.3"
    reason: str  # what breaks, and how it was seen
    fix: str  # the command or change that gets out of it


KNOWN_BAD: tuple[KnownBad, ...] = (
    KnownBad(
        "numpy", "<2",
        "pyarrow 26+, which pip picks beside it because pyarrow declares no numpy requirement, refuses NumPy 1.x "
        "(`pip install -e . 'numpy<2'` gives numpy 1.26.4 + pyarrow 26.0.1: `import pyarrow` raises 'pyarrow "
        "requires NumPy 2.0 or newer', and reading a Parquet table fails with 'Unable to find a usable engine')",
        "pip install 'numpy>=2'",
    ),
)

_CLAUSE = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*([0-9][0-9.]*)\s*")


def _release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version: '2.13.0+cpu' -> (2, 13, 0), '2.0.0rc1' -> (2, 0, 0)."""
    numbers = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if numbers is None:
        raise ValueError(f"no release number in version {version!r}")
    return tuple(int(n) for n in numbers.group(1).split("."))


def in_range(version: str, spec: str) -> bool:
    """True when `version` satisfies every comma-joined clause of `spec` ('<2', '>=9.2,<9.3')."""
    have = _release(version)
    for clause in spec.split(","):
        m = _CLAUSE.fullmatch(clause)
        if m is None:
            raise ValueError(f"bad version clause {clause!r} in {spec!r}; use <, <=, >, >=, == or != and a version")
        op, want = m.group(1), _release(m.group(2))
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))  # 2 == 2.0 == 2.0.0
        ok = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]
        if not ok:
            return False
    return True


def check_known_bad(table: tuple[KnownBad, ...] = KNOWN_BAD) -> list[str]:
    """One message per installed distribution whose version is in `table`; empty when none is."""
    out = []
    for entry in table:
        try:
            version = metadata.version(entry.dist)
        except metadata.PackageNotFoundError:
            continue
        if in_range(version, entry.bad):
            out.append(f"{entry.dist} {version} is known to break shipml ({entry.dist}{entry.bad}): {entry.reason}. "
                       f"Fix: {entry.fix} (in a checkout, the tested set: pip install -c constraints.txt -e '.[dev]')")
    return out
