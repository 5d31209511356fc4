"""The report's sections for an image-generation run: sample quality as judged, and the per-epoch sample grids."""

from __future__ import annotations

import base64
import re
from typing import Any

from shipml.evaluate.report_html import Raw, Section, esc, facts, not_available, table
from shipml.evaluate.rundir import RunFiles, dig

__all__ = ["quality", "samples"]

_GRID = re.compile(r"^epoch-(\d{3,})\.png$")
MAX_GRIDS = 6  # the first, the last and evenly spaced ones between: enough to see training progress


def _value(block: Any, key: str) -> Any:
    return dig(block, key, "value")


def quality(files: RunFiles) -> Section:
    """FID against its real-vs-real floor, precision/recall, requested-class share, per-class coverage, and
    what the judge is (its accuracy and why these numbers are not Inception FIDs)."""
    test, gen, judge = dig(files.metrics, "test"), dig(files.metrics, "generation"), dig(files.metrics, "judge")
    if not isinstance(test, dict) or not isinstance(gen, dict):
        return Section("quality", "Sample quality", not_available(files.missing("metrics.json")))
    pairs = [
        ("FID / real-vs-real floor", _value(test, "fid_ratio")),
        ("FID (generated vs real half A)", gen.get("fid")),
        ("floor: FID (real half B vs real half A)", gen.get("fid_floor")),
        ("precision (k-NN manifold)", _value(test, "precision")),
        ("recall (k-NN manifold)", _value(test, "recall")),
        ("real-vs-real precision / recall", f"{gen.get('real_precision', 0):.3f} / {gen.get('real_recall', 0):.3f}"
         if isinstance(gen.get("real_precision"), float) else None),
        ("samples on the requested class (judge)", _value(test, "requested_share")),
        ("classes covered", f"{gen.get('covered')} of {gen.get('classes')}"),
        ("images per set (n), k", f"{gen.get('n')}, {gen.get('k')}"),
        ("judge test accuracy", dig(judge, "test_accuracy")),
        ("judge", dig(judge, "source")),
        ("judge features", dig(judge, "features")),
    ]
    body = [facts((k, v) for k, v in pairs if v is not None)]
    if isinstance(dig(judge, "note"), str):
        body.append(Raw(f'<p class="verdict">{esc(judge["note"])}</p>'))
    collapsed = gen.get("collapsed") or []
    if collapsed:
        body.append(Raw(f'<ul class="warn"><li>classes not covered (possible mode collapse): '
                        f"{esc(', '.join(map(str, collapsed)))}</li></ul>"))
    rows = [[r.get("class"), r.get("n"), r.get("requested_share"), r.get("generated_share"), r.get("real_share"),
             r.get("precision"), r.get("recall"), "yes" if r.get("covered") else "NO"]
            for r in gen.get("per_class") or [] if isinstance(r, dict)]
    if rows:
        body.append(Raw("<h3>Per class</h3>"))
        body.append(table(["class", "samples", "on requested class", "share of samples", "share of real",
                           "precision", "recall", "covered"], rows))
    return Section("quality", "Sample quality", Raw("\n".join(body)))


def samples(files: RunFiles) -> Section:
    """The fixed-noise grids saved each epoch (samples/epoch-NNN.png), inline."""
    folder = files.run_dir / "samples"
    grids = sorted(p for p in folder.iterdir() if _GRID.match(p.name)) if folder.is_dir() else []
    if not grids:
        return Section("samples", "Samples per epoch", not_available("no samples/epoch-*.png in the run directory"))
    if len(grids) > MAX_GRIDS:
        step = (len(grids) - 1) / (MAX_GRIDS - 1)
        grids = [grids[round(i * step)] for i in range(MAX_GRIDS)]
    figs = []
    for p in grids:
        data = base64.b64encode(p.read_bytes()).decode()
        figs.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(p.name)}" '
                    f'style="image-rendering: pixelated; width: 240px"><figcaption>{esc(p.stem)}</figcaption></figure>')
    caption = ("The same noise every epoch, one row per class (conditional) — the last grid is the model that was "
               "judged and exported (the moving average of the generator).")
    return Section("samples", "Samples per epoch", Raw(f"<p>{esc(caption)}</p>\n" + "\n".join(figs)))
