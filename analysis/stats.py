"""Pure statistics for A/B comparisons, computed from per-arm sufficient statistics.

Every function here works on a handful of numbers per arm (unit count, mean, variance and, for
ratio metrics, the cross-moments), so results can be computed from aggregates produced anywhere
(SQL, streams, merged partial batches) without holding unit-level data. The module does no I/O
and depends only on NumPy and SciPy.

Conventions
-----------
* "Control" is arm A and "treatment" is arm B; differences are ``B - A``, so a positive
  difference means the treatment mean is larger.
* Variances are sample variances (``ddof=1``) of per-unit values.
* When the data cannot support an estimate, :func:`compare` and :func:`compare_ratio` return
  NaN for the affected fields and say why in ``Comparison.status``; they never raise and never
  report a bare zero in place of "unknown". Invalid *arguments* (a negative unit count, an alpha
  outside (0, 1), an unknown method name) raise ``ValueError`` at the public entry point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

__all__ = [
    "ArmStats",
    "Comparison",
    "ComparisonStatus",
    "RatioStats",
    "adjust_p_values",
    "chance_to_beat_control",
    "compare",
    "compare_ratio",
    "required_sample_size",
    "srm_p_value",
]

ComparisonStatus = Literal[
    "ok",
    "NO_UNITS_IN_ARM",
    "TOO_FEW_UNITS",
    "ZERO_VARIANCE",
    "ZERO_CONTROL_MEAN",
    "ZERO_DENOMINATOR",
]
"""Why a :class:`Comparison` has NaN fields (``"ok"`` when none are NaN)."""

_EPS = float(np.finfo(np.float64).eps)
_NAN = float("nan")


def _validate_count(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"{name} must be an integer unit count, got {n!r}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return int(n)


def _validate_open_unit(value: float, name: str) -> float:
    if not (isinstance(value, int | float | np.floating) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def _check_variance(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _cancellation_floor(value: float, magnitude: float, n_terms: int) -> float:
    """Clamp ``value`` to 0 when it is within floating-point noise of ``magnitude``.

    A difference of two accumulated sums whose inputs total ``magnitude`` carries an absolute
    rounding error of up to about ``n_terms * eps * magnitude`` (the naive-summation bound), so
    anything below that is indistinguishable from zero and is reported as exactly zero.
    """
    if value <= n_terms * _EPS * magnitude:
        return 0.0
    return value


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm for a per-unit mean metric.

    Parameters
    ----------
    n : int
        Number of units (independent randomisation units, e.g. users) in the arm.
    mean : float
        Mean of the per-unit values. NaN when ``n == 0``.
    variance : float
        Sample variance (``ddof=1``) of the per-unit values. NaN when ``n < 2``.

    Raises
    ------
    ValueError
        If ``n`` is not a non-negative integer, ``mean`` is not finite while ``n >= 1``, or
        ``variance`` is negative or not finite while ``n >= 2``.

    Notes
    -----
    ``mean`` is ignored when ``n == 0`` and ``variance`` is ignored when ``n < 2``, whatever
    their values; the constructors below store NaN there. Units are assumed independent; that
    is not (and cannot be) checked here.
    """

    n: int
    mean: float
    variance: float

    def __post_init__(self) -> None:
        _validate_count(self.n, "n")
        if self.n >= 1:
            _check_finite("mean", self.mean)
        if self.n >= 2:
            _check_variance("variance", self.variance)

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> ArmStats:
        """Build from the unit count, the sum of values and the sum of squared values.

        Parameters
        ----------
        n : int
            Number of units.
        total : float
            ``sum(x)`` over units.
        total_sq : float
            ``sum(x ** 2)`` over units.

        Returns
        -------
        ArmStats

        Notes
        -----
        ``variance = (total_sq - total**2 / n) / (n - 1)``. This one-pass formula loses
        precision when the variance is tiny relative to the squared mean, so a numerator
        smaller than the rounding error of ``total_sq`` (``n * eps * total_sq``) is set to
        exactly 0; that keeps constant data reporting zero variance rather than ±1e-17.
        Consistency of the sums (e.g. ``total_sq >= total**2 / n``) is not checked beyond that.
        """
        n = _validate_count(n, "n")
        total = float(total)
        total_sq = float(total_sq)
        if n == 0:
            return cls(0, _NAN, _NAN)
        mean = total / n
        if n == 1:
            return cls(1, mean, _NAN)
        m2 = _cancellation_floor(total_sq - total * total / n, abs(total_sq), n)
        return cls(n, mean, m2 / (n - 1))

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> ArmStats:
        """Build from per-unit values (one number per unit).

        Parameters
        ----------
        values : array_like
            One-dimensional per-unit values; NaNs are not removed and will fail validation.

        Returns
        -------
        ArmStats
        """
        x = np.asarray(values, dtype=np.float64).ravel()
        n = int(x.size)
        if n == 0:
            return cls(0, _NAN, _NAN)
        mean = float(x.mean())
        if n == 1:
            return cls(1, mean, _NAN)
        return cls(n, mean, float(x.var(ddof=1)))

    def merge(self, other: ArmStats) -> ArmStats:
        """Exactly combine the statistics of two disjoint sets of units.

        Parameters
        ----------
        other : ArmStats
            Statistics of units not already counted in ``self``.

        Returns
        -------
        ArmStats
            The statistics ``from_values`` would give on the concatenated values.

        Notes
        -----
        With ``M2 = variance * (n - 1)`` and ``delta = mean_b - mean_a``:
        ``n = n_a + n_b``, ``mean = mean_a + delta * n_b / n`` and
        ``M2 = M2_a + M2_b + delta**2 * n_a * n_b / n``.

        References
        ----------
        Chan, Golub & LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
        sample variances", Stanford CS-TR-79-773: the two-subsample updating formula.
        """
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self._m2() + other._m2() + delta * delta * (self.n * other.n / n)
        return ArmStats(n, mean, m2 / (n - 1))

    def _m2(self) -> float:
        return self.variance * (self.n - 1) if self.n >= 2 else 0.0

    @property
    def std_error(self) -> float:
        """Standard error of the mean, ``sqrt(variance / n)``; NaN when ``n < 2``."""
        if self.n < 2:
            return _NAN
        return math.sqrt(self.variance / self.n)


