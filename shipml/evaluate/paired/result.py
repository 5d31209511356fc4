"""What a paired comparison returns (`PairedResult`) and the rule that turns its p-value and difference into a
verdict; shared by the McNemar and bootstrap halves."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

__all__ = ["VERDICTS", "PairedResult", "Verdict"]

Verdict = Literal["worse", "better", "no significant difference"]
VERDICTS: tuple[str, ...] = ("worse", "better", "no significant difference")


@dataclasses.dataclass(frozen=True)
class PairedResult:
    """One paired comparison, candidate against production, as the release gate reports and logs it.

    `difference` is candidate minus production in the metric's own units; `direction` ("max" or "min")
    says which sign is an improvement, and `verdict` has already applied it. The counts are McNemar's
    2x2 table (None for the bootstrap); `n_resamples` and `seed` are the bootstrap's (None for McNemar).
    """

    test: Literal["mcnemar_midp", "paired_bootstrap"]
    metric: str
    direction: Literal["max", "min"]
    n: int
    candidate: float
    production: float
    difference: float
    ci_low: float
    ci_high: float
    ci_method: str
    confidence: float
    p_value: float
    alpha: float
    verdict: Verdict
    only_candidate: int | None = None
    only_production: int | None = None
    both_correct: int | None = None
    both_wrong: int | None = None
    n_resamples: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (non-finite floats become None), so `json.dumps(allow_nan=False)` works."""
        out = dataclasses.asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _check_levels(alpha: float, confidence: float | None) -> float:
    """Validate alpha and return the confidence, 1 - alpha unless given (so the CI agrees with the test)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    confidence = 1.0 - alpha if confidence is None else float(confidence)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def _verdict(p_value: float, alpha: float, difference: float, direction: str) -> Verdict:
    """Better or worse only when p < alpha, by the sign of the difference read with the metric's direction."""
    if p_value >= alpha or difference == 0:
        return "no significant difference"
    improved = difference > 0 if direction == "max" else difference < 0
    return "better" if improved else "worse"


