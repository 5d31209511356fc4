"""The report's compression section: frontier.json (written by `shipml compress`) as a table and a plot."""

from __future__ import annotations

from typing import Any

from shipml.evaluate.plots import scatter_frontier
from shipml.evaluate.report_html import Raw, Section, esc, facts, figure, not_available, table
from shipml.evaluate.report_intervals import ci_method, interval_legend, interval_text, level
from shipml.evaluate.rundir import RunFiles, dig

__all__ = ["frontier"]


def _with_method(r: dict[str, Any], headline: str, files: RunFiles) -> dict[str, Any]:
    """A frontier row's interval with its method: the row's own "ci_method", else the method metrics.json
    records for the same headline metric (every package is scored by the same function)."""
    method = r.get("ci_method") or ci_method(dig(files.metrics, "test", headline))
    return {"ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "ci_method": method}


def _f(x: float | None, spec: str, suffix: str = "") -> str:
    return "" if x is None else f"{x:{spec}}{suffix}"


def frontier(files: RunFiles) -> Section:
    """Every package of the run (fp32 export and compressed variants): quality, latency, size, memory."""
    title = "Compression frontier"
    doc = files.frontier
    if not doc or not doc.get("rows"):
        why = files.problems.get("frontier.json") or "not compressed yet: `shipml compress <run>` measures variants"
        return Section("frontier", title, not_available(why))
    rows, head = doc["rows"], doc.get("headline", "accuracy")
    intervals = [_with_method(r, head, files) for r in rows]
    headers = ["variant", f"test {head}", f"{level(files)} CI", "drop", "p50 ms (batch 1)", "p99 ms", "rows/s "
               f"(batch {rows[0].get('batch_size', '?')})", "throughput x fp32", "package MB", "peak MB", "parity"]
    body_rows = []
    for r, ci in zip(rows, intervals, strict=True):
        name = f"{r['name']} (selected)" if r["name"] == doc.get("selected") else r["name"]
        parity = r.get("parity_agreement")
        drop, speed = r.get(f"{head}_drop"), r.get("speedup_throughput")
        body_rows.append([name, _f(r.get(head), ".4f"), interval_text(ci), _f(drop, "+.4f"), _f(r["p50_ms"], ".3g"),
                          _f(r["p99_ms"], ".3g"), _f(r["rows_per_s"], ",.0f"), _f(speed, ".2f", "x"),
                          _f(r["package_mb"], ".3g"), _f(r["peak_mb"], ".0f"),
                          "" if parity is None else f"{parity:.4f} agree"])
    body = [table(headers, body_rows), interval_legend(files, intervals, head)]
    xl, yl = "p50 latency at batch 1 (ms)", f"test {head}"
    points = [{"name": r["name"], xl: r["p50_ms"], yl: r[head]} for r in rows if r.get(head) is not None]
    if len(points) >= 2:
        svg = scatter_frontier(points, x=xl, y=yl, title=f"test {head} vs p50 latency")
        body.append(figure(svg, "each point is one package; the line joins the variants no other beats on both axes"))
    measured = doc.get("measured", {})
    notes = [("measured", f"{measured.get('at', '?')} on {measured.get('cpu', '?')}, {measured.get('cores', '?')} "
                          "cores, one fresh process per package")]
    if doc.get("target"):
        notes.append(("target", f"{doc['target']} -> {doc.get('message') or ''}"))
    body.append(facts(notes))
    body.insert(0, Raw(f"<p>{esc('Latency: end-to-end batch-1 requests (preprocessing included); throughput: ')}"
                       f"{esc('batches of test rows; quality: each package run on the test split.')}</p>"))
    return Section("frontier", title, Raw("\n".join(body)))
