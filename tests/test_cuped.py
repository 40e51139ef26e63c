"""Tests for analysis.cuped, checked against gbstats 0.8.0 (the test oracle the Makefile installs).

Identity with gbstats (``RegressionAdjustedStatistic`` + ``TwoSidedTTest`` /
``SequentialTwoSidedTTest``) is asserted to ``ORACLE_TOL = 1e-6`` (absolute) on point
estimates, interval ends and p-values, and to a relative 1e-9 on theta and the adjusted
moments. The differences observed over 1500 random cases were below 1e-14 (rounding order
differences only), so the tolerances are loose margins, not fudge factors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gbstats.frequentist.tests import (
    FrequentistConfig,
    FrequentistTestResult,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.cuped import (
    AdjustedArm,
    CovariateStats,
    adjust,
    compare_adjusted,
    pooled_theta,
)
from analysis.stats import ArmStats, Comparison, compare

ORACLE_TOL = 1e-6
MOMENT_REL = 1e-9
PLAIN_TOL = 1e-12

KINDS = ["linear", "uncorrelated", "constant_x", "binary", "negative", "skewed"]


def _arm_values(
    rng: np.random.Generator, kind: str, n: int, effect: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (y, x) for one arm; ``effect`` shifts the outcome only."""
    if kind == "linear":  # corr(x, y) ~ 0.85
        x = rng.normal(5.0, 2.0, n)
        y = 1.0 + 0.8 * x + rng.normal(0.0, 1.0, n) + effect
    elif kind == "uncorrelated":  # theta ~ 0
        x = rng.normal(3.0, 1.0, n)
        y = rng.normal(4.0, 2.0, n) + effect
    elif kind == "constant_x":  # var(x) == 0 exactly, so theta == 0
        x = np.full(n, 2.0)
        y = rng.normal(3.0, 1.5, n) + effect
    elif kind == "binary":  # 0/1 outcome and 0/1 covariate, positively correlated
        x = rng.binomial(1, 0.4, n).astype(float)
        p = np.where(x == 1.0, 0.55, 0.3) + 0.5 * effect
        y = rng.binomial(1, np.clip(p, 0.05, 0.95)).astype(float)
    elif kind == "negative":  # negative means
        x = rng.normal(-4.0, 1.5, n)
        y = -6.0 + 1.2 * x + rng.normal(0.0, 2.0, n) + effect
    else:  # skewed, multiplicative relation
        x = rng.lognormal(0.0, 0.8, n)
        y = x * rng.lognormal(effect, 0.5, n)
    return y, x


