"""Tests for analysis.bayesian, checked against gbstats 0.8.0's ``EffectBayesianABTest``.

Identity to the oracle: every numeric field of :func:`bayesian_compare` equals gbstats'
``compute_result()`` (``expected``, ``ci``, ``chance_to_win``, ``risk``) with the same settings
within ``RTOL`` relative to the posterior's scale ``|mean| + sd`` (the effect's units, so a
relative error for the effect and the interval and an error small against the effect for the
risks), and ``chance_to_win`` within ``PTOL`` absolutely. Our arm triple is built from the same
gbstats statistic objects as ``(stat.n, stat.mean, stat.variance / stat.n)``.

Observed on 12,000 random cases (9,200 with a non-default gbstats result): scaled error at most
1e-13 (the interval; 1.3e-15 for the effect and the risks), chance to win within 2.3e-16.
Relative errors of a risk or chance to win can be large only where the value is below ~1e-16 of
the scale, where gbstats itself cancels (see test_gbstats_loses_control_risk_far_in_the_tail).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import pytest
from gbstats.bayesian.tests import (
    EffectBayesianABTest,
    EffectBayesianConfig,
    GaussianPrior,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RatioStatistic,
    SampleMeanStatistic,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy import stats as sps

from analysis.bayesian import BayesianResult, bayesian_compare

RTOL = 1e-9  # relative to |posterior mean| + posterior sd; far inside the required 1e-6
PTOL = 1e-12  # absolute, for the chance to win

FIELDS = ("effect", "ci_low", "ci_high", "chance_to_win", "risk_control", "risk_treatment")

# gbstats error message -> our status
STATUS_OF_MESSAGE = {
    "ZERO_NEGATIVE_BASELINE_VARIATION": {"ZERO_CONTROL_MEAN"},
    "NO_UNITS_IN_VARIATION": {"NO_UNITS_IN_ARM"},
    "ZERO_NEGATIVE_VARIANCE": {"ZERO_VARIANCE", "TOO_FEW_UNITS"},
}


def _arm(stat) -> tuple[int, float, float]:
    # gbstats' variance is per unit; ours is the variance of the mean. A one-pass variance can
    # come out a hair below 0 by cancellation; gbstats treats <= 0 as zero variance, and so do
    # we once it is floored at 0 (as analysis.stats does).
    return stat.n, float(stat.mean), max(float(stat.variance), 0.0) / stat.n


def _oracle(stat_a, stat_b, **kw):
    config = EffectBayesianConfig(
        difference_type="relative" if kw["relative"] else "absolute",
        alpha=kw["alpha"],
        inverse=kw["inverse"],
        prior_effect=GaussianPrior(kw["prior_mean"], kw["prior_variance"], kw["proper"]),
    )
    with warnings.catch_warnings():
        # scipy's truncnorm.stats(moments="mvsk") warns while computing the skew gbstats drops
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return EffectBayesianABTest(stat_a, stat_b, config).compute_result()
        except OverflowError:
            # ... and raises OverflowError there once |mean / sd| is ~1e8 or more: rerun without
            # gbstats' risk (reported as NaN, see _errors)
            test = EffectBayesianABTest(stat_a, stat_b, config)
            test.get_risk = lambda mu, sigma: [math.nan, math.nan]
            return test.compute_result()


def _ours(stat_a, stat_b, **kw) -> BayesianResult:
    return bayesian_compare(_arm(stat_a), _arm(stat_b), **kw)


def _errors(ours: BayesianResult, gb, inverse: bool) -> dict[str, float]:
    """Errors of our fields against gbstats', each scaled as the tolerance is."""
    mean, sd = gb.uplift.mean, gb.uplift.stddev
    scale = abs(mean) + sd
    risk = list(gb.risk)
    if math.isnan(risk[0]) or math.isnan(risk[1]):
        # gbstats' truncnorm gives NaN (or overflows) far in the tail. There the losses are
        # exactly (max(mean, 0), max(-mean, 0)) to double precision (swapped when inverse).
        assert abs(mean / sd) > 40, gb
        risk = [max(mean, 0.0), max(-mean, 0.0)]
        if inverse:
            risk.reverse()
    ref = {
        "effect": gb.expected,
        "ci_low": gb.ci[0],
        "ci_high": gb.ci[1],
        "risk_control": risk[0],
        "risk_treatment": risk[1],
    }
    errors = {name: abs(getattr(ours, name) - value) / scale for name, value in ref.items()}
    errors["chance_to_win"] = abs(ours.chance_to_win - gb.chance_to_win)
    return errors


