"""`--target "p99_ms<=15, accuracy_drop<=0.005"`: constraints on the frontier, and picking a variant.

Names: latency `p50_ms`, `p99_ms`, `mean_ms` (batch 1), `rows_per_s` (throughput at the frontier's batch
size), sizes `model_mb`, `package_mb`, memory `peak_mb`, and any quality metric of the packages (e.g.
`accuracy`, `macro_f1`, `r2`, `mae`) with its `<metric>_drop`: how much worse than the original package
(original - variant for higher-is-better metrics, variant - original for errors and losses).
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipml.core.metric_names import LOWER_IS_BETTER as QUALITY_LOWER_IS_BETTER
from shipml.errors import ConfigError

__all__ = ["LOWER_IS_BETTER", "Constraint", "parse_target", "pick"]

SPEED = {"p50_ms", "p99_ms", "mean_ms", "rows_per_s", "model_mb", "package_mb", "peak_mb"}
# quality metrics' directions come from their one owner; every speed and size figure is lower-is-better
LOWER_IS_BETTER = set(QUALITY_LOWER_IS_BETTER) | (SPEED - {"rows_per_s"})
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge,
                                                   ">": operator.gt}
_TERM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def ok(self, x: float | None) -> bool:
        return x is not None and _OPS[self.op](x, self.value)

    def miss(self, x: float) -> float:
        """How far `x` is from meeting this constraint (0 when it does; for a strict bound met with equality,
        the distance is 0 too but `ok` is False)."""
        return 0.0 if self.ok(x) else abs(x - self.value)


def parse_target(text: str, names: set[str]) -> list[Constraint]:
    """Parse comma-separated `name op number` terms; `names` are the metric names the frontier has."""
    if not text or not text.strip():
        raise ConfigError('--target is empty; give constraints such as "p99_ms<=15, accuracy_drop<=0.005"')
    out = []
    for term in text.split(","):
        m = _TERM.match(term)
        if m is None:
            raise ConfigError(f"--target: cannot read {term.strip()!r}; each constraint is NAME OP NUMBER with OP one "
                              'of <=, <, >=, >, e.g. "p99_ms<=15, accuracy_drop<=0.005"')
        name, op, value = m.group(1), m.group(2), float(m.group(3))
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--target: unknown metric {name!r}{hint}; known: {', '.join(sorted(names))}")
        out.append(Constraint(name, op, value))
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def pick(rows: list[dict[str, Any]], constraints: list[Constraint]) -> tuple[dict[str, Any] | None, str]:
    """The fastest row (lowest p50_ms, then highest rows_per_s) meeting every constraint, and a sentence;
    when none does, (None, which constraint nothing met and by how much)."""
    ok = [r for r in rows if all(c.ok(r.get(c.metric)) for c in constraints)]
    if ok:
        best = min(ok, key=lambda r: (r["p50_ms"], -r["rows_per_s"]))
        return best, f"{best['name']} meets {', '.join(map(str, constraints))} and is the fastest that does"
    lines = []
    for c in constraints:
        have = [r for r in rows if r.get(c.metric) is not None]
        if have and not any(c.ok(r[c.metric]) for r in have):
            closest = min(have, key=lambda r: c.miss(r[c.metric]))
            off = c.miss(closest[c.metric])
            lines.append(f"nothing met {c}: the closest is {closest['name']} with {closest[c.metric]:.4g} "
                         + (f"(off by {off:.4g})" if off else "(exactly at the strict bound)"))
        elif not have:
            lines.append(f"no package has a value for {c.metric}")
    if not lines:  # each constraint is met by some variant, but no variant meets all of them
        def shortfall(r: dict[str, Any]) -> float:
            return sum(c.miss(r[c.metric]) / max(abs(c.value), 1e-9)
                       for c in constraints if r.get(c.metric) is not None)

        closest = min(rows, key=shortfall)
        missed = [f"{c} ({_fmt(closest.get(c.metric))})" for c in constraints if not c.ok(closest.get(c.metric))]
        lines.append(f"no variant meets all constraints together; the closest, {closest['name']}, misses "
                     + ", ".join(missed))
    return None, "; ".join(lines)
