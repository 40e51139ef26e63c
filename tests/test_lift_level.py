"""Level, coverage and edge cases of analysis.lift_interval.relative_lift.

The A/A simulations draw unit-level data with vectorised NumPy under a fixed seed (chosen
before looking at results), reduce each simulated arm to ``ArmStats`` and count how often the
relative lift is called significant at ``alpha = 0.05``. A simulation whose lift is undefined
or untestable (for example zero successes in the control arm of a rare proportion, where
``relative_lift`` returns NaN) counts as "not significant"; the number of such simulations is
printed with the rates (run ``pytest -s`` to see them), together with the rates of the
``log`` method and of the old delta method on ``t/c - 1``
(``analysis.stats.compare(...).lift_p_value``), which is reported but not asserted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats as sps

from analysis.capping import cap_values
from analysis.lift_interval import RelativeLift, _agree_with_p, relative_lift
from analysis.stats import ArmStats, RatioStats, compare, compare_ratio

ALPHA = 0.05
SIMULATIONS = 2000


def _arms(values: np.ndarray) -> list[ArmStats]:
    """One ArmStats per row of a (simulations, units) array."""
    n = values.shape[1]
    means = values.mean(axis=1)
    variances = values.var(axis=1, ddof=1)
    return [ArmStats(n, float(m), float(v)) for m, v in zip(means, variances, strict=True)]


@dataclass(frozen=True)
class _Rates:
    default: float
    fieller: float
    log: float
    old_delta: float
    undefined_default: int
    undefined_log: int
    undefined_old: int

    def line(self, name: str) -> str:
        return (
            f"{name}: A/A rejection rate default(fieller)={self.default:.4f} "
            f"log={self.log:.4f} old delta t/c-1={self.old_delta:.4f}; undefined (counted "
            f"not significant) default={self.undefined_default} log={self.undefined_log} "
            f"old={self.undefined_old}"
        )


def _aa_rates(control: list[ArmStats], treatment: list[ArmStats]) -> _Rates:
    default, fieller, log, old = [], [], [], []
    for a, b in zip(control, treatment, strict=True):
        default.append(relative_lift(a, b, alpha=ALPHA).p_value)
        fieller.append(relative_lift(a, b, alpha=ALPHA, method="fieller").p_value)
        log.append(relative_lift(a, b, alpha=ALPHA, method="log").p_value)
        old.append(compare(a, b, alpha=ALPHA).lift_p_value)

    def rate(p: list[float]) -> float:
        # NaN < ALPHA is False: an undefined lift counts as "not significant".
        return float(np.mean(np.asarray(p) < ALPHA))

    def undefined(p: list[float]) -> int:
        return int(np.isnan(np.asarray(p)).sum())

    return _Rates(
        rate(default),
        rate(fieller),
        rate(log),
        rate(old),
        undefined(default),
        undefined(log),
        undefined(old),
    )


def _cost_like(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Per-unit LLM cost in USD: log-normal, with 5% of units 50 times more expensive."""
    base = rng.lognormal(math.log(0.002), 1.25, shape)
    return np.where(rng.random(shape) < 0.05, 50.0 * base, base)


# --------------------------------------------------------------------------- A/A levels


def test_aa_level_lognormal_small_samples() -> None:
    """Log-normal(0, 1.5), 50 units per arm: the old delta method rejects ~11%."""
    rng = np.random.default_rng(20240611)
    shape = (SIMULATIONS, 50)
    rates = _aa_rates(_arms(rng.lognormal(0.0, 1.5, shape)), _arms(rng.lognormal(0.0, 1.5, shape)))
    print(rates.line("lognormal sigma=1.5, 50/arm"))
    assert rates.undefined_default == 0
    assert rates.default == rates.fieller
    assert 0.03 <= rates.default <= 0.07, rates


def test_aa_level_rare_proportion() -> None:
    """Bernoulli(1%), 300 units per arm (3 expected events per arm).

    About 5% of simulations have no event in control, so the lift is undefined and they count
    as not significant; under that rule the default method's exact rejection rate is 2.9%
    (:func:`test_exact_level_rare_proportion`), so the simulated rate is checked against a band
    of ~3 binomial standard errors around that, capped at 7%, rather than against [3%, 7%].
    """
    rng = np.random.default_rng(20240612)
    shape = (SIMULATIONS, 300)
    control = _arms((rng.random(shape) < 0.01).astype(np.float64))
    treatment = _arms((rng.random(shape) < 0.01).astype(np.float64))
    rates = _aa_rates(control, treatment)
    print(rates.line("Bernoulli p=0.01, 300/arm"))
    zero_control = sum(a.mean == 0.0 for a in control)
    assert rates.undefined_default == zero_control
    assert 0.018 <= rates.default <= 0.07, rates


