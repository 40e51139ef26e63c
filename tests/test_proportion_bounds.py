"""Tests for analysis.proportion_bounds, cross-checked against statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from analysis.proportion_bounds import (
    NonInferiority,
    clopper_pearson_interval,
    proportion_non_inferiority,
    wilson_interval,
)

CASES = [
    (0, 1),
    (1, 1),
    (0, 10),
    (3, 10),
    (10, 10),
    (0, 2000),
    (1, 2000),
    (7, 300),
    (150, 300),
    (299, 300),
    (12345, 1_000_000),
]
ALPHAS = [0.01, 0.05, 0.1, 0.32]


@pytest.mark.parametrize(("successes", "n"), CASES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_wilson_matches_statsmodels(successes: int, n: int, alpha: float) -> None:
    want = proportion_confint(successes, n, alpha=alpha, method="wilson")
    got = wilson_interval(successes, n, alpha)
    assert got == pytest.approx(want, abs=1e-12, rel=0)
    assert 0.0 <= got[0] <= successes / n <= got[1] <= 1.0


@pytest.mark.parametrize(("successes", "n"), CASES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_clopper_pearson_matches_statsmodels(successes: int, n: int, alpha: float) -> None:
    want = proportion_confint(successes, n, alpha=alpha, method="beta")
    got = clopper_pearson_interval(successes, n, alpha)
    assert got == pytest.approx(want, abs=1e-12, rel=0)


def test_edge_values_are_exact() -> None:
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(50, 50)[1] == 1.0
    low, high = clopper_pearson_interval(0, 2000, 0.05)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 2000), abs=1e-15)
    assert clopper_pearson_interval(2000, 2000)[1] == 1.0


def test_clopper_pearson_coverage_is_at_least_nominal() -> None:
    """Exact coverage by summing the binomial pmf over all outcomes."""
    n = 200
    counts = np.arange(n + 1)
    intervals = [clopper_pearson_interval(int(x), n) for x in counts]
    for p in (0.001, 0.01, 0.05, 0.3, 0.5):
        pmf = sps.binom.pmf(counts, n, p)
        coverage = sum(w for w, (lo, hi) in zip(pmf, intervals, strict=True) if lo <= p <= hi)
        assert coverage >= 0.95 - 1e-12


def test_no_units_gives_nan() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert all(math.isnan(v) for v in clopper_pearson_interval(0, 0))


@pytest.mark.parametrize(
    ("successes", "n", "alpha"),
    [(-1, 10, 0.05), (11, 10, 0.05), (1.5, 10, 0.05), (1, 10.0, 0.05), (True, 10, 0.05),
     (1, 10, 0.0), (1, 10, 1.0), (1, 10, math.nan)],
)  # fmt: skip
def test_invalid_arguments(successes: object, n: object, alpha: float) -> None:
    for fn in (wilson_interval, clopper_pearson_interval):
        with pytest.raises(ValueError):
            fn(successes, n, alpha)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- non-inferiority


def test_zero_errors_in_2000_units_pass_a_half_percent_margin() -> None:
    result = proportion_non_inferiority(0, 2000, margin=0.005, label="error rate")
    assert isinstance(result, NonInferiority)
    assert result.upper_bound == pytest.approx(1 - 0.05 ** (1 / 2000), abs=1e-12)
    assert result.upper_bound == pytest.approx(0.001497, abs=1e-6)
    assert result.passes and result.margin == 0.005
    assert result.sentence == "error rate below 0.15% (95% upper bound), margin 0.50%: passes"


def test_one_sided_bound_matches_statsmodels() -> None:
    for successes, n in CASES:
        for alpha in (0.01, 0.05, 0.1):
            want = proportion_confint(successes, n, alpha=2 * alpha, method="beta")[1]
            got = proportion_non_inferiority(successes, n, margin=1.0, alpha=alpha).upper_bound
            assert got == pytest.approx(want, abs=1e-12, rel=0)


def test_too_few_units_or_too_many_events_fail() -> None:
    small = proportion_non_inferiority(0, 300, margin=0.005)
    assert small.upper_bound == pytest.approx(1 - 0.05 ** (1 / 300))
    assert not small.passes
    assert small.sentence == "rate below 0.99% (95% upper bound), margin 0.50%: fails"
    many = proportion_non_inferiority(9, 2000, margin=0.005)
    assert not many.passes
    assert proportion_non_inferiority(5, 2000, margin=0.01, alpha=0.025).sentence.endswith(
        "(97.5% upper bound), margin 1.00%: passes"
    )


def test_no_units_fails_with_nan_bound() -> None:
    result = proportion_non_inferiority(0, 0, margin=0.01)
    assert math.isnan(result.upper_bound) and not result.passes
    assert "no units" in result.sentence
    assert not proportion_non_inferiority(0, 100, 0.01, baseline=(0, 0)).passes


@pytest.mark.parametrize(
    ("treatment", "control"),
    [((0, 2000), (0, 2000)), ((3, 2000), (1, 1800)), ((40, 1000), (25, 1200)),
     ((0, 50), (5, 60)), ((20, 20), (0, 20))],
)  # fmt: skip
@pytest.mark.parametrize("alpha", [0.025, 0.05, 0.1])
def test_difference_bound_matches_statsmodels_newcombe(
    treatment: tuple[int, int], control: tuple[int, int], alpha: float
) -> None:
    low, high = confint_proportions_2indep(
        *treatment, *control, method="newcomb", compare="diff", alpha=2 * alpha
    )
    result = proportion_non_inferiority(*treatment, margin=0.5, alpha=alpha, baseline=control)
    assert result.upper_bound == pytest.approx(high, abs=1e-12, rel=0)


def test_difference_check_sentence_and_verdict() -> None:
    result = proportion_non_inferiority(
        2, 2000, margin=0.005, baseline=(1, 2000), label="error rate"
    )
    assert result.passes
    assert result.sentence.startswith("error rate minus control error rate below +0.")
    assert result.sentence.endswith("pp (95% upper bound), margin +0.50 pp: passes")
    worse = proportion_non_inferiority(30, 2000, margin=0.005, baseline=(5, 2000))
    assert not worse.passes and worse.sentence.endswith(": fails")


def test_difference_bound_coverage_for_rare_events() -> None:
    """Exact one-sided coverage of the Newcombe bound at p_t = p_c = 0.2%, n = 2000."""
    n, p = 2000, 0.002
    counts = np.arange(0, 26)
    pmf = sps.binom.pmf(counts, n, p)
    bounds = np.array(
        [
            [
                proportion_non_inferiority(int(t), n, 0.5, baseline=(int(c), n)).upper_bound
                for c in counts
            ]
            for t in counts
        ]
    )
    coverage = float((np.outer(pmf, pmf) * (bounds >= 0.0)).sum())
    assert coverage >= 0.94


def test_fixed_baseline_subtracts_a_known_rate() -> None:
    result = proportion_non_inferiority(3, 2000, margin=0.003, baseline=0.001)
    want = proportion_confint(3, 2000, alpha=0.1, method="beta")[1] - 0.001
    assert result.upper_bound == pytest.approx(want, abs=1e-12)
    assert result.passes
    assert result.sentence.startswith("rate minus baseline 0.10% below +0.")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin": 0.0},
        {"margin": -0.01},
        {"margin": 1.5},
        {"margin": math.nan},
        {"margin": 0.01, "alpha": 0.5},
        {"margin": 0.01, "alpha": 0.0},
        {"margin": 0.01, "baseline": 1.5},
        {"margin": 0.01, "baseline": (1, 2, 3)},
        {"margin": 0.01, "baseline": (5, 2)},
        {"margin": 0.01, "baseline": "0.1"},
    ],
)
def test_non_inferiority_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        proportion_non_inferiority(1, 100, **kwargs)  # type: ignore[arg-type]
