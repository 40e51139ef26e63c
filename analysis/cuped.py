"""CUPED: variance reduction for mean metrics with a pre-exposure covariate.

Each unit contributes an outcome ``y`` measured during the experiment and a covariate ``x``
measured before the unit was exposed (typically the same metric over a pre-period). Because
randomisation makes ``E[x]`` equal in every arm, ``y - theta * x`` has the same expected
difference between arms as ``y`` for any fixed ``theta``, and for ``theta = cov(x, y) / var(x)``
its variance is smaller by the factor ``1 - corr(x, y)**2``. The functions here compute that
adjustment from per-arm sufficient statistics (the first and second moment sums of ``y`` and
``x`` and the cross-product sum), so, like :mod:`analysis.stats`, they work on aggregates and
never need unit-level data.

The estimates, intervals and p-values are those of GrowthBook's ``gbstats`` (0.8.0)
``RegressionAdjustedStatistic`` fed to its frequentist ``TwoSidedTTest`` /
``SequentialTwoSidedTTest``, returned as an :class:`analysis.stats.Comparison`.

Conventions are those of :mod:`analysis.stats`: control is arm A, differences are ``B - A``,
variances use ``n - 1`` denominators, degenerate data give NaN fields and a status instead of
an exception, and invalid arguments raise ``ValueError``. The module does no I/O and depends
only on NumPy, SciPy and :mod:`analysis.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis.stats import (
    Comparison,
    _cancellation_floor,
    _check_finite,
    _compare_moments,
    _empty_comparison,
    _validate_count,
    _validate_test_args,
)

__all__ = [
    "AdjustedArm",
    "CovariateStats",
    "adjust",
    "compare_adjusted",
    "pooled_theta",
]

_NAN = float("nan")


@dataclass(frozen=True)
class CovariateStats:
    """Per-arm sufficient statistics of an outcome y and its pre-exposure covariate x.

    Parameters
    ----------
    n : int
        Number of units in the arm.
    sum_y, sum_y2 : float
        ``sum(y)`` and ``sum(y**2)`` over units.
    sum_x, sum_x2 : float
        ``sum(x)`` and ``sum(x**2)`` over units.
    sum_xy : float
        ``sum(x * y)`` over units.

    Raises
    ------
    ValueError
        If ``n`` is not a non-negative integer or a sum is not finite.

    Notes
    -----
    These are the inputs of gbstats' ``RegressionAdjustedStatistic``: ``post_statistic`` is a
    ``SampleMeanStatistic(n, sum_y, sum_y2)``, ``pre_statistic`` a
    ``SampleMeanStatistic(n, sum_x, sum_x2)`` and ``post_pre_sum_of_products`` is ``sum_xy``.
    For 0/1 metrics pass ``sum_y2 = sum_y`` (and ``sum_x2 = sum_x``): the variances here always
    use ``n - 1`` denominators, as ``SampleMeanStatistic`` does, whereas gbstats'
    ``ProportionStatistic`` uses ``p (1 - p)`` (an ``n`` denominator).

    Moments are computed with one-pass formulas from the sums, which lose precision when a
    variance is tiny relative to the squared mean (see :meth:`var_y`); centre the data first
    (subtract any fixed constants from ``y`` and ``x``) if that matters. Consistency of the
    sums (e.g. ``sum_y2 >= sum_y**2 / n``) is not checked.
    """

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    def __post_init__(self) -> None:
        _validate_count(self.n, "n")
        for name in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
            _check_finite(name, float(getattr(self, name)))

    @classmethod
    def from_values(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> CovariateStats:
        """Build from per-unit outcomes and covariates of equal length.

        Parameters
        ----------
        y : array_like
            One-dimensional per-unit outcomes (in-experiment values).
        x : array_like
            One-dimensional per-unit pre-exposure covariates, aligned with ``y``.

        Returns
        -------
        CovariateStats

        Raises
        ------
        ValueError
            If ``y`` and ``x`` differ in length, or contain NaN or infinite values.
        """
        yv = np.asarray(y, dtype=np.float64).ravel()
        xv = np.asarray(x, dtype=np.float64).ravel()
        if yv.shape != xv.shape:
            raise ValueError(f"y and x must have the same length, got {yv.size} and {xv.size}")
        return cls(
            int(yv.size),
            float(yv.sum()),
            float(np.dot(yv, yv)),
            float(xv.sum()),
            float(np.dot(xv, xv)),
            float(np.dot(xv, yv)),
        )

    def merge(self, other: CovariateStats) -> CovariateStats:
        """Exactly combine the statistics of two disjoint sets of units.

        Parameters
        ----------
        other : CovariateStats
            Statistics of units not already counted in ``self``.

        Returns
        -------
        CovariateStats
            The field-wise sums, i.e. what :meth:`from_values` gives on the concatenated
            values (up to floating-point rounding of the sums).
        """
        return CovariateStats(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_y2 + other.sum_y2,
            self.sum_x + other.sum_x,
            self.sum_x2 + other.sum_x2,
            self.sum_xy + other.sum_xy,
        )

    # Centred second moments (sums of squared deviations), floored at rounding noise.
    def _m2_y(self) -> float:
        n = self.n
        return _cancellation_floor(self.sum_y2 - self.sum_y * self.sum_y / n, abs(self.sum_y2), n)

    def _m2_x(self) -> float:
        n = self.n
        return _cancellation_floor(self.sum_x2 - self.sum_x * self.sum_x / n, abs(self.sum_x2), n)

    def _c_xy(self) -> float:
        # A zero variance forces a zero covariance (Cauchy-Schwarz); don't report its noise.
        if self._m2_x() == 0.0 or self._m2_y() == 0.0:
            return 0.0
        return self.sum_xy - self.sum_x * self.sum_y / self.n

    @property
    def mean_y(self) -> float:
        """Mean outcome ``sum_y / n``; NaN when ``n == 0``."""
        return self.sum_y / self.n if self.n >= 1 else _NAN

    @property
    def mean_x(self) -> float:
        """Mean covariate ``sum_x / n``; NaN when ``n == 0``."""
        return self.sum_x / self.n if self.n >= 1 else _NAN

    @property
    def var_y(self) -> float:
        """Sample variance of y, ``(sum_y2 - sum_y**2 / n) / (n - 1)``; NaN when ``n < 2``.

        A numerator below the rounding error of ``sum_y2`` (``n * eps * |sum_y2|``) is set to
        exactly 0, as in :meth:`analysis.stats.ArmStats.from_sums`, whose ``variance`` this
        equals for the same sums.
        """
        return self._m2_y() / (self.n - 1) if self.n >= 2 else _NAN

    @property
    def var_x(self) -> float:
        """Sample variance of x, ``(sum_x2 - sum_x**2 / n) / (n - 1)``; NaN when ``n < 2``.

        Floored at rounding noise like :attr:`var_y`.
        """
        return self._m2_x() / (self.n - 1) if self.n >= 2 else _NAN

    @property
    def cov_xy(self) -> float:
        """Sample covariance ``(sum_xy - sum_x * sum_y / n) / (n - 1)``; NaN when ``n < 2``.

        Exactly 0 when :attr:`var_x` or :attr:`var_y` is 0.
        """
        return self._c_xy() / (self.n - 1) if self.n >= 2 else _NAN


def pooled_theta(arms: Sequence[CovariateStats]) -> float:
    """CUPED coefficient ``theta = cov(x, y) / var(x)`` over all arms pooled.

    Parameters
    ----------
    arms : sequence of CovariateStats
        The arms whose units are pooled, usually every arm of the experiment.

    Returns
    -------
    float
        The least-squares slope of y on x over the pooled units; 0 when the pooled variance of
        ``x`` or of ``y`` is 0 (that includes fewer than 2 pooled units and an empty
        sequence).

    Notes
    -----
    With ``S`` the field-wise sums over all arms and ``N = sum(n)``::

        theta = (S_xy - S_x S_y / N) / (S_x2 - S_x**2 / N)

    i.e. the moments are taken around the pooled means, not within arms. For two arms this is
    gbstats' ``compute_theta`` (which builds the joint statistics with
    ``create_joint_statistic`` and returns 0 when either joint variance is 0). For ``k`` arms
    all of them are pooled, so every treatment is compared with control using the same
    ``theta``; pass the result as ``theta`` to :func:`compare_adjusted` for that. Any ``theta``
    that does not depend on the treatment assignment keeps the adjusted difference unbiased;
    the pooled slope is estimated from the data and so adds an ``O(1/N)`` bias, which is
    ignored, as in gbstats and in Deng et al. (2013).

    References
    ----------
    Deng, Xu, Kohavi & Walker (2013), "Improving the sensitivity of online controlled
    experiments by utilizing pre-experiment data", WSDM: the control-variates estimator and
    its variance-minimising ``theta = cov(Y, X) / var(X)``; gbstats ``compute_theta``.
    """
    total = CovariateStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for arm in arms:
        total = total.merge(arm)
    if total.n < 2:
        return 0.0
    m2_x = total._m2_x()
    if m2_x == 0.0 or total._m2_y() == 0.0:
        return 0.0
    return total._c_xy() / m2_x


@dataclass(frozen=True)
class AdjustedArm:
    """One arm's CUPED-adjusted mean and per-unit variance (see :func:`adjust`).

    Attributes
    ----------
    n : int
        Number of units.
    mean : float
        Adjusted mean ``mean_y - theta * mean_x``; NaN when ``n == 0``.
    unadjusted_mean : float
        ``mean_y``; NaN when ``n == 0``.
    variance : float
        Per-unit variance of ``y - theta * x``; NaN when ``n < 2``.
    unadjusted_variance : float
        Per-unit variance of ``y``; NaN when ``n < 2``.
    """

    n: int
    mean: float
    unadjusted_mean: float
    variance: float
    unadjusted_variance: float


def adjust(arm: CovariateStats, theta: float) -> AdjustedArm:
    """Apply the CUPED adjustment ``y - theta * x`` to one arm.

    Parameters
    ----------
    arm : CovariateStats
        The arm's sufficient statistics.
    theta : float
        Adjustment coefficient, normally :func:`pooled_theta` of all arms.

    Returns
    -------
    AdjustedArm

    Raises
    ------
    ValueError
        If ``theta`` is not finite.

    Notes
    -----
    ``mean = mean_y - theta * mean_x`` and::

        variance = var_y + theta**2 var_x - 2 theta cov_xy

    which are gbstats' ``RegressionAdjustedStatistic.mean`` and ``.variance``. The variance
    is computed from the centred sums, ``(M2_y + theta**2 M2_x - 2 theta C_xy) / (n - 1)``,
    and a numerator below its rounding error
    (``n * eps * (|sum_y2| + theta**2 |sum_x2| + 2 |theta sum_xy|)``) is set to exactly 0, so
    that an outcome that is an exact linear function of the covariate reports zero residual
    variance instead of ±1e-17.

    References
    ----------
    Deng, Xu, Kohavi & Walker (2013), WSDM: the control-variates estimator
    ``Y - theta X`` and its variance; gbstats ``RegressionAdjustedStatistic``.
    """
    theta = float(theta)
    _check_finite("theta", theta)
    n = arm.n
    if n == 0:
        return AdjustedArm(0, _NAN, _NAN, _NAN, _NAN)
    mean = arm.mean_y - theta * arm.mean_x
    if n == 1:
        return AdjustedArm(1, mean, arm.mean_y, _NAN, _NAN)
    m2_y = arm._m2_y()
    m2 = m2_y + theta * theta * arm._m2_x() - 2.0 * theta * arm._c_xy()
    magnitude = abs(arm.sum_y2) + theta * theta * abs(arm.sum_x2) + 2.0 * abs(theta * arm.sum_xy)
    m2 = _cancellation_floor(m2, magnitude, n)
    return AdjustedArm(n, mean, arm.mean_y, m2 / (n - 1), m2_y / (n - 1))


def compare_adjusted(
    control: CovariateStats,
    treatment: CovariateStats,
    alpha: float = 0.05,
    sequential: bool = False,
    tuning_n: float = 5000,
    theta: float | None = None,
) -> tuple[Comparison, float]:
    """Compare treatment against control after the CUPED adjustment (absolute and relative).

    Parameters
    ----------
    control, treatment : CovariateStats
        Per-arm sufficient statistics of the outcome and the pre-exposure covariate.
    alpha, sequential, tuning_n
        As in :func:`analysis.stats.compare`.
    theta : float, optional
        Adjustment coefficient. Default: :func:`pooled_theta` of the two arms (gbstats'
        choice). Pass ``pooled_theta(all_arms)`` to use one coefficient across a multi-arm
        experiment, or ``0.0`` to switch the adjustment off.

    Returns
    -------
    comparison : Comparison
        The :class:`analysis.stats.Comparison` of the adjusted arms. Never raises on
        degenerate data; the NaN/status rules are those of :class:`Comparison`, with the
        control mean of the lift being the *unadjusted* one (``"ZERO_CONTROL_MEAN"`` when
        ``mean_y`` of control is 0) and ``"ZERO_VARIANCE"`` referring to the adjusted
        variances.
    variance_reduction : float
        ``1 - var(adjusted diff) / var(unadjusted diff)`` with
        ``var(diff) = v_a / n_a + v_b / n_b``: the fraction of the variance of the absolute
        difference removed by the adjustment (about ``corr(x, y)**2``; negative when a forced
        ``theta`` makes things worse). NaN when an arm has fewer than 2 units or the
        unadjusted variance of the difference is 0.

    Raises
    ------
    ValueError
        If ``alpha`` is not in (0, 1), ``tuning_n`` is not a positive finite number or
        ``theta`` is not finite.

    Notes
    -----
    With ``theta`` fixed, each arm is summarised by :func:`adjust`: adjusted mean
    ``a_i = mean_y_i - theta mean_x_i``, per-unit variance ``v_i`` of ``y - theta x`` and
    unadjusted mean ``m_i = mean_y_i``.

    **Absolute difference.** Exactly :func:`analysis.stats.compare` applied to the adjusted
    arms: ``diff = a_b - a_a``, ``se**2 = v_a / n_a + v_b / n_b``, Welch-Satterthwaite df
    computed from the *adjusted* variances (as gbstats' ``TTest.dof`` does for
    regression-adjusted statistics), Student t interval and p-value; the sequential mode and
    ``chance_to_beat_control = Phi(diff / se)`` likewise.

    **Relative lift.** As gbstats ``frequentist_diff`` / ``frequentist_variance`` do for
    regression-adjusted statistics, the adjusted difference is scaled by the *unadjusted*
    control mean, and the delta-method variance of ``m_b / m_a`` is used with each arm's
    adjusted variance in place of its raw variance::

        lift = (a_b - a_a) / m_a
        var(lift) = v_b / (m_a**2 n_b) + v_a m_b**2 / (m_a**4 n_a)

    with the same Welch df as the absolute difference. Under the null (``m_a = m_b``) this is
    the delta-method variance of ``lift``; away from it, it leaves out terms of the order of
    the lift times the covariate's contribution (the exact gradient of ``lift`` with respect
    to ``mean_y_a`` is ``-(m_a + diff) / m_a**2``, not ``-m_b / m_a**2``), an approximation
    kept here for agreement with gbstats.

    With ``theta = 0`` the result equals :func:`analysis.stats.compare` on the plain outcomes
    (to rounding: the lift is computed as ``(m_b - m_a) / m_a`` rather than ``m_b / m_a - 1``).

    Differences from gbstats 0.8.0 ``TwoSidedTTest.compute_result``, which returns an
    uninformative default (estimate 0, interval [0, 0], p-value 1) whenever the adjusted *or*
    the unadjusted control mean is 0, or *either* arm's adjusted variance is 0, for the
    absolute difference as well as the lift: here a zero unadjusted control mean only makes
    the lift NaN (``"ZERO_CONTROL_MEAN"``), a zero adjusted control mean is of no concern, and
    the variance statuses follow :class:`Comparison` (the standard error of the difference
    must be 0). gbstats also replaces the theta stored in the statistics it is given by
    ``compute_theta`` of the two arms, so it cannot use a given ``theta``, and reverts to the
    unadjusted statistics when that theta is 0 (which gives the same numbers).

    Not checked: that ``x`` was measured before exposure (a covariate affected by the
    treatment biases the adjusted difference) and the independence of units.

    References
    ----------
    * Deng, Xu, Kohavi & Walker (2013), "Improving the sensitivity of online controlled
      experiments by utilizing pre-experiment data", WSDM (CUPED).
    * gbstats ``RegressionAdjustedStatistic``, ``compute_theta`` and
      ``frequentist.tests.TwoSidedTTest`` / ``SequentialTwoSidedTTest``
      (https://github.com/growthbook/growthbook/tree/main/packages/stats).
    """
    alpha, tuning_n = _validate_test_args(alpha, tuning_n)
    if theta is None:
        theta = pooled_theta([control, treatment])
    else:
        theta = float(theta)
        _check_finite("theta", theta)
    if control.n == 0 or treatment.n == 0:
        return _empty_comparison("NO_UNITS_IN_ARM"), _NAN
    return _compare_adjusted_arms(
        adjust(control, theta), adjust(treatment, theta), alpha, sequential, tuning_n
    )


def _compare_adjusted_arms(
    a: AdjustedArm, b: AdjustedArm, alpha: float, sequential: bool, tuning_n: float
) -> tuple[Comparison, float]:
    """The comparison of two adjusted arms with ``n >= 1`` each (see compare_adjusted): the
    adjusted means with their adjusted variances, the lift over the unadjusted control mean."""
    var_a = a.variance / a.n if a.n >= 2 else _NAN
    var_b = b.variance / b.n if b.n >= 2 else _NAN
    comparison = _compare_moments(
        a.n, a.mean, var_a, b.n, b.mean, var_b, alpha, sequential, tuning_n,
        lift_means=(a.unadjusted_mean, b.unadjusted_mean),
    )  # fmt: skip
    if a.n < 2 or b.n < 2:
        return comparison, _NAN
    var_unadjusted = a.unadjusted_variance / a.n + b.unadjusted_variance / b.n
    reduction = 1.0 - (var_a + var_b) / var_unadjusted if var_unadjusted > 0.0 else _NAN
    return comparison, reduction