def _arms(
    seed: int, kind: str, n_a: int, n_b: int, effect: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return _arm_values(rng, kind, n_a, 0.0), _arm_values(rng, kind, n_b, effect)


def _ra_stat(arm: CovariateStats, theta: float = 0.0) -> RegressionAdjustedStatistic:
    return RegressionAdjustedStatistic(
        n=arm.n,
        post_statistic=SampleMeanStatistic(n=arm.n, sum=arm.sum_y, sum_squares=arm.sum_y2),
        pre_statistic=SampleMeanStatistic(n=arm.n, sum=arm.sum_x, sum_squares=arm.sum_x2),
        post_pre_sum_of_products=arm.sum_xy,
        theta=theta,
    )


def _oracle(
    control: CovariateStats,
    treatment: CovariateStats,
    relative: bool,
    alpha: float = 0.05,
    sequential: bool = False,
    tuning_n: float = 5000,
) -> TwoSidedTTest | SequentialTwoSidedTTest:
    """gbstats' test of regression-adjusted statistics with theta = compute_theta(a, b)."""
    theta = compute_theta(_ra_stat(control), _ra_stat(treatment))
    a, b = _ra_stat(control, theta), _ra_stat(treatment, theta)
    difference_type = "relative" if relative else "absolute"
    if sequential:
        config = SequentialConfig(
            alpha=alpha, difference_type=difference_type, sequential_tuning_parameter=tuning_n
        )
        return SequentialTwoSidedTTest(a, b, config)
    return TwoSidedTTest(a, b, FrequentistConfig(alpha=alpha, difference_type=difference_type))


def _oracle_result(
    control: CovariateStats, treatment: CovariateStats, relative: bool, **kwargs: float
) -> FrequentistTestResult:
    return _oracle(control, treatment, relative, **kwargs).compute_result()  # type: ignore[arg-type]


def _fields(c: Comparison, relative: bool) -> tuple[float, float, float, float]:
    if relative:
        return c.lift, c.lift_ci_low, c.lift_ci_high, c.lift_p_value
    return c.diff, c.ci_low, c.ci_high, c.p_value


def _assert_matches_oracle(
    c: Comparison, result: FrequentistTestResult, relative: bool, a: AdjustedArm, b: AdjustedArm
) -> None:
    if result.error_message is not None:
        # gbstats gives up (estimate 0, CI [0, 0], p 1) when control's adjusted or unadjusted
        # mean is 0 or when either arm's variance is <= 0; we only need one of those to hold.
        assert a.mean == 0 or a.unadjusted_mean == 0 or a.variance <= 0 or b.variance <= 0
        return
    assert c.status == "ok"
    est, low, high, p = _fields(c, relative)
    assert est == pytest.approx(result.expected, abs=ORACLE_TOL)
    assert low == pytest.approx(result.ci[0], abs=ORACLE_TOL)
    assert high == pytest.approx(result.ci[1], abs=ORACLE_TOL)
    assert p == pytest.approx(result.p_value, abs=ORACLE_TOL)


def _close(x: float, y: float, tol: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=tol, abs_tol=tol)


def _assert_same_comparison(c1: Comparison, c2: Comparison, tol: float) -> None:
    assert c1.status == c2.status
    for name in Comparison.__dataclass_fields__:
        if name != "status":
            assert _close(getattr(c1, name), getattr(c2, name), tol), name


arm_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(KINDS),
    st.integers(5, 400),
    st.integers(5, 400),
    st.floats(-0.5, 0.5),
)


# --- identity with gbstats ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(case=arm_cases, alpha=st.sampled_from([0.05, 0.1, 0.01]))
def test_matches_gbstats_two_sided_t_test(
    case: tuple[int, str, int, int, float], alpha: float
) -> None:
    (y_a, x_a), (y_b, x_b) = _arms(*case)
    control = CovariateStats.from_values(y_a, x_a)
    treatment = CovariateStats.from_values(y_b, x_b)

    theta = pooled_theta([control, treatment])
    oracle_theta = compute_theta(_ra_stat(control), _ra_stat(treatment))
    assert theta == pytest.approx(oracle_theta, rel=MOMENT_REL, abs=1e-12)
    if case[1] == "constant_x":
        assert theta == 0.0 == oracle_theta

    a, b = adjust(control, theta), adjust(treatment, theta)
    for arm, ours in ((control, a), (treatment, b)):
        ra = _ra_stat(arm, theta)
        assert ours.mean == pytest.approx(ra.mean, rel=MOMENT_REL, abs=1e-12)
        assert ours.unadjusted_mean == pytest.approx(ra.unadjusted_mean, rel=MOMENT_REL)
        assert ours.variance == pytest.approx(ra.variance, rel=MOMENT_REL, abs=1e-12)
        assert ours.unadjusted_variance == pytest.approx(ra.post_statistic.variance, rel=1e-9)

    c, _ = compare_adjusted(control, treatment, alpha=alpha)
    for relative in (False, True):
        result = _oracle_result(control, treatment, relative, alpha=alpha)
        _assert_matches_oracle(c, result, relative, a, b)


