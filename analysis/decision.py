"""Guardrail checks, the ship / don't ship / keep running decision, and progress to the plan.

The decision rule, per treatment arm (documented in the README, applied the same way in the
HTML, JSON and CSV outputs):

* **ship** when the primary metric is significantly better and every guardrail passes;
* **don't ship** when the primary metric is significantly worse or a guardrail fails;
* **keep running** otherwise, with the reason (what is not significant or not yet decided).

A guardrail *fails* when the arm is significantly worse on it (its verdict's interval lies on
the harmful side of 0), or, when the guardrail tolerates a ``margin`` of harm, when even the
interval's most favourable end is harmful beyond the margin. With a margin it *passes* only when
non-inferiority is shown: the interval's least favourable end stays within the margin (for a
proportion, the exact/Newcombe one-sided upper bound of the arm's rate minus the control's,
:func:`analysis.proportion_bounds.proportion_non_inferiority`, which passes with zero events
in both arms once they are large enough). Without a margin it passes unless it fails. Anything
else is *inconclusive*, and an arm with an inconclusive margin keeps running.

Progress: from ``analysis: {mde, power}`` and the control's mean and variance on the primary
metric, the units per arm a two-sided test at ``alpha`` needs
(:func:`analysis.stats.required_sample_size`), the share of it the smallest arm has reached,
and at the average rate of new units so far, the days still to go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from analysis.formatting import format_percent
from analysis.proportion_bounds import proportion_non_inferiority
from analysis.stats import required_sample_size
from analysis.verdict import Verdict

__all__ = ["Decision", "GuardrailCheck", "Progress", "decide_arm", "guardrail_check", "progress"]

GuardrailState = Literal["passes", "fails", "inconclusive"]
DecisionName = Literal["ship", "don't ship", "keep running"]


class _Metric(Protocol):
    name: str
    kind: str
    direction: str
    margin: float | None


class _Row(Protocol):
    metric: _Metric
    arm: str
    units: int
    mean: float
    verdict: Verdict | None
    significant: bool
    better: bool
    worse: bool


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail of one arm: its state and the sentence that justifies it."""

    metric: str
    arm: str
    state: GuardrailState
    sentence: str


@dataclass(frozen=True)
class Decision:
    """One treatment arm's decision and its reason."""

    arm: str
    decision: DecisionName
    reason: str


@dataclass(frozen=True)
class Progress:
    """How far the experiment is towards its planned sample size (None fields: no plan)."""

    planned_units_per_arm: int | None
    smallest_arm_units: int
    share: float | None
    units_per_day: float | None
    days_to_go: float | None
    sentence: str


def guardrail_check(row: _Row, control: _Row, alpha: float) -> GuardrailCheck:
    """The state of guardrail `row` (a treatment arm) against its `control` row."""
    metric = row.metric
    name = metric.name
    if metric.margin is None:
        if row.worse:
            return GuardrailCheck(name, row.arm, "fails", f"{name} is significantly worse")
        return GuardrailCheck(name, row.arm, "passes", f"{name} shows no significant harm")
    if metric.kind == "proportion":
        return _proportion_margin(row, control, alpha)
    return _margin_from_interval(row)


def _proportion_margin(row: _Row, control: _Row, alpha: float) -> GuardrailCheck:
    """Non-inferiority of a rate: the arm's rate may exceed control's by at most the margin
    (higher is harmful when lower is better, and the other way round)."""
    metric = row.metric
    assert metric.margin is not None
    harmful_up = metric.direction == "decrease"
    successes, control_successes = _successes(row, harmful_up), _successes(control, harmful_up)
    check = proportion_non_inferiority(
        successes, row.units, metric.margin, alpha / 2.0,
        baseline=(control_successes, control.units), label=_rate_label(metric, harmful_up),
    )  # fmt: skip
    if check.passes:
        return GuardrailCheck(metric.name, row.arm, "passes", check.sentence)
    if row.worse and _least_harm(row) > metric.margin:
        words = f"{metric.name} harmed beyond its margin {format_percent(metric.margin)}"
        return GuardrailCheck(metric.name, row.arm, "fails", words)
    return GuardrailCheck(metric.name, row.arm, "inconclusive", check.sentence)


def _least_harm(row: _Row) -> float:
    """The most favourable end of the absolute difference's interval, in the harmful
    direction (the verdict's interval when it is on the absolute scale, else NaN)."""
    verdict = row.verdict
    if verdict is None or verdict.estimand != "absolute":
        return _absolute_least_harm(row)
    sign = -1.0 if row.metric.direction == "increase" else 1.0
    return min(sign * verdict.ci_low, sign * verdict.ci_high)


def _absolute_least_harm(row: _Row) -> float:
    comparison = getattr(row, "comparison", None)
    if comparison is None:
        return math.nan
    sign = -1.0 if row.metric.direction == "increase" else 1.0
    return min(sign * comparison.ci_low, sign * comparison.ci_high)