def test_exact_level_rare_proportion() -> None:
    """Exact A/A rejection rate for Bin(300, 1%) arms, summing over all outcome pairs."""
    n, p = 300, 0.01
    counts = np.arange(0, 41)  # P(X > 40) < 1e-20
    pmf = sps.binom.pmf(counts, n, p)
    arms = [ArmStats.from_sums(n, float(x), float(x)) for x in counts]
    lift_rate = welch_rate = 0.0
    for i, a in enumerate(arms):
        for j, b in enumerate(arms):
            weight = pmf[i] * pmf[j]
            if relative_lift(a, b, alpha=ALPHA).p_value < ALPHA:
                lift_rate += weight
            if compare(a, b, alpha=ALPHA).p_value < ALPHA:
                welch_rate += weight
    print(f"exact Bernoulli(1%), 300/arm: lift {lift_rate:.4f}, difference {welch_rate:.4f}")
    # Conservative but not useless; the difference test (which has no undefined cases) is
    # within [3%, 7%], and the lift only loses the zero-control outcomes.
    assert 0.025 <= lift_rate <= ALPHA
    assert 0.03 <= welch_rate <= 0.07
    zero_control_rejections = sum(
        pmf[0] * pmf[j] for j, b in enumerate(arms) if compare(arms[0], b).p_value < ALPHA
    )
    assert lift_rate == pytest.approx(welch_rate - zero_control_rejections, abs=1e-12)


def test_aa_level_cost_like_metric() -> None:
    """Heavy-tailed cost per unit, 1,000 units per arm: the old delta method rejects ~8.5%."""
    rng = np.random.default_rng(20240613)
    shape = (SIMULATIONS, 1000)
    rates = _aa_rates(_arms(_cost_like(rng, shape)), _arms(_cost_like(rng, shape)))
    print(rates.line("cost-like mixture, 1000/arm"))
    assert rates.undefined_default == 0
    assert 0.03 <= rates.default <= 0.07, rates


def test_aa_level_normal_metric() -> None:
    """Sanity case: all methods are close to nominal for a normal metric."""
    rng = np.random.default_rng(20240614)
    shape = (SIMULATIONS, 1000)
    rates = _aa_rates(_arms(rng.normal(10.0, 3.0, shape)), _arms(rng.normal(10.0, 3.0, shape)))
    print(rates.line("normal, 1000/arm"))
    assert 0.03 <= rates.default <= 0.07, rates
    assert 0.03 <= rates.log <= 0.07, rates


def test_aa_level_cost_like_metric_capped_at_p99() -> None:
    """Capping at the pooled 99th percentile keeps the level and shrinks the interval."""
    rng = np.random.default_rng(20240615)
    shape = (SIMULATIONS, 1000)
    raw_c, raw_t = _cost_like(rng, shape), _cost_like(rng, shape)
    control, treatment = [], []
    for xc, xt in zip(raw_c, raw_t, strict=True):
        (cc, ct), cap = cap_values([xc, xt], percentile=0.99)
        assert cap == pytest.approx(float(np.quantile(np.concatenate([xc, xt]), 0.99)))
        control.append(ArmStats.from_values(cc))
        treatment.append(ArmStats.from_values(ct))
    rates = _aa_rates(control, treatment)
    print(rates.line("cost-like mixture capped at p99, 1000/arm"))
    assert 0.03 <= rates.default <= 0.07, rates

    widths_capped = [
        relative_lift(a, b).ci_high - relative_lift(a, b).ci_low
        for a, b in zip(control[:200], treatment[:200], strict=True)
    ]
    widths_raw = [
        relative_lift(a, b).ci_high - relative_lift(a, b).ci_low
        for a, b in zip(_arms(raw_c[:200]), _arms(raw_t[:200]), strict=True)
    ]
    assert np.median(widths_capped) < 0.8 * np.median(widths_raw)


