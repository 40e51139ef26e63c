"""Capping (winsorization) of per-unit values before a mean metric is compared.

A heavy-tailed per-unit metric (cost, revenue, tokens) is dominated by a few extreme units: they
inflate the variance, widen every interval and make the sampling distribution of the mean so
skewed that normal-theory tests lose their nominal level. Capping replaces every value above a
threshold by the threshold, trading a small, arm-symmetric bias for a large variance reduction.
The module is pure (NumPy only) and does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["cap_values"]


def _as_unit_values(values: npt.ArrayLike, index: int) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError(f"values_by_arm[{index}] must contain only finite values")
    return x


def cap_values(
    values_by_arm: Sequence[npt.ArrayLike],
    *,
    absolute: float | None = None,
    percentile: float | None = None,
) -> tuple[list[np.ndarray], float]:
    """Cap the per-unit values of every arm at one common upper threshold.

    Parameters
    ----------
    values_by_arm : sequence of array_like
        One array of per-unit values (one number per randomisation unit, already aggregated
        over the unit's events) for each arm. Arrays may be empty; they are not modified.
    absolute : float, optional
        Fixed cap: every value above it is set to it. Must be finite and ``> 0``.
    percentile : float, optional
        Percentile cap in ``(0, 1]``: the cap is the ``percentile`` quantile of all arms'
        values pooled together (``0.99`` for the 99th percentile). ``1`` gives the maximum,
        so nothing changes.

    Returns
    -------
    capped : list of numpy.ndarray
        New float64 arrays ``minimum(values, cap)``, one per arm, in the input order.
    cap : float
        The cap that was applied; NaN when ``percentile`` is given and there are no values
        at all (the arrays are then returned unchanged).

    Raises
    ------
    ValueError
        If not exactly one of ``absolute`` and ``percentile`` is given, ``absolute`` is not a
        finite number ``> 0`` (e.g. 0, negative or NaN), ``percentile`` is not in ``(0, 1]``,
        or an arm contains NaN or infinite values.

    Notes
    -----
    Only the upper tail is capped and values at or below the cap are kept exactly, so
    negative values are never changed. The percentile is computed on the pooled values of
    all arms with linear interpolation between order statistics (``numpy.quantile``'s default,
    the same definition as SQL ``PERCENTILE_CONT``); pooling makes the threshold the same for
    every arm and independent of the assignment, so under "no effect" the arms stay
    exchangeable and the comparison of capped means keeps its level. The estimand changes,
    though: a capped comparison measures the effect on the capped metric, which understates
    effects concentrated in the capped tail. Choose the cap before looking at the results.

    References
    ----------
    GrowthBook documentation, "Metrics", section "Capping (Winsorization)"
    (https://docs.growthbook.io/app/metrics): absolute capping ``LEAST(value, cap)`` and
    percentile capping at a percentile of the per-unit values computed across all variations
    of the experiment (GrowthBook's optional "ignore zeros" variant, which drops zeros before
    taking the percentile, is not implemented). Statsig and ABsmartly likewise compute the
    winsorization threshold over all variants combined.
    """
    if (absolute is None) == (percentile is None):
        raise ValueError(
            "exactly one of absolute and percentile must be given, got "
            f"absolute={absolute!r}, percentile={percentile!r}"
        )
    arms = [_as_unit_values(v, i) for i, v in enumerate(values_by_arm)]
    if absolute is not None:
        if not (
            isinstance(absolute, int | float | np.number)
            and not isinstance(absolute, bool)
            and math.isfinite(float(absolute))
            and float(absolute) > 0.0
        ):
            raise ValueError(f"absolute must be a finite number > 0, got {absolute!r}")
        cap = float(absolute)
    else:
        if not (
            isinstance(percentile, int | float | np.number)
            and not isinstance(percentile, bool)
            and 0.0 < float(percentile) <= 1.0
        ):
            raise ValueError(f"percentile must be a number in (0, 1], got {percentile!r}")
        pooled = np.concatenate(arms) if arms else np.empty(0)
        if pooled.size == 0:
            return [x.copy() for x in arms], float("nan")
        cap = float(np.quantile(pooled, float(percentile)))
    return [np.minimum(x, cap) for x in arms], cap
