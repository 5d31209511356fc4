"""The report's sections about where the model came from: the data, the machine, the config.

These are what someone needs to trust or reproduce a result: which rows (fingerprint, splits,
what cleaning dropped), which software, and the exact resolved recipe.
"""

from __future__ import annotations

from typing import Any

from shipml.evaluate.report_html import Raw, Section, esc, facts, not_available, table
from shipml.evaluate.rundir import RunFiles

__all__ = ["config", "data", "environment"]

MAX_SKIPPED_ROWS = 50  # skipped-items table is cut here, with a count of the rest
_MAX_LISTED_FEATURES = 30


def _listing(values: Any) -> str | None:
    """A comma-separated list, cut after _MAX_LISTED_FEATURES names."""
    if not isinstance(values, list) or not values:
        return None
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED_FEATURES])
    rest = len(values) - _MAX_LISTED_FEATURES
    return shown + (f", … (+{rest} more)" if rest > 0 else "")


def _items(values: Any, cls: str = "") -> str:
    if not isinstance(values, list) or not values:
        return "<p>None.</p>"
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>" + "".join(f"<li>{esc(v)}</li>" for v in values) + "</ul>"


def _shares(counts: dict[str, Any], label: str) -> Raw:
    """Counts per name with each one's share of the total."""
    counts = {k: v for k, v in counts.items() if isinstance(v, int)}
    total = sum(counts.values()) or 1
    return table([label, "rows", "share"], [[k, v, f"{100 * v / total:.1f}%"] for k, v in counts.items()])


def _cleaning(cleaning: Any) -> list[str]:
    """What cleaning did, warned about and skipped (the skipped table cut at MAX_SKIPPED_ROWS)."""
    cleaning = cleaning if isinstance(cleaning, dict) else {}
    parts = ["<h3>Cleaning</h3>", _items(cleaning.get("actions")), "<h3>Warnings</h3>"]
    parts.append(_items(cleaning.get("warnings"), "warn"))
    skipped = [s for s in cleaning.get("skipped") or [] if isinstance(s, dict)]
    parts.append(f"<h3>Skipped items ({len(skipped):,})</h3>")
    if skipped:
        rows = [[s.get("item"), s.get("reason")] for s in skipped[:MAX_SKIPPED_ROWS]]
        parts.append(table(["item", "reason"], rows))
        if len(skipped) > MAX_SKIPPED_ROWS:
            parts.append(f"<p>… and {len(skipped) - MAX_SKIPPED_ROWS:,} more not shown.</p>")
    else:
        parts.append("<p>None.</p>")
    return parts


def data(files: RunFiles) -> Section:
    """Source, size, splits, class balance, fingerprint and the cleaning log, from data.json."""
    summary = files.data
    if summary is None:
        return Section("data", "Data", not_available(files.missing("data.json")))
    shape = summary.get("image_shape")
    pairs = [
        ("source", summary.get("source")),
        ("kind", summary.get("kind")),
        ("rows after cleaning", summary.get("rows")),
        ("target", summary.get("target")),
        ("features", _listing(summary.get("features"))),
        ("categorical", _listing(summary.get("categorical"))),
        ("image shape (H, W, C)", " × ".join(str(v) for v in shape) if isinstance(shape, list) else None),
        ("fingerprint", summary.get("fingerprint")),
    ]
    parts = [facts((k, v) for k, v in pairs if v is not None)]
    for key, heading, label in (("splits", "Splits", "split"), ("class_counts", "Classes", "class")):
        counts = summary.get(key)
        if isinstance(counts, dict) and counts:
            parts += [f"<h3>{heading}</h3>", _shares(counts, label)]
    parts += _cleaning(summary.get("cleaning"))
    return Section("data", "Data", Raw("\n".join(parts)))


def environment(files: RunFiles) -> Section:
    """Library versions, CPU, threads and precision the run used (from run.json)."""
    env = files.run.get("environment")
    if not isinstance(env, dict):
        why = files.missing("run.json") if not files.run else "run.json has no environment record"
        return Section("environment", "Environment", not_available(why))
    return Section("environment", "Environment", facts(env.items()))


def config(files: RunFiles) -> Section:
    """The resolved config exactly as the run stored it."""
    if files.config_text is None:
        return Section("config", "Config", not_available(files.missing("config.yaml")))
    return Section("config", "Config", Raw(f"<pre>{esc(files.config_text)}</pre>"))