def test_sequential_aa_level_is_conservative() -> None:
    rng = np.random.default_rng(20240616)
    shape = (SIMULATIONS, 1000)
    control = _arms(_cost_like(rng, shape))
    treatment = _arms(_cost_like(rng, shape))
    for method in ("fieller", "log"):
        p = [
            relative_lift(a, b, sequential=True, method=method).p_value
            for a, b in zip(control, treatment, strict=True)
        ]
        assert float(np.mean(np.asarray(p) < ALPHA)) <= ALPHA


def test_coverage_under_a_true_lift() -> None:
    """Normal metric with a true lift of +10%: the interval covers it ~95% of the time."""
    rng = np.random.default_rng(20240617)
    n = 400
    control = _arms(rng.normal(10.0, 4.0, (SIMULATIONS, n)))
    treatment = _arms(rng.normal(11.0, 4.0, (SIMULATIONS, n)))
    for method in ("fieller", "log"):
        covered = [
            r.ci_low <= 0.1 <= r.ci_high
            for r in (
                relative_lift(a, b, method=method) for a, b in zip(control, treatment, strict=True)
            )
        ]
        assert 0.93 <= float(np.mean(covered)) <= 0.97, method


# --------------------------------------------------------------------------- exact properties


def _random_arm(rng: np.random.Generator) -> ArmStats:
    n = int(rng.choice([2, 3, 5, 20, 300, 10_000]))
    kind = rng.integers(4)
    if kind == 0:  # rare proportion, possibly zero events
        x = int(rng.binomial(n, 0.02))
        return ArmStats.from_sums(n, float(x), float(x))
    mean = float(rng.lognormal(0.0, 2.0))
    cv = float(rng.lognormal(0.0, 1.5))
    return ArmStats(n, mean, (cv * mean) ** 2)


@pytest.mark.parametrize("method", ["fieller", "log"])
@pytest.mark.parametrize("sequential", [False, True])
def test_p_value_below_alpha_iff_interval_excludes_zero(method: str, sequential: bool) -> None:
    rng = np.random.default_rng(20240618)
    checked = 0
    for _ in range(3000):
        a, b = _random_arm(rng), _random_arm(rng)
        alpha = float(rng.choice([0.01, 0.05, 0.1, 0.3]))
        r = relative_lift(a, b, alpha=alpha, sequential=sequential, method=method)
        if math.isnan(r.p_value):
            assert math.isnan(r.ci_low) and math.isnan(r.ci_high)
            continue
        checked += 1
        assert r.ci_low <= r.lift <= r.ci_high or math.isclose(
            r.lift, r.ci_low, rel_tol=1e-12, abs_tol=1e-12
        )
        assert (r.p_value < alpha) == (r.ci_low > 0.0 or r.ci_high < 0.0)
    assert checked > 2000


def test_agreement_holds_at_the_boundary() -> None:
    """Data constructed so that the lift is exactly at the edge of significance."""
    for n in (50, 1000, 100_000):
        z = float(sps.t.ppf(1 - ALPHA / 2, 2 * n - 2))  # Welch df with equal n and variances
        a = ArmStats(n, 1.0, 0.5)
        se = math.sqrt(2 * 0.5 / n)
        for eps in (-1e-15, 0.0, 1e-15):
            b = ArmStats(n, 1.0 + z * se * (1 + eps), 0.5)
            for method in ("fieller", "log"):
                r = relative_lift(a, b, method=method)
                assert (r.p_value < ALPHA) == (r.ci_low > 0.0 or r.ci_high < 0.0)


def test_rounding_ties_are_resolved_by_the_p_value() -> None:
    assert _agree_with_p(-1e-17, 0.3, 0.0499, 0.05)[0] > 0.0
    assert _agree_with_p(-0.3, 1e-17, 0.0499, 0.05)[1] < 0.0
    assert _agree_with_p(1e-17, 0.3, 0.05, 0.05) == (0.0, 0.3)
    assert _agree_with_p(-0.3, -1e-17, 0.06, 0.05) == (-0.3, 0.0)
    assert _agree_with_p(0.1, 0.3, 0.01, 0.05) == (0.1, 0.3)


