"""Release gates: may this candidate replace what is live now? Pure evaluation, nothing written.

Every gate looks at the model name's frozen holdout (holdout.py), on which candidate and production have scored
the *same* rows, so the comparisons are paired. The figures come from the packages' own output transform and
decision rule (`Package.transform` / `Package.decide`: one owner of raw output -> prediction, the one the
server uses) and from `shipml.evaluate.metrics`, the same metrics every report shows. Kinds of gate:

- relative metric gates, `f1 >= production.f1 - 0.002` (`mae <= production.mae + 0.1` for lower-is-better
  metrics): a tolerated drop, in the metric's units. A fixed margin alone cannot tell a real regression from
  noise on a few hundred rows, hence:
- `paired`: the paired test of shipml/evaluate/paired/. Classification: exact McNemar mid-p on per-row
  correctness (the accuracy; only discordant rows carry information), plus a paired bootstrap of the F1
  difference when an F1 gate is declared (F1 is not a per-row proportion). Regression: paired bootstrap of
  the R² difference. "worse" beyond noise at `alpha` blocks; "better" is reported as such.
- absolute gates, `accuracy >= 0.95`, `p99_ms <= 25`, `package_mb <= 50`: the only ones that mean anything on
  a first release (no production: relative gates and the paired test are reported as skipped, passed).
  Latency (p99 at batch 1) and size are measured now, through the runtime in a fresh process
  (`shipml.runtime.measure_in_subprocess`, as the compression frontier measures), on the holdout's rows.
- `signature`: different raw inputs, network inputs, classes, task kind or data kind would break every client
  of the live model, so it blocks unless the release says `allow_signature_change`.

`headline` in a gate stands for the task kind's headline metric (accuracy, r2: core.metric_names.HEADLINE).
"""

from __future__ import annotations

import difflib
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipml.core.metric_names import HEADLINE, metric_direction
from shipml.errors import RegistryError, ShipmlError
from shipml.evaluate.metrics import classification_metrics, regression_metrics
from shipml.evaluate.paired import PairedResult, mcnemar_midp, paired_bootstrap
from shipml.registry.holdout import Holdout
from shipml.runtime import Package, measure_in_subprocess
from shipml.runtime.format import package_size

__all__ = ["DEFAULT_GATES", "METRICS", "Gate", "GateReport", "GateResult", "parse_gates", "run_gates"]

CLASSIFICATION = ("accuracy", "f1", "macro_f1", "macro_precision", "macro_recall", "log_loss", "roc_auc", "ece")
REGRESSION = ("r2", "mse", "rmse", "mae")
MEASURED = ("p99_ms", "package_mb")
METRICS: tuple[str, ...] = ("headline", *CLASSIFICATION, *REGRESSION)
DEFAULT_GATES: tuple[str, ...] = ("headline >= production.headline - 0.005", "paired", "signature")
LATENCY_N = 200  # batch-1 requests timed for the p99: enough that the 99th percentile is not the single max
_MB = 1024 * 1024
_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
_RELATIVE = re.compile(rf"^([A-Za-z0-9_]+)\s*(>=|<=)\s*production\.([A-Za-z0-9_]+)\s*([-+])\s*{_NUM}$")
_ABSOLUTE = re.compile(rf"^([A-Za-z0-9_]+)\s*(>=|<=)\s*(-?{_NUM[1:-1]})$")


@dataclass(frozen=True)
class Gate:
    """One parsed gate. kind: "relative" (metric op production.metric -/+ value), "absolute" (metric op value),
    "paired" or "signature"; `spec` is the text it was parsed from."""

    kind: str
    spec: str
    metric: str | None = None
    op: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome, as the blocked-release table prints it and the catalog's event log stores it."""

    name: str
    candidate: float | str | None
    production: float | str | None
    margin: str
    passed: bool
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": _json(self.candidate), "production": _json(self.production),
                "margin": self.margin, "passed": self.passed, "verdict": self.verdict, "details": _json(self.details)}


