"""Is a treatment arm harmful on a guardrail beyond its margin? The safe-rollout decision.

The monitor (``abtest.monitor``) looks at a running experiment every few seconds and stops a
treatment arm that a guardrail shows harmful (DESIGN.md, Safe rollouts). Looking that often
would make a fixed-horizon test stop harmless arms far more often than its level says, so the
decision uses the always-valid (sequential) interval of :func:`analysis.stats.compare`: the
chance that an arm no worse than control is *ever* stopped, however often it is checked, stays
below ``alpha``. The module is pure (it works on per-arm sufficient statistics, does no I/O)
and reuses the analysis' tests rather than deriving its own:

* the estimand is the metric's (``relative``: the lift ``t / c - 1``, Fieller's always-valid
  interval of :func:`analysis.lift_interval.relative_lift`; ``absolute``: ``t - c``, the
  confidence sequence of :func:`analysis.stats.compare`), chosen and tested by
  :func:`analysis.verdict.estimand_test`, except for proportions, which are always judged on
  the absolute difference of the rates because their margin is one (``margin: 0.01`` means
  "the error rate may rise by one percentage point", as in :mod:`analysis.decision`);
* the *harm* is that effect in the metric's harmful direction (as is for ``direction:
  decrease`` metrics, where higher is worse; sign flipped for ``direction: increase``);
* the arm is **harmful** when the whole always-valid ``1 - alpha`` interval of the harm lies
  above the margin (0 without one)::

      harmful  <=>  min(s * ci_low, s * ci_high) > margin,   s = +1 (decrease) or -1 (increase)

  With ``N = n_c + n_t`` units, ``se`` the standard error of the difference and
  ``rho = sqrt((-2 log alpha + log(-2 log alpha + 1)) / tuning_n)``, the interval of the
  difference is ``diff +/- se * sqrt(2 (N rho**2 + 1) / (N rho**2) * log(sqrt(N rho**2 + 1) /
  alpha))`` (Waudby-Smith et al. 2023, eq. 9, as gbstats' ``SequentialTwoSidedTTest``); the
  relative lift's is Fieller's set with that multiplier. Only one side of a two-sided
  ``1 - alpha`` interval stops an arm, so the always-valid false-stop rate is about
  ``alpha / 2`` per arm and guardrail (``tests/test_harm.py`` measures it).

Ratio metrics are not judged here (their per-unit numerator and denominator would have to be
kept as well); :func:`check_harm` refuses them. Arms with fewer than ``min_units`` units are
never judged: the confidence sequence is asymptotic (CLT-based), so its guarantee needs arms
large enough for ``se`` to be a good estimate.

References
----------
Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023), "Time-uniform central limit theory and
asymptotic confidence sequences", Annals of Statistics (arXiv:2103.06476); GrowthBook gbstats
``frequentist/tests.py`` (``SequentialTwoSidedTTest``, ``sequential_rho``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from analysis.formatting import format_number
from analysis.stats import ArmStats, _sequential_rho, _validate_test_args
from analysis.verdict import Estimand, estimand_test

__all__ = ["GuardrailMetric", "HarmCheck", "check_harm", "harmful_absolute"]

_NAN = float("nan")


class GuardrailMetric(Protocol):
    """What the decision reads of a metric (``abtest.experiments.Metric`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> Literal["proportion", "mean", "ratio"]: ...

    @property
    def direction(self) -> Literal["increase", "decrease"]: ...

    @property
    def estimand(self) -> Literal["relative", "absolute"]: ...

    @property
    def margin(self) -> float | None: ...


@dataclass(frozen=True)
class HarmCheck:
    """One guardrail of one treatment arm, checked once.

    ``effect`` is the treatment's change on ``estimand`` in the natural sign (``t - c`` or
    ``t / c - 1``) with its always-valid ``1 - alpha`` interval ``[ci_low, ci_high]``;
    ``margin`` is the tolerated change signed in the harmful direction (``+0.01`` for an error
    rate that may rise one point, ``-0.2`` for a success metric that may fall 20%; 0 without a
    margin). ``reason`` is the sentence for the audit log and the notices.
    """

    metric: str
    arm: str
    harmful: bool
    effect: float
    ci_low: float
    ci_high: float
    margin: float
    units_control: int
    units_treatment: int
    reason: str
    estimand: Estimand = "absolute"
    alpha: float = 0.01
    mean_control: float = _NAN
    mean_treatment: float = _NAN

    def statistics(self) -> dict[str, Any]:
        """The check's numbers as plain JSON values (NaN as None), for the audit entry."""
        numbers = {
            "effect": self.effect,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "margin": self.margin,
            "alpha": self.alpha,
            "mean_control": self.mean_control,
            "mean_treatment": self.mean_treatment,
        }
        return {
            "metric": self.metric,
            "arm": self.arm,
            "estimand": self.estimand,
            "test": "always-valid confidence sequence",
            "harmful": self.harmful,
            "units_control": self.units_control,
            "units_treatment": self.units_treatment,
            **{k: (float(v) if math.isfinite(v) else None) for k, v in numbers.items()},
        }


def check_harm(
    metric: GuardrailMetric,
    arm: str,
    control: ArmStats,
    treatment: ArmStats,
    *,
    alpha: float,
    min_units: int,
    tuning_n: float = 5000,
) -> HarmCheck:
    """Whether `treatment` is harmful on `metric` beyond its margin (module docstring).

    Parameters
    ----------
    metric : GuardrailMetric
        A proportion or mean metric (``kind``, ``direction``, ``estimand``, ``margin``).
    arm : str
        The treatment arm's name (for the result and its sentence).
    control, treatment : ArmStats
        Sufficient statistics of the per-unit values of both arms.
    alpha : float
        Level of the always-valid interval (``safety.alpha``).
    min_units : int
        Units each arm needs before it is judged (``safety.min_units``).
    tuning_n : float, default 5000
        Total units at which the confidence sequence is tightest (``analysis.tuning_n``).

    Returns
    -------
    HarmCheck
        ``harmful`` False whenever the data cannot show harm: too few units, no interval
        (zero variance), or a relative margin on a lift that is undefined (control mean 0).

    Raises
    ------
    ValueError
        For a ratio metric, or an ``alpha``/``tuning_n`` that :func:`analysis.stats.compare`
        refuses.
    """
    if metric.kind == "ratio":
        raise ValueError(f"'{metric.name}' is a ratio metric; the harm check takes none")
    alpha, tuning_n = _validate_test_args(alpha, tuning_n)
    sign = _harm_sign(metric)
    tolerated = metric.margin or 0.0
    estimand: Estimand = "absolute" if metric.kind == "proportion" else metric.estimand
    unjudged = HarmCheck(
        metric=metric.name,
        arm=arm,
        harmful=False,
        effect=_NAN,
        ci_low=_NAN,
        ci_high=_NAN,
        margin=sign * tolerated if tolerated else 0.0,
        units_control=control.n,
        units_treatment=treatment.n,
        reason="",
        estimand=estimand,
        alpha=alpha,
        mean_control=control.mean if control.n else _NAN,
        mean_treatment=treatment.mean if treatment.n else _NAN,
    )
    if min(control.n, treatment.n) < min_units:
        reason = (
            f"{_label(metric)}: {control.n:,} control and {treatment.n:,} {arm} units, "
            f"fewer than min_units {min_units:,} in an arm: not judged yet"
        )
        return replace(unjudged, reason=reason)
    test = estimand_test(control, treatment, estimand, alpha, True, tuning_n)
    if test.estimand != estimand and metric.margin is not None:
        reason = (
            f"{_label(metric)}: the relative lift is undefined (control mean "
            f"{format_number(control.mean)}), so its relative margin cannot be judged"
        )
        return replace(unjudged, estimand=test.estimand, effect=test.effect, reason=reason)
    least_harm = min(sign * test.ci_low, sign * test.ci_high)
    harmful = math.isfinite(least_harm) and least_harm > tolerated
    interval = (test.effect, test.ci_low, test.ci_high)
    return replace(
        unjudged,
        harmful=harmful,
        estimand=test.estimand,
        effect=test.effect,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        reason=_sentence(metric, test.estimand, interval, unjudged.margin, alpha, harmful),
    )


def _harm_sign(metric: GuardrailMetric) -> float:
    """+1 when a rise is harmful (``direction: decrease``: lower is better), else -1."""
    return 1.0 if metric.direction == "decrease" else -1.0


def _label(metric: GuardrailMetric) -> str:
    return f"{metric.name} rate" if metric.kind == "proportion" else metric.name


def _sentence(
    metric: GuardrailMetric,
    estimand: Estimand,
    interval: tuple[float, float, float],
    margin: float,
    alpha: float,
    harmful: bool,
) -> str:
    """E.g. "error rate +4.1 pp (always-valid 99% CI +1.9 to +6.3 pp) beyond margin +1.0 pp"."""
    effect, low, high = interval
    if math.isnan(low) or math.isnan(high):
        return f"{_label(metric)} {_change(effect, metric, estimand)}: no interval yet"
    unit = " pp" if metric.kind == "proportion" else ""
    level = f"{(1.0 - alpha) * 100:g}%"
    shown = (
        f"{_label(metric)} {_change(effect, metric, estimand)} (always-valid {level} CI "
        f"{_bare(low, metric, estimand)} to {_bare(high, metric, estimand)}{unit})"
    )
    limit = f"margin {_change(margin, metric, estimand)}" if margin else "0 (no margin)"
    return f"{shown} {'beyond' if harmful else 'not shown beyond'} {limit}"


def _bare(x: float, metric: GuardrailMetric, estimand: Estimand) -> str:
    """A change without its unit when the unit is " pp" (said once after the interval)."""
    text = _change(x, metric, estimand)
    return text.removesuffix(" pp")


def _change(x: float, metric: GuardrailMetric, estimand: Estimand) -> str:
    """A signed change: percentage points of a rate, a percent lift, or metric units."""
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    if metric.kind == "proportion":
        return f"{x * 100:+.1f} pp"
    if estimand == "relative":
        return f"{x * 100:+.1f}%"
    sign = "+" if x >= 0 else "-"
    return f"{sign}{format_number(abs(x))}"


def harmful_absolute(
    n_c: npt.ArrayLike,
    mean_c: npt.ArrayLike,
    var_c: npt.ArrayLike,
    n_t: npt.ArrayLike,
    mean_t: npt.ArrayLike,
    var_t: npt.ArrayLike,
    *,
    direction: Literal["increase", "decrease"],
    margin: float | None,
    alpha: float,
    min_units: int,
    tuning_n: float = 5000,
) -> np.ndarray:
    """:func:`check_harm` of an absolute-estimand metric on arrays of checks, for simulations.

    Returns the boolean array ``harmful`` of the arrays' broadcast shape. It evaluates the
    same confidence sequence as :func:`analysis.stats.compare` (see the module docstring) with
    NumPy instead of one Python call per check, which is what lets ``tests/test_harm.py`` run
    hundreds of thousands of checks in seconds; that test pins it to :func:`check_harm` on
    random inputs. For a relative-estimand metric without margin the decision is the same
    (Fieller's test of "no lift" is Welch's test of "no difference",
    :mod:`analysis.lift_interval`), so this also covers those.
    """
    alpha, tuning_n = _validate_test_args(alpha, tuning_n)
    n_c, n_t = np.asarray(n_c, dtype=np.float64), np.asarray(n_t, dtype=np.float64)
    diff = np.asarray(mean_t, dtype=np.float64) - np.asarray(mean_c, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_diff = np.asarray(var_c) / n_c + np.asarray(var_t) / n_t
        t_rho2 = (n_c + n_t) * _sequential_rho(alpha, tuning_n) ** 2
        half = np.sqrt(
            var_diff * 2.0 * (t_rho2 + 1.0) / t_rho2 * np.log(np.sqrt(t_rho2 + 1.0) / alpha)
        )
    sign = 1.0 if direction == "decrease" else -1.0
    least_harm = sign * diff - half
    judged = (np.minimum(n_c, n_t) >= max(min_units, 2)) & (var_diff > 0.0)
    return judged & np.isfinite(least_harm) & (least_harm > (margin or 0.0))