def _successes(row: _Row, harmful_up: bool) -> int:
    """Events counted towards harm: the events themselves, or the misses of a rate where
    lower is harmful."""
    events = round(row.mean * row.units) if row.units else 0
    return events if harmful_up else row.units - events


def _rate_label(metric: _Metric, harmful_up: bool) -> str:
    return f"{metric.name} rate" if harmful_up else f"share without {metric.name}"


def _margin_from_interval(row: _Row) -> GuardrailCheck:
    """Non-inferiority from the verdict's interval: the harm (the effect in the harmful
    direction, on the metric's estimand) must stay below the margin at the interval's worst."""
    metric, verdict = row.metric, row.verdict
    assert metric.margin is not None and verdict is not None
    sign = -1.0 if metric.direction == "increase" else 1.0
    worst = max(sign * verdict.ci_low, sign * verdict.ci_high)
    best = min(sign * verdict.ci_low, sign * verdict.ci_high)
    relative = verdict.estimand == "relative"
    shown = format_percent(metric.margin) if relative else f"{metric.margin:g}"
    if not (math.isfinite(worst) and math.isfinite(best)):
        return GuardrailCheck(metric.name, row.arm, "inconclusive", f"{metric.name}: no interval")
    harm = format_percent(worst) if relative else f"{worst:.4g}"
    if best > metric.margin:
        state: GuardrailState = "fails"
        words = f"{metric.name} harmed beyond its margin {shown}"
    elif worst <= metric.margin:
        state = "passes"
        words = f"{metric.name} harm at most {harm}, margin {shown}: passes"
    else:
        state = "inconclusive"
        words = f"{metric.name} harm up to {harm}, margin {shown}: not yet shown within it"
    return GuardrailCheck(metric.name, row.arm, state, words)


def decide_arm(arm: str, primary: Sequence[_Row], guardrails: Sequence[GuardrailCheck]) -> Decision:
    """The decision rule of the module docstring for one treatment arm."""
    failing = [g for g in guardrails if g.state == "fails"]
    worse = [r for r in primary if r.worse]
    if failing or worse:
        reasons = [f"{r.metric.name} is significantly worse" for r in worse]
        reasons += [g.sentence for g in failing]
        return Decision(arm, "don't ship", "; ".join(reasons))
    better = [r for r in primary if r.better]
    open_guardrails = [g for g in guardrails if g.state == "inconclusive"]
    if primary and len(better) == len(primary) and not open_guardrails:
        names = ", ".join(r.metric.name for r in primary)
        return Decision(arm, "ship", f"{names} significantly better and every guardrail passes")
    reasons = [f"{r.metric.name} is not significant yet" for r in primary if not r.better]
    reasons += [g.sentence for g in open_guardrails]
    if not primary:
        reasons.insert(0, "no primary metric")
    return Decision(arm, "keep running", "; ".join(reasons))


def progress(
    control_mean: float,
    control_variance: float,
    units_per_arm: Sequence[int],
    span_days: float,
    *,
    mde: float | None,
    power: float,
    alpha: float,
) -> Progress:
    """Progress towards the planned units per arm (see the module docstring)."""
    smallest = min(units_per_arm) if units_per_arm else 0
    total = sum(units_per_arm)
    rate = total / span_days if span_days > 0 and total else None
    if mde is None:
        return Progress(None, smallest, None, rate, None, "no plan: set analysis.mde to get one")
    if not (math.isfinite(control_mean) and math.isfinite(control_variance)) or not (
        control_mean != 0 and control_variance > 0
    ):
        return Progress(
            None, smallest, None, rate, None,
            "the plan needs the control's mean and variance on the primary metric",
        )  # fmt: skip
    planned = required_sample_size(
        control_mean, control_variance, mde, alpha=alpha, power=power, relative=True
    )
    share = smallest / planned
    days = None
    if share < 1 and rate:
        days = (planned - smallest) * len(units_per_arm) / rate
    to_go = (
        "reached"
        if share >= 1
        else f"about {_duration(days)} more at {rate:,.0f} units/day"
        if days is not None
        else "no rate yet"
    )
    sentence = (
        f"planned {planned:,} units per arm to detect a {format_percent(mde)} lift with "
        f"{format_percent(power)} power; smallest arm at {smallest:,} "
        f"({format_percent(share)}): {to_go}"
    )
    return Progress(planned, smallest, share, rate, days, sentence)


def _duration(days: float) -> str:
    """Days, hours or minutes, whichever reads best."""
    if days >= 1:
        return f"{days:.1f} days"
    if days * 24 >= 1:
        return f"{days * 24:.1f} hours"
    return f"{max(days * 24 * 60, 1):.0f} minutes"
