"""CUPED through `analyze`: pre-exposure outcomes of each unit adjust its metric, the result is
gbstats' regression adjustment (the vendored oracle), and the intervals narrow (issue 11,
item 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import (
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)

from analysis.analyze import analyze
from tests.analysis_support import T0, experiment

DAY = 86_400_000


def _data(seed: int = 11, n: int = 400, lift: float = 0.3):
    """Each unit has a persistent propensity: its spend before exposure (x) predicts its spend
    after (y); v2 adds `lift`. One exposure per unit on day 10, pre outcomes on days 3-9."""
    rng = np.random.default_rng(seed)
    units, arms, xs, ys = [], [], [], []
    exposures, outcomes = [], []
    for i in range(2 * n):
        arm = "control" if i < n else "v2"
        propensity = rng.gamma(2.0, 1.0)
        x = propensity + rng.normal(0, 0.3)
        y = propensity + rng.normal(0, 0.3) + (lift if arm == "v2" else 0.0)
        unit, start = f"u{i}", T0 + 10 * DAY + i
        exposures.append((unit, arm, start))
        outcomes.append((unit, arm, "spend", x, start - 2 * DAY))  # inside the 14-day window
        outcomes.append((unit, arm, "spend", 99.0, start - 30 * DAY))  # outside: ignored
        outcomes.append((unit, arm, "spend", y, start + 1000))
        units.append(unit), arms.append(arm), xs.append(x), ys.append(y)
    e = pd.DataFrame(exposures, columns=["unit_id", "arm", "ts"])
    o = pd.DataFrame(outcomes, columns=["unit_id", "arm", "metric", "value", "ts"])
    return e, o, np.array(arms), np.array(xs), np.array(ys)


def _oracle(arms, xs, ys, relative: bool):
    def stat(mask):
        x, y, n = xs[mask], ys[mask], int(mask.sum())
        return RegressionAdjustedStatistic(
            n=n,
            post_statistic=SampleMeanStatistic(n=n, sum=y.sum(), sum_squares=(y * y).sum()),
            pre_statistic=SampleMeanStatistic(n=n, sum=x.sum(), sum_squares=(x * x).sum()),
            post_pre_sum_of_products=(x * y).sum(),
            theta=0,
        )

    config = FrequentistConfig(difference_type="relative" if relative else "absolute")
    return TwoSidedTTest(stat(arms == "control"), stat(arms == "v2"), config).compute_result()


def test_cuped_uses_pre_exposure_outcomes_and_equals_gbstats() -> None:
    e, o, arms, xs, ys = _data()
    spend = {"name": "spend", "kind": "mean", "aggregate": "sum", "estimand": "absolute"}
    result = analyze(experiment([spend]), e, o)
    row = result.row("spend", "v2")
    expected = _oracle(arms, xs, ys, relative=False)
    assert row.verdict.effect == pytest.approx(expected.expected, abs=1e-9)
    assert (row.verdict.ci_low, row.verdict.ci_high) == pytest.approx(expected.ci, abs=1e-6)
    assert row.verdict.p_value == pytest.approx(expected.p_value, abs=1e-6)
    assert row.comparison.lift == pytest.approx(_oracle(arms, xs, ys, True).expected, abs=1e-9)
    # the plain analysis of the same data: a much wider interval
    plain = analyze(experiment([spend], cuped=False), e, o).row("spend", "v2").verdict
    width = row.verdict.ci_high - row.verdict.ci_low
    assert width < 0.5 * (plain.ci_high - plain.ci_low)
    assert 0.75 < row.variance_reduction < 1.0
    table = result.table.set_index("arm")
    assert table.loc["v2", "variance_reduction"] == row.variance_reduction
    assert "CUPED: " in result._repr_html_() and "less variance" in result._repr_html_()


def test_without_pre_exposure_data_the_analysis_is_the_plain_one() -> None:
    e, o, *_ = _data()
    post_only = o[o["ts"] >= T0 + 10 * DAY]
    spend = {"name": "spend", "kind": "mean", "aggregate": "sum"}
    with_cuped = analyze(experiment([spend]), e, post_only).row("spend", "v2")
    without = analyze(experiment([spend], cuped=False), e, post_only).row("spend", "v2")
    assert with_cuped.verdict == without.verdict
    assert np.isnan(with_cuped.variance_reduction)