@dataclass(frozen=True)
class RatioStats:
    """Sufficient statistics of one arm for a ratio metric ``sum(num) / sum(den)``.

    Each unit contributes a numerator and a denominator (e.g. clicks and sessions per user);
    the metric is the ratio of the totals, which equals ``mean_num / mean_den``.

    Parameters
    ----------
    n : int
        Number of units.
    mean_num, mean_den : float
        Per-unit means of numerator and denominator (NaN when ``n == 0``).
    var_num, var_den : float
        Per-unit sample variances (``ddof=1``; NaN when ``n < 2``).
    cov : float
        Per-unit sample covariance of numerator and denominator (``ddof=1``; NaN when
        ``n < 2``).

    Raises
    ------
    ValueError
        If ``n`` is negative or not an integer, or a moment that ``n`` makes defined is not
        finite (variances must also be >= 0).

    Notes
    -----
    The Cauchy-Schwarz bound ``cov**2 <= var_num * var_den`` is not checked.
    """

    n: int
    mean_num: float
    mean_den: float
    var_num: float
    var_den: float
    cov: float

    def __post_init__(self) -> None:
        _validate_count(self.n, "n")
        if self.n >= 1:
            _check_finite("mean_num", self.mean_num)
            _check_finite("mean_den", self.mean_den)
        if self.n >= 2:
            _check_variance("var_num", self.var_num)
            _check_variance("var_den", self.var_den)
            _check_finite("cov", self.cov)

    @classmethod
    def from_values(cls, num: npt.ArrayLike, den: npt.ArrayLike) -> RatioStats:
        """Build from per-unit numerators and denominators of equal length.

        Parameters
        ----------
        num, den : array_like
            One-dimensional per-unit numerator and denominator values.

        Returns
        -------
        RatioStats

        Raises
        ------
        ValueError
            If ``num`` and ``den`` differ in length.
        """
        x = np.asarray(num, dtype=np.float64).ravel()
        y = np.asarray(den, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"num and den must have the same length, got {x.size} and {y.size}")
        n = int(x.size)
        if n == 0:
            return cls(0, _NAN, _NAN, _NAN, _NAN, _NAN)
        if n == 1:
            return cls(1, float(x[0]), float(y[0]), _NAN, _NAN, _NAN)
        c = np.cov(x, y, ddof=1)
        return cls(
            n, float(x.mean()), float(y.mean()), float(c[0, 0]), float(c[1, 1]), float(c[0, 1])
        )

    @classmethod
    def from_sums(
        cls,
        n: int,
        sum_num: float,
        sum_den: float,
        sum_num_sq: float,
        sum_den_sq: float,
        sum_num_den: float,
    ) -> RatioStats:
        """Build from the unit count and the first and second (cross-)moment sums.

        Parameters
        ----------
        n : int
            Number of units.
        sum_num, sum_den : float
            ``sum(num)`` and ``sum(den)`` over units.
        sum_num_sq, sum_den_sq, sum_num_den : float
            ``sum(num**2)``, ``sum(den**2)`` and ``sum(num * den)`` over units.

        Returns
        -------
        RatioStats

        Notes
        -----
        ``var = (sum_sq - sum**2 / n) / (n - 1)`` and
        ``cov = (sum_num_den - sum_num * sum_den / n) / (n - 1)``; variance numerators below the
        rounding error of their sum of squares are set to 0, as in :meth:`ArmStats.from_sums`.
        """
        n = _validate_count(n, "n")
        if n == 0:
            return cls(0, _NAN, _NAN, _NAN, _NAN, _NAN)
        mean_num = float(sum_num) / n
        mean_den = float(sum_den) / n
        if n == 1:
            return cls(1, mean_num, mean_den, _NAN, _NAN, _NAN)
        m2_num = _cancellation_floor(
            float(sum_num_sq) - float(sum_num) ** 2 / n, abs(float(sum_num_sq)), n
        )
        m2_den = _cancellation_floor(
            float(sum_den_sq) - float(sum_den) ** 2 / n, abs(float(sum_den_sq)), n
        )
        c_num_den = float(sum_num_den) - float(sum_num) * float(sum_den) / n
        return cls(n, mean_num, mean_den, m2_num / (n - 1), m2_den / (n - 1), c_num_den / (n - 1))

    @property
    def ratio(self) -> float:
        """The metric ``mean_num / mean_den``; NaN when ``n == 0`` or ``mean_den == 0``."""
        if self.n == 0 or self.mean_den == 0.0:
            return _NAN
        return self.mean_num / self.mean_den

    @property
    def ratio_variance(self) -> float:
        """Delta-method variance of the ratio estimator; NaN when undefined.

        Notes
        -----
        With ``m_x = mean_num``, ``m_y = mean_den``::

            var(R) ~= (1/n) * (var_num / m_y**2 - 2 * m_x * cov / m_y**3
                               + m_x**2 * var_den / m_y**4)

        NaN when ``n < 2`` or ``mean_den == 0``. A result within rounding noise of zero (for
        example when every unit has the same ratio) is reported as exactly 0.

        References
        ----------
        Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics: A Practical
        Guide with Novel Ideas", KDD: the delta-method variance of a ratio of two means.
        """
        if self.n < 2 or self.mean_den == 0.0:
            return _NAN
        my = self.mean_den
        mx = self.mean_num
        terms = (
            self.var_num / my**2,
            -2.0 * mx * self.cov / my**3,
            mx * mx * self.var_den / my**4,
        )
        value = math.fsum(terms)
        return _cancellation_floor(value, sum(abs(t) for t in terms), 8) / self.n

    @property
    def std_error(self) -> float:
        """Delta-method standard error of :attr:`ratio`; NaN when undefined."""
        return math.sqrt(self.ratio_variance)