@settings(max_examples=60, deadline=None)
@given(case=arm_cases, tuning_n=st.sampled_from([500.0, 5000.0, 1e5]))
def test_matches_gbstats_sequential_t_test(
    case: tuple[int, str, int, int, float], tuning_n: float
) -> None:
    (y_a, x_a), (y_b, x_b) = _arms(*case)
    control = CovariateStats.from_values(y_a, x_a)
    treatment = CovariateStats.from_values(y_b, x_b)
    theta = pooled_theta([control, treatment])
    a, b = adjust(control, theta), adjust(treatment, theta)
    c, _ = compare_adjusted(control, treatment, sequential=True, tuning_n=tuning_n)
    for relative in (False, True):
        result = _oracle_result(control, treatment, relative, sequential=True, tuning_n=tuning_n)
        _assert_matches_oracle(c, result, relative, a, b)


def test_welch_df_uses_adjusted_variances() -> None:
    # Unequal arm sizes and variances make the Welch df differ clearly from n_a + n_b - 2, and
    # the adjusted df from the unadjusted one; alpha = 0.2 makes the t quantile sensitive to it.
    (y_a, x_a), (y_b, x_b) = _arms(11, "linear", 6, 40, 0.3)
    y_b = y_b * 3.0
    control = CovariateStats.from_values(y_a, x_a)
    treatment = CovariateStats.from_values(y_b, x_b)
    c, _ = compare_adjusted(control, treatment, alpha=0.2)
    test = _oracle(control, treatment, relative=False, alpha=0.2)
    assert isinstance(test, TwoSidedTTest)
    a, b = adjust(control, test.stat_a.theta), adjust(treatment, test.stat_b.theta)
    va, vb = a.variance / a.n, b.variance / b.n
    welch = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    assert test.dof == pytest.approx(welch, rel=1e-12)
    result = test.compute_result()
    assert c.ci_low == pytest.approx(result.ci[0], abs=ORACLE_TOL)
    assert c.ci_high == pytest.approx(result.ci[1], abs=ORACLE_TOL)


@pytest.mark.parametrize("theta", [-1.5, 0.3, 2.0])
def test_given_theta_matches_gbstats_with_that_theta(theta: float) -> None:
    (y_a, x_a), (y_b, x_b) = _arms(5, "linear", 120, 150, 0.2)
    control = CovariateStats.from_values(y_a, x_a)
    treatment = CovariateStats.from_values(y_b, x_b)
    c, reduction = compare_adjusted(control, treatment, theta=theta)
    for relative in (False, True):
        test = _oracle(control, treatment, relative)
        assert isinstance(test, TwoSidedTTest)
        # gbstats overwrites the statistics' theta with compute_theta in the constructor; the
        # properties are lazy, so setting it afterwards gives gbstats' answer for a given theta.
        test.stat_a.theta = test.stat_b.theta = theta
        _assert_matches_oracle(
            c, test.compute_result(), relative, adjust(control, theta), adjust(treatment, theta)
        )
    a, b = adjust(control, theta), adjust(treatment, theta)
    var_adj = a.variance / a.n + b.variance / b.n
    var_raw = control.var_y / control.n + treatment.var_y / treatment.n
    assert reduction == pytest.approx(1.0 - var_adj / var_raw, rel=1e-12)


# --- sufficient statistics ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_moments_match_numpy(kind: str) -> None:
    (y, x), _ = _arms(3, kind, 257, 2, 0.0)
    s = CovariateStats.from_values(y, x)
    assert s.n == y.size
    assert s.mean_y == pytest.approx(y.mean(), rel=1e-12)
    assert s.mean_x == pytest.approx(x.mean(), rel=1e-12)
    cov = np.cov(y, x, ddof=1)
    assert s.var_y == pytest.approx(cov[0, 0], rel=1e-9)
    assert s.var_x == pytest.approx(cov[1, 1], rel=1e-9, abs=0.0)
    assert s.cov_xy == pytest.approx(cov[0, 1], rel=1e-9, abs=1e-12)
    if kind == "constant_x":
        assert s.var_x == 0.0 and s.cov_xy == 0.0


