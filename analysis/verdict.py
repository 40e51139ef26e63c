"""One verdict per comparison: one estimand, one method, every number from the same test.

A reader sees an effect, an interval, a p-value (or a chance to win) and a "significant"
flag, and reads them as one statement. They must therefore come from one test of one
quantity: this module makes them so. Each metric is judged on its *estimand*: the relative
lift ``t / c - 1`` (the default, as GrowthBook and Statsig report) or the absolute difference
``t - c``. The *method* is the experiment's: a fixed-horizon or a sequential (always-valid)
frequentist test, or the Bayesian engine.

Frequentist rows: the p-value is the estimand's own (Welch t on the difference; the relative
lift's test of :func:`analysis.lift_interval.relative_lift`); p-values are adjusted across all
(metric, treatment) comparisons (Holm or Benjamini-Hochberg); ``significant`` is ``p_adjusted
< alpha``; and the interval shown is the estimand's interval at the *adjusted* level
``alpha_i = alpha * p_i / p_adjusted_i`` (capped at ``alpha``), the level at which the
unadjusted test of that row rejects exactly when the adjusted one does. So the interval
excludes 0 if and only if the row is significant, for either correction: the construction of
GrowthBook's adjusted intervals for multiple testing (with Holm it gives the usual Holm step's
per-comparison level; with Bonferroni ``alpha / m``).

Bayesian rows: the posterior of the estimand (:func:`analysis.bayesian.bayesian_compare`,
GrowthBook's ``EffectBayesianABTest`` with its default flat prior), its equal-tailed credible
interval at ``1 - alpha``, the chance to win and the expected loss; ``significant`` means the
credible interval excludes 0 (chance to win above ``1 - alpha / 2`` or below ``alpha / 2``),
which is again the same statement. No multiplicity correction is applied (as GrowthBook's
Bayesian engine does not).

When the relative lift is undefined (control mean 0, or a sign change the lift cannot
describe), the row is judged on the absolute difference and says so (``estimand``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from analysis.bayesian import bayesian_compare
from analysis.lift_interval import relative_lift
from analysis.stats import ArmStats, _arm_moments, adjust_p_values, compare

__all__ = ["Estimand", "EstimandTest", "Method", "Verdict", "decide", "estimand_test"]

Estimand = Literal["relative", "absolute"]
Method = Literal["fixed", "sequential", "bayesian"]

_NAN = float("nan")


@dataclass(frozen=True)
class EstimandTest:
    """The test of one estimand at one level: the estimate, its interval and p-value."""

    estimand: Estimand
    effect: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class Verdict:
    """What a row says, every field from the same estimand and method.

    ``level`` is the coverage of the interval shown (``1 - alpha`` unless a multiplicity
    correction widened it). ``chance_to_win`` and ``risk`` (the expected loss of shipping the
    arm, in the estimand's units) are the Bayesian engine's, direction-aware, NaN otherwise;
    ``p_value`` and ``p_adjusted`` are NaN with the Bayesian engine.
    """

    estimand: Estimand
    method: Method
    effect: float
    ci_low: float
    ci_high: float
    level: float
    p_value: float
    p_adjusted: float
    significant: bool
    chance_to_win: float = _NAN
    risk: float = _NAN


def estimand_test(
    control: ArmStats,
    treatment: ArmStats,
    estimand: Estimand,
    alpha: float,
    sequential: bool,
    tuning_n: float,
) -> EstimandTest:
    """The frequentist test of `estimand` at level `alpha`; the relative lift falls back to
    the absolute difference when it is undefined (see the module docstring)."""
    if estimand == "relative" and _lift_defined(control, treatment):
        lift = relative_lift(control, treatment, alpha, sequential, tuning_n)
        return EstimandTest("relative", lift.lift, lift.ci_low, lift.ci_high, lift.p_value)
    cmp = compare(control, treatment, alpha, sequential, tuning_n)
    return EstimandTest("absolute", cmp.diff, cmp.ci_low, cmp.ci_high, cmp.p_value)


def _lift_defined(control: ArmStats, treatment: ArmStats) -> bool:
    """Whether ``t / c - 1`` reads as a lift: both means known, the control's non-zero."""
    if control.n == 0 or treatment.n == 0:
        return True  # nothing to test on either scale; keep the metric's own estimand
    return control.mean != 0.0 and (control.mean > 0) == (treatment.mean >= 0)


def decide(
    pairs: Sequence[tuple[ArmStats, ArmStats, Estimand, bool]],
    *,
    alpha: float,
    method: Method,
    correction: Literal["holm", "bh", "none"],
    tuning_n: float,
) -> list[Verdict]:
    """The verdict of every ``(control, treatment, estimand, higher_is_better)`` comparison of
    an experiment, the multiplicity correction applied across all of them."""
    if method == "bayesian":
        return [_bayesian(c, t, estimand, better_up, alpha) for c, t, estimand, better_up in pairs]
    sequential = method == "sequential"
    tests = [estimand_test(c, t, est, alpha, sequential, tuning_n) for c, t, est, _ in pairs]
    raw = np.array([test.p_value for test in tests], dtype=np.float64)
    adjusted = raw if correction == "none" else adjust_p_values(raw, correction)
    verdicts = []
    for (control, treatment, _, _), test, p, p_adj in zip(pairs, tests, raw, adjusted, strict=True):
        level_alpha = _adjusted_alpha(alpha, float(p), float(p_adj), len(pairs))
        shown = test
        if level_alpha != alpha:
            shown = estimand_test(
                control, treatment, test.estimand, level_alpha, sequential,
                _same_mixture(tuning_n, alpha, level_alpha),
            )  # fmt: skip
        verdicts.append(
            Verdict(
                estimand=test.estimand,
                method=method,
                effect=test.effect,
                ci_low=shown.ci_low,
                ci_high=shown.ci_high,
                level=1.0 - level_alpha,
                p_value=float(p),
                p_adjusted=float(p_adj),
                significant=bool(p_adj < alpha),
            )
        )
    return verdicts


def _same_mixture(tuning_n: float, alpha: float, level_alpha: float) -> float:
    """The ``tuning_n`` that keeps the sequential mixture parameter of `alpha` at
    `level_alpha`: ``rho**2 = g(alpha) / tuning_n`` with ``g(a) = -2 log a + log(1 - 2 log a)``
    (:func:`analysis.stats._sequential_rho`). The always-valid p-value holds ``rho`` fixed,
    so the interval must too for "p < level alpha iff the interval excludes 0" to hold."""

    def g(a: float) -> float:
        return -2.0 * math.log(a) + math.log(1.0 - 2.0 * math.log(a))

    return tuning_n * g(level_alpha) / g(alpha)


def _adjusted_alpha(alpha: float, p: float, p_adjusted: float, m: int) -> float:
    """The level at which the unadjusted test rejects exactly when the adjusted one does:
    ``alpha * p / p_adjusted``; ``alpha / m`` (Bonferroni) when both p-values underflow to 0;
    ``alpha`` when there is nothing to adjust."""
    if not (math.isfinite(p) and math.isfinite(p_adjusted)) or p_adjusted <= p:
        return alpha
    if p_adjusted == 0.0 or p == 0.0:
        return alpha / max(m, 1)
    return alpha * p / p_adjusted


def _bayesian(
    control: ArmStats, treatment: ArmStats, estimand: Estimand, better_up: bool, alpha: float
) -> Verdict:
    relative = estimand == "relative" and _lift_defined(control, treatment)
    result = bayesian_compare(
        _arm_moments(control), _arm_moments(treatment), relative=relative, alpha=alpha,
        inverse=not better_up,
    )  # fmt: skip
    excludes_zero = result.ci_low > 0 or result.ci_high < 0
    return Verdict(
        estimand="relative" if relative else "absolute",
        method="bayesian",
        effect=result.effect,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        level=1.0 - alpha,
        p_value=_NAN,
        p_adjusted=_NAN,
        significant=bool(excludes_zero),
        chance_to_win=result.chance_to_win,
        risk=result.risk_treatment,
    )