@dataclass(frozen=True)
class Comparison:
    """Result of comparing a treatment arm against control.

    Attributes
    ----------
    diff, ci_low, ci_high, p_value : float
        Absolute difference ``treatment - control``, its two-sided ``1 - alpha`` confidence
        interval and two-sided p-value for "no difference".
    lift, lift_ci_low, lift_ci_high, lift_p_value : float
        Relative lift ``treatment / control - 1``, its interval and p-value for "no lift".
    chance_to_beat_control : float
        ``Phi(diff / se)``: normal-approximation probability that the treatment mean exceeds
        the control mean (read as a posterior probability under a flat prior).
    status : ComparisonStatus
        ``"ok"``, or the first reason some fields are NaN:

        * ``"NO_UNITS_IN_ARM"``: an arm has no units; every field is NaN.
        * ``"TOO_FEW_UNITS"``: an arm has one unit, so its variance is undefined; the point
          estimates ``diff`` and ``lift`` are given, everything else is NaN.
        * ``"ZERO_DENOMINATOR"`` (ratio metrics only): an arm's mean denominator is 0, so its
          ratio is undefined; every field is NaN.
        * ``"ZERO_VARIANCE"``: the standard error is exactly 0 (both arms have zero variance);
          the point estimates are given, intervals, p-values and chance to beat control are NaN.
          Also used when only the lift's delta-method standard error is 0 (treatment mean 0 and
          treatment variance 0); then only the lift's interval and p-value are NaN.
        * ``"ZERO_CONTROL_MEAN"``: the control mean is 0, so the lift is undefined; the lift
          fields are NaN and the absolute fields are computed.
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    lift_p_value: float
    chance_to_beat_control: float
    status: ComparisonStatus


def _empty_comparison(
    status: ComparisonStatus, diff: float = _NAN, lift: float = _NAN
) -> Comparison:
    return Comparison(diff, _NAN, _NAN, _NAN, lift, _NAN, _NAN, _NAN, _NAN, status)


def _welch_df(var_mean_a: float, n_a: int, var_mean_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the variances of the two arm means."""
    denom = var_mean_a**2 / (n_a - 1) + var_mean_b**2 / (n_b - 1)
    return (var_mean_a + var_mean_b) ** 2 / denom


