"""Release gates (shipml/registry/gates.py): the paired tests decide on real holdout rows, relative gates compare
with production, a first release gets absolute gates only, signature changes block, typos are refused, and
latency / size are measured in a fresh process on a tiny real package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_runtime_package import image_package, table_package

from shipml.errors import RegistryError
from shipml.registry.gates import DEFAULT_GATES, GateReport, parse_gates, run_gates
from shipml.registry.holdout import Holdout
from shipml.runtime import Package

N = 300
CLASSES = ["cat", "dog", "eel"]


def _images(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 6, 5, 3), dtype=np.uint8)


def _logits(pred: np.ndarray, k: int = 3) -> np.ndarray:
    """Outputs whose softmax argmax is `pred` (class indices)."""
    out = np.zeros((len(pred), k), np.float32)
    out[np.arange(len(pred)), pred] = 5.0
    return out


@pytest.fixture(scope="module")
def image_pkg(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return Package.open(image_package(tmp_path_factory.mktemp("pkg") / "p")[0])


@pytest.fixture(scope="module")
def labelled(image_pkg: Package) -> tuple[Holdout, np.ndarray]:
    """A holdout whose labels agree with the package's own predictions on 80% of rows, and those outputs."""
    rows = _images()
    outputs = image_pkg.outputs(image_pkg.prepare(rows))
    pred = image_pkg.decide(image_pkg.transform(outputs))
    truth = pred.copy()
    flip = np.random.default_rng(1).random(N) < 0.2
    truth[flip] = (truth[flip] + 1) % 3
    return Holdout("images", "classification", rows, np.array(CLASSES)[truth]), outputs


def _by_name(report: GateReport) -> dict[str, object]:
    return {r.name: r for r in report.results}


def test_identical_package_passes_with_p_one(image_pkg: Package, labelled: tuple[Holdout, np.ndarray]) -> None:
    holdout, outputs = labelled
    gates = parse_gates([*DEFAULT_GATES, "accuracy >= production.accuracy - 0.002", "accuracy >= 0.5"])
    report = run_gates(image_pkg, outputs, image_pkg, outputs, holdout, gates, measure=False)
    assert report.passed and not report.first_release
    paired = _by_name(report)["paired test (McNemar mid-p)"]
    assert paired.details["p_value"] == 1.0 and paired.details["verdict"] == "no significant difference"
    assert "accuracy >= production.accuracy - 0.005" in _by_name(report)  # the headline gate, resolved
    acc = _by_name(report)["accuracy >= 0.5"]
    assert acc.candidate == pytest.approx(0.8, abs=0.06) and acc.candidate == acc.production
    json.dumps(report.to_dict(), allow_nan=False)
    assert all(len(row) == 5 and all(isinstance(c, str) for c in row) for row in report.rows())


def test_clearly_worse_candidate_is_blocked_with_figures(labelled: tuple[Holdout, np.ndarray],
                                                         image_pkg: Package) -> None:
    holdout, _ = labelled
    truth = np.array([CLASSES.index(v) for v in holdout.labels])
    good = _logits(truth)
    bad_pred = truth.copy()
    bad_pred[:60] = (bad_pred[:60] + 1) % 3  # wrong on 60 rows production gets right
    gates = parse_gates(["accuracy >= production.accuracy - 0.01", "paired", "signature"])
    report = run_gates(image_pkg, _logits(bad_pred), image_pkg, good, holdout, gates, measure=False)
    assert not report.passed
    rel, paired, sig = report.results
    assert not rel.passed and rel.candidate == pytest.approx(0.8) and rel.production == pytest.approx(1.0)
    assert "blocked" in rel.verdict and "0.9900" in rel.margin
    assert not paired.passed and paired.verdict.startswith("blocked: worse beyond noise")
    assert paired.details["only_production"] == 60 and paired.details["only_candidate"] == 0
    assert paired.details["p_value"] < 1e-10 and paired.details["ci_high"] < 0
    assert sig.passed


