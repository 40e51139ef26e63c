"""Bayesian A/B comparison with a Gaussian prior on the effect (GrowthBook's effect engine).

Given each arm's unit count, mean and sampling variance of the mean, :func:`bayesian_compare`
approximates the likelihood of the effect (relative lift or absolute difference) by a normal
distribution, combines it with a Gaussian prior and reports the posterior mean, an
equal-tailed credible interval, the chance that the treatment wins and the expected loss
("risk") of shipping either arm. It reproduces gbstats' ``EffectBayesianABTest`` (GrowthBook's
Bayesian engine) with its default ``prior_type="relative"``.

The module does no I/O and depends only on the standard library and SciPy.

Conventions
-----------
* "Control" is arm A and "treatment" is arm B; the effect is ``B / A - 1`` (relative) or
  ``B - A`` (absolute), so a positive effect means the treatment mean is larger.
* When the data cannot support an estimate, :func:`bayesian_compare` returns NaN for every
  numeric field and says why in ``BayesianResult.status``; it never raises on degenerate data.
  Invalid *arguments* (a negative unit count, an alpha outside (0, 1), a non-positive prior
  variance, ...) raise ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

from scipy import special

__all__ = ["BayesianResult", "BayesianStatus", "bayesian_compare"]

BayesianStatus = Literal[
    "ok",
    "NO_UNITS_IN_ARM",
    "TOO_FEW_UNITS",
    "UNDEFINED_INPUT",
    "ZERO_CONTROL_MEAN",
    "ZERO_VARIANCE",
    "OVERFLOW",
]
"""Why a :class:`BayesianResult` has NaN fields (``"ok"`` when none are NaN)."""

_NAN = float("nan")
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


@dataclass(frozen=True)
class BayesianResult:
    """Posterior summary of the treatment effect.

    Attributes
    ----------
    effect : float
        Posterior mean of the effect: the relative lift ``t / c - 1`` or the absolute
        difference ``t - c`` (gbstats ``expected``).
    ci_low, ci_high : float
        Equal-tailed ``1 - alpha`` credible interval of the effect (gbstats ``ci``).
    chance_to_win : float
        Posterior probability that the treatment is better: ``P(effect > 0)``, or
        ``P(effect < 0)`` when ``inverse=True`` (lower is better) (gbstats ``chance_to_win``).
    risk_control : float
        Expected loss, in the effect's units, of shipping control: the posterior mean of the
        improvement forgone by not shipping the treatment (gbstats ``risk[0]``).
    risk_treatment : float
        Expected loss of shipping the treatment (gbstats ``risk[1]``).
    status : BayesianStatus
        ``"ok"``, or the first reason every numeric field is NaN:

        * ``"NO_UNITS_IN_ARM"``: an arm has no units.
        * ``"TOO_FEW_UNITS"``: an arm has one unit, so its variance is undefined (gbstats sees
          a zero variance there).
        * ``"UNDEFINED_INPUT"``: an arm's mean or variance is NaN, e.g. a ratio metric whose
          mean denominator is 0 (``RatioStats.ratio`` is NaN then).
        * ``"ZERO_CONTROL_MEAN"``: the control mean is 0 and either the effect is relative
          (the lift is undefined) or the prior is proper and absolute (the relative prior
          cannot be rescaled to the absolute scale).
        * ``"ZERO_VARIANCE"``: an arm's variance of the mean is 0 (gbstats requires both to be
          positive), or the variance of the effect's likelihood, prior or posterior underflows
          to 0.
        * ``"OVERFLOW"``: the effect or its variance is not representable as a finite float
          (e.g. a relative lift over a control mean of 1e-200).
    """

    effect: float
    ci_low: float
    ci_high: float
    chance_to_win: float
    risk_control: float
    risk_treatment: float
    status: BayesianStatus


def _empty_result(status: BayesianStatus) -> BayesianResult:
    return BayesianResult(_NAN, _NAN, _NAN, _NAN, _NAN, _NAN, status)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate_arm(arm: object, name: str) -> tuple[int, float, float]:
    if not isinstance(arm, tuple | list) or len(arm) != 3:
        raise ValueError(f"{name} must be a (n, mean, variance_of_mean) triple, got {arm!r}")
    n, mean, var = arm
    if not (isinstance(n, numbers.Integral) and not isinstance(n, bool)) or n < 0:
        raise ValueError(f"{name}: n must be an integer >= 0, got {n!r}")
    if not _is_real(mean) or math.isinf(mean):
        raise ValueError(f"{name}: mean must be a finite number or NaN, got {mean!r}")
    if not _is_real(var) or math.isinf(var) or var < 0.0:
        raise ValueError(f"{name}: variance of the mean must be >= 0, finite or NaN, got {var!r}")
    return int(n), float(mean), float(var)


def _positive_part_mean(mu: float, sigma: float) -> float:
    """``E[max(X, 0)]`` for ``X ~ N(mu, sigma**2)``, ``sigma > 0``, accurate in both tails.

    Notes
    -----
    ``E[max(X, 0)] = P(X > 0) E[X | X > 0] = sigma * G(z)`` with ``z = mu / sigma`` and
    ``G(z) = phi(z) + z Phi(z)`` (the mean of the normal truncated to ``(0, inf)`` is
    ``mu + sigma phi(z) / Phi(z)``). For ``z >= 0`` both terms are positive. For ``z < 0`` the
    two terms nearly cancel, so ``Phi(z) = exp(-z**2/2) erfcx(-z / sqrt 2) / 2`` is used to
    factor out the Gaussian: ``G(z) = exp(-z**2/2) (1/sqrt(2 pi) + z erfcx(-z/sqrt 2) / 2)``,
    whose bracket loses only about ``z**2`` ulps (below 1e-12 relative wherever the result
    does not underflow).
    """
    z = mu / sigma
    if z >= 0.0:
        return mu * float(special.ndtr(z)) + sigma * _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    if z < -40.0:  # exp(-z**2 / 2) underflows to 0 below z = -38.6
        return 0.0
    bracket = _INV_SQRT_2PI + 0.5 * z * float(special.erfcx(-z * _INV_SQRT_2))
    return sigma * math.exp(-0.5 * z * z) * max(bracket, 0.0)


def bayesian_compare(
    control: tuple[int, float, float],
    treatment: tuple[int, float, float],
    *,
    relative: bool = True,
    alpha: float = 0.05,
    inverse: bool = False,
    prior_mean: float = 0.0,
    prior_variance: float = 1.0,
    proper: bool = False,
) -> BayesianResult:
    """Posterior of the treatment effect under a Gaussian prior (GrowthBook's Bayesian engine).

    Parameters
    ----------
    control, treatment : tuple of (int, float, float)
        ``(n, mean, variance of the mean)`` per arm, as ``analysis.stats._arm_moments``
        returns: for a mean metric ``(n, mean, variance / n)``, for a ratio metric
        ``(n, ratio, RatioStats.ratio_variance)``. NaN moments are allowed (degenerate data).
    relative : bool, default True
        Effect is the relative lift ``t / c - 1`` if True, the difference ``t - c`` if False.
    alpha : float, default 0.05
        The credible interval has posterior probability ``1 - alpha``.
    inverse : bool, default False
        True for metrics where lower is better: ``chance_to_win`` becomes ``P(effect < 0)``
        and the two risks swap.
    prior_mean, prior_variance : float, default 0.0 and 1.0
        Gaussian prior of the effect **on the relative-lift scale** (gbstats' default
        ``prior_type="relative"``). For an absolute effect they are rescaled to
        ``prior_mean * |c|`` and ``prior_variance * c**2``, ``c`` the control mean.
    proper : bool, default False
        Use the prior if True; otherwise the prior is flat (improper) and the posterior is the
        normal likelihood alone, whatever ``prior_mean`` and ``prior_variance`` are.

    Returns
    -------
    BayesianResult
        Never raises on degenerate data; see :class:`BayesianResult` for the NaN/status rules.

    Raises
    ------
    ValueError
        If an arm is not a triple, ``n`` is not a non-negative integer, a mean is infinite, a
        variance is negative or infinite, ``alpha`` is not in (0, 1), ``prior_mean`` is not
        finite or ``prior_variance`` is not positive (``inf``, a flat prior, is allowed).

    Notes
    -----
    With control ``(n_c, c, v_c)`` and treatment ``(n_t, t, v_t)`` (``v`` = variance of the
    arm's mean), the data give a normal likelihood ``effect ~ N(d, V)``:

    * relative: ``d = (t - c) / c`` and, by the delta method,
      ``V = v_t / c**2 + v_c t**2 / c**4``;
    * absolute: ``d = t - c`` and ``V = v_c + v_t``.

    **Posterior.** With prior ``N(mu0, tau2)`` (rescaled for an absolute effect, see above)
    the normal-normal conjugate update gives ``N(m, s**2)`` with precision
    ``1 / s**2 = 1 / V + 1 / tau2`` and ``m = s**2 (d / V + mu0 / tau2)``. With an improper
    (flat) prior, ``m = d`` and ``s**2 = V``.

    **Summaries.** ``effect = m``; credible interval ``m ± s Phi^-1(1 - alpha/2)``;
    chance to win ``P(effect > 0) = Phi(m / s)`` (``Phi(-m / s)`` when ``inverse``).

    **Risk (expected loss).** Shipping control loses ``max(effect, 0)``, shipping the
    treatment loses ``max(-effect, 0)``; their posterior means are, with ``z = m / s``,
    ``risk_control = P(effect > 0) E[effect | effect > 0] = m Phi(z) + s phi(z)`` and
    ``risk_treatment = -P(effect < 0) E[effect | effect < 0] = -m Phi(-z) + s phi(z)``, the
    truncated-normal means gbstats evaluates with ``scipy.stats.truncnorm``. They are computed
    here in closed form with ``scipy.special.erfcx`` so the small one does not cancel. (gbstats
    computes ``risk[0]`` as ``(1 - Phi(-z)) * E[effect | effect > 0]``, which loses all relative
    precision once ``z < -8`` and is exactly 0 below ``z = -8.3``; its absolute error stays of
    order ``1e-16 |m|``.) When ``inverse`` the two risks swap: a negative effect is then the
    improvement.

    Differences from gbstats, which returns a "default" result (chance 0.5, zeros) with an
    error message where this function returns NaNs and a status:

    * the order of the checks: an empty arm is ``NO_UNITS_IN_ARM`` here, while gbstats, whose
      mean of no units is 0, reports ``ZERO_NEGATIVE_BASELINE_VARIATION`` when relative;
    * one-unit arms are ``TOO_FEW_UNITS`` (gbstats sees a zero variance there);
    * absolute effect with control mean 0: gbstats raises ``ZeroDivisionError`` even for the
      improper prior (it divides ``0 / tau2`` with the rescaled ``tau2 = prior_variance *
      0**2``); here the improper prior gives the likelihood result and a proper one
      ``ZERO_CONTROL_MEAN``;
    * tiny control means: gbstats divides by ``c**4`` (relative, 0 once ``|c| < ~1e-81``) or
      by ``c**2 prior_variance`` (absolute, 0 once ``|c| < ~1e-162``) and raises; here the
      posterior is computed when it is representable, else ``OVERFLOW``/``ZERO_VARIANCE``.

    As in gbstats, the zero-variance check is per arm (either arm's variance 0 gives no
    result, although the effect's variance may be positive), and the rescaling by ``|c|`` maps
    a positive relative prior mean to a positive *difference* even when ``c < 0``, where a
    positive difference is a negative lift ``t / c - 1``.

    The normal likelihood is a large-sample approximation (CLT and delta method); it is not
    checked that the arms are large enough for it.

    References
    ----------
    * GrowthBook, "Statistical Details" (effect estimates, Bayesian credible intervals and
      risk), https://docs.growthbook.io/statistics/details; gbstats 0.8.0
      ``gbstats/bayesian/tests.py`` (``EffectBayesianABTest``, ``get_risk``),
      https://github.com/growthbook/growthbook/tree/main/packages/stats, introduced in
      growthbook/growthbook#2406 ("Migrate bayesian engine to gaussian effect model").
    * Stucchio (2015), "Bayesian A/B Testing at VWO", VWO technical whitepaper: the expected
      loss ("risk") decision rule.
    * Gelman, Carlin, Stern, Dunson, Vehtari & Rubin (2013), *Bayesian Data Analysis*, 3rd
      ed., section 2.5 (normal likelihood with known variance, normal prior); Murphy (2007),
      "Conjugate Bayesian analysis of the Gaussian distribution".
    * Johnson, Kotz & Balakrishnan (1994), *Continuous Univariate Distributions*, vol. 1,
      2nd ed., chapter 13 (truncated normal distributions): the truncated-normal mean.
    * Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD: the
      variance of the relative lift.
    """
    n_c, c, v_c = _validate_arm(control, "control")
    n_t, t, v_t = _validate_arm(treatment, "treatment")
    if not (_is_real(alpha) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not (_is_real(prior_mean) and math.isfinite(prior_mean)):
        raise ValueError(f"prior_mean must be a finite number, got {prior_mean!r}")
    if not (_is_real(prior_variance) and prior_variance > 0.0):
        raise ValueError(f"prior_variance must be a number > 0, got {prior_variance!r}")

    if n_c == 0 or n_t == 0:
        return _empty_result("NO_UNITS_IN_ARM")
    if n_c < 2 or n_t < 2:
        return _empty_result("TOO_FEW_UNITS")
    if math.isnan(c) or math.isnan(t) or math.isnan(v_c) or math.isnan(v_t):
        return _empty_result("UNDEFINED_INPUT")
    if c == 0.0 and relative:
        return _empty_result("ZERO_CONTROL_MEAN")
    if v_c == 0.0 or v_t == 0.0:
        return _empty_result("ZERO_VARIANCE")
    if c == 0.0 and proper:
        return _empty_result("ZERO_CONTROL_MEAN")

    # Plain float arithmetic throughout: it gives inf/0 on overflow/underflow, never raises,
    # as long as nothing is divided by an exact 0 (guarded) and ``**`` is avoided.
    if relative:
        c2 = c * c
        if c2 == 0.0:
            return _empty_result("OVERFLOW")
        ratio = t / c
        d = (t - c) / c
        var = (v_t + v_c * ratio * ratio) / c2  # = v_t / c**2 + v_c t**2 / c**4
        mu0, tau2 = float(prior_mean), float(prior_variance)
    else:
        d = t - c
        var = v_c + v_t
        mu0, tau2 = float(prior_mean) * abs(c), float(prior_variance) * c * c
    if not (math.isfinite(d) and math.isfinite(var)):
        return _empty_result("OVERFLOW")
    if var == 0.0 or (proper and tau2 == 0.0):
        return _empty_result("ZERO_VARIANCE")

    if proper:
        precision = 1.0 / var + 1.0 / tau2
        mean = (d / var + mu0 / tau2) / precision
        sd = math.sqrt(1.0 / precision)
    else:
        mean = d
        sd = math.sqrt(var)
    if sd == 0.0:
        return _empty_result("ZERO_VARIANCE")
    if not math.isfinite(mean):
        return _empty_result("OVERFLOW")

    half_width = -sd * float(special.ndtri(alpha / 2.0))
    z = mean / sd
    p_win = float(special.ndtr(-z if inverse else z))
    loss_not_up = _positive_part_mean(mean, sd)  # E[max(effect, 0)]
    loss_not_down = _positive_part_mean(-mean, sd)  # E[max(-effect, 0)]
    if inverse:
        loss_not_up, loss_not_down = loss_not_down, loss_not_up
    return BayesianResult(
        effect=mean,
        ci_low=mean - half_width,
        ci_high=mean + half_width,
        chance_to_win=p_win,
        risk_control=loss_not_up,
        risk_treatment=loss_not_down,
        status="ok",
    )
