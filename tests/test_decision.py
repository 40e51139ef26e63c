"""Guardrails with margins (passing with zero events), the ship / don't ship / keep running
decision, and progress towards the planned sample size (issue 11, items 5 and 6)."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.analyze import PAIRWISE_COLUMNS, analyze
from analysis.report import render_report, to_json
from analysis.stats import required_sample_size
from tests.analysis_support import T0, experiment, exposure, frames, outcome

DAY = 86_400_000


def _events(n: int, rates: dict[str, float], errors: dict[str, int], latency: dict[str, float]):
    """`n` units per arm over 4 days: thumbs-up at `rates`, `errors` failing units, latency."""
    exposures, outcomes = [], []
    for arm in rates:
        for i in range(n):
            unit, t = f"{arm}-{i}", T0 + (i * 4 * DAY) // n
            exposures.append(exposure(unit, arm, t))
            outcomes.append(outcome(unit, arm, "thumbs_up", float(i < rates[arm] * n), t + 1))
            outcomes.append(outcome(unit, arm, "error", float(i < errors[arm]), t + 2))
            outcomes.append(outcome(unit, arm, "latency_ms", latency[arm] + i % 7 * 10.0, t + 3))
    return frames(exposures, outcomes)


def _experiment(error_margin: float | None = 0.005, latency_margin: float | None = None, **kw):
    error = {"name": "error", "kind": "proportion", "direction": "decrease", "guardrail": True}
    latency = {"name": "latency_ms", "kind": "mean", "aggregate": "mean",
               "direction": "decrease", "guardrail": True}  # fmt: skip
    if error_margin is not None:
        error["margin"] = error_margin
    if latency_margin is not None:
        latency["margin"] = latency_margin
    return experiment(
        [{"name": "thumbs_up", "kind": "proportion", "primary": True}, error, latency], **kw
    )


def test_zero_errors_pass_a_margin_and_the_arm_ships() -> None:
    data = _events(2000, {"control": 0.2, "v2": 0.3}, {"control": 0, "v2": 0},
                   {"control": 100.0, "v2": 100.0})  # fmt: skip
    result = analyze(_experiment(), *data)
    error = next(g for g in result.guardrails if g.metric == "error")
    assert error.state == "passes"
    # Newcombe's one-sided 97.5% upper bound of 0/2000 - 0/2000 is 0.19%, within 0.5%
    assert error.sentence == (
        "error rate minus control error rate below +0.19 pp (97.5% upper bound), margin "
        "+0.50 pp: passes"
    )
    (decision,) = result.decisions
    assert (decision.arm, decision.decision) == ("v2", "ship")
    summary = result.summary()
    assert "Decision for v2: ship (thumbs_up significantly better and every guardrail " in summary
    body = to_json(result)
    assert body["decisions"] == [{"arm": "v2", "decision": "ship", "reason": decision.reason}]
    assert {g["metric"]: g["state"] for g in body["guardrails"]} == {
        "error": "passes", "latency_ms": "passes"
    }  # fmt: skip
    assert "Decision for v2: ship" in render_report(result)


def test_too_few_units_leave_the_margin_open_and_the_arm_running() -> None:
    data = _events(300, {"control": 0.2, "v2": 0.4}, {"control": 0, "v2": 0},
                   {"control": 100.0, "v2": 100.0})  # fmt: skip
    result = analyze(_experiment(error_margin=0.005), *data)
    error = next(g for g in result.guardrails if g.metric == "error")
    assert error.state == "inconclusive"  # 0/300: upper bound above 1%, margin 0.5%
    (decision,) = result.decisions
    assert decision.decision == "keep running"
    assert "error rate minus control error rate below" in decision.reason


def test_a_harmed_guardrail_stops_the_arm() -> None:
    data = _events(800, {"control": 0.2, "v2": 0.3}, {"control": 0, "v2": 80},
                   {"control": 100.0, "v2": 100.0})  # fmt: skip
    result = analyze(_experiment(error_margin=None), *data)
    error = next(g for g in result.guardrails if g.metric == "error")
    assert error.state == "fails"
    (decision,) = result.decisions
    assert decision.decision == "don't ship"
    assert decision.reason == "error is significantly worse"


def test_a_relative_margin_on_latency() -> None:
    # latency +2.0% in v2 (95% CI 0.49% to 3.5%): within a 10% margin, beyond a 0.2% one, and
    # neither within nor beyond 1%
    data = _events(800, {"control": 0.2, "v2": 0.2}, {"control": 0, "v2": 0},
                   {"control": 100.0, "v2": 102.6})  # fmt: skip
    loose = analyze(_experiment(latency_margin=0.10), *data)
    tight = analyze(_experiment(latency_margin=0.002), *data)
    middle = analyze(_experiment(latency_margin=0.01), *data)
    assert {r.metric: r.state for r in middle.guardrails}["latency_ms"] == "inconclusive"
    state = {r.metric: r.state for r in loose.guardrails}
    assert state["latency_ms"] == "passes"
    assert {r.metric: r.state for r in tight.guardrails}["latency_ms"] == "fails"
    (decision,) = loose.decisions
    assert decision.decision == "keep running"  # thumbs_up shows no change
    assert "thumbs_up is not significant yet" in decision.reason


def test_progress_towards_the_planned_sample_size() -> None:
    data = _events(500, {"control": 0.2, "v2": 0.22}, {"control": 0, "v2": 0},
                   {"control": 100.0, "v2": 100.0})  # fmt: skip
    result = analyze(_experiment(mde=0.1, power=0.8), *data)
    control = result.row("thumbs_up", "control")
    planned = required_sample_size(control.mean, control.variance, 0.1, alpha=0.05, power=0.8)
    progress = result.progress
    assert progress is not None and progress.planned_units_per_arm == planned
    assert progress.share == pytest.approx(500 / planned)
    # 1,000 units in (4 days - one unit's spacing): about 250 a day, both arms
    assert progress.units_per_day == pytest.approx(1000 / (4 - 4 / 500), rel=1e-9)
    assert progress.days_to_go == pytest.approx(
        (planned - 500) * 2 / progress.units_per_day, rel=1e-9
    )
    assert f"Progress: planned {planned:,} units per arm" in result.summary()
    assert to_json(result)["progress"]["planned_units_per_arm"] == planned
    no_plan = analyze(_experiment(), *data)
    assert no_plan.progress.planned_units_per_arm is None
    assert "Progress" not in no_plan.summary()


def test_pairwise_comparisons_between_treatments_on_request() -> None:
    exposures, outcomes = _events(800, {"control": 0.2, "v2": 0.3}, {"control": 0, "v2": 0},
                                  {"control": 100.0, "v2": 100.0})  # fmt: skip
    third = _events(800, {"control": 0.2, "v3": 0.2}, {"control": 0, "v3": 0},
                    {"control": 100.0, "v3": 100.0})  # fmt: skip
    v3 = [frame[frame["arm"] == "v3"] for frame in third]
    exposures, outcomes = pd.concat([exposures, v3[0]]), pd.concat([outcomes, v3[1]])
    arms = (("control", 0.34), ("v2", 0.33), ("v3", 0.33))
    result = analyze(_experiment(arms=arms, pairwise=True), exposures, outcomes)
    pairwise = result.pairwise
    assert list(pairwise.columns) == list(PAIRWISE_COLUMNS)
    thumbs = pairwise[pairwise["metric"] == "thumbs_up"].iloc[0]
    assert (thumbs["arm"], thumbs["baseline"]) == ("v3", "v2")
    assert thumbs["effect"] == pytest.approx(0.2 / 0.3 - 1)  # v3 / v2 - 1
    assert thumbs["significant"] and thumbs["ci_high"] < 0
    body = to_json(result)
    assert len(body["pairwise"]) == 3  # one pair, three metrics
    assert "Treatments against each other" in render_report(result)
    assert analyze(_experiment(arms=arms), exposures, outcomes).pairwise is None