def test_clearly_better_candidate_is_reported_as_such(labelled: tuple[Holdout, np.ndarray],
                                                      image_pkg: Package) -> None:
    holdout, _ = labelled
    truth = np.array([CLASSES.index(v) for v in holdout.labels])
    worse = truth.copy()
    worse[:60] = (worse[:60] + 1) % 3
    gates = parse_gates(["paired", "accuracy >= production.accuracy - 0.005"])
    report = run_gates(image_pkg, _logits(truth), image_pkg, _logits(worse), holdout, gates, measure=False)
    assert report.passed
    assert report.results[0].verdict.startswith("better beyond noise (p=")
    assert report.results[0].details["ci_low"] > 0


def test_f1_gate_adds_a_paired_bootstrap_of_f1(tmp_path: Path) -> None:
    pkg = Package.open(image_package(tmp_path / "bin", classes=["ham", "spam"])[0])
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, N)
    worse = truth.copy()
    worse[np.flatnonzero(truth == 1)[:50]] = 0  # misses 50 positives
    holdout = Holdout("images", "classification", _images(), np.array(["ham", "spam"])[truth])
    gates = parse_gates(["paired", "f1 >= production.f1 - 0.002"])
    report = run_gates(pkg, _logits(worse, 2), pkg, _logits(truth, 2), holdout, gates, measure=False, seed=1)
    named = _by_name(report)
    boot = named["paired test (bootstrap, f1)"]
    assert boot.details["test"] == "paired_bootstrap" and boot.details["metric"] == "f1"
    assert not boot.passed and boot.details["ci_high"] < 0
    assert not named["f1 >= production.f1 - 0.002"].passed and named["f1 >= production.f1 - 0.002"].production == 1.0


def test_regression_uses_paired_bootstrap_of_r2(tmp_path: Path) -> None:
    pkg = Package.open(table_package(tmp_path / "reg", target={"mean": 0.0, "std": 1.0})[0])
    rng = np.random.default_rng(0)
    y = rng.normal(size=N)
    rows = __import__("pandas").DataFrame({"x": rng.normal(size=N), "y": rng.normal(size=N), "colour": "red"})
    holdout = Holdout("table", "regression", rows, y)
    good = (y + rng.normal(scale=0.3, size=N)).astype(np.float32)[:, None]
    bad = (y + rng.normal(scale=1.0, size=N)).astype(np.float32)[:, None]
    gates = parse_gates(list(DEFAULT_GATES))
    report = run_gates(pkg, bad, pkg, good, holdout, gates, measure=False)
    named = _by_name(report)
    assert set(named) == {"r2 >= production.r2 - 0.005", "paired test (bootstrap, r2)", "signature"}
    boot = named["paired test (bootstrap, r2)"]
    assert not boot.passed and boot.details["test"] == "paired_bootstrap" and boot.details["metric"] == "r2"
    assert boot.details["difference"] < 0 and boot.details["ci_high"] < 0
    assert not named["r2 >= production.r2 - 0.005"].passed
    same = run_gates(pkg, good, pkg, good, holdout, gates, measure=False)
    assert same.passed and _by_name(same)["paired test (bootstrap, r2)"].details["p_value"] == 1.0


def test_first_release_applies_absolute_gates_only(image_pkg: Package, labelled: tuple[Holdout, np.ndarray]) -> None:
    holdout, outputs = labelled
    gates = parse_gates([*DEFAULT_GATES, "accuracy >= 0.5", "macro_f1 >= production.macro_f1 - 0.01"])
    report = run_gates(image_pkg, outputs, None, None, holdout, gates, measure=False)
    assert report.first_release and report.passed and "absolute gates only" in report.to_dict()["note"]
    skipped = [r for r in report.results if r.verdict == "skipped: first release, no production"]
    assert len(skipped) == 5  # headline, McNemar, bootstrap of macro_f1, signature, macro_f1
    assert _by_name(report)["accuracy >= 0.5"].verdict == "pass"
    strict = run_gates(image_pkg, outputs, None, None, holdout, parse_gates(["accuracy >= 0.95"]), measure=False)
    assert not strict.passed and "blocked" in strict.results[0].verdict