def _sequential_rho(alpha: float, tuning_n: float) -> float:
    """Mixture parameter that makes the confidence sequence tightest at ``tuning_n`` units."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning_n)


def _interval_and_p(
    estimate: float,
    se: float,
    df: float,
    n_total: int,
    alpha: float,
    sequential: bool,
    rho: float,
) -> tuple[float, float, float]:
    """Two-sided interval and p-value for ``estimate`` with standard error ``se > 0``.

    Fixed-horizon: Student t with ``df`` degrees of freedom. Sequential: the asymptotic
    confidence sequence with sample size ``n_total`` and the matching always-valid p-value.
    """
    if sequential:
        t_rho2 = n_total * rho * rho
        # sigma_hat**2 * 2 (N rho^2 + 1) / (N^2 rho^2) with sigma_hat**2 = N se**2 simplifies
        # to se**2 * 2 (t_rho2 + 1) / t_rho2.
        half = se * math.sqrt(
            2.0 * (t_rho2 + 1.0) / t_rho2 * math.log(math.sqrt(t_rho2 + 1.0) / alpha)
        )
        z2 = (estimate / se) ** 2
        log_p = 0.5 * math.log(t_rho2 + 1.0) - t_rho2 * z2 / (2.0 * (t_rho2 + 1.0))
        p = min(1.0, math.exp(log_p))
    else:
        half = float(special.stdtrit(df, 1.0 - alpha / 2.0)) * se
        p = float(2.0 * special.stdtr(df, -abs(estimate) / se))
    return estimate - half, estimate + half, p


def _compare_moments(
    n_a: int,
    est_a: float,
    var_est_a: float,
    n_b: int,
    est_b: float,
    var_est_b: float,
    alpha: float,
    sequential: bool,
    tuning_n: float,
    lift_means: tuple[float, float] | None = None,
) -> Comparison:
    """Compare two arm estimates given their sampling variances (already divided by n).

    The lift is ``est_b / est_a - 1`` with the delta-method variance of that ratio, or, with
    ``lift_means = (m_a, m_b)``, ``(est_b - est_a) / m_a`` with those means in its variance
    (CUPED: the adjusted difference over the unadjusted control mean, as gbstats does)."""
    diff = est_b - est_a
    if lift_means is None:
        m_a, m_b = est_a, est_b
        lift = est_b / est_a - 1.0 if est_a != 0.0 else _NAN
    else:
        m_a, m_b = lift_means
        lift = diff / m_a if m_a != 0.0 else _NAN
    if n_a < 2 or n_b < 2:
        return _empty_comparison("TOO_FEW_UNITS", diff, lift)
    var_diff = var_est_a + var_est_b
    if var_diff == 0.0:
        return _empty_comparison("ZERO_VARIANCE", diff, lift)

    df = _welch_df(var_est_a, n_a, var_est_b, n_b)
    rho = _sequential_rho(alpha, tuning_n)
    n_total = n_a + n_b
    se = math.sqrt(var_diff)
    ci_low, ci_high, p_value = _interval_and_p(diff, se, df, n_total, alpha, sequential, rho)
    ctbc = float(special.ndtr(diff / se))

    status: ComparisonStatus = "ok"
    lift_ci_low = lift_ci_high = lift_p = _NAN
    if m_a == 0.0:
        status = "ZERO_CONTROL_MEAN"
    else:
        var_lift = var_est_b / m_a**2 + var_est_a * m_b**2 / m_a**4
        if var_lift == 0.0:
            status = "ZERO_VARIANCE"
        else:
            lift_ci_low, lift_ci_high, lift_p = _interval_and_p(
                lift, math.sqrt(var_lift), df, n_total, alpha, sequential, rho
            )
    return Comparison(
        diff, ci_low, ci_high, p_value, lift, lift_ci_low, lift_ci_high, lift_p, ctbc, status
    )


def _validate_test_args(alpha: float, tuning_n: float) -> tuple[float, float]:
    alpha = _validate_open_unit(alpha, "alpha")
    if not (isinstance(tuning_n, int | float | np.number) and 0.0 < float(tuning_n) < math.inf):
        raise ValueError(f"tuning_n must be a positive finite number, got {tuning_n!r}")
    return alpha, float(tuning_n)


def compare(
    control: ArmStats,
    treatment: ArmStats,
    alpha: float = 0.05,
    sequential: bool = False,
    tuning_n: float = 5000,
) -> Comparison:
    """Compare the treatment mean against the control mean (absolute and relative).

    Parameters
    ----------
    control, treatment : ArmStats
        Per-arm sufficient statistics.
    alpha : float, default 0.05
        Two-sided significance level; intervals have coverage ``1 - alpha``.
    sequential : bool, default False
        If True, report always-valid confidence sequences and p-values, which stay valid
        however often the experiment is looked at (at the cost of wider intervals).
    tuning_n : float, default 5000
        Total sample size (both arms) at which the sequential interval is tightest. Only used
        when ``sequential`` is True (but always validated).

    Returns
    -------
    Comparison
        Never raises on degenerate data; see :class:`Comparison` for the NaN/status rules.

    Raises
    ------
    ValueError
        If ``alpha`` is not in (0, 1) or ``tuning_n`` is not a positive finite number.

    Notes
    -----
    **Absolute difference (fixed horizon).** Welch's t-test:
    ``diff = m_b - m_a``, ``se**2 = v_a / n_a + v_b / n_b``, Welch-Satterthwaite
    ``df = se**4 / ((v_a/n_a)**2 / (n_a-1) + (v_b/n_b)**2 / (n_b-1))``,
    ``p = 2 * T_df.sf(|diff| / se)`` and ``CI = diff ± T_df.ppf(1 - alpha/2) * se``.

    **Relative lift.** ``lift = m_b / m_a - 1`` with delta-method variance
    ``var_b / (m_a**2 n_b) + var_a m_b**2 / (m_a**4 n_a)``. Its interval and p-value use the
    Student t distribution with the *same* Welch df as the absolute difference (as gbstats
    does); for the sample sizes of online experiments this is indistinguishable from the
    normal. The lift test is a different statistic from the absolute test, so the two
    p-values agree only approximately.

    **Sequential mode.** With ``N = n_a + n_b``, ``sigma_hat = se * sqrt(N)`` and
    ``rho = sqrt((-2 log alpha + log(-2 log alpha + 1)) / tuning_n)`` the half-width is::

        sigma_hat * sqrt(2 (N rho**2 + 1) / (N**2 rho**2) * log(sqrt(N rho**2 + 1) / alpha))

    (the normal-mixture asymptotic confidence sequence for a sample mean, applied to the
    difference in means as gbstats ``SequentialTwoSidedTTest`` does). The always-valid
    p-value is its closed-form inversion with ``rho`` held fixed, the reciprocal of the
    mixture e-value::

        p = min(1, sqrt(N rho**2 + 1) * exp(-rho**2 N z**2 / (2 (N rho**2 + 1)))), z = diff / se

    so ``p < alpha`` exactly when the interval at level ``alpha`` excludes 0 (no root finding
    is needed). The lift uses the same formulas with its delta-method standard error. The
    sequence is asymptotic (CLT-based): it relies on ``se`` being a good estimate, so very
    small arms are not covered by the guarantee.

    Not checked: independence of units, that the arms come from a randomised split (see
    :func:`srm_p_value`), and the sign of the means (the lift of a negative-mean metric is
    computed by the same formula but is hard to read).

    References
    ----------
    * Welch (1947), "The generalization of Student's problem when several different population
      variances are involved"; ``scipy.stats.ttest_ind_from_stats(..., equal_var=False)`` and
      ``statsmodels.stats.weightstats.CompareMeans.tconfint_diff(usevar="unequal")`` compute
      the same quantities.
    * Delta method for the lift: Deng, Knoblich & Lu (2018), KDD (ratio of two independent
      means).
    * Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023), "Time-uniform central limit
      theory and asymptotic confidence sequences", eq. 9 (half-width); ``rho`` as in gbstats
      ``sequential_rho``; gbstats cites arXiv:2103.06476v7 eq. 155 for the p-value.
    """
    alpha, tuning_n = _validate_test_args(alpha, tuning_n)
    if control.n == 0 or treatment.n == 0:
        return _empty_comparison("NO_UNITS_IN_ARM")
    var_mean_a = control.variance / control.n if control.n >= 2 else _NAN
    var_mean_b = treatment.variance / treatment.n if treatment.n >= 2 else _NAN
    return _compare_moments(
        control.n,
        control.mean,
        var_mean_a,
        treatment.n,
        treatment.mean,
        var_mean_b,
        alpha,
        sequential,
        tuning_n,
    )


def compare_ratio(
    control: RatioStats,
    treatment: RatioStats,
    alpha: float = 0.05,
    sequential: bool = False,
    tuning_n: float = 5000,
) -> Comparison:
    """Compare a ratio metric ``sum(num) / sum(den)`` between treatment and control.

    Parameters
    ----------
    control, treatment : RatioStats
        Per-arm sufficient statistics of the numerator and denominator.
    alpha, sequential, tuning_n
        As in :func:`compare`.

    Returns
    -------
    Comparison
        As in :func:`compare`; additionally ``"ZERO_DENOMINATOR"`` when an arm's mean
        denominator is 0.

    Raises
    ------
    ValueError
        If ``alpha`` or ``tuning_n`` is invalid.

    Notes
    -----
    Each arm's ratio ``R = mean_num / mean_den`` gets the delta-method variance
    :attr:`RatioStats.ratio_variance` (the numerator-denominator covariance included, which
    matters because both are measured on the same units). Those variances then take the place
    of ``v / n`` in every formula of :func:`compare`; the Welch df is computed from the
    per-unit linearised variances ``n * var(R)``. The ratio is a biased estimator of order
    ``1/n``; that bias is ignored, as is usual for experiment-sized samples.

    References
    ----------
    Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD (ratio
    metrics); gbstats ``RatioStatistic`` uses the same variance.
    """
    alpha, tuning_n = _validate_test_args(alpha, tuning_n)
    if control.n == 0 or treatment.n == 0:
        return _empty_comparison("NO_UNITS_IN_ARM")
    if control.mean_den == 0.0 or treatment.mean_den == 0.0:
        return _empty_comparison("ZERO_DENOMINATOR")
    return _compare_moments(
        control.n,
        control.ratio,
        control.ratio_variance,
        treatment.n,
        treatment.ratio,
        treatment.ratio_variance,
        alpha,
        sequential,
        tuning_n,
    )


def _arm_moments(arm: ArmStats | RatioStats) -> tuple[int, float, float]:
    if isinstance(arm, RatioStats):
        return arm.n, arm.ratio, arm.ratio_variance
    return arm.n, arm.mean, (arm.variance / arm.n if arm.n >= 2 else _NAN)


def chance_to_beat_control(
    control: ArmStats | RatioStats, treatment: ArmStats | RatioStats
) -> float:
    """Normal-approximation probability that the treatment's true mean beats control's.

    Parameters
    ----------
    control, treatment : ArmStats or RatioStats
        Both arms of the same kind.

    Returns
    -------
    float
        ``Phi(diff / se)``; NaN when an arm has fewer than 2 units, a ratio is undefined, or
        ``se == 0``.

    Raises
    ------
    ValueError
        If the two arms are of different kinds.

    Notes
    -----
    ``diff = m_b - m_a`` and ``se = sqrt(var(m_a) + var(m_b))`` (delta-method variances for
    ratio metrics). Under a flat prior the posterior of the true difference is approximately
    ``N(diff, se**2)``, and this is its mass above 0. "Beat" means "larger"; for metrics where
    lower is better use ``1 - result``.

    References
    ----------
    The frequentist counterpart of a Bayesian "chance to win" under a flat prior on the
    difference (gbstats' Bayesian engine reports the same quantity with its own prior).
    """
    if type(control) is not type(treatment):
        raise ValueError(
            "control and treatment must both be ArmStats or both be RatioStats, got "
            f"{type(control).__name__} and {type(treatment).__name__}"
        )
    n_a, m_a, v_a = _arm_moments(control)
    n_b, m_b, v_b = _arm_moments(treatment)
    if n_a < 2 or n_b < 2:
        return _NAN
    var = v_a + v_b
    if not var > 0.0:
        return _NAN
    return float(special.ndtr((m_b - m_a) / math.sqrt(var)))


def srm_p_value(counts: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    """Sample-ratio-mismatch p-value: do the arm counts fit the intended traffic split?

    Parameters
    ----------
    counts : array_like of int
        Units observed per arm.
    weights : array_like of float
        Intended traffic weights per arm (any positive scale; normalised here).

    Returns
    -------
    float
        Chi-square goodness-of-fit p-value; small values signal a broken assignment or
        logging pipeline. NaN when the total count is 0 or fewer than two arms have positive
        weight. 0.0 when an arm with weight 0 received units (the statistic is infinite).

    Raises
    ------
    ValueError
        If the arrays differ in length or are not 1-D, a count is negative or non-finite, or
        a weight is negative or non-finite, or all weights are 0.

    Notes
    -----
    ``expected_i = total * w_i / sum(w)`` and ``chi2 = sum((counts_i - expected_i)**2 /
    expected_i)`` with ``k - 1`` degrees of freedom (``k`` arms with positive weight). Arms
    with weight 0 and no units are dropped. Independence of units is not checked.

    References
    ----------
    ``scipy.stats.chisquare``; Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in
    Online Controlled Experiments", KDD.
    """
    c = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if c.ndim != 1 or w.ndim != 1 or c.shape != w.shape:
        raise ValueError(
            f"counts and weights must be 1-D of equal length, got shapes {c.shape} and {w.shape}"
        )
    if not (np.all(np.isfinite(c)) and np.all(c >= 0)):
        raise ValueError(f"counts must be finite and >= 0, got {c.tolist()}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)) or not np.any(w > 0):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    total = float(c.sum())
    if total == 0.0:
        return _NAN
    if np.any(c[w == 0] > 0):
        return 0.0
    keep = w > 0
    if int(keep.sum()) < 2:
        return _NAN
    c = c[keep]
    w = w[keep]
    expected = total * w / w.sum()
    return float(stats.chisquare(c, f_exp=expected).pvalue)


def adjust_p_values(p: npt.ArrayLike, method: Literal["holm", "bh"] = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    p : array_like of float
        1-D p-values in [0, 1]; NaN entries (untestable comparisons) are allowed.
    method : {"holm", "bh"}, default "holm"
        ``"holm"`` controls the family-wise error rate (Holm step-down); ``"bh"`` controls
        the false discovery rate (Benjamini-Hochberg step-up, valid under independence or
        positive dependence).

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order. NaNs stay NaN and are not counted in the number
        of tests ``m``.

    Raises
    ------
    ValueError
        If ``method`` is unknown, ``p`` is not 1-D, or a non-NaN value is outside [0, 1].

    Notes
    -----
    With the ``m`` non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``:

    * Holm: ``p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``.
    * BH: ``p~_(i) = min(1, min_{j >= i} m p_(j) / j)``.

    References
    ----------
    Holm (1979), "A simple sequentially rejective multiple test procedure"; Benjamini &
    Hochberg (1995), JRSS B 57(1), section 3; matches
    ``statsmodels.stats.multitest.multipletests(method="holm" | "fdr_bh")``.
    """
    if method not in ("holm", "bh"):
        raise ValueError(f"unknown method {method!r}; expected 'holm' or 'bh'")
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"p must be 1-D, got shape {arr.shape}")
    finite = ~np.isnan(arr)
    vals = arr[finite]
    if np.any((vals < 0.0) | (vals > 1.0)):
        raise ValueError(f"p-values must be in [0, 1] or NaN, got {arr.tolist()}")
    out = np.full(arr.shape, np.nan)
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    ranked = vals[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * np.arange(m, 0, -1))
    else:
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    out[finite] = result
    return out


