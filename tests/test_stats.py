"""Unit tests for analysis.stats, checked against scipy/statsmodels on raw per-unit data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analysis.stats import (
    ArmStats,
    Comparison,
    RatioStats,
    adjust_p_values,
    chance_to_beat_control,
    compare,
    compare_ratio,
    required_sample_size,
    srm_p_value,
)

TOL = 1e-6


def _raw_arms(seed: int, kind: str, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(10.0, 2.0, n_a), rng.normal(10.4, 3.5, n_b)
    if kind == "exponential":
        return rng.exponential(2.0, n_a), rng.exponential(2.3, n_b)
    if kind == "bernoulli":
        return rng.binomial(1, 0.12, n_a).astype(float), rng.binomial(1, 0.14, n_b).astype(float)
    return rng.lognormal(0.0, 1.0, n_a), rng.lognormal(0.1, 1.2, n_b)


ARM_CASES = [
    (0, "normal", 50, 80),
    (1, "exponential", 300, 250),
    (2, "bernoulli", 2000, 2100),
    (3, "lognormal", 7, 12),
    (4, "normal", 3, 2),
]


def _nan_fields(c: Comparison, *names: str) -> bool:
    return all(math.isnan(getattr(c, name)) for name in names)


# --- Welch t-test against scipy / statsmodels -------------------------------------------------


@pytest.mark.parametrize(("seed", "kind", "n_a", "n_b"), ARM_CASES)
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_welch_matches_scipy_and_statsmodels(
    seed: int, kind: str, n_a: int, n_b: int, alpha: float
) -> None:
    a, b = _raw_arms(seed, kind, n_a, n_b)
    result = compare(ArmStats.from_values(a), ArmStats.from_values(b), alpha=alpha)

    ttest = sps.ttest_ind(b, a, equal_var=False)
    cm_low, cm_high = CompareMeans(DescrStatsW(b), DescrStatsW(a)).tconfint_diff(
        alpha=alpha, usevar="unequal"
    )
    sp_ci = ttest.confidence_interval(confidence_level=1 - alpha)

    assert result.status == "ok"
    assert result.diff == pytest.approx(b.mean() - a.mean(), abs=TOL)
    assert result.p_value == pytest.approx(ttest.pvalue, abs=TOL)
    assert result.ci_low == pytest.approx(cm_low, abs=TOL)
    assert result.ci_high == pytest.approx(cm_high, abs=TOL)
    assert result.ci_low == pytest.approx(sp_ci.low, abs=TOL)
    assert result.ci_high == pytest.approx(sp_ci.high, abs=TOL)


@pytest.mark.parametrize(("seed", "kind", "n_a", "n_b"), ARM_CASES)
def test_welch_from_sums_matches_ttest_ind_from_stats(
    seed: int, kind: str, n_a: int, n_b: int
) -> None:
    a, b = _raw_arms(seed, kind, n_a, n_b)
    arm_a = ArmStats.from_sums(a.size, a.sum(), (a**2).sum())
    arm_b = ArmStats.from_sums(b.size, b.sum(), (b**2).sum())
    expected = sps.ttest_ind_from_stats(
        b.mean(), b.std(ddof=1), b.size, a.mean(), a.std(ddof=1), a.size, equal_var=False
    )
    assert compare(arm_a, arm_b).p_value == pytest.approx(expected.pvalue, abs=TOL)


def test_p_value_is_symmetric_and_diff_antisymmetric() -> None:
    a, b = _raw_arms(11, "exponential", 400, 380)
    ab = compare(ArmStats.from_values(a), ArmStats.from_values(b))
    ba = compare(ArmStats.from_values(b), ArmStats.from_values(a))
    assert ab.p_value == pytest.approx(ba.p_value, abs=1e-12)
    assert ab.diff == pytest.approx(-ba.diff, abs=1e-12)
    assert ab.chance_to_beat_control == pytest.approx(1 - ba.chance_to_beat_control, abs=1e-12)


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_p_below_alpha_iff_ci_excludes_zero(seed: int, sequential: bool) -> None:
    rng = np.random.default_rng(100 + seed)
    a = rng.normal(1.0, 1.0, 500)
    b = rng.normal(1.0 + 0.04 * seed, 1.0, 500)
    c = compare(ArmStats.from_values(a), ArmStats.from_values(b), sequential=sequential)
    assert (c.p_value < 0.05) == (c.ci_low > 0 or c.ci_high < 0)
    assert (c.lift_p_value < 0.05) == (c.lift_ci_low > 0 or c.lift_ci_high < 0)


# --- relative lift ------------------------------------------------------------------------------


def test_lift_uses_delta_method_and_welch_df() -> None:
    a, b = _raw_arms(5, "lognormal", 600, 700)
    c = compare(ArmStats.from_values(a), ArmStats.from_values(b), alpha=0.1)
    ma, mb, va, vb = a.mean(), b.mean(), a.var(ddof=1), b.var(ddof=1)
    lift = mb / ma - 1
    se = math.sqrt(vb / (ma**2 * b.size) + va * mb**2 / (ma**4 * a.size))
    df = sps.ttest_ind(b, a, equal_var=False).df  # Welch-Satterthwaite df from scipy
    q = sps.t.ppf(0.95, df)
    assert c.lift == pytest.approx(lift, rel=1e-12)
    assert c.lift_ci_low == pytest.approx(lift - q * se, abs=TOL)
    assert c.lift_ci_high == pytest.approx(lift + q * se, abs=TOL)
    assert c.lift_p_value == pytest.approx(2 * sps.t.sf(abs(lift) / se, df), abs=TOL)


def test_lift_standard_error_agrees_with_bootstrap() -> None:
    rng = np.random.default_rng(21)
    a = rng.lognormal(0.0, 0.8, 2000)
    b = rng.lognormal(0.05, 0.8, 2000)
    c = compare(ArmStats.from_values(a), ArmStats.from_values(b))
    delta_se = (c.lift_ci_high - c.lift_ci_low) / (2 * sps.t.ppf(0.975, 3997))
    boot_a = a[rng.integers(0, a.size, (2000, a.size))].mean(axis=1)
    boot_b = b[rng.integers(0, b.size, (2000, b.size))].mean(axis=1)
    boot_se = np.std(boot_b / boot_a - 1, ddof=1)
    assert delta_se == pytest.approx(boot_se, rel=0.10)


# --- sequential mode ----------------------------------------------------------------------------


def test_sequential_interval_matches_published_formula() -> None:
    a, b = _raw_arms(7, "normal", 900, 1100)
    alpha, tuning_n = 0.05, 5000
    c = compare(
        ArmStats.from_values(a),
        ArmStats.from_values(b),
        alpha=alpha,
        sequential=True,
        tuning_n=tuning_n,
    )
    # Independent transcription of Waudby-Smith et al. 2023 eq. 9 as gbstats applies it.
    n_total = a.size + b.size
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning_n)
    s2 = se**2 * n_total
    half = math.sqrt(s2) * math.sqrt(
        2
        * (n_total * rho**2 + 1)
        / (n_total**2 * rho**2)
        * math.log(math.sqrt(n_total * rho**2 + 1) / alpha)
    )
    diff = b.mean() - a.mean()
    assert c.ci_low == pytest.approx(diff - half, abs=TOL)
    assert c.ci_high == pytest.approx(diff + half, abs=TOL)
    # gbstats' always-valid p-value: 1 / e-value of the normal mixture.
    st2 = diff**2 * n_total / se**2
    tr2p1 = n_total * rho**2 + 1
    e_value = math.exp(rho**2 * st2 / (2 * tr2p1)) / math.sqrt(tr2p1)
    assert c.p_value == pytest.approx(min(1.0, 1 / e_value), abs=TOL)


def test_sequential_p_value_is_smallest_alpha_excluding_zero() -> None:
    rng = np.random.default_rng(8)
    a = ArmStats.from_values(rng.normal(0.0, 1.0, 3000))
    b = ArmStats.from_values(rng.normal(0.12, 1.0, 3000))
    c = compare(a, b, sequential=True)
    assert 0 < c.p_value < 0.05
    # rho is fixed by the nominal alpha and tuning_n; rebuild the interval at other levels.
    rho = math.sqrt((-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 5000)
    n_total = a.n + b.n
    se = math.sqrt(a.variance / a.n + b.variance / b.n)

    def lower(level: float) -> float:
        t = n_total * rho**2
        return c.diff - se * math.sqrt(2 * (t + 1) / t * math.log(math.sqrt(t + 1) / level))

    assert lower(c.p_value) == pytest.approx(0.0, abs=1e-9)
    assert lower(c.p_value * 1.01) > 0 > lower(c.p_value * 0.99)


def test_sequential_interval_is_wider_than_fixed_horizon() -> None:
    a, b = _raw_arms(9, "exponential", 1500, 1500)
    fixed = compare(ArmStats.from_values(a), ArmStats.from_values(b))
    seq = compare(ArmStats.from_values(a), ArmStats.from_values(b), sequential=True)
    assert seq.ci_high - seq.ci_low > fixed.ci_high - fixed.ci_low
    assert seq.lift_ci_high - seq.lift_ci_low > fixed.lift_ci_high - fixed.lift_ci_low
    assert seq.p_value >= fixed.p_value
    assert seq.diff == fixed.diff


# --- sufficient statistics ---------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "kind", "n_a", "n_b"), ARM_CASES)
def test_from_sums_agrees_with_from_values(seed: int, kind: str, n_a: int, n_b: int) -> None:
    a, _ = _raw_arms(seed, kind, n_a, n_b)
    from_values = ArmStats.from_values(a)
    from_sums = ArmStats.from_sums(a.size, a.sum(), (a**2).sum())
    assert from_sums.n == from_values.n
    assert from_sums.mean == pytest.approx(from_values.mean, rel=1e-12)
    assert from_sums.variance == pytest.approx(from_values.variance, rel=1e-9)
    assert from_values.variance == pytest.approx(np.var(a, ddof=1), rel=1e-12)
    assert from_values.std_error == pytest.approx(sps.sem(a), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=0, max_size=60
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=4),
)
def test_merge_of_any_partition_equals_from_values(values: list[float], cuts: list[int]) -> None:
    x = np.asarray(values)
    bounds = sorted({min(c, x.size) for c in cuts} | {0, x.size})
    merged = ArmStats.from_values(x[:0])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        merged = merged.merge(ArmStats.from_values(x[lo:hi]))
    direct = ArmStats.from_values(x)
    assert merged.n == direct.n
    if direct.n >= 1:
        assert merged.mean == pytest.approx(direct.mean, rel=1e-9, abs=1e-6)
    if direct.n >= 2:
        assert merged.variance == pytest.approx(direct.variance, rel=1e-8, abs=1e-3)
    else:
        assert math.isnan(merged.variance)


def test_merge_large_offset_is_exact() -> None:
    rng = np.random.default_rng(3)
    x = 1e9 + rng.normal(0.0, 1.0, 10_000)
    parts = np.array_split(x, 7)
    merged = ArmStats.from_values(parts[0])
    for part in parts[1:]:
        merged = merged.merge(ArmStats.from_values(part))
    assert merged.mean == pytest.approx(x.mean(), rel=1e-15)
    # The one-pass sum-of-squares formula loses every digit here (sum(x**2) ~ 1e22).
    assert merged.variance == pytest.approx(x.var(ddof=1), rel=1e-7)


def test_from_sums_reports_exact_zero_variance_for_constant_data() -> None:
    x = np.full(1000, 0.1)
    arm = ArmStats.from_sums(x.size, x.sum(), (x**2).sum())
    assert arm.variance == 0.0
    assert compare(arm, arm).status == "ZERO_VARIANCE"


# --- ratio metrics -----------------------------------------------------------------------------


def _ratio_units(seed: int, n: int, p: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sessions = rng.poisson(3.0, n) + 1.0
    per_user_rate = rng.beta(2.0, 2.0 * (1 - p) / p, n)
    clicks = rng.binomial(sessions.astype(int), per_user_rate).astype(float)
    return clicks, sessions


def test_ratio_stats_from_values_and_sums() -> None:
    num, den = _ratio_units(1, 500)
    r = RatioStats.from_values(num, den)
    cov = np.cov(num, den, ddof=1)
    assert r.ratio == pytest.approx(num.sum() / den.sum(), rel=1e-12)
    assert r.var_num == pytest.approx(cov[0, 0], rel=1e-12)
    assert r.var_den == pytest.approx(cov[1, 1], rel=1e-12)
    assert r.cov == pytest.approx(cov[0, 1], rel=1e-12)
    s = RatioStats.from_sums(
        num.size, num.sum(), den.sum(), (num**2).sum(), (den**2).sum(), (num * den).sum()
    )
    for field in ("mean_num", "mean_den", "var_num", "var_den", "cov"):
        assert getattr(s, field) == pytest.approx(getattr(r, field), rel=1e-9)


def test_ratio_delta_method_se_agrees_with_unit_bootstrap() -> None:
    num, den = _ratio_units(2, 2000)
    delta_se = RatioStats.from_values(num, den).std_error
    rng = np.random.default_rng(12)
    idx = rng.integers(0, num.size, (2000, num.size))
    boot = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    boot_se = np.std(boot, ddof=1)
    assert delta_se == pytest.approx(boot_se, rel=0.10)


def test_ratio_covariance_matters() -> None:
    num, den = _ratio_units(4, 2000)
    r = RatioStats.from_values(num, den)
    no_cov = RatioStats(r.n, r.mean_num, r.mean_den, r.var_num, r.var_den, 0.0)
    assert r.cov > 0
    assert r.ratio_variance < no_cov.ratio_variance


def test_compare_ratio_with_unit_denominator_equals_compare() -> None:
    a, b = _raw_arms(6, "exponential", 400, 450)
    ratio = compare_ratio(
        RatioStats.from_values(a, np.ones_like(a)), RatioStats.from_values(b, np.ones_like(b))
    )
    plain = compare(ArmStats.from_values(a), ArmStats.from_values(b))
    for field in ("diff", "ci_low", "ci_high", "p_value", "lift", "lift_ci_low", "lift_p_value"):
        assert getattr(ratio, field) == pytest.approx(getattr(plain, field), rel=1e-9)


def test_compare_ratio_diff_se_agrees_with_bootstrap() -> None:
    num_a, den_a = _ratio_units(30, 2000, p=0.30)
    num_b, den_b = _ratio_units(31, 2000, p=0.32)
    c = compare_ratio(RatioStats.from_values(num_a, den_a), RatioStats.from_values(num_b, den_b))
    assert c.status == "ok"
    rng = np.random.default_rng(13)
    ia = rng.integers(0, 2000, (2000, 2000))
    ib = rng.integers(0, 2000, (2000, 2000))
    boot = num_b[ib].sum(1) / den_b[ib].sum(1) - num_a[ia].sum(1) / den_a[ia].sum(1)
    delta_se = (c.ci_high - c.ci_low) / (2 * sps.norm.ppf(0.975))
    assert delta_se == pytest.approx(np.std(boot, ddof=1), rel=0.10)


def test_ratio_zero_denominator_and_constant_ratio() -> None:
    zero_den = RatioStats.from_values([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    ok = RatioStats.from_values([1.0, 2.0, 4.0], [2.0, 2.0, 3.0])
    assert math.isnan(zero_den.ratio) and math.isnan(zero_den.ratio_variance)
    c = compare_ratio(zero_den, ok)
    assert c.status == "ZERO_DENOMINATOR"
    assert _nan_fields(c, "diff", "ci_low", "p_value", "lift", "chance_to_beat_control")
    proportional = RatioStats.from_values([0.3, 0.6, 0.9, 1.2], [1.0, 2.0, 3.0, 4.0])
    assert proportional.ratio_variance == 0.0
    c = compare_ratio(proportional, proportional)
    assert c.status == "ZERO_VARIANCE"
    assert c.diff == 0.0 and _nan_fields(c, "ci_low", "ci_high", "p_value")


# --- degenerate inputs -------------------------------------------------------------------------

ALL_FIELDS = (
    "diff",
    "ci_low",
    "ci_high",
    "p_value",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "lift_p_value",
    "chance_to_beat_control",
)
INFERENCE_FIELDS = (
    "ci_low",
    "ci_high",
    "p_value",
    "lift_ci_low",
    "lift_ci_high",
    "lift_p_value",
    "chance_to_beat_control",
)


@pytest.mark.parametrize("sequential", [False, True])
def test_arm_with_no_units(sequential: bool) -> None:
    empty = ArmStats.from_values([])
    full = ArmStats.from_values([1.0, 2.0, 3.0])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.std_error)
    for c in (compare(empty, full, sequential=sequential), compare(full, empty)):
        assert c.status == "NO_UNITS_IN_ARM"
        assert _nan_fields(c, *ALL_FIELDS)
    empty_ratio = RatioStats.from_values([], [])
    c = compare_ratio(empty_ratio, RatioStats.from_values([1, 2], [1, 1]))
    assert c.status == "NO_UNITS_IN_ARM" and _nan_fields(c, *ALL_FIELDS)
    assert math.isnan(chance_to_beat_control(empty, full))


@pytest.mark.parametrize("sequential", [False, True])
def test_single_unit(sequential: bool) -> None:
    one = ArmStats.from_values([4.0])
    many = ArmStats.from_values([1.0, 2.0, 3.0])
    assert one.n == 1 and one.mean == 4.0 and math.isnan(one.variance)
    c = compare(many, one, sequential=sequential)
    assert c.status == "TOO_FEW_UNITS"
    assert c.diff == pytest.approx(2.0) and c.lift == pytest.approx(1.0)
    assert _nan_fields(c, *INFERENCE_FIELDS)
    c = compare_ratio(RatioStats.from_values([1.0], [2.0]), RatioStats.from_values([1, 2], [1, 1]))
    assert c.status == "TOO_FEW_UNITS" and _nan_fields(c, *INFERENCE_FIELDS)
    merged = one.merge(ArmStats.from_values([6.0]))
    assert merged.variance == pytest.approx(np.var([4.0, 6.0], ddof=1))


@pytest.mark.parametrize("sequential", [False, True])
def test_zero_variance_in_both_arms(sequential: bool) -> None:
    a = ArmStats.from_values([2.0] * 10)
    b = ArmStats.from_values([3.0] * 12)
    c = compare(a, b, sequential=sequential)
    assert c.status == "ZERO_VARIANCE"
    assert c.diff == 1.0 and c.lift == pytest.approx(0.5)
    assert _nan_fields(c, *INFERENCE_FIELDS)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_zero_variance_in_one_arm_still_tests() -> None:
    a = np.full(20, 2.0)
    b = np.random.default_rng(0).normal(2.5, 1.0, 30)
    c = compare(ArmStats.from_values(a), ArmStats.from_values(b))
    assert c.status == "ok"
    assert c.p_value == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue, abs=TOL)


@pytest.mark.parametrize("sequential", [False, True])
def test_zero_control_mean(sequential: bool) -> None:
    a = np.array([-1.0, 1.0, -2.0, 2.0])
    b = np.array([0.5, 1.5, 2.5, 0.0, 1.0])
    c = compare(ArmStats.from_values(a), ArmStats.from_values(b), sequential=sequential)
    assert c.status == "ZERO_CONTROL_MEAN"
    assert _nan_fields(c, "lift", "lift_ci_low", "lift_ci_high", "lift_p_value")
    assert c.diff == pytest.approx(b.mean())
    assert all(math.isfinite(getattr(c, f)) for f in ("ci_low", "ci_high", "p_value"))
    if not sequential:
        assert c.p_value == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue, abs=TOL)


def test_zero_lift_standard_error() -> None:
    a = ArmStats.from_values([1.0, 2.0, 3.0])
    b = ArmStats.from_values([0.0, 0.0, 0.0])
    c = compare(a, b)
    assert c.status == "ZERO_VARIANCE"
    assert c.lift == -1.0 and _nan_fields(c, "lift_ci_low", "lift_ci_high", "lift_p_value")
    assert math.isfinite(c.p_value) and math.isfinite(c.ci_low)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 0.0}, {"alpha": 1.0}, {"alpha": -0.1}, {"tuning_n": 0}, {"tuning_n": -5}]
)
def test_invalid_test_arguments_raise(kwargs: dict[str, float]) -> None:
    a = ArmStats.from_values([1.0, 2.0])
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        compare(a, a, **kwargs)


@pytest.mark.parametrize(
    "args", [(-1, 0.0, 0.0), (2, float("nan"), 1.0), (3, 1.0, -1.0), (3, 1.0, float("inf"))]
)
def test_invalid_arm_stats_raise(args: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError):
        ArmStats(*args)


def test_mismatched_ratio_lengths_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        RatioStats.from_values([1.0, 2.0], [1.0])


# --- chance to beat control --------------------------------------------------------------------


def test_chance_to_beat_control_matches_normal_cdf() -> None:
    a, b = _raw_arms(14, "normal", 200, 220)
    arm_a, arm_b = ArmStats.from_values(a), ArmStats.from_values(b)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    expected = sps.norm.cdf((b.mean() - a.mean()) / se)
    assert chance_to_beat_control(arm_a, arm_b) == pytest.approx(expected, abs=1e-12)
    assert compare(arm_a, arm_b).chance_to_beat_control == pytest.approx(expected, abs=1e-12)
    num, den = _ratio_units(15, 300)
    r = RatioStats.from_values(num, den)
    assert chance_to_beat_control(r, r) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both"):
        chance_to_beat_control(arm_a, r)


# --- SRM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ([5000, 5100], [1, 1]),
        ([1000, 1200, 980], [0.25, 0.5, 0.25]),
        ([49_800, 50_400], [50, 50]),
        ([10, 30], [0.3, 0.7]),
    ],
)
def test_srm_matches_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    c = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    expected = sps.chisquare(c, f_exp=c.sum() * w / w.sum()).pvalue
    assert srm_p_value(counts, weights) == pytest.approx(expected, abs=1e-12)


def test_srm_edge_cases() -> None:
    assert math.isnan(srm_p_value([0, 0], [1, 1]))
    assert srm_p_value([10, 5], [1, 0]) == 0.0
    assert srm_p_value([10, 12, 0], [1, 1, 0]) == pytest.approx(
        sps.chisquare([10, 12]).pvalue, abs=1e-12
    )
    with pytest.raises(ValueError, match="equal length"):
        srm_p_value([1, 2, 3], [1, 1])
    with pytest.raises(ValueError, match="weights"):
        srm_p_value([1, 2], [-1, 2])


# --- multiple testing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "sm_method"), [("holm", "holm"), ("bh", "fdr_bh")])
@pytest.mark.parametrize("seed", range(5))
def test_adjust_matches_statsmodels(method: str, sm_method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 12), rng.uniform(0, 0.01, 4), [0.02, 0.02, 1.0, 0.0]])
    rng.shuffle(p)
    expected = multipletests(p, method=sm_method)[1]
    np.testing.assert_allclose(adjust_p_values(p, method), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("method", "sm_method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_is_nan_safe(method: str, sm_method: str) -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan, 0.5])
    out = adjust_p_values(p, method)
    assert np.isnan(out[[1, 4]]).all()
    mask = ~np.isnan(p)
    np.testing.assert_allclose(out[mask], multipletests(p[mask], method=sm_method)[1], atol=1e-12)
    assert np.isnan(adjust_p_values([np.nan, np.nan], method)).all()
    assert adjust_p_values([], method).shape == (0,)


def test_adjust_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="'bonferroni'"):
        adjust_p_values([0.1, 0.2], method="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([0.1, 1.2])


# --- sample size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "variance", "mde", "alpha", "power", "relative"),
    [
        (10.0, 25.0, 0.05, 0.05, 0.8, True),
        (0.1, 0.09, 0.1, 0.05, 0.9, True),
        (3.0, 4.0, 0.2, 0.01, 0.8, False),
        (100.0, 900.0, -0.02, 0.1, 0.7, True),
    ],
)
def test_required_sample_size(
    mean: float, variance: float, mde: float, alpha: float, power: float, relative: bool
) -> None:
    delta = mde * mean if relative else mde
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n = required_sample_size(mean, variance, mde, alpha=alpha, power=power, relative=relative)
    assert n == math.ceil(2 * variance * z**2 / delta**2)
    # statsmodels also counts the far rejection tail, so it can only need as many or fewer units.
    sm_n = NormalIndPower().solve_power(
        effect_size=abs(delta) / math.sqrt(variance), alpha=alpha, power=power, ratio=1.0
    )
    assert 0 <= n - sm_n < 1.5


def test_required_sample_size_rejects_zero_effect() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        required_sample_size(0.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="power"):
        required_sample_size(1.0, 1.0, 0.1, power=1.0)
    assert required_sample_size(1.0, 0.0, 0.1) == 2