@pytest.mark.parametrize("sequential", [False, True])
def test_fieller_p_value_is_the_welch_p_value(sequential: bool) -> None:
    rng = np.random.default_rng(20240619)
    for _ in range(500):
        a, b = _random_arm(rng), _random_arm(rng)
        r = relative_lift(a, b, sequential=sequential)
        c = compare(a, b, sequential=sequential)
        if not math.isnan(r.p_value):
            assert r.p_value == c.p_value


def _fieller_slack(ratio: float, a: ArmStats, b: ArmStats, q: float) -> tuple[float, float]:
    """``q^2 (w_t + R^2 w_c) - (m_t - R m_c)^2`` (>= 0 inside the set) and its magnitude."""
    w_c, w_t = a.variance / a.n, b.variance / b.n
    rhs = q * q * (w_t + ratio * ratio * w_c)
    lhs = (b.mean - ratio * a.mean) ** 2
    return rhs - lhs, rhs + lhs + b.mean**2 + (ratio * a.mean) ** 2


def test_fieller_bounds_solve_the_defining_inequality() -> None:
    """Bounds are roots of (m_t - R m_c)^2 = q^2 (w_t + R^2 w_c); inside passes, outside fails."""
    rng = np.random.default_rng(20240620)
    checked = 0
    for _ in range(500):
        a, b = _random_arm(rng), _random_arm(rng)
        r = relative_lift(a, b)
        if math.isnan(r.p_value):
            continue
        checked += 1
        w_c, w_t = a.variance / a.n, b.variance / b.n
        df = (w_c + w_t) ** 2 / (w_c**2 / (a.n - 1) + w_t**2 / (b.n - 1))
        q = float(sps.t.ppf(1 - ALPHA / 2, df))
        for bound in (r.ci_low, r.ci_high):
            ratio = 1.0 + bound
            if math.isfinite(ratio) and ratio > 0.0:
                slack, scale = _fieller_slack(ratio, a, b, q)
                assert abs(slack) <= 1e-9 * scale
        assert _fieller_slack(1.0 + r.lift, a, b, q)[0] >= 0.0
        if math.isfinite(r.ci_high):
            assert _fieller_slack((1.0 + r.ci_high) * 1.01 + 1e-9, a, b, q)[0] < 0.0
            assert q * q * w_c < a.mean**2  # bounded only when the control mean is clear of 0
        else:
            assert q * q * w_c >= a.mean**2 * (1 - 1e-12)
        if r.ci_low > -1.0:
            assert _fieller_slack((1.0 + r.ci_low) * 0.99, a, b, q)[0] < 0.0
    assert checked > 300


def test_log_method_matches_the_textbook_formula() -> None:
    a, b = ArmStats(200, 2.0, 9.0), ArmStats(300, 2.5, 16.0)
    r = relative_lift(a, b, method="log")
    s_c, s_t = 9.0 / (200 * 4.0), 16.0 / (300 * 6.25)
    se = math.sqrt(s_c + s_t)
    df = (s_c + s_t) ** 2 / (s_c**2 / 199 + s_t**2 / 299)
    est = math.log(2.5 / 2.0)
    q = sps.t.ppf(0.975, df)
    assert r.lift == pytest.approx(0.25, abs=1e-15)
    assert r.ci_low == pytest.approx(math.exp(est - q * se) - 1, rel=1e-12)
    assert r.ci_high == pytest.approx(math.exp(est + q * se) - 1, rel=1e-12)
    assert r.p_value == pytest.approx(2 * sps.t.sf(est / se, df), rel=1e-10)


def test_fieller_matches_the_closed_form_on_a_worked_example() -> None:
    a, b = ArmStats(100, 10.0, 25.0), ArmStats(100, 12.0, 36.0)
    w_c, w_t = 0.25, 0.36
    df = (w_c + w_t) ** 2 / (w_c**2 / 99 + w_t**2 / 99)
    q = sps.t.ppf(0.975, df)
    # Quadratic (m_c^2 - q^2 w_c) R^2 - 2 m_c m_t R + (m_t^2 - q^2 w_t) <= 0
    roots = np.sort(np.roots([100 - q * q * w_c, -240.0, 144 - q * q * w_t]).real)
    r = relative_lift(a, b)
    assert r.ci_low == pytest.approx(roots[0] - 1, rel=1e-12)
    assert r.ci_high == pytest.approx(roots[1] - 1, rel=1e-12)
    assert isinstance(r, RelativeLift) and isinstance(r, tuple) and len(r) == 4