def test_merge_equals_from_values_of_concatenation() -> None:
    (y_a, x_a), (y_b, x_b) = _arms(4, "skewed", 90, 60, 0.1)
    merged = CovariateStats.from_values(y_a, x_a).merge(CovariateStats.from_values(y_b, x_b))
    whole = CovariateStats.from_values(np.concatenate([y_a, y_b]), np.concatenate([x_a, x_b]))
    assert merged.n == whole.n
    for name in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-12)
    empty = CovariateStats.from_values([], [])
    assert empty.merge(whole) == whole == whole.merge(empty)


def test_small_arms_give_nan_moments() -> None:
    empty = CovariateStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert math.isnan(empty.mean_y) and math.isnan(empty.mean_x) and math.isnan(empty.var_y)
    one = CovariateStats.from_values([2.0], [1.0])
    assert one.mean_y == 2.0 and one.mean_x == 1.0
    assert math.isnan(one.var_y) and math.isnan(one.var_x) and math.isnan(one.cov_xy)
    adj = adjust(one, 0.5)
    assert adj.mean == 1.5 and adj.unadjusted_mean == 2.0
    assert math.isnan(adj.variance) and math.isnan(adj.unadjusted_variance)
    adj0 = adjust(empty, 0.5)
    assert adj0.n == 0 and math.isnan(adj0.mean) and math.isnan(adj0.variance)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        CovariateStats.from_values([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        CovariateStats.from_values([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        CovariateStats(-1, 0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="integer"):
        CovariateStats(2.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # type: ignore[arg-type]
    s = CovariateStats.from_values([1.0, 2.0, 4.0], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="theta"):
        adjust(s, float("inf"))
    with pytest.raises(ValueError, match="theta"):
        compare_adjusted(s, s, theta=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        compare_adjusted(s, s, alpha=1.5)
    with pytest.raises(ValueError, match="tuning_n"):
        compare_adjusted(s, s, tuning_n=0)


# --- theta -------------------------------------------------------------------------------------


def test_pooled_theta_is_the_pooled_least_squares_slope_for_k_arms() -> None:
    rng = np.random.default_rng(21)
    arms = [_arm_values(rng, "linear", n, effect) for n, effect in ((80, 0.0), (95, 0.4), (70, 1))]
    stats_ = [CovariateStats.from_values(y, x) for y, x in arms]
    y_all = np.concatenate([y for y, _ in arms])
    x_all = np.concatenate([x for _, x in arms])
    slope = np.polyfit(x_all, y_all, 1)[0]
    assert pooled_theta(stats_) == pytest.approx(slope, rel=1e-9)
    assert pooled_theta(stats_) == pytest.approx(
        pooled_theta([stats_[0].merge(stats_[1]), stats_[2]]), rel=1e-12
    )


def test_pooled_theta_degenerate_is_zero() -> None:
    assert pooled_theta([]) == 0.0
    assert pooled_theta([CovariateStats.from_values([1.0], [2.0])]) == 0.0
    const_y = CovariateStats.from_values([3.0, 3.0, 3.0], [1.0, 2.0, 5.0])
    assert pooled_theta([const_y, const_y]) == 0.0
    const_x = CovariateStats.from_values([1.0, 2.0, 7.0], [0.1, 0.1, 0.1])
    assert pooled_theta([const_x, const_x]) == 0.0


# --- variance reduction and the theta = 0 reduction to analysis.stats.compare -----------------


def test_strong_covariate_narrows_the_interval() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    cases = []
    for effect in (0.0, 0.1):
        x = rng.normal(0.0, 1.0, n) + 10.0
        y = 0.8 * (x - 10.0) + 0.6 * rng.normal(0.0, 1.0, n) + 5.0 + effect  # corr 0.8
        cases.append((y, x))
    (y_a, x_a), (y_b, x_b) = cases
    control = CovariateStats.from_values(y_a, x_a)
    treatment = CovariateStats.from_values(y_b, x_b)
    c, reduction = compare_adjusted(control, treatment)
    plain = compare(ArmStats.from_values(y_a), ArmStats.from_values(y_b))
    assert 0.5 < reduction < 0.8  # ~ corr**2 = 0.64
    assert c.ci_high - c.ci_low < 0.75 * (plain.ci_high - plain.ci_low)
    assert c.lift_ci_high - c.lift_ci_low < 0.75 * (plain.lift_ci_high - plain.lift_ci_low)
    width_ratio = (c.ci_high - c.ci_low) / (plain.ci_high - plain.ci_low)
    assert width_ratio == pytest.approx(math.sqrt(1.0 - reduction), rel=0.01)


PLAIN_CASES = [
    (1, "linear", 50, 80),
    (2, "binary", 300, 250),
    (3, "negative", 7, 12),
    (4, "skewed", 3, 2),
]


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize(("seed", "kind", "n_a", "n_b"), PLAIN_CASES)
def test_theta_zero_equals_plain_compare(
    seed: int, kind: str, n_a: int, n_b: int, sequential: bool
) -> None:
    (y_a, x_a), (y_b, x_b) = _arms(seed, kind, n_a, n_b, 0.2)
    control = CovariateStats.from_values(y_a, x_a)
    treatment = CovariateStats.from_values(y_b, x_b)
    c, reduction = compare_adjusted(control, treatment, sequential=sequential, theta=0.0)
    assert reduction == 0.0
    from_values = compare(
        ArmStats.from_values(y_a), ArmStats.from_values(y_b), sequential=sequential
    )
    from_sums = compare(
        ArmStats.from_sums(control.n, control.sum_y, control.sum_y2),
        ArmStats.from_sums(treatment.n, treatment.sum_y, treatment.sum_y2),
        sequential=sequential,
    )
    _assert_same_comparison(c, from_values, PLAIN_TOL)
    _assert_same_comparison(c, from_sums, PLAIN_TOL)


def test_zero_variance_covariate_gives_plain_compare() -> None:
    # pooled theta is exactly 0, so the default path is the unadjusted Welch test
    (y_a, x_a), (y_b, x_b) = _arms(6, "constant_x", 40, 45, 0.3)
    c, reduction = compare_adjusted(
        CovariateStats.from_values(y_a, x_a), CovariateStats.from_values(y_b, x_b)
    )
    assert reduction == 0.0
    _assert_same_comparison(
        c, compare(ArmStats.from_values(y_a), ArmStats.from_values(y_b)), PLAIN_TOL
    )


# --- degenerate data: statuses, never exceptions -----------------------------------------------


def _stats(y: list[float], x: list[float]) -> CovariateStats:
    return CovariateStats.from_values(np.array(y), np.array(x))


def _all_nan(c: Comparison, *names: str) -> bool:
    return all(math.isnan(getattr(c, name)) for name in names)


INTERVAL_FIELDS = (
    "ci_low",
    "ci_high",
    "p_value",
    "lift_ci_low",
    "lift_ci_high",
    "lift_p_value",
    "chance_to_beat_control",
)


def test_empty_arm() -> None:
    empty = CovariateStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    other = _stats([1.0, 2.0, 3.0], [1.0, 1.0, 2.0])
    for control, treatment in ((empty, other), (other, empty), (empty, empty)):
        c, reduction = compare_adjusted(control, treatment)
        assert c.status == "NO_UNITS_IN_ARM"
        assert _all_nan(c, "diff", "lift", *INTERVAL_FIELDS) and math.isnan(reduction)


def test_single_unit_arm() -> None:
    control = _stats([2.0], [1.0])
    treatment = _stats([1.0, 3.0, 4.0], [0.0, 2.0, 3.0])
    c, reduction = compare_adjusted(control, treatment)
    theta = pooled_theta([control, treatment])
    assert c.status == "TOO_FEW_UNITS" and math.isnan(reduction)
    expected_diff = (8.0 / 3 - theta * 5.0 / 3) - (2.0 - theta * 1.0)
    assert c.diff == pytest.approx(expected_diff, rel=1e-12)
    assert c.lift == pytest.approx(expected_diff / 2.0, rel=1e-12)
    assert _all_nan(c, *INTERVAL_FIELDS)
    plain = compare(ArmStats.from_values([2.0]), ArmStats.from_values([1.0, 3.0, 4.0]))
    _assert_same_comparison(compare_adjusted(control, treatment, theta=0.0)[0], plain, 1e-12)


def test_constant_outcomes() -> None:
    # x constant too, so theta is 0 and the adjusted variances are the (zero) raw ones.
    c, reduction = compare_adjusted(_stats([2.0] * 5, [1.0] * 5), _stats([3.0] * 4, [1.0] * 4))
    assert c.status == "ZERO_VARIANCE" and math.isnan(reduction)
    assert c.diff == 1.0 and c.lift == 0.5
    assert _all_nan(c, *INTERVAL_FIELDS)


def test_outcome_exactly_linear_in_covariate() -> None:
    # y = 3 + 2 x in both arms (no effect): the adjusted variance is exactly 0.
    x_a = np.arange(10.0)
    x_b = np.arange(3.0, 15.0)
    control, treatment = _stats(list(3 + 2 * x_a), list(x_a)), _stats(list(3 + 2 * x_b), list(x_b))
    assert pooled_theta([control, treatment]) == pytest.approx(2.0, rel=1e-12)
    assert adjust(control, 2.0).variance == 0.0
    c, reduction = compare_adjusted(control, treatment)
    assert c.status == "ZERO_VARIANCE" and reduction == 1.0
    assert c.diff == pytest.approx(0.0, abs=1e-12)
    assert _all_nan(c, *INTERVAL_FIELDS)


def test_zero_control_mean() -> None:
    control = _stats([-1.0, 1.0, 0.0, 2.0, -2.0], [0.0, 1.0, 1.0, 2.0, 0.0])
    treatment = _stats([1.0, 2.0, 0.5, 3.0], [1.0, 2.0, 0.0, 1.0])
    c, reduction = compare_adjusted(control, treatment)
    assert c.status == "ZERO_CONTROL_MEAN" and 0.0 < reduction < 1.0
    assert _all_nan(c, "lift", "lift_ci_low", "lift_ci_high", "lift_p_value")
    assert not _all_nan(c, "diff", "ci_low", "ci_high", "p_value", "chance_to_beat_control")
    # gbstats gives up on the absolute difference too when the control mean is 0; its
    # formulas (the properties behind compute_result) still give our absolute fields.
    test = _oracle(control, treatment, relative=False)
    assert test.compute_result().error_message == "ZERO_NEGATIVE_BASELINE_VARIATION"
    assert c.diff == pytest.approx(test.point_estimate, abs=ORACLE_TOL)
    assert c.ci_low == pytest.approx(test.confidence_interval[0], abs=ORACLE_TOL)
    assert c.ci_high == pytest.approx(test.confidence_interval[1], abs=ORACLE_TOL)
    assert c.p_value == pytest.approx(test.p_value, abs=ORACLE_TOL)


def test_zero_lift_variance() -> None:
    # Treatment: y all 0 and x constant, so its adjusted variance and mean_y are 0 and the
    # lift's delta-method variance is exactly 0 while the absolute difference is testable.
    control = _stats([1.0, 2.0, 4.0, 3.0], [0.0, 1.0, 2.0, 2.0])
    treatment = _stats([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    c, _ = compare_adjusted(control, treatment)
    assert c.status == "ZERO_VARIANCE"
    assert _all_nan(c, "lift_ci_low", "lift_ci_high", "lift_p_value")
    assert not _all_nan(c, "diff", "ci_low", "ci_high", "p_value", "lift")


def test_empty_values_arm_from_values() -> None:
    c, reduction = compare_adjusted(_stats([], []), _stats([1.0, 2.0], [1.0, 2.0]))
    assert c.status == "NO_UNITS_IN_ARM" and math.isnan(reduction)
