"""The verdict holds its level: A/A false-positive rates of the default verdict (relative lift,
fixed horizon, alpha 0.05) in [3%, 7%] over 2,000 seeded simulations per case (issue 11,
item 4). Unlike `test_lift_level.py`, which tests the lift interval alone, this goes through
`analysis.verdict.decide`, the analysis path: a lift that cannot be read (no event in control)
is judged on the absolute difference there, as the report does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.stats import ArmStats
from analysis.verdict import decide

SIMULATIONS = 2000


def _arms(values: np.ndarray) -> list[ArmStats]:
    n = values.shape[1]
    means, variances = values.mean(axis=1), values.var(axis=1, ddof=1)
    return [ArmStats(n, float(m), float(v)) for m, v in zip(means, variances, strict=True)]


def _rate(draw, units: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    control = _arms(draw(rng, (SIMULATIONS, units)))
    treatment = _arms(draw(rng, (SIMULATIONS, units)))
    pairs = [(a, b, "relative", True) for a, b in zip(control, treatment, strict=True)]
    verdicts = decide(pairs, alpha=0.05, method="fixed", correction="none", tuning_n=5000)
    return float(np.mean([v.significant for v in verdicts]))


def _cost_usd(rng, shape):
    """The demo's cost per unit: log-normal, 5% of units 50 times more expensive."""
    base = rng.lognormal(math.log(0.002), 1.25, shape)
    return np.where(rng.random(shape) < 0.05, 50.0 * base, base)


CASES = {
    # the three cases the delta method on t/c - 1 failed (7.3% to 11.5%)
    "log-normal, 50 units per arm": (lambda rng, s: rng.lognormal(0.0, 1.5, s), 50),
    "proportion 1%, 300 units per arm": (lambda rng, s: (rng.random(s) < 0.01) * 1.0, 300),
    "cost_usd (heavy tail), 1,000 units per arm": (_cost_usd, 1000),
    # the demo's other metrics, at the demo's size (about 670 units per arm)
    "thumbs_up (proportion 0.7)": (lambda rng, s: (rng.random(s) < 0.7) * 1.0, 670),
    "latency_ms (gamma)": (lambda rng, s: rng.gamma(4.0, 300.0, s), 670),
    "cost_usd at the demo's size": (_cost_usd, 670),
    # the demo's error metric: the local model answers every run, so in the demo it is 0 for
    # every unit (a constant, never significant); these are the rates a real deployment sees
    "error (proportion 0.5%) at the demo's size": (
        lambda rng, s: (rng.random(s) < 0.005) * 1.0,
        670,
    ),
    "error (proportion 2%) at the demo's size": (lambda rng, s: (rng.random(s) < 0.02) * 1.0, 670),
}


@pytest.mark.parametrize("case", CASES)
def test_aa_false_positive_rate_of_the_default_verdict(case: str) -> None:
    draw, units = CASES[case]
    rate = _rate(draw, units, seed=sum(map(ord, case)))
    print(f"{case}: {rate:.2%}")
    assert 0.03 <= rate <= 0.07, rate


def test_a_rarer_event_than_the_test_can_see_is_conservative_not_inflated() -> None:
    """0.2% with 670 units per arm is 1.3 expected events per arm: the discrete test cannot
    reach its level, and must err on the side of fewer false positives (observed 2.4%)."""
    rate = _rate(lambda rng, s: (rng.random(s) < 0.002) * 1.0, 670, seed=7)
    assert 0.0 < rate <= 0.05, rate
