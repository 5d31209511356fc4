"""How the report prints a confidence interval, and says which method produced it.

A figure with an interval is only as honest as the reader's idea of what the interval is, so every
table that shows intervals names the method (metrics.json's "ci_method") and a legend explains it.
Two ways an interval could still mislead are handled here rather than left to each table:

- rounding: a Wilson interval at 100,000 of 100,000 is [0.99996, 1], which 4 significant digits
  print as "[1, 1]"; bounds get more digits until they differ, so no proportion reads as certain.
- a zero-width *bootstrap* interval (every resample agreed, e.g. macro F1 of a perfect classifier)
  says the resampling could not see any spread, not that the figure is certain; it is printed as
  "no spread" and the legend says what that means, instead of as "[1, 1]".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shipml.core.proportion import CI_METHODS
from shipml.evaluate.report_html import Raw, esc, num
from shipml.evaluate.rundir import RunFiles

__all__ = ["NO_SPREAD", "ci_method", "interval_legend", "interval_text", "level", "method_name", "with_ci"]

NO_SPREAD = "no spread"  # printed instead of a zero-width bootstrap interval
_SHORT = {"wilson": "Wilson", "bootstrap": "bootstrap"}
_MAX_DIGITS = 12


def ci_method(ci: object) -> str | None:
    """The method behind an entry's interval: "wilson", "bootstrap", ..., or None when it has none.

    metrics.json written before "ci_method" existed held percentile bootstrap intervals only, so an
    interval without a method is a bootstrap one.
    """
    if not isinstance(ci, Mapping) or not all(isinstance(ci.get(k), int | float) for k in ("ci_low", "ci_high")):
        return None
    method = ci.get("ci_method")
    return method if isinstance(method, str) else "bootstrap"


def method_name(ci: object) -> str:
    """A short name for a table cell: "Wilson", "bootstrap", or an en dash when there is no interval."""
    method = ci_method(ci)
    return "–" if method is None else _SHORT.get(method, method)


def _no_spread(ci: Mapping[str, Any]) -> bool:
    return ci_method(ci) == "bootstrap" and ci["ci_low"] == ci["ci_high"]


def _bounds(low: float, high: float) -> str:
    """ "[low, high]" with 4 significant digits, or more where 4 would print two different bounds alike."""
    for digits in range(4, _MAX_DIGITS + 1):
        a, b = f"{low:.{digits}g}", f"{high:.{digits}g}"
        if a != b or low == high:
            break
    return f"[{a}, {b}]"


def interval_text(ci: object) -> str:
    """ "[low, high]", "no spread" for a zero-width bootstrap interval, or "" when there is no interval."""
    if ci_method(ci) is None or not isinstance(ci, Mapping):
        return ""
    return NO_SPREAD if _no_spread(ci) else _bounds(float(ci["ci_low"]), float(ci["ci_high"]))


def with_ci(value: object, ci: object) -> str:
    """ "value [low, high]", "value (no spread)" for a zero-width bootstrap, or the bare value without one.

    `ci` is a mapping with "ci_low"/"ci_high" (a metric's own dict, or a per-class "precision_ci"),
    or None.
    """
    if value is None:
        return "–"
    text = interval_text(ci)
    if not text:
        return num(value)
    return f"{num(value)} ({text})" if text == NO_SPREAD else f"{num(value)} {text}"


def level(files: RunFiles) -> str:
    """The configured confidence level as a percentage ("95%"), from the run's config."""
    confidence = files.evaluate_option("confidence", 0.95)
    return f"{confidence * 100:g}%" if isinstance(confidence, int | float) else "95%"


def interval_legend(files: RunFiles, intervals: Iterable[object], proportions: str) -> Raw:
    """One paragraph naming each method the shown intervals use, at the run's level; empty when none.

    `proportions` names what the Wilson intervals in this table are for (e.g. "accuracy").
    """
    shown = [ci for ci in intervals if ci_method(ci) is not None]
    methods = {m for ci in shown if (m := ci_method(ci))}
    if not methods:
        return Raw("")
    resamples = files.evaluate_option("bootstrap", None)
    counted = f", {resamples:,} resamples" if isinstance(resamples, int) and resamples > 0 else ""
    parts = []
    if "wilson" in methods:
        parts.append(
            f"{CI_METHODS['wilson']} for proportions ({proportions}): k of n, so it never has zero width "
            "and stays honest at 0% and 100%"
        )
    if "bootstrap" in methods:
        parts.append(f"{CI_METHODS['bootstrap']}{counted} for the other figures")
    parts += [f"“{m}” for the figures so marked" for m in sorted(methods - set(CI_METHODS))]
    text = f"Intervals are {level(files)} confidence intervals: " + "; ".join(parts) + "."
    if any(isinstance(ci, Mapping) and _no_spread(ci) for ci in shown):
        text += (
            f" “{NO_SPREAD}”: every bootstrap resample gave the same value (typical of a perfect score), so "
            "resampling could not measure how much the figure would move on other data; it is not certainty."
        )
    return Raw(f'<p class="sub">{esc(text)}</p>')