def _assert_close(ours: BayesianResult, gb, inverse: bool) -> None:
    if gb.error_message is not None:
        assert ours.status in STATUS_OF_MESSAGE[gb.error_message], (ours, gb)
        assert _all_nan(ours), ours
        return
    assert ours.status == "ok", (ours, gb)
    for name, err in _errors(ours, gb, inverse).items():
        tol = PTOL if name == "chance_to_win" else RTOL
        assert err <= tol, (name, err, ours, gb)


def _assert_same(stat_a, stat_b, **kw) -> BayesianResult:
    ours = _ours(stat_a, stat_b, **kw)
    _assert_close(ours, _oracle(stat_a, stat_b, **kw), kw["inverse"])
    return ours


def _all_nan(r: BayesianResult) -> bool:
    return all(math.isnan(getattr(r, name)) for name in FIELDS)


def _settings(**overrides):
    base = {"relative": True, "alpha": 0.05, "inverse": False}
    base.update({"prior_mean": 0.0, "prior_variance": 1.0, "proper": False})
    base.update(overrides)
    return base


# --- strategies ---------------------------------------------------------------------------------


@st.composite
def signed(draw, lo: float, hi: float) -> float:
    """A float of either sign with magnitude in [lo, hi], or (one time in ten) exactly 0."""
    if draw(st.integers(0, 9)) == 0:
        return 0.0
    return draw(st.sampled_from([1.0, -1.0])) * draw(st.floats(lo, hi))


# Means stay above 1e-6 in magnitude (or are 0): below ~1e-81 gbstats' own arithmetic divides
# by an underflowed 0 (test_tiny_control_mean_where_gbstats_divides_by_zero covers that range).
unit_counts = st.one_of(st.integers(2, 30), st.integers(2, 100_000), st.integers(100_000, 10**12))


@st.composite
def mean_stats(draw, mean=None):
    """A SampleMeanStatistic with a chosen mean (any sign) and standard deviation."""
    n = draw(unit_counts)
    mu = draw(signed(1e-6, 1e3)) if mean is None else mean
    sd = draw(st.floats(1e-3, 1e3))
    return SampleMeanStatistic(n=n, sum=n * mu, sum_squares=(n - 1) * sd * sd + n * mu * mu)


@st.composite
def proportion_stats(draw):
    """A ProportionStatistic with an integer count of successes, often near p = 0 or 1."""
    n = draw(unit_counts)
    p = draw(
        st.one_of(
            st.floats(0.0, 1.0),
            st.sampled_from([0.001, 0.999, 1e-6, 1 - 1e-6, 0.5]),
            st.floats(0.0, 0.01),
            st.floats(0.99, 1.0),
        )
    )
    return ProportionStatistic(n=n, sum=min(n, max(0, round(p * n))))


@st.composite
def ratio_stats(draw):
    """A RatioStatistic from consistent moments (|correlation| <= 1)."""
    n = draw(unit_counts)
    mx, my = draw(signed(1e-6, 100)), draw(st.floats(0.1, 100))
    sx, sy = draw(st.floats(1e-2, 100)), draw(st.floats(1e-2, 100))
    rho = draw(st.floats(-0.99, 0.99))

    def sample_mean(m: float, s: float) -> SampleMeanStatistic:
        return SampleMeanStatistic(n=n, sum=n * m, sum_squares=(n - 1) * s * s + n * m * m)

    return RatioStatistic(
        n=n,
        m_statistic=sample_mean(mx, sx),
        d_statistic=sample_mean(my, sy),
        m_d_sum_of_products=(n - 1) * rho * sx * sy + n * mx * my,
    )


