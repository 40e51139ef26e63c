"""Paired comparisons of two arms scored on the same rows (offline evaluation).

Offline, every arm answers every dataset row, so the arms' scores are paired by row: the
comparison works on the per-row differences ``d_i = t_i - c_i``, which removes the
between-row variance (an easy row is easy for both arms) that an unpaired test would leave in.

Pure functions of NumPy arrays (no I/O, no pandas); the offline summary
(:mod:`analysis.evaluation`) calls them once per (evaluator, treatment arm).

References
----------
.. [1] Student (1908). "The probable error of a mean". Biometrika 6(1): 1-25.
.. [2] Efron, B. and Tibshirani, R. J. (1993). *An Introduction to the Bootstrap*.
       Chapman & Hall/CRC, chapter 13 (the percentile interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = ["PairedTest", "bootstrap_ci", "mean_interval", "paired_ttest", "win_tie_loss"]

_NAN = float("nan")
_BOOTSTRAP_CELLS = 1 << 20
"""Resampled values drawn per block of the bootstrap: bounds its memory for large datasets."""


@dataclass(frozen=True)
class PairedTest:
    """The paired t-test of ``treatment - control`` (see :func:`paired_ttest`).

    Attributes
    ----------
    n : int
        Number of pairs.
    mean_diff : float
        Mean of the differences ``d_i = t_i - c_i`` (NaN without pairs).
    sd_diff : float
        Sample standard deviation of the differences (``ddof=1``; NaN below two pairs).
    se : float
        Standard error of ``mean_diff``: ``sd_diff / sqrt(n)``.
    statistic : float
        ``mean_diff / se`` (NaN when undefined, +-inf when every difference is the same
        non-zero value).
    df : float
        Degrees of freedom ``n - 1`` (NaN without pairs), as ``scipy.stats.ttest_rel``.
    p_value : float
        Two-sided p-value.
    ci_low, ci_high : float
        Two-sided ``1 - alpha`` confidence interval of the mean difference.
    """

    n: int
    mean_diff: float
    sd_diff: float
    se: float
    statistic: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float


def _pairs(treatment: npt.ArrayLike, control: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = _finite_vector(treatment, "treatment")
    c = _finite_vector(control, "control")
    if t.shape != c.shape:
        raise ValueError(f"paired samples differ in length: {t.size} treatment, {c.size} control")
    return t, c


def _finite_vector(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has values that are not finite numbers")
    return array


def _check_alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


def _one_sample(d: np.ndarray, alpha: float) -> PairedTest:
    """The one-sample t-test of ``mean(d) = 0`` and the t-interval of ``mean(d)``.

    The variance is computed as ``scipy.stats`` does (the mean squared deviation from the
    mean, times ``n / (n - 1)``), so that nearly constant differences give the same statistic.
    """
    n = int(d.size)
    if n == 0:
        return PairedTest(0, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN)
    mean = float(np.mean(d))
    if n == 1:
        return PairedTest(1, mean, _NAN, _NAN, _NAN, 0.0, _NAN, _NAN, _NAN)
    variance = float(np.mean((d - mean) ** 2)) * (n / (n - 1))
    se = math.sqrt(variance / n)
    df = float(n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(np.divide(mean, se))
    p_value = float(2 * special.stdtr(df, -abs(statistic)))
    half = float(special.stdtrit(df, 1 - alpha / 2)) * se
    return PairedTest(
        n=n,
        mean_diff=mean,
        sd_diff=math.sqrt(variance),
        se=se,
        statistic=statistic,
        df=df,
        p_value=p_value,
        ci_low=mean - half,
        ci_high=mean + half,
    )


def paired_ttest(
    treatment: npt.ArrayLike, control: npt.ArrayLike, alpha: float = 0.05
) -> PairedTest:
    r"""Student's paired t-test of ``treatment - control`` with its confidence interval.

    .. math::

        d_i = t_i - c_i, \quad \bar d = \frac{1}{n}\sum_i d_i, \quad
        s_d^2 = \frac{1}{n-1}\sum_i (d_i - \bar d)^2, \quad
        \mathrm{se} = s_d / \sqrt{n}, \quad t = \bar d / \mathrm{se}

    With ``df = n - 1`` the two-sided p-value is ``2 * T_df.sf(|t|)`` and the interval is
    ``mean_diff -+ T_df.ppf(1 - alpha / 2) * se``, where ``T_df`` is Student's t distribution
    [1]_. These are the numbers of ``scipy.stats.ttest_rel(treatment, control)`` and of its
    ``confidence_interval(1 - alpha)``, degenerate cases included: without pairs everything
    is NaN; with one pair only ``mean_diff`` is defined (``df = 0``); when every difference
    is the same value ``v`` the interval is ``[v, v]`` and the statistic is +-inf with
    ``p = 0`` (or NaN, NaN for ``v = 0``).

    Parameters
    ----------
    treatment, control : array_like
        Scores of the same rows, in the same order (finite numbers).
    alpha : float
        One minus the interval's coverage.

    Raises
    ------
    ValueError
        If the samples differ in length, are not one-dimensional or hold non-finite values,
        or if ``alpha`` is outside (0, 1).

    References
    ----------
    .. [1] Student (1908). "The probable error of a mean". Biometrika 6(1): 1-25.
    """
    t, c = _pairs(treatment, control)
    return _one_sample(t - c, _check_alpha(alpha))


def mean_interval(values: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its two-sided t-interval.

    ``mean -+ T_{n-1}.ppf(1 - alpha / 2) * s / sqrt(n)`` with ``s`` the sample standard
    deviation [1]_; the interval is NaN below two values (the mean too without values).

    References
    ----------
    .. [1] Student (1908). "The probable error of a mean". Biometrika 6(1): 1-25.
    """
    test = _one_sample(_finite_vector(values, "values"), _check_alpha(alpha))
    return test.mean_diff, test.ci_low, test.ci_high


