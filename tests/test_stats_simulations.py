"""Monte-Carlo checks that analysis.stats has the error rates it claims.

Every simulation uses a fixed seed. Data are drawn with vectorised NumPy and reduced to per-arm
sufficient statistics (count, sum, sum of squares); for normal data the sufficient statistics
are drawn directly from their exact distributions (sample mean ~ Normal, scaled sample variance
~ chi-square, independent). Acceptance bands are at least ~3 binomial standard errors wide.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.stats import (
    ArmStats,
    RatioStats,
    compare,
    compare_ratio,
    required_sample_size,
)

ALPHA = 0.05


def _arms_from_raw(values: np.ndarray) -> list[ArmStats]:
    """One ArmStats per row of a (experiments, units) array, built from sums."""
    n = values.shape[1]
    totals = values.sum(axis=1)
    totals_sq = np.square(values).sum(axis=1)
    return [ArmStats.from_sums(n, t, s) for t, s in zip(totals, totals_sq, strict=True)]


def _normal_arms(
    rng: np.random.Generator, experiments: int, n: int, mean: float, variance: float
) -> list[ArmStats]:
    """Exact sampling distribution of (mean, s^2) for n i.i.d. Normal(mean, variance) units."""
    means = rng.normal(mean, math.sqrt(variance / n), experiments)
    variances = variance * rng.chisquare(n - 1, experiments) / (n - 1)
    return [ArmStats(n, float(m), float(v)) for m, v in zip(means, variances, strict=True)]


def _rate(flags: list[bool] | np.ndarray) -> float:
    return float(np.mean(flags))


def test_aa_false_positive_rate_skewed_metric() -> None:
    rng = np.random.default_rng(20240601)
    experiments, n = 4000, 500
    control = _arms_from_raw(rng.exponential(2.0, (experiments, n)))
    treatment = _arms_from_raw(rng.exponential(2.0, (experiments, n)))
    results = [compare(a, b, alpha=ALPHA) for a, b in zip(control, treatment, strict=True)]
    assert all(r.status == "ok" for r in results)
    fpr = _rate([r.p_value < ALPHA for r in results])
    lift_fpr = _rate([r.lift_p_value < ALPHA for r in results])
    assert 0.03 <= fpr <= 0.07, fpr
    assert 0.03 <= lift_fpr <= 0.07, lift_fpr


def test_aa_false_positive_rate_ratio_metric() -> None:
    rng = np.random.default_rng(20240602)
    experiments, n = 2000, 400

    def arm() -> list[RatioStats]:
        sessions = rng.poisson(3.0, (experiments, n)) + 1
        clicks = rng.binomial(sessions, rng.beta(2.0, 5.0, (experiments, n))).astype(float)
        sessions = sessions.astype(float)
        return [
            RatioStats.from_sums(
                n, c.sum(), s.sum(), np.square(c).sum(), np.square(s).sum(), (c * s).sum()
            )
            for c, s in zip(clicks, sessions, strict=True)
        ]

    control, treatment = arm(), arm()
    results = [compare_ratio(a, b, alpha=ALPHA) for a, b in zip(control, treatment, strict=True)]
    fpr = _rate([r.p_value < ALPHA for r in results])
    assert 0.03 <= fpr <= 0.07, fpr


def test_sequential_peeking_keeps_false_positive_rate() -> None:
    rng = np.random.default_rng(20240603)
    experiments, looks, per_look = 2000, 20, 100

    def cumulative_sums() -> tuple[np.ndarray, np.ndarray]:
        batches = rng.exponential(1.0, (experiments, looks, per_look))
        return batches.sum(axis=2).cumsum(axis=1), np.square(batches).sum(axis=2).cumsum(axis=1)

    sum_a, sq_a = cumulative_sums()
    sum_b, sq_b = cumulative_sums()
    naive = np.zeros(experiments, dtype=bool)
    seq = np.zeros(experiments, dtype=bool)
    seq_lift = np.zeros(experiments, dtype=bool)
    for e in range(experiments):
        for k in range(looks):
            n = (k + 1) * per_look
            a = ArmStats.from_sums(n, sum_a[e, k], sq_a[e, k])
            b = ArmStats.from_sums(n, sum_b[e, k], sq_b[e, k])
            naive[e] |= compare(a, b, alpha=ALPHA).p_value < ALPHA
            s = compare(a, b, alpha=ALPHA, sequential=True, tuning_n=5000)
            seq[e] |= s.p_value < ALPHA
            seq_lift[e] |= s.lift_p_value < ALPHA
    # Peeking 20 times at a fixed-horizon test inflates the error rate well past alpha...
    assert _rate(naive) > 0.1, _rate(naive)
    # ...while the confidence sequence holds it at or below alpha across all looks.
    assert _rate(seq) <= ALPHA, _rate(seq)
    assert _rate(seq_lift) <= ALPHA, _rate(seq_lift)


@pytest.mark.parametrize(
    ("mean", "variance", "mde", "relative"),
    [(10.0, 25.0, 0.05, True), (0.0, 4.0, 0.25, False)],
)
def test_power_matches_required_sample_size(
    mean: float, variance: float, mde: float, relative: bool
) -> None:
    n = required_sample_size(mean, variance, mde, alpha=ALPHA, power=0.8, relative=relative)
    effect = mde * mean if relative else mde
    rng = np.random.default_rng(20240604)
    experiments = 4000
    control = _normal_arms(rng, experiments, n, mean, variance)
    treatment = _normal_arms(rng, experiments, n, mean + effect, variance)
    results = [compare(a, b, alpha=ALPHA) for a, b in zip(control, treatment, strict=True)]
    power = _rate([r.p_value < ALPHA and r.diff > 0 for r in results])
    assert 0.75 <= power <= 0.85, (n, power)


def test_relative_lift_interval_coverage() -> None:
    rng = np.random.default_rng(20240605)
    experiments, n = 4000, 500
    mean_a, mean_b = 2.0, 2.2
    true_lift = mean_b / mean_a - 1
    control = _arms_from_raw(rng.exponential(mean_a, (experiments, n)))
    treatment = _arms_from_raw(rng.exponential(mean_b, (experiments, n)))
    results = [compare(a, b, alpha=ALPHA) for a, b in zip(control, treatment, strict=True)]
    lift_cover = _rate([r.lift_ci_low <= true_lift <= r.lift_ci_high for r in results])
    diff_cover = _rate([r.ci_low <= mean_b - mean_a <= r.ci_high for r in results])
    assert 0.935 <= lift_cover <= 0.965, lift_cover
    assert 0.935 <= diff_cover <= 0.965, diff_cover