engine_settings = st.fixed_dictionaries(
    {
        "relative": st.booleans(),
        "alpha": st.one_of(st.just(0.05), st.floats(1e-4, 0.5)),
        "inverse": st.booleans(),
        "prior_mean": st.floats(-1.0, 1.0),
        "prior_variance": st.floats(1e-4, 10.0),
        "proper": st.booleans(),
    }
)


def _check_against_oracle(stat_a, stat_b, kw) -> None:
    ours = _ours(stat_a, stat_b, **kw)
    try:
        gb = _oracle(stat_a, stat_b, **kw)
    except ZeroDivisionError:
        # absolute effect, c == 0: gbstats divides by the rescaled prior variance c**2 even when
        # the prior is improper (see test_absolute_zero_control_mean); ours is the likelihood.
        assert not kw["relative"] and stat_a.mean == 0, (stat_a, stat_b, kw)
        if not kw["proper"]:
            sd = math.sqrt(_arm(stat_a)[2] + _arm(stat_b)[2])
            assert ours.status == "ok", ours
            assert ours.effect == stat_b.mean - stat_a.mean
            win = sps.norm.cdf if kw["inverse"] else sps.norm.sf
            assert ours.chance_to_win == pytest.approx(win(0, ours.effect, sd), rel=1e-12)
        else:
            assert ours.status != "ok" and _all_nan(ours), ours
        return
    _assert_close(ours, gb, kw["inverse"])


# --- identity to gbstats on random inputs -------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(a=mean_stats(), b=mean_stats(), kw=engine_settings)
def test_mean_metrics_match_gbstats(a, b, kw) -> None:
    _check_against_oracle(a, b, kw)


@settings(max_examples=300, deadline=None)
@given(a=proportion_stats(), b=proportion_stats(), kw=engine_settings)
def test_proportions_match_gbstats(a, b, kw) -> None:
    _check_against_oracle(a, b, kw)


@settings(max_examples=150, deadline=None)
@given(a=ratio_stats(), b=ratio_stats(), kw=engine_settings)
def test_ratio_metrics_match_gbstats(a, b, kw) -> None:
    _check_against_oracle(a, b, kw)


@settings(max_examples=150, deadline=None)
@given(a=mean_stats(mean=-5.0), b=mean_stats(), kw=engine_settings)
def test_negative_control_mean_matches_gbstats(a, b, kw) -> None:
    _check_against_oracle(a, b, kw)


# --- explicit examples --------------------------------------------------------------------------


def test_brief_example() -> None:
    a = SampleMeanStatistic(n=100, sum=50, sum_squares=60)
    b = SampleMeanStatistic(n=110, sum=70, sum_squares=80)
    r = _assert_same(a, b, **_settings())
    assert r.effect == pytest.approx(0.2727272727272727, rel=1e-12)
    assert r.ci_low == pytest.approx(-0.09255655270422986, rel=1e-9)
    assert r.ci_high == pytest.approx(0.6380110981587752, rel=1e-9)
    assert r.chance_to_win == pytest.approx(0.9283132650487222, rel=1e-12)
    assert r.risk_control == pytest.approx(0.2786621911111828, rel=1e-12)
    assert r.risk_treatment == pytest.approx(0.0059349183839100626, rel=1e-12)


@pytest.mark.parametrize(("p_a", "p_b"), [(0.001, 0.0012), (0.999, 0.998), (0.001, 0.999)])
@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("inverse", [True, False])
@pytest.mark.parametrize("proper", [True, False])
def test_proportions_near_0_and_1(
    p_a: float, p_b: float, relative: bool, inverse: bool, proper: bool
) -> None:
    n = 200_000
    a = ProportionStatistic(n=n, sum=round(p_a * n))
    b = ProportionStatistic(n=n, sum=round(p_b * n))
    kw = _settings(relative=relative, inverse=inverse, proper=proper, prior_mean=0.02)
    r = _assert_same(a, b, **kw)
    assert r.status == "ok"


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("proper", [True, False])
def test_negative_control_mean(relative: bool, proper: bool) -> None:
    a = SampleMeanStatistic(n=500, sum=-500 * 4.0, sum_squares=499 * 9.0 + 500 * 16.0)
    b = SampleMeanStatistic(n=450, sum=-450 * 4.5, sum_squares=449 * 10.0 + 450 * 20.25)
    r = _assert_same(a, b, **_settings(relative=relative, proper=proper, prior_mean=0.1))
    if not proper:
        # treatment mean -4.5 vs control -4: lift t/c - 1 = +0.125, difference -0.5
        assert r.effect == pytest.approx(0.125 if relative else -0.5, rel=1e-12)