@dataclass(frozen=True)
class GateReport:
    """All gates of one release. `first_release`: there was no production, so only absolute gates applied."""

    results: list[GateResult]
    first_release: bool

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def note(self) -> str | None:
        return ("first release: no production to compare with, absolute gates only" if self.first_release
                else None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (non-finite floats become None), for the catalog's event log."""
        return {"passed": self.passed, "first_release": self.first_release, "note": self.note,
                "results": [r.to_dict() for r in self.results]}

    def rows(self) -> list[list[str]]:
        """gate, candidate, production, margin, verdict: one row per gate, for a Rich table."""
        return [[r.name, _fmt(r.candidate), _fmt(r.production), r.margin, r.verdict] for r in self.results]


def _json(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v if v is None or isinstance(v, str) else str(v)


def _fmt(v: float | str | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# -------------------------------------------------------------------------------------------- grammar
def _refuse(spec: str, why: str) -> RegistryError:
    return RegistryError(f"release gate {spec!r}: {why}. A gate reads '<metric> >= production.<metric> - <x>', "
                         "'<metric> >= <x>', '<metric> <= <x>', 'p99_ms <= <x>', 'package_mb <= <x>', 'paired' or "
                         f"'signature'; metrics: {', '.join(METRICS)}")


def _known(spec: str, name: str, allowed: Sequence[str], what: str = "metric") -> str:
    if name in allowed:
        return name
    close = difflib.get_close_matches(name, [*allowed, "paired", "signature"], n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise _refuse(spec, f"unknown {what} {name!r}{hint}")


def parse_gates(specs: Sequence[str]) -> list[Gate]:
    """Gates from their text (config `release.gates` or the command line); a typo is refused, naming the spec
    and the closest valid name, before anything is measured."""
    gates: list[Gate] = []
    for raw in specs:
        spec = " ".join(str(raw).split())
        if spec in ("paired", "signature"):
            gates.append(Gate(spec, spec))
            continue
        if m := _RELATIVE.match(spec):
            name, op, other, sign, x = m.groups()
            if name in MEASURED:
                raise _refuse(spec, f"{name} is measured now, for the candidate alone: write '{name} <= <x>'")
            name = _known(spec, name, METRICS)
            if _known(spec, other, METRICS) != name:
                raise _refuse(spec, f"compares {name} with production.{other}; compare a metric with itself")
            want = ("<=", "+") if metric_direction(name) == "min" else (">=", "-")
            if (op, sign) != want:
                raise _refuse(spec, f"{name} is better when {'lower' if want[0] == '<=' else 'higher'}; write "
                                    f"'{name} {want[0]} production.{name} {want[1]} <x>'")
            gates.append(Gate("relative", spec, name, op, float(x)))
        elif m := _ABSOLUTE.match(spec):
            name, op, x = m.group(1), m.group(2), m.group(3)
            name = _known(spec, name, METRICS + MEASURED)
            if name in MEASURED and op != "<=":
                raise _refuse(spec, f"{name} is a ceiling; write '{name} <= <x>'")
            gates.append(Gate("absolute", spec, name, op, float(x)))
        else:
            word = spec.split(" ")[0] if spec else ""
            if word and re.fullmatch(r"[A-Za-z0-9_]+", word) and not re.search(r"[<>=]", spec):
                _known(spec, word, (), "gate")  # a lone word: suggest paired / signature
            raise _refuse(spec, "not a gate")
    return gates


# ------------------------------------------------------------------------------------------ evaluation
def _headline(gate: Gate, task: str) -> str:
    metric = HEADLINE[task] if gate.metric == "headline" else str(gate.metric)
    if metric in MEASURED:
        return metric
    if metric not in (CLASSIFICATION if task == "classification" else REGRESSION):
        raise RegistryError(f"release gate {gate.spec!r}: {metric} is not a metric of a {task} model "
                            f"(its metrics: {', '.join(CLASSIFICATION if task == 'classification' else REGRESSION)})")
    return metric


def _positive(pkg: Package) -> str:
    """The class binary F1 is about: the decision rule's positive class, else the second class."""
    classes = pkg.classes or []
    if len(classes) != 2:
        raise RegistryError(f"an f1 gate is the binary F1 of the positive class; this model has {len(classes)} "
                            "classes: use macro_f1")
    return str(classes[int((pkg.signature.get("decision") or {}).get("positive", 1))])


@dataclass
class _Scored:
    """One package on the holdout: its predictions (class names or values) and its metrics."""

    predictions: np.ndarray
    metrics: dict[str, float]


def _score(pkg: Package, outputs: np.ndarray, holdout: Holdout, positive: str | None) -> _Scored:
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim != 2 or len(outputs) != len(holdout):
        raise RegistryError(f"{pkg.path}: outputs on the holdout must be (N={len(holdout)}, k), not {outputs.shape}")
    pred = pkg.transform(outputs)
    if holdout.task_kind == "regression":
        reg = regression_metrics(holdout.labels, pred, n_bootstrap=0)
        return _Scored(np.asarray(pred, np.float64), {k: v["value"] for k, v in reg.items() if isinstance(v, dict)})
    labels = np.asarray(pkg.decide(pred), dtype=np.int64)
    classes = [str(c) for c in pkg.classes or []]
    # holdout labels the package has no class for (a signature change someone allowed): always wrong, scored
    # as classes it gives probability 0, so the metrics stay defined over the same rows for both packages
    classes += sorted({v for v in holdout.labels.tolist() if v not in classes})
    proba = np.zeros((len(pred), len(classes)), np.float64)
    proba[:, : pred.shape[1]] = pred
    codes = {c: i for i, c in enumerate(classes)}
    y = np.array([codes[v] for v in holdout.labels.tolist()], dtype=np.int64)
    cls = classification_metrics(y, proba, classes, n_bootstrap=0, labels=labels)
    scores = {k: v["value"] for k, v in cls.items() if isinstance(v, dict) and "value" in v}
    if positive is not None:
        scores["f1"] = cls["per_class"][positive]["f1"] if positive in codes else 0.0
    return _Scored(np.array(classes, dtype=object)[labels], scores)


def _metric_result(gate: Gate, metric: str, cand: _Scored, prod: _Scored | None) -> GateResult:
    c = cand.metrics.get(metric)
    name = gate.spec.replace("headline", metric)
    if gate.kind == "absolute":
        bound = float(gate.value or 0.0)
        ok = c is not None and (c >= bound if gate.op == ">=" else c <= bound)
        p = prod.metrics.get(metric) if prod else None
        return GateResult(name, c, p, f"{gate.op} {bound:g}", ok, "pass" if ok else f"blocked: {metric} {_fmt(c)} "
                          f"is not {gate.op} {bound:g}", {"metric": metric})
    if prod is None:
        return GateResult(name, c, None, "production - " + f"{gate.value:g}", True,
                          "skipped: first release, no production", {"metric": metric})
    p, x = prod.metrics.get(metric), float(gate.value or 0.0)
    bound = None if p is None else (p - x if gate.op == ">=" else p + x)
    ok = c is not None and bound is not None and (c >= bound - 1e-12 if gate.op == ">=" else c <= bound + 1e-12)
    sign = "-" if gate.op == ">=" else "+"
    margin = f"{gate.op} {_fmt(bound)} (production {sign} {x:g})"
    verdict = "pass" if ok else f"blocked: {metric} {_fmt(c)} vs production {_fmt(p)}, more than {x:g} worse"
    return GateResult(name, c, p, margin, ok, verdict, {"metric": metric, "bound": bound, "tolerance": x})


def _paired_result(name: str, r: PairedResult) -> GateResult:
    figures = f"p={r.p_value:.3g}, difference {r.difference:+.4f}, {r.confidence:.0%} CI [{r.ci_low:+.4f}, " \
              f"{r.ci_high:+.4f}]"
    verdict = {"worse": f"blocked: worse beyond noise ({figures})",
               "better": f"better beyond noise ({figures})"}.get(r.verdict, f"pass: no significant difference "
                                                                            f"({figures})")
    return GateResult(name, r.candidate, r.production, f"not worse at alpha {r.alpha:g}", r.verdict != "worse",
                      verdict, r.to_dict())


def _paired(holdout: Holdout, cand: _Scored, prod: _Scored | None, f1: str | None, positive: str | None,
            alpha: float, seed: int) -> list[GateResult]:
    if holdout.task_kind == "classification":
        tests = [("paired test (McNemar mid-p)", "accuracy")] + ([(f"paired test (bootstrap, {f1})", f1)] if f1
                                                                   else [])
    else:
        tests = [("paired test (bootstrap, r2)", "r2")]
    if prod is None:
        return [GateResult(n, cand.metrics.get(m), None, f"not worse at alpha {alpha:g}", True,
                           "skipped: first release, no production", {}) for n, m in tests]
    out = []
    y = holdout.labels
    for name, metric in tests:
        if metric == "accuracy":
            r = mcnemar_midp(cand.predictions == y, prod.predictions == y, alpha=alpha)
        else:
            r = paired_bootstrap(y, cand.predictions, prod.predictions, metric, seed=seed, alpha=alpha,
                                 positive=positive if metric == "f1" else None)
        out.append(_paired_result(name, r))
    return out


def _raw_inputs(sig: dict[str, Any]) -> Any:
    """What a client sends: the text column, the feature columns, or the image size and channels."""
    prep = sig.get("preprocessing") or {}
    if sig.get("data_kind") == "text":
        return [str(prep.get("text_column", "text"))]
    if sig.get("data_kind") == "images":
        return {"size": prep.get("size"), "channels": prep.get("channels")}
    return [str(c.get("name")) for c in list(prep.get("numeric") or []) + list(prep.get("categorical") or [])]


def _signature(cand: Package, prod: Package | None, allow: bool) -> GateResult:
    name = "signature"
    if prod is None:
        return GateResult(name, cand.data_kind, None, "same inputs, classes, kind", True,
                          "skipped: first release, no production", {})
    a, b = cand.signature, prod.signature
    fields = {"kind": (a.get("kind"), b.get("kind")), "data_kind": (a.get("data_kind"), b.get("data_kind")),
              "raw inputs": (_raw_inputs(a), _raw_inputs(b)), "inputs": (a.get("inputs"), b.get("inputs")),
              "classes": (a.get("classes"), b.get("classes"))}
    changed = {k: {"candidate": c, "production": p} for k, (c, p) in fields.items() if c != p}
    summary = "; ".join(f"{k}: {v['production']} -> {v['candidate']}" for k, v in changed.items())
    if not changed:
        verdict, ok = "pass", True
    elif allow:
        verdict, ok = f"allowed (allow_signature_change): {summary}", True
    else:
        verdict, ok = f"blocked: signature changed ({summary}); release with --allow-signature-change", False
    cand_s = "same" if not changed else ", ".join(changed)
    return GateResult(name, cand_s, None, "same inputs, classes, kind", ok, verdict, {"changed": changed})


def _measure(pkg: Package, holdout: Holdout, seed: int) -> dict[str, Any]:
    """p99 at batch 1 and package size, in a fresh process, on the holdout rows written as the runtime reads
    them (.npz `images`, or Parquet of the columns)."""
    with tempfile.TemporaryDirectory(prefix="shipml-gates-") as tmp:
        if isinstance(holdout.rows, np.ndarray):
            path = Path(tmp) / "holdout.npz"
            np.savez(path, images=holdout.rows)
        else:
            path = Path(tmp) / "holdout.parquet"
            pd.DataFrame(holdout.rows).to_parquet(path, index=False)
        m = measure_in_subprocess(pkg.path, path, latency_n=LATENCY_N, batch_size=1, seed=seed, timeout=600)
    return {"p99_ms": float(m["p99_ms"]), "package_mb": m["package_bytes"] / _MB, "measurement": m}


def _measured_result(gate: Gate, got: dict[str, Any] | None, why: str | None, production_mb: float | None
                     ) -> GateResult:
    metric, bound = str(gate.metric), float(gate.value or 0.0)
    prod = production_mb if metric == "package_mb" else None
    if got is None:
        return GateResult(gate.spec, None, prod, f"<= {bound:g}", False, f"blocked: not measured ({why})", {})
    c = got[metric]
    ok = c <= bound
    return GateResult(gate.spec, c, prod, f"<= {bound:g}", ok,
                      "pass" if ok else f"blocked: {metric} {c:.4g} > {bound:g}", {"measurement": got["measurement"]})


def run_gates(candidate: Package, candidate_outputs: np.ndarray, production: Package | None,
              production_outputs: np.ndarray | None, holdout: Holdout, gates: Sequence[Gate], *,
              alpha: float = 0.05, allow_signature_change: bool = False, measure: bool = True,
              seed: int = 0) -> GateReport:
    """Evaluate `gates` for `candidate` against `production` (None: a first release) on `holdout`, given each
    package's raw outputs on it (holdout.holdout_outputs). Pure: reads, measures, returns; nothing is written."""
    if production is not None and production_outputs is None:
        raise RegistryError("production outputs on the holdout are needed to compare with production")
    task = holdout.task_kind
    metrics = {g: _headline(g, task) for g in gates if g.kind in ("relative", "absolute")}
    f1 = next((m for m in metrics.values() if m in ("f1", "macro_f1")), None)
    positive = _positive(candidate) if "f1" in metrics.values() else None
    cand = _score(candidate, candidate_outputs, holdout, positive)
    prod = None
    if production is not None and production_outputs is not None:
        prod = _score(production, production_outputs, holdout, positive)
    measured: dict[str, Any] | None = None
    why = "measure=False"
    if measure and any(m in MEASURED for m in metrics.values()):
        try:
            measured = _measure(candidate, holdout, seed)
        except ShipmlError as err:
            why = f"measuring failed: {err}"
    production_mb = package_size(production.path) / _MB if production is not None else None
    results: list[GateResult] = []
    for g in gates:
        if g.kind == "paired":
            results += _paired(holdout, cand, prod, f1, positive, alpha, seed)
        elif g.kind == "signature":
            results.append(_signature(candidate, production, allow_signature_change))
        elif metrics[g] in MEASURED:
            results.append(_measured_result(g, measured, why, production_mb))
        else:
            results.append(_metric_result(g, metrics[g], cand, prod))
    return GateReport(results, first_release=production is None)