def required_sample_size(
    mean: float,
    variance: float,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = True,
) -> int:
    """Units needed *per arm* to detect an effect of size ``mde`` with a two-sided test.

    Parameters
    ----------
    mean : float
        Baseline (control) mean; only used when ``relative`` is True.
    variance : float
        Per-unit variance, assumed equal in both arms.
    mde : float
        Minimum detectable effect: a relative lift (e.g. 0.05 for +5 %) when ``relative``,
        otherwise an absolute difference. Its sign does not matter.
    alpha : float, default 0.05
        Two-sided significance level.
    power : float, default 0.8
        Probability of rejecting when the true effect equals ``mde``.
    relative : bool, default True
        Whether ``mde`` is relative to ``mean``.

    Returns
    -------
    int
        ``max(2, ceil(n))`` (at least 2 so that a variance can be estimated).

    Raises
    ------
    ValueError
        If ``alpha`` or ``power`` is not in (0, 1), ``variance`` is negative or not finite, or
        the effect ``delta`` is 0 or not finite.

    Notes
    -----
    ``n = 2 * variance * (z_{1-alpha/2} + z_{power})**2 / delta**2`` with
    ``delta = mde * mean`` if ``relative`` else ``mde``. This is the normal approximation for
    a fixed-horizon test with equal allocation; it ignores the (tiny, for n in the hundreds)
    difference between the t and normal quantiles and the opposite-tail rejection
    probability. It does not apply to ``sequential=True`` comparisons, which need more units.

    References
    ----------
    Chow, Shao & Wang (2008), "Sample Size Calculations in Clinical Research", 2nd ed.,
    section 3.2.1 (two-sample parallel design, equality test).
    """
    alpha = _validate_open_unit(alpha, "alpha")
    power = _validate_open_unit(power, "power")
    _check_variance("variance", float(variance))
    delta = float(mde) * float(mean) if relative else float(mde)
    if not (math.isfinite(delta) and delta != 0.0):
        raise ValueError(
            f"the effect to detect must be finite and non-zero, got delta={delta!r} "
            f"(mean={mean!r}, mde={mde!r}, relative={relative})"
        )
    z_alpha = float(special.ndtri(1.0 - alpha / 2.0))
    z_power = float(special.ndtri(power))
    n = 2.0 * float(variance) * (z_alpha + z_power) ** 2 / delta**2
    return max(2, math.ceil(n))
