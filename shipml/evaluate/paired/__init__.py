"""Paired comparisons of a candidate model with production on the same rows: the release gates' statistics.

A release gate asks one question: on the frozen holdout, is the candidate worse than what is live now by
more than noise? Both models score the *same* rows, so the comparison is paired, which is far more
sensitive than comparing two independent accuracies: rows both models get right (or both wrong) carry no
information about which is better, and only the discordant rows count.

- `mcnemar_midp`: per-row correctness (classification accuracy). The exact McNemar test, mid-p version
  (Lancaster 1961; Fagerland, Lydersen & Laake, "The McNemar test for binary matched-pairs data: mid-p and
  asymptotic are better than exact conditional", BMC Med Res Methodol 13:91, 2013): the exact conditional
  test is conservative (its real size is often half the nominal alpha), the mid-p keeps close to nominal
  while staying exact-binomial. The interval of the accuracy difference is Newcombe's paired score interval
  (Newcombe, "Improved confidence intervals for the difference between binomial proportions based on
  paired data", Stat Med 17:2635-2650, 1998, method 10; the "Newcombe square-and-add" interval recommended
  by Fagerland, Lydersen & Laake, Stat Med 33:2850-2875, 2014): it stays inside [-1, 1], is never
  zero-width, and needs only Wilson intervals (`core/proportion.py`).
- `paired_bootstrap`: any of r2 / mae / mse / rmse / f1 (binary) / macro_f1. Rows are resampled once per
  resample and both models are scored on the same resampled rows (Efron & Tibshirani 1993, ch. 16;
  Koehn, "Statistical significance tests for machine translation evaluation", EMNLP 2004), so the
  correlation between the two models' errors is kept. Resampled metrics are computed in bulk from
  resample count matrices (as in `metrics.py`), not by calling scikit-learn per resample.

Both return a `PairedResult`, whose `to_dict()` is what the catalog's event log stores. A package compared
with itself gets p = 1 and "no significant difference" from both.
"""

from shipml.evaluate.paired.bootstrap import (  # noqa: F401  (_f1_stat, _regression_stat: checked by the tests)
    BOOTSTRAP_METRICS,
    _f1_stat,
    _regression_stat,
    bootstrap_p_value,
    paired_bootstrap,
)
from shipml.evaluate.paired.mcnemar import mcnemar_midp, midp_value, newcombe_paired_interval
from shipml.evaluate.paired.result import VERDICTS, PairedResult

__all__ = [
    "BOOTSTRAP_METRICS",
    "VERDICTS",
    "PairedResult",
    "bootstrap_p_value",
    "mcnemar_midp",
    "midp_value",
    "newcombe_paired_interval",
    "paired_bootstrap",
]
