"""Tests for analysis.capping.cap_values (GrowthBook-style capping / winsorization)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.capping import cap_values


def test_absolute_cap_sets_values_above_it_to_it() -> None:
    control = np.array([0.5, 1.0, 3.0, 10.0])
    treatment = [2.0, 7.5, -4.0]
    (c, t), cap = cap_values([control, treatment], absolute=2.5)
    assert cap == 2.5
    np.testing.assert_array_equal(c, [0.5, 1.0, 2.5, 2.5])
    np.testing.assert_array_equal(t, [2.0, 2.5, -4.0])  # negative values are never changed
    np.testing.assert_array_equal(control, [0.5, 1.0, 3.0, 10.0])  # input not modified
    assert c.dtype == np.float64 and t.dtype == np.float64


def test_percentile_cap_is_taken_over_all_arms_pooled() -> None:
    rng = np.random.default_rng(1)
    control = rng.lognormal(0.0, 1.0, 300)
    treatment = rng.lognormal(0.5, 1.0, 500)
    (c, t), cap = cap_values([control, treatment], percentile=0.95)
    pooled = np.concatenate([control, treatment])
    assert cap == float(np.quantile(pooled, 0.95))
    # not the per-arm percentiles
    assert cap != float(np.quantile(control, 0.95))
    np.testing.assert_array_equal(c, np.minimum(control, cap))
    np.testing.assert_array_equal(t, np.minimum(treatment, cap))
    capped_share = (np.concatenate([c, t]) == cap).mean()
    assert capped_share == pytest.approx(0.05, abs=2 / pooled.size)


def test_percentile_uses_linear_interpolation_like_percentile_cont() -> None:
    (arm,), cap = cap_values([[1.0, 2.0, 3.0, 4.0, 100.0]], percentile=0.9)
    # position 0.9 * (5 - 1) = 3.6 -> 4 + 0.6 * (100 - 4)
    assert cap == pytest.approx(61.6)
    np.testing.assert_allclose(arm, [1.0, 2.0, 3.0, 4.0, 61.6])


def test_percentile_one_is_the_maximum_and_changes_nothing() -> None:
    values = [np.array([3.0, 1.0]), np.array([7.0, 2.0, 5.0])]
    capped, cap = cap_values(values, percentile=1.0)
    assert cap == 7.0
    for got, want in zip(capped, values, strict=True):
        np.testing.assert_array_equal(got, want)


def test_arm_below_the_pooled_cap_is_untouched() -> None:
    low = np.linspace(0.0, 1.0, 50)
    high = np.linspace(10.0, 20.0, 50)
    (lo, hi), cap = cap_values([low, high], percentile=0.9)
    np.testing.assert_array_equal(lo, low)
    assert hi.max() == cap < 20.0


def test_empty_arms() -> None:
    capped, cap = cap_values([np.array([]), np.array([])], percentile=0.99)
    assert math.isnan(cap) and all(x.size == 0 for x in capped)
    capped, cap = cap_values([], percentile=0.5)
    assert capped == [] and math.isnan(cap)
    (a, b), cap = cap_values([[], [1.0, 9.0]], percentile=0.5)
    assert cap == 5.0 and a.size == 0 and b.tolist() == [1.0, 5.0]
    (a,), cap = cap_values([[]], absolute=1.0)
    assert cap == 1.0 and a.size == 0


def test_heavy_tailed_metric_capped_at_p99_has_far_smaller_variance() -> None:
    rng = np.random.default_rng(20240622)
    base = rng.lognormal(math.log(0.002), 1.25, (2, 1000))
    cost = np.where(rng.random((2, 1000)) < 0.05, 50.0 * base, base)
    (c, t), cap = cap_values([cost[0], cost[1]], percentile=0.99)
    assert (np.concatenate([c, t]) == cap).sum() == pytest.approx(20, abs=1)
    assert c.var(ddof=1) < 0.5 * cost[0].var(ddof=1)
    assert t.var(ddof=1) < 0.5 * cost[1].var(ddof=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of absolute and percentile"),
        ({"absolute": 1.0, "percentile": 0.99}, "exactly one of absolute and percentile"),
        ({"percentile": 0.0}, "percentile"),
        ({"percentile": -0.1}, "percentile"),
        ({"percentile": 1.01}, "percentile"),
        ({"percentile": 99}, "percentile"),
        ({"percentile": math.nan}, "percentile"),
        ({"percentile": True}, "percentile"),
        ({"percentile": "0.9"}, "percentile"),
        ({"absolute": 0.0}, "absolute"),
        ({"absolute": -2.0}, "absolute"),
        ({"absolute": math.nan}, "absolute"),
        ({"absolute": math.inf}, "absolute"),
        ({"absolute": None, "percentile": None}, "exactly one"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cap_values([np.array([1.0, 2.0])], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match=r"values_by_arm\[1\]"):
        cap_values([[1.0], [2.0, bad]], percentile=0.5)