def test_inverse_flips_chance_and_swaps_risks() -> None:
    a = SampleMeanStatistic(n=1000, sum=1000 * 2.0, sum_squares=999 * 4.0 + 1000 * 4.0)
    b = SampleMeanStatistic(n=1000, sum=1000 * 2.1, sum_squares=999 * 4.0 + 1000 * 4.41)
    up = _assert_same(a, b, **_settings())
    down = _assert_same(a, b, **_settings(inverse=True))
    assert (down.effect, down.ci_low, down.ci_high) == (up.effect, up.ci_low, up.ci_high)
    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win, abs=1e-15)
    assert (down.risk_control, down.risk_treatment) == (up.risk_treatment, up.risk_control)


def test_proper_prior_shrinks_towards_prior_mean() -> None:
    a = SampleMeanStatistic(n=40, sum=40 * 10.0, sum_squares=39 * 25.0 + 40 * 100.0)
    b = SampleMeanStatistic(n=40, sum=40 * 12.0, sum_squares=39 * 25.0 + 40 * 144.0)
    flat = _assert_same(a, b, **_settings())
    prior = _assert_same(a, b, **_settings(proper=True, prior_mean=0.0, prior_variance=0.01))
    assert 0.0 < prior.effect < flat.effect
    assert prior.ci_high - prior.ci_low < flat.ci_high - flat.ci_low
    # absolute effect: the relative prior is rescaled by the control mean, as gbstats does
    _assert_same(a, b, **_settings(relative=False, proper=True, prior_mean=0.05))


@pytest.mark.parametrize(("n_a", "n_b"), [(2, 2), (2, 3), (10**12, 10**12), (3, 10**11)])
@pytest.mark.parametrize("relative", [True, False])
def test_tiny_and_huge_n(n_a: int, n_b: int, relative: bool) -> None:
    a = SampleMeanStatistic(n=n_a, sum=n_a * 1.0, sum_squares=(n_a - 1) * 0.25 + n_a * 1.0)
    b = SampleMeanStatistic(n=n_b, sum=n_b * 1.01, sum_squares=(n_b - 1) * 0.25 + n_b * 1.0201)
    for kw in (_settings(relative=relative), _settings(relative=relative, proper=True)):
        assert _assert_same(a, b, **kw).status == "ok"


def test_closed_form_posterior() -> None:
    # normal-normal update by hand: V = 0.01 + 0.03, prior N(0.5 * 2, 1 * 2**2) on the difference
    r = bayesian_compare(
        (100, 2.0, 0.01),
        (100, 2.4, 0.03),
        relative=False,
        prior_mean=0.5,
        prior_variance=1.0,
        proper=True,
    )
    v, tau2 = 0.04, 4.0
    post_var = 1 / (1 / v + 1 / tau2)
    post_mean = post_var * (0.4 / v + 1.0 / tau2)
    z = sps.norm.ppf(0.975)
    assert r.effect == pytest.approx(post_mean, rel=1e-14)
    assert r.ci_low == pytest.approx(post_mean - z * math.sqrt(post_var), rel=1e-14)
    assert r.chance_to_win == pytest.approx(sps.norm.sf(0, post_mean, math.sqrt(post_var)))


@pytest.mark.parametrize("z", [0.0, 1.0, -3.0, -8.0, -10.0, -20.0, -30.0, 8.0, 30.0])
def test_risk_against_numerical_integration(z: float) -> None:
    sd = 0.7
    mean = z * sd
    r = bayesian_compare((1000, 1.0, sd * sd / 2), (1000, 1.0 + mean, sd * sd / 2), relative=False)
    assert r.effect == pytest.approx(mean, rel=1e-12, abs=1e-15)

    def loss(sign: float) -> float:
        return integrate.quad(
            lambda x: sign * x * sps.norm.pdf(x, r.effect, sd),
            *((0, math.inf) if sign > 0 else (-math.inf, 0)),
            epsabs=0,
            epsrel=1e-12,
        )[0]

    assert r.risk_control == pytest.approx(loss(1.0), rel=1e-10)
    assert r.risk_treatment == pytest.approx(loss(-1.0), rel=1e-10)
    # E[max(X, 0)] - E[max(-X, 0)] = E[X]
    assert r.risk_control - r.risk_treatment == pytest.approx(r.effect, rel=1e-12, abs=1e-15)


