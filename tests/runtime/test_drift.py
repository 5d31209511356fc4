"""Drift statistics: PSI and KS against a reference summary, and `compare`'s flag rules (no flag below the
minimum rows, none without a reference, moved signals named)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp
from test_runtime_package import image_package

from shipml.runtime import Package
from shipml.runtime.drift import compare, ks_test, psi
from shipml.runtime.reference import _summary, build_reference, signals


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi(np.array([10, 20, 30]), np.array([20, 40, 60])) == pytest.approx(0, abs=1e-3)
    small, large = psi(np.array([50, 50]), np.array([55, 45])), psi(np.array([50, 50]), np.array([90, 10]))
    assert 0 < small < 0.05 < 0.5 < large
    assert np.isfinite(psi(np.array([100, 0]), np.array([0, 100])))  # empty bins do not give infinity


@pytest.mark.parametrize("shift", [0.0, 0.25, 1.0])
def test_ks_against_quantiles_agrees_with_scipy(shift: float) -> None:
    rng = np.random.default_rng(3)
    ref, live = rng.normal(size=3000), rng.normal(shift, 1, size=400)
    d, p = ks_test(list(np.quantile(ref, np.linspace(0, 1, 101))), len(ref), live)
    exact = ks_2samp(live, ref)
    assert d == pytest.approx(exact.statistic, abs=0.02)
    assert (p < 0.001) == (exact.pvalue < 0.001)


def test_compare_flags_moved_signals_only_with_enough_rows() -> None:
    rng = np.random.default_rng(0)
    reference = {"signals": {"x": _summary(rng.normal(size=2000)),
                             "c": _summary(np.array(["a"] * 900 + ["b"] * 100, dtype=object))}}
    same = {"x": rng.normal(size=500), "c": np.array(["a"] * 450 + ["b"] * 50, dtype=object)}
    moved = {"x": rng.normal(1.0, 1, size=500), "c": np.array(["a"] * 250 + ["b"] * 200 + ["new"] * 50, dtype=object)}
    assert compare(reference, same)["flag"] is False
    report = compare(reference, moved)
    assert report["flag"] and report["moved"] == ["c", "x"] and report["status"] == "drift"
    assert report["signals"]["c"]["live_share"]["new"] == pytest.approx(0.1)
    few = compare(reference, {k: v[:20] for k, v in moved.items()})
    assert few["flag"] is False and few["status"] == "too few rows"
    assert compare(None, moved)["status"] == "no reference"


def test_image_reference_and_live_signals_use_one_function(tmp_path: Path) -> None:
    pkg = Package.open(image_package(tmp_path / "img")[0])
    rng = np.random.default_rng(1)
    train = pkg.prepare(rng.integers(0, 256, size=(400, 6, 5, 3), dtype=np.uint8))
    ref = build_reference(pkg.predictor, train, pkg.predict_proba(train))
    assert {"brightness", "contrast", "channel_mean:r", "predicted", "confidence"} <= set(ref["signals"])
    live = signals(pkg.predictor, pkg.prepare(255 - rng.integers(0, 128, size=(300, 6, 5, 3), dtype=np.uint8)))
    assert compare(ref, live)["moved"][:1] == ["brightness"]


def test_ks_handles_a_point_mass_like_texts_cut_at_max_length() -> None:
    rng = np.random.default_rng(0)

    def lengths(n: int) -> np.ndarray:
        v = rng.integers(20, 200, size=n).astype(float)
        v[rng.random(n) < 0.85] = 128.0  # most texts are cut at the max length
        return np.minimum(v, 128)

    ref = lengths(2000)
    quantiles = list(np.quantile(ref, np.linspace(0, 1, 101)))
    d_own, p_own = ks_test(quantiles, len(ref), ref)
    assert d_own < 0.01 and p_own > 0.9  # a sample against its own summary: no difference
    same = lengths(300)
    d, p = ks_test(quantiles, len(ref), same)
    assert d == pytest.approx(ks_2samp(same, ref).statistic, abs=0.01) and p > 0.01


def test_rare_share_of_training_texts_is_measured_leaving_each_text_out(tmp_path: Path) -> None:
    from test_runtime_package import text_package

    pkg = Package.open(text_package(tmp_path / "txt")[0])
    rng = np.random.default_rng(0)
    vocab = pkg.predictor.preprocessor.tokenizer.get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) > 3)[:15000]
    zipf = 1.0 / np.arange(1, len(words) + 1)  # word frequencies as in language: many words are seen once
    texts = [" ".join(rng.choice(words, size=40, p=zipf / zipf.sum())) for _ in range(1200)]
    train, held = pkg.prepare(texts[:1000]), pkg.prepare(texts[1000:])
    ref = build_reference(pkg.predictor, train, pkg.predict_proba(held))
    live = signals(pkg.predictor, held, ref)
    report = compare(ref, live)
    assert "rare_share" not in report["moved"], report["signals"]["rare_share"]  # same kind of text: no drift