def bootstrap_ci(
    diffs: npt.ArrayLike, alpha: float = 0.05, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference [1]_.

    Draws ``resamples`` samples of the ``n`` differences with replacement (a seeded
    ``numpy.random.Generator``, so the same input always gives the same interval) and returns
    the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of their means (NumPy's default linear
    interpolation). The draws are those of one ``rng.integers(0, n, (resamples, n))`` call,
    taken in blocks of rows to bound the memory on large datasets. It makes no normality
    assumption, which matters for the bounded, lumpy scores of judges (1-5 ratings, 0/1
    checks) on small datasets; next to the t-interval it shows how much that assumption moves
    the result. ``(NaN, NaN)`` without differences.

    References
    ----------
    .. [1] Efron, B. and Tibshirani, R. J. (1993). *An Introduction to the Bootstrap*.
           Chapman & Hall/CRC, section 13.3.
    """
    d = _finite_vector(diffs, "diffs")
    alpha = _check_alpha(alpha)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if d.size == 0:
        return _NAN, _NAN
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    block = max(1, _BOOTSTRAP_CELLS // d.size)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        means[start:stop] = d[rng.integers(0, d.size, size=(stop - start, d.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def win_tie_loss(
    treatment: npt.ArrayLike, control: npt.ArrayLike, tol: float = 1e-12
) -> tuple[int, int, int]:
    """``(wins, ties, losses)`` of treatment against control, row by row.

    A win is ``t_i - c_i > tol``, a loss ``t_i - c_i < -tol``, anything else a tie: the counts
    say whether a mean difference comes from many small gains or from a few rows.
    """
    t, c = _pairs(treatment, control)
    d = t - c
    wins = int(np.count_nonzero(d > tol))
    losses = int(np.count_nonzero(d < -tol))
    return wins, int(d.size) - wins - losses, losses