def test_signature_change_blocks_unless_allowed(tmp_path: Path, image_pkg: Package,
                                                labelled: tuple[Holdout, np.ndarray]) -> None:
    holdout, outputs = labelled
    other = Package.open(image_package(tmp_path / "o", classes=["cat", "dog", "emu"])[0])
    gates = parse_gates(["signature", "accuracy >= 0"])
    blocked = run_gates(other, outputs, image_pkg, outputs, holdout, gates, measure=False)
    assert not blocked.passed and "classes" in blocked.results[0].verdict
    assert blocked.results[0].details["changed"]["classes"]["candidate"] == ["cat", "dog", "emu"]
    allowed = run_gates(other, outputs, image_pkg, outputs, holdout, gates, measure=False,
                        allow_signature_change=True)
    assert allowed.passed and allowed.results[0].verdict.startswith("allowed")
    # the candidate knows no "eel": those holdout rows count as wrong for it, and scoring still works
    acc = allowed.results[1]
    said_eel = image_pkg.decide(image_pkg.transform(outputs)) == 2
    lost = float(np.mean((holdout.labels == "eel") & said_eel))
    assert lost > 0.1 and acc.candidate == pytest.approx(acc.production - lost)


@pytest.mark.parametrize(("spec", "message"), [
    ("acuracy >= production.accuracy - 0.01", "did you mean 'accuracy'"),
    ("pairde", "did you mean 'paired'"),
    ("signatur", "did you mean 'signature'"),
    ("accuracy >= production.f1 - 0.01", "compare a metric with itself"),
    ("mae >= production.mae - 0.1", "better when lower"),
    ("accuracy >= production.accuracy + 0.01", "better when higher"),
    ("p99_ms >= 3", "ceiling"),
    ("p99_ms <= production.p99_ms + 1", "measured now"),
    ("accuracy > 0.9", "not a gate"),
    ("", "not a gate"),
])
def test_grammar_errors_name_the_spec(spec: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as err:
        parse_gates([spec])
    assert repr(spec) in str(err.value)


def test_metric_of_the_wrong_task_is_refused(image_pkg: Package, labelled: tuple[Holdout, np.ndarray]) -> None:
    holdout, outputs = labelled
    with pytest.raises(RegistryError, match="r2 is not a metric of a classification model"):
        run_gates(image_pkg, outputs, None, None, holdout, parse_gates(["r2 >= 0.5"]), measure=False)


def test_latency_and_size_unmeasured_fail(image_pkg: Package, labelled: tuple[Holdout, np.ndarray]) -> None:
    holdout, outputs = labelled
    report = run_gates(image_pkg, outputs, None, None, holdout, parse_gates(["p99_ms <= 1000"]), measure=False)
    assert not report.passed and "not measured" in report.results[0].verdict


def test_latency_and_size_measured_in_a_fresh_process(image_pkg: Package,
                                                      labelled: tuple[Holdout, np.ndarray]) -> None:
    holdout, outputs = labelled
    gates = parse_gates(["p99_ms <= 1000", "package_mb <= 1", "package_mb <= 0.0001"])
    report = run_gates(image_pkg, outputs, image_pkg, outputs, holdout, gates)
    latency, size, tight = report.results
    assert latency.passed and 0 < float(latency.candidate) < 1000
    assert latency.details["measurement"]["latency_n"] == 200
    assert size.passed and 0 < float(size.candidate) < 1 and size.production == pytest.approx(size.candidate)
    assert not tight.passed and "blocked: package_mb" in tight.verdict