def test_ratio_stats_are_supported() -> None:
    rng = np.random.default_rng(20240621)
    den_a, den_b = rng.poisson(3, 500) + 1.0, rng.poisson(3, 500) + 1.0
    a = RatioStats.from_values(rng.binomial(den_a.astype(int), 0.3), den_a)
    b = RatioStats.from_values(rng.binomial(den_b.astype(int), 0.33), den_b)
    r = relative_lift(a, b)
    assert r.lift == pytest.approx(b.ratio / a.ratio - 1)
    assert r.p_value == compare_ratio(a, b).p_value
    assert r.ci_low < r.lift < r.ci_high


# --------------------------------------------------------------------------- degenerate data


def _is_nan(r: RelativeLift, fields: str) -> bool:
    return all(math.isnan(getattr(r, f)) for f in fields.split())


@pytest.mark.parametrize("method", ["fieller", "log"])
def test_degenerate_inputs_give_nans_not_exceptions(method: str) -> None:
    ok = ArmStats(100, 1.0, 1.0)
    # no units
    assert _is_nan(relative_lift(ArmStats(0, math.nan, math.nan), ok, method=method), "lift")
    assert _is_nan(relative_lift(ok, ArmStats(0, math.nan, math.nan), method=method), "lift")
    # one unit: point estimate only
    r = relative_lift(ArmStats(1, 2.0, math.nan), ok, method=method)
    assert r.lift == pytest.approx(-0.5) and _is_nan(r, "ci_low ci_high p_value")
    # zero variance in both arms
    r = relative_lift(ArmStats(10, 2.0, 0.0), ArmStats(10, 3.0, 0.0), method=method)
    assert r.lift == pytest.approx(0.5) and _is_nan(r, "ci_low ci_high p_value")
    # zero control mean (e.g. no events in control): lift undefined
    r = relative_lift(ArmStats.from_sums(300, 0.0, 0.0), ArmStats.from_sums(300, 5.0, 5.0))
    assert _is_nan(r, "lift ci_low ci_high p_value")
    # negative means: not interpretable as a lift, no fallback
    assert _is_nan(relative_lift(ArmStats(50, -1.0, 1.0), ok, method=method), "lift p_value")
    assert _is_nan(relative_lift(ok, ArmStats(50, -0.5, 1.0), method=method), "lift p_value")
    # ratio metric with a zero denominator
    zero_den = RatioStats(10, 1.0, 0.0, 1.0, 0.0, 0.0)
    fine = RatioStats(10, 1.0, 2.0, 1.0, 1.0, 0.1)
    assert _is_nan(relative_lift(zero_den, fine, method=method), "lift p_value")


def test_zero_treatment_mean() -> None:
    control = ArmStats.from_sums(300, 12.0, 12.0)
    treatment = ArmStats.from_sums(300, 0.0, 0.0)
    r = relative_lift(control, treatment)
    assert r.lift == -1.0 and r.ci_low == -1.0 and r.ci_high == -1.0
    assert r.p_value < ALPHA and r.p_value == compare(control, treatment).p_value
    r_log = relative_lift(control, treatment, method="log")
    assert r_log.lift == -1.0 and _is_nan(r_log, "ci_low ci_high p_value")


def test_unbounded_fieller_set_when_control_mean_is_not_clear_of_zero() -> None:
    control = ArmStats.from_sums(300, 2.0, 2.0)  # 2 events: mean not significantly > 0
    treatment = ArmStats.from_sums(300, 9.0, 9.0)
    r = relative_lift(control, treatment)
    assert r.lift == pytest.approx(3.5)
    assert r.ci_high == math.inf and r.ci_low > 0.0 and r.p_value < ALPHA
    r = relative_lift(control, ArmStats.from_sums(300, 3.0, 3.0))
    assert r.ci_low == -1.0 and r.ci_high == math.inf and r.p_value >= ALPHA


def test_invalid_arguments_raise() -> None:
    a = ArmStats(10, 1.0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        relative_lift(a, a, alpha=1.5)
    with pytest.raises(ValueError, match="tuning_n"):
        relative_lift(a, a, tuning_n=0)
    with pytest.raises(ValueError, match="method"):
        relative_lift(a, a, method="delta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ArmStats"):
        relative_lift(a, RatioStats(10, 1.0, 1.0, 1.0, 1.0, 0.0))
