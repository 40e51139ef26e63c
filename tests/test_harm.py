"""The safe-rollout decision (`analysis.harm`): its sentences and edge cases, and simulations
of its false-stop rate (A/A) and of how fast it stops a planted harm.

The simulations check each experiment 100 times as data arrive (20 units per arm per check),
as the monitor does every `check_every_s`, with `harmful_absolute`: the NumPy form of
`check_harm`, pinned to it here on the simulated statistics themselves. Run with `-s` to see
the figures the README quotes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from analysis.harm import check_harm, harmful_absolute
from analysis.stats import ArmStats

EXPERIMENTS = 2_000
CHECKS = 100
PER_CHECK = 20  # units per arm added between two checks
MIN_UNITS = 200


@dataclass(frozen=True)
class Guardrail:
    """A metric as `check_harm` reads it (`abtest.experiments.Metric` has these fields)."""

    name: str
    kind: str = "proportion"
    direction: str = "decrease"
    estimand: str = "relative"
    margin: float | None = None


ERROR = Guardrail("error", margin=0.01)
LATENCY = Guardrail("latency_ms", kind="mean", margin=0.2)


@dataclass(frozen=True)
class Paths:
    """Cumulative per-arm statistics at every check: arrays of shape (experiments, checks)."""

    n: np.ndarray
    mean_c: np.ndarray
    var_c: np.ndarray
    mean_t: np.ndarray
    var_t: np.ndarray

    def harmful(self, **kw: object) -> np.ndarray:
        return harmful_absolute(
            self.n, self.mean_c, self.var_c, self.n, self.mean_t, self.var_t, **kw
        )

    def arm_stats(self, i: int, j: int) -> tuple[ArmStats, ArmStats]:
        n = int(self.n[j])
        return (
            ArmStats(n, float(self.mean_c[i, j]), float(self.var_c[i, j])),
            ArmStats(n, float(self.mean_t[i, j]), float(self.var_t[i, j])),
        )


def _units(checks: int) -> np.ndarray:
    return PER_CHECK * np.arange(1, checks + 1, dtype=np.float64)


def _cumulative(total: np.ndarray, total_sq: np.ndarray, n: np.ndarray):
    """Mean and sample variance (ddof=1) from running sums, as `ArmStats.from_sums`."""
    s, q = np.cumsum(total, axis=1), np.cumsum(total_sq, axis=1)
    return s / n, np.maximum(q - s * s / n, 0.0) / (n - 1)


def proportion_paths(rng: np.random.Generator, p_c: float, p_t: float, checks: int) -> Paths:
    """Error flags (0/1 per unit), `checks` looks per experiment."""
    n = _units(checks)
    arms = []
    for p in (p_c, p_t):
        events = rng.binomial(PER_CHECK, p, (EXPERIMENTS, checks)).astype(np.float64)
        arms.append(_cumulative(events, events, n))
    return Paths(n, *arms[0], *arms[1])


def gamma_paths(rng: np.random.Generator, checks: int) -> Paths:
    """Latency-like per-unit values: Gamma(shape 2, scale 500 ms), mean 1 s, both arms."""
    n = _units(checks)
    arms = []
    for _ in range(2):
        x = rng.gamma(2.0, 500.0, (EXPERIMENTS, checks, PER_CHECK))
        arms.append(_cumulative(x.sum(axis=2), (x * x).sum(axis=2), n))
    return Paths(n, *arms[0], *arms[1])


@pytest.fixture(scope="module")
def aa_paths() -> dict[str, Paths]:
    rng = np.random.default_rng(20_240_612)
    return {
        "error 2%": proportion_paths(rng, 0.02, 0.02, CHECKS),
        "latency gamma": gamma_paths(rng, CHECKS),
    }


# --- the decision, one check at a time -------------------------------------------------------


def test_planted_error_rate_is_harmful_with_a_readable_reason() -> None:
    control = ArmStats.from_sums(2_000, 40, 40)
    treatment = ArmStats.from_sums(2_000, 120, 120)
    check = check_harm(ERROR, "v2", control, treatment, alpha=0.01, min_units=MIN_UNITS)
    assert check.harmful
    assert check.estimand == "absolute"
    assert check.effect == pytest.approx(0.04)
    assert 0.01 < check.ci_low < 0.04 < check.ci_high
    assert check.margin == 0.01
    assert check.reason.startswith("error rate +4.0 pp (always-valid 99% CI +")
    assert check.reason.endswith("pp) beyond margin +1.0 pp")
    stats = check.statistics()
    assert stats["units_control"] == stats["units_treatment"] == 2_000
    assert stats["harmful"] is True and stats["alpha"] == 0.01


def test_within_the_margin_is_not_harmful() -> None:
    control = ArmStats.from_sums(2_000, 40, 40)
    treatment = ArmStats.from_sums(2_000, 56, 56)  # +0.8 pp, significant but within 1 pp
    check = check_harm(ERROR, "v2", control, treatment, alpha=0.01, min_units=MIN_UNITS)
    assert not check.harmful
    assert "not shown beyond margin +1.0 pp" in check.reason


def test_below_min_units_nothing_is_judged() -> None:
    control = ArmStats.from_sums(150, 3, 3)
    treatment = ArmStats.from_sums(150, 60, 60)
    check = check_harm(ERROR, "v2", control, treatment, alpha=0.01, min_units=MIN_UNITS)
    assert not check.harmful
    assert math.isnan(check.effect)
    assert "fewer than min_units 200" in check.reason


def test_direction_increase_flips_the_harm() -> None:
    thumbs = Guardrail("thumbs_up", direction="increase")
    high = ArmStats.from_sums(2_000, 600, 600)
    low = ArmStats.from_sums(2_000, 400, 400)
    assert check_harm(thumbs, "v2", high, low, alpha=0.01, min_units=MIN_UNITS).harmful
    better = check_harm(thumbs, "v2", low, high, alpha=0.01, min_units=MIN_UNITS)
    assert not better.harmful
    assert better.reason.endswith("not shown beyond 0 (no margin)")
    assert check_harm(thumbs, "v2", high, low, alpha=0.01, min_units=MIN_UNITS).margin == 0.0


def test_relative_margin_on_a_mean_metric() -> None:
    rng = np.random.default_rng(3)
    control = ArmStats.from_values(rng.gamma(2.0, 500.0, 3_000))
    slower = ArmStats.from_values(rng.gamma(2.0, 750.0, 3_000))  # +50%
    a_bit = ArmStats.from_values(rng.gamma(2.0, 550.0, 3_000))  # +10%, margin 20%
    check = check_harm(LATENCY, "v2", control, slower, alpha=0.01, min_units=MIN_UNITS)
    assert check.harmful and check.estimand == "relative"
    assert check.reason.endswith("beyond margin +20.0%")
    assert not check_harm(LATENCY, "v2", control, a_bit, alpha=0.01, min_units=MIN_UNITS).harmful


def test_no_variance_and_undefined_lift_are_not_harmful() -> None:
    zeros = ArmStats.from_sums(500, 0, 0)
    check = check_harm(ERROR, "v2", zeros, zeros, alpha=0.01, min_units=MIN_UNITS)
    assert not check.harmful and "no interval" in check.reason
    some = ArmStats.from_sums(500, 50, 500)
    lift = check_harm(LATENCY, "v2", zeros, some, alpha=0.01, min_units=MIN_UNITS)
    assert not lift.harmful and "relative lift is undefined" in lift.reason


def test_ratio_metrics_are_refused() -> None:
    ratio = Guardrail("per_response", kind="ratio")
    arm = ArmStats.from_sums(500, 50, 50)
    with pytest.raises(ValueError, match="ratio metric"):
        check_harm(ratio, "v2", arm, arm, alpha=0.01, min_units=MIN_UNITS)


def test_vectorised_form_agrees_with_check_harm(aa_paths: dict[str, Paths]) -> None:
    """Pins `harmful_absolute` to `check_harm` on simulated checks near the boundary (A/A,
    planted harm) and far from it; the relative metric without margin included (Fieller's
    test of "no lift" is Welch's test of "no difference")."""
    rng = np.random.default_rng(5)
    planted = proportion_paths(rng, 0.02, 0.05, 40)
    cases = [
        (aa_paths["error 2%"], Guardrail("error"), 0.05),
        (aa_paths["error 2%"], ERROR, 0.05),
        (aa_paths["latency gamma"], Guardrail("latency_ms", kind="mean"), 0.05),
        (
            aa_paths["latency gamma"],
            Guardrail("latency_ms", kind="mean", direction="increase"),
            0.2,
        ),
        (planted, ERROR, 0.01),
        (planted, Guardrail("error"), 0.01),
    ]
    compared = disagreements = 0
    for paths, metric, alpha in cases:
        fast = paths.harmful(
            direction=metric.direction, margin=metric.margin, alpha=alpha, min_units=MIN_UNITS
        )
        rows = rng.choice(EXPERIMENTS, 60, replace=False)
        for i in rows:
            for j in range(fast.shape[1]):
                control, treatment = paths.arm_stats(i, j)
                slow = check_harm(
                    metric, "v2", control, treatment, alpha=alpha, min_units=MIN_UNITS
                )
                compared += 1
                disagreements += slow.harmful != bool(fast[i, j])
    assert compared > 20_000
    assert disagreements == 0


# --- simulations -----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_aa_false_stop_rate_stays_below_alpha(aa_paths: dict[str, Paths], alpha: float) -> None:
    """Two identical arms, checked 100 times each (200 to 2,000 units per arm): the share of
    experiments where the treatment is ever stopped must not exceed alpha."""
    print()
    for name, paths in aa_paths.items():
        ever = paths.harmful(direction="decrease", margin=None, alpha=alpha, min_units=MIN_UNITS)
        share = float(ever.any(axis=1).mean())
        print(
            f"A/A {name}: {EXPERIMENTS:,} experiments x {CHECKS} checks, no margin, "
            f"alpha {alpha}: ever stopped in {share:.2%}"
        )
        assert share <= alpha
    with_margin = aa_paths["error 2%"].harmful(
        direction="decrease", margin=0.01, alpha=alpha, min_units=MIN_UNITS
    )
    print(
        f"A/A error 2%, margin 1 pp, alpha {alpha}: ever stopped in {with_margin.any(1).mean():.2%}"
    )
    assert not with_margin.any()


def test_planted_harm_is_stopped_and_how_soon() -> None:
    """Error rate 2% in control, 6% in the treatment, margin 1 pp, alpha 0.01, min_units 200,
    checked every 20 units per arm up to 6,000 units per arm."""
    checks = 300
    paths = proportion_paths(np.random.default_rng(7), 0.02, 0.06, checks)
    harmful = paths.harmful(direction="decrease", margin=0.01, alpha=0.01, min_units=MIN_UNITS)
    stopped = harmful.any(axis=1)
    units_at_stop = paths.n[np.argmax(harmful[stopped], axis=1)]
    median = float(np.median(units_at_stop))
    p10, p90 = np.percentile(units_at_stop, [10, 90])
    print(
        f"\nplanted harm (error 2% -> 6%, margin 1 pp, alpha 0.01): stopped in "
        f"{stopped.mean():.2%} of {EXPERIMENTS:,} experiments; units per arm at the stop: "
        f"median {median:,.0f} (10th percentile {p10:,.0f}, 90th {p90:,.0f})"
    )
    assert stopped.mean() >= 0.99
    assert MIN_UNITS <= median <= 2_000