def test_gbstats_loses_control_risk_far_in_the_tail() -> None:
    # gbstats computes risk[0] = (1 - Phi(-z)) * E[X | X > 0]: 7% off at z = -8, exactly 0
    # below z = -8.3. Ours is exact and agrees with gbstats to ~1e-16 * |mean| absolutely.
    a = SampleMeanStatistic(n=100, sum=100 * 10.0, sum_squares=99 * 1.0 + 100 * 100.0)
    b = SampleMeanStatistic(n=100, sum=100 * 8.0, sum_squares=99 * 1.0 + 100 * 64.0)
    kw = _settings(relative=False)
    gb = _oracle(a, b, **kw)
    ours = _assert_same(a, b, **kw)
    assert gb.risk[0] == 0.0
    assert 0.0 < ours.risk_control < 1e-40  # z = -2 / sqrt(0.02) = -14.1
    c = SampleMeanStatistic(n=100, sum=100 * 9.2, sum_squares=99 * 1.0 + 100 * 84.64)
    gb = _oracle(a, c, **kw)
    ours = _assert_same(a, c, **kw)  # z = -0.8 / sqrt(0.02) = -5.66
    assert ours.risk_control == pytest.approx(gb.risk[0], rel=1e-6)


def test_far_tail_where_gbstats_risk_is_nan() -> None:
    # z = 1 / sqrt(2e-20) = 7e9: scipy's truncnorm mean (gbstats' risk) is NaN there; the
    # losses are (max(m, 0), max(-m, 0)) = (1, 0) to double precision
    r = bayesian_compare((10, 1.0, 1e-20), (10, 2.0, 1e-20), relative=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gb_risk = EffectBayesianABTest.get_risk(r.effect, math.sqrt(2e-20))
    assert gb_risk[0] == pytest.approx(1.0) and math.isnan(gb_risk[1])
    assert (r.effect, r.chance_to_win, r.risk_control, r.risk_treatment) == (1.0, 1.0, 1.0, 0.0)


# --- degenerate data: NaN fields and a status, never an exception -------------------------------


@pytest.mark.parametrize("relative", [True, False])
def test_no_units(relative: bool) -> None:
    nan = float("nan")
    for control, treatment in [((0, nan, nan), (10, 1.0, 0.1)), ((10, 1.0, 0.1), (0, nan, nan))]:
        r = bayesian_compare(control, treatment, relative=relative)
        assert r.status == "NO_UNITS_IN_ARM" and _all_nan(r)
    a = SampleMeanStatistic(n=0, sum=0, sum_squares=0)
    b = SampleMeanStatistic(n=10, sum=10, sum_squares=20)
    gb = _oracle(a, b, **_settings(relative=relative))
    # gbstats checks the zero baseline before the empty arm (its mean of no units is 0)
    expected = "ZERO_NEGATIVE_BASELINE_VARIATION" if relative else "NO_UNITS_IN_VARIATION"
    assert gb.error_message == expected


def test_too_few_units() -> None:
    r = bayesian_compare((1, 2.0, float("nan")), (10, 1.0, 0.1))
    assert r.status == "TOO_FEW_UNITS" and _all_nan(r)
    # gbstats: one unit has variance 0
    a = SampleMeanStatistic(n=1, sum=2, sum_squares=4)
    b = SampleMeanStatistic(n=10, sum=10, sum_squares=20)
    assert _oracle(a, b, **_settings()).error_message == "ZERO_NEGATIVE_VARIANCE"


def test_undefined_input() -> None:
    # a ratio metric with mean denominator 0: analysis.stats reports ratio and variance NaN
    nan = float("nan")
    r = bayesian_compare((10, nan, nan), (10, 1.0, 0.1))
    assert r.status == "UNDEFINED_INPUT" and _all_nan(r)
    r = bayesian_compare((10, 1.0, 0.1), (10, 1.0, nan), relative=False)
    assert r.status == "UNDEFINED_INPUT" and _all_nan(r)


@pytest.mark.parametrize("proper", [True, False])
def test_zero_control_mean_relative(proper: bool) -> None:
    a = ProportionStatistic(n=1000, sum=0)
    b = ProportionStatistic(n=1000, sum=3)
    r = _assert_same(a, b, **_settings(proper=proper))
    assert r.status == "ZERO_CONTROL_MEAN" and _all_nan(r)
    r = bayesian_compare((100, 0.0, 0.2), (100, 0.5, 0.2))
    assert r.status == "ZERO_CONTROL_MEAN" and _all_nan(r)


def test_absolute_zero_control_mean() -> None:
    # gbstats rescales the (relative) prior to variance 1 * 0**2 = 0 and divides by it, raising
    # even with the improper prior. The improper prior does not need the rescaling: we give the
    # likelihood; a proper relative prior cannot be put on the absolute scale.
    a = SampleMeanStatistic(n=100, sum=0, sum_squares=60)
    b = SampleMeanStatistic(n=110, sum=11, sum_squares=80)
    with pytest.raises(ZeroDivisionError):
        _oracle(a, b, **_settings(relative=False))
    r = _ours(a, b, **_settings(relative=False))
    v = a.variance / a.n + b.variance / b.n
    assert r.status == "ok"
    assert r.effect == pytest.approx(0.1, rel=1e-12)
    assert r.ci_high == pytest.approx(0.1 + sps.norm.ppf(0.975) * math.sqrt(v), rel=1e-12)
    assert r.chance_to_win == pytest.approx(sps.norm.sf(0, 0.1, math.sqrt(v)), rel=1e-12)
    r = _ours(a, b, **_settings(relative=False, proper=True))
    assert r.status == "ZERO_CONTROL_MEAN" and _all_nan(r)


def _exact_posterior(control, treatment, relative, prior_mean=0.0, prior_variance=1.0):
    """Posterior mean and sd from exact rational arithmetic (no under/overflow)."""
    (_, c, v_c), (_, t, v_t) = control, treatment
    c, t, v_c, v_t = (Fraction(x) for x in (c, t, v_c, v_t))
    if relative:
        d, var = (t - c) / c, v_t / c**2 + v_c * t**2 / c**4
        mu0, tau2 = Fraction(prior_mean), Fraction(prior_variance)
    else:
        d, var = t - c, v_c + v_t
        mu0, tau2 = Fraction(prior_mean) * abs(c), Fraction(prior_variance) * c**2
    return d, var, mu0, tau2


@pytest.mark.parametrize(
    ("control", "treatment", "relative", "proper", "status"),
    [
        ((2, 3e-139, 0.25), (2, 0.0, 0.25), True, False, "ok"),
        ((10, 1e-90, 1e-190), (10, 2e-90, 1e-190), True, False, "ok"),
        ((10, 1e-90, 1e-190), (10, 2e-90, 1e-190), True, True, "ok"),
        ((10, 1e-200, 1e-3), (10, 1.0, 1e-3), True, False, "OVERFLOW"),
        ((10, 1e-200, 1e-3), (10, 1.0, 1e-3), False, False, "ok"),
        ((10, 1e-200, 1e-3), (10, 1.0, 1e-3), False, True, "ZERO_VARIANCE"),
    ],
)
def test_tiny_control_mean_where_gbstats_divides_by_zero(
    control, treatment, relative: bool, proper: bool, status: str
) -> None:
    # gbstats evaluates c**4 (relative) or c**2 * prior_variance (absolute) and divides by it,
    # raising ZeroDivisionError once that underflows to 0; we compute what is representable.
    def stat(arm):
        n, mean, var_of_mean = arm
        var = var_of_mean * n
        return SampleMeanStatistic(n=n, sum=n * mean, sum_squares=(n - 1) * var + n * mean**2)

    kw = _settings(relative=relative, proper=proper)
    with pytest.raises(ZeroDivisionError):
        _oracle(stat(control), stat(treatment), **kw)
    r = bayesian_compare(control, treatment, **kw)
    assert r.status == status
    if status != "ok":
        assert _all_nan(r)
        return
    d, var, mu0, tau2 = _exact_posterior(control, treatment, relative)
    if proper:
        post_var = 1 / (1 / var + 1 / tau2)
        d = post_var * (d / var + mu0 / tau2)
        var = post_var
    sd = math.sqrt(float(var))
    assert r.effect == pytest.approx(float(d), rel=1e-12)
    assert r.ci_high == pytest.approx(float(d) + sps.norm.ppf(0.975) * sd, rel=1e-12)
    assert r.chance_to_win == pytest.approx(sps.norm.sf(0, float(d), sd), rel=1e-12)


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("which", ["control", "treatment", "both"])
def test_zero_variance(relative: bool, which: str) -> None:
    # gbstats requires *each* arm to have a positive variance
    zero = ProportionStatistic(n=500, sum=500)
    some = ProportionStatistic(n=500, sum=450)
    a = zero if which in ("control", "both") else some
    b = zero if which in ("treatment", "both") else some
    r = _assert_same(a, b, **_settings(relative=relative))
    assert r.status == "ZERO_VARIANCE" and _all_nan(r)


def test_overflow() -> None:
    r = bayesian_compare((10, 1e-200, 1e-3), (10, 1.0, 1e-3))
    assert r.status == "OVERFLOW" and _all_nan(r)
    r = bayesian_compare((10, -1e308, 0.1), (10, 1e308, 0.1), relative=False)
    assert r.status == "OVERFLOW" and _all_nan(r)


finite_or_nan = st.one_of(
    st.floats(allow_infinity=False), st.floats(-1e-300, 1e-300), st.just(float("nan"))
)
variances = st.one_of(
    st.floats(0.0, allow_infinity=False),
    st.floats(0.0, 1e-300),
    st.just(0.0),
    st.just(float("nan")),
)


@settings(max_examples=300, deadline=None)
@given(
    control=st.tuples(st.integers(0, 10**15), finite_or_nan, variances),
    treatment=st.tuples(st.integers(0, 10**15), finite_or_nan, variances),
    kw=engine_settings,
    huge_prior=st.booleans(),
)
def test_never_raises_on_data(control, treatment, kw, huge_prior) -> None:
    if huge_prior:
        kw = {**kw, "prior_variance": math.inf}
    r = bayesian_compare(control, treatment, **kw)
    if r.status != "ok":
        assert _all_nan(r)
        return
    assert not any(math.isnan(getattr(r, name)) for name in FIELDS), r
    assert r.ci_low <= r.effect <= r.ci_high
    assert 0.0 <= r.chance_to_win <= 1.0
    assert r.risk_control >= 0.0 and r.risk_treatment >= 0.0


# --- invalid arguments --------------------------------------------------------------------------

GOOD = (100, 1.0, 0.01)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"alpha": -0.1},
        {"alpha": float("nan")},
        {"alpha": "0.05"},
        {"prior_variance": 0.0},
        {"prior_variance": -1.0},
        {"prior_variance": float("nan")},
        {"prior_mean": math.inf},
        {"prior_mean": float("nan")},
    ],
)
def test_invalid_settings_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bayesian_compare(GOOD, GOOD, **kwargs)


@pytest.mark.parametrize(
    "arm",
    [
        (-1, 1.0, 0.01),
        (True, 1.0, 0.01),
        (10.0, 1.0, 0.01),
        (10, math.inf, 0.01),
        (10, 1.0, -0.01),
        (10, 1.0, math.inf),
        (10, "1", 0.01),
        (10, 1.0),
        None,
    ],
)
def test_invalid_arms_raise(arm) -> None:
    with pytest.raises(ValueError):
        bayesian_compare(arm, GOOD)
    with pytest.raises(ValueError):
        bayesian_compare(GOOD, arm)


def test_infinite_prior_variance_is_flat() -> None:
    flat = bayesian_compare(GOOD, (100, 1.1, 0.02))
    inf = bayesian_compare(GOOD, (100, 1.1, 0.02), proper=True, prior_variance=math.inf)
    assert inf == flat
