"""Per-arm confidence bounds for proportions and a non-inferiority check for rates.

Rates such as an error rate or a refusal rate are often watched per arm ("is the treatment's
error rate acceptably low?") rather than as a lift, and they are often rare: zero events is a
common, perfectly informative outcome, for which normal-approximation intervals collapse to
``[0, 0]``. The intervals here stay valid there. The module is pure (SciPy only), does no I/O,
raises ``ValueError`` on invalid arguments and returns NaN when the data carry no information
(no units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "NonInferiority",
    "clopper_pearson_interval",
    "proportion_non_inferiority",
    "wilson_interval",
]

_NAN = float("nan")


def _validate_counts(successes: object, n: object) -> tuple[int, int]:
    for name, value in (("successes", successes), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer count, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if successes > n:  # type: ignore[operator]
        raise ValueError(f"successes must be <= n, got successes={successes}, n={n}")
    return int(successes), int(n)  # type: ignore[arg-type]


def _validate_alpha(alpha: object, upper: float = 1.0) -> float:
    if not (
        isinstance(alpha, int | float | np.floating)
        and not isinstance(alpha, bool)
        and 0.0 < float(alpha) < upper
    ):
        raise ValueError(f"alpha must be a number in (0, {upper:g}), got {alpha!r}")
    return float(alpha)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval with critical value ``z``; ``n >= 1``."""
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else min(max(center - half, 0.0), 1.0)
    high = 1.0 if successes == n else min(max(center + half, 0.0), 1.0)
    return low, high


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided Wilson score interval for a binomial proportion.

    Parameters
    ----------
    successes : int
        Number of units with the event (``0 <= successes <= n``).
    n : int
        Number of units.
    alpha : float, default 0.05
        Two-sided level; the interval has nominal coverage ``1 - alpha``.

    Returns
    -------
    (low, high) : tuple of float
        Bounds in ``[0, 1]``; ``low`` is exactly 0 when ``successes == 0`` and ``high``
        exactly 1 when ``successes == n``. ``(nan, nan)`` when ``n == 0``.

    Raises
    ------
    ValueError
        If a count is not a non-negative integer, ``successes > n`` or ``alpha`` is not in
        (0, 1).

    Notes
    -----
    With ``p = successes / n`` and ``z = Phi^-1(1 - alpha/2)`` the interval is the set of
    ``pi`` with ``|p - pi| <= z sqrt(pi (1 - pi) / n)``, i.e.::

        (p + z**2 / (2n)) / (1 + z**2 / n)
            ± z sqrt(p (1 - p) / n + z**2 / (4 n**2)) / (1 + z**2 / n)

    Its coverage oscillates around ``1 - alpha`` (it is not guaranteed at every ``pi``), but it
    is far better than the Wald interval for small ``n`` or rare events.

    References
    ----------
    Wilson (1927), "Probable inference, the law of succession, and statistical inference",
    JASA 22(158); Brown, Cai & DasGupta (2001), "Interval Estimation for a Binomial
    Proportion", Statistical Science 16(2). Matches
    ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.
    """
    successes, n = _validate_counts(successes, n)
    alpha = _validate_alpha(alpha)
    if n == 0:
        return _NAN, _NAN
    return _wilson(successes, n, float(special.ndtri(1.0 - alpha / 2.0)))


def _clopper_pearson_upper(successes: int, n: int, tail: float) -> float:
    """Exact upper bound with upper-tail probability ``tail``; ``n >= 1``."""
    if successes == n:
        return 1.0
    return float(stats.beta.isf(tail, successes + 1, n - successes))


def clopper_pearson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) interval for a binomial proportion.

    Parameters
    ----------
    successes, n, alpha
        As in :func:`wilson_interval`.

    Returns
    -------
    (low, high) : tuple of float
        Bounds in ``[0, 1]``; ``(nan, nan)`` when ``n == 0``.

    Raises
    ------
    ValueError
        As in :func:`wilson_interval`.

    Notes
    -----
    The bounds are quantiles of beta distributions::

        low  = Beta(successes, n - successes + 1).ppf(alpha / 2)      (0 if successes == 0)
        high = Beta(successes + 1, n - successes).isf(alpha / 2)      (1 if successes == n)

    which invert the two one-sided exact binomial tests, so coverage is at least
    ``1 - alpha`` at every true proportion (conservatively so). With zero events the upper
    bound is ``1 - (alpha/2) ** (1/n)`` (the "rule of three" ``~ 3/n`` for the one-sided 95%
    bound).

    References
    ----------
    Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the
    case of the binomial", Biometrika 26(4). Matches
    ``statsmodels.stats.proportion.proportion_confint(method="beta")``.
    """
    successes, n = _validate_counts(successes, n)
    alpha = _validate_alpha(alpha)
    if n == 0:
        return _NAN, _NAN
    low = (
        0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2.0, successes, n - successes + 1))
    )
    return low, _clopper_pearson_upper(successes, n, alpha / 2.0)


@dataclass(frozen=True)
class NonInferiority:
    """Outcome of :func:`proportion_non_inferiority`.

    Attributes
    ----------
    upper_bound : float
        One-sided ``1 - alpha`` upper confidence bound of the arm's rate (or of its difference
        from the control rate); NaN when an arm has no units.
    margin : float
        The largest acceptable rate (or rate difference).
    passes : bool
        ``upper_bound <= margin``; False when ``upper_bound`` is NaN.
    sentence : str
        One-line human-readable verdict, e.g.
        ``"error rate below 0.15% (95% upper bound), margin 0.50%: passes"``.
    """

    upper_bound: float
    margin: float
    passes: bool
    sentence: str


def _format_percent(x: float) -> str:
    """``x`` as a percentage with two decimals, or two significant digits when tiny."""
    pct = 100.0 * x
    if pct != 0.0 and abs(pct) < 0.01:
        return f"{pct:.2g}%"
    return f"{pct:.2f}%"


def _format_points(x: float) -> str:
    """A difference of proportions in percentage points, with its sign."""
    pct = 100.0 * x
    if pct != 0.0 and abs(pct) < 0.01:
        return f"{pct:+.2g} pp"
    return f"{pct:+.2f} pp"


def _format_level(alpha: float) -> str:
    return f"{100.0 * (1.0 - alpha):.10g}%"


def proportion_non_inferiority(
    successes: int,
    n: int,
    margin: float,
    alpha: float = 0.05,
    baseline: float | tuple[int, int] | None = None,
    *,
    label: str = "rate",
) -> NonInferiority:
    """Is an arm's rate of an undesirable event (errors, refusals) acceptably low?

    Parameters
    ----------
    successes : int
        Units of the arm with the event (e.g. errors).
    n : int
        Units in the arm.
    margin : float
        Largest acceptable rate (``baseline is None``) or largest acceptable excess over the
        baseline rate, as a proportion in ``(0, 1]`` (``0.005`` for 0.5%).
    alpha : float, default 0.05
        One-sided level: the bound is a one-sided ``1 - alpha`` upper confidence bound.
        Must be in (0, 0.5).
    baseline : None, float or (int, int), default None
        * ``None``: check ``upper bound of the arm's rate <= margin``.
        * a float in ``[0, 1]``: a rate known *exactly* (an SLO or a long-run historical rate,
          not an estimate from this experiment); check
          ``upper bound of the arm's rate - baseline <= margin``.
        * ``(control_successes, control_n)``: the control arm's counts; check
          ``upper bound of (rate - control rate) <= margin``, with the control's sampling
          error accounted for.
    label : str, default "rate"
        Name of the rate used in :attr:`NonInferiority.sentence` (e.g. ``"error rate"``).

    Returns
    -------
    NonInferiority
        ``passes`` is True when the upper bound is at most ``margin``. With no units in an
        arm the bound is NaN and the check fails.

    Raises
    ------
    ValueError
        If a count is invalid, ``margin`` is not in ``(0, 1]``, ``alpha`` is not in
        ``(0, 0.5)``, or a float ``baseline`` is not in ``[0, 1]``.

    Notes
    -----
    *Rate alone and fixed baseline.* The exact (Clopper-Pearson) one-sided bound
    ``Beta(x + 1, n - x).isf(alpha)`` (1 when ``x == n``), which holds its level at every true
    rate. With zero events it is ``1 - alpha ** (1/n)``: 0 errors in 2,000 units bound the
    error rate below 0.1497% with 95% confidence, so a 0.5% margin passes even though no error
    was seen in either arm.

    *Difference from a control arm.* Newcombe's hybrid score interval (his method 10) for
    ``p_t - p_c``, one-sided: with Wilson limits at ``z = Phi^-1(1 - alpha)``,
    ``upper = (p_t - p_c) + sqrt((u_t - p_t)**2 + (p_c - l_c)**2)``, where ``u_t`` is the
    treatment's upper and ``l_c`` the control's lower Wilson limit. It is well defined with
    zero events in either arm and its coverage is close to nominal even for rare events
    (Newcombe 1998, table II).

    The check is a one-sided non-inferiority test of ``H0: rate (- baseline) > margin`` at level
    ``alpha``: passing rejects H0. The margin must be fixed before the data are seen.

    References
    ----------
    Clopper & Pearson (1934), Biometrika 26(4); Newcombe (1998), "Interval estimation for the
    difference between independent proportions: comparison of eleven methods", Statistics in
    Medicine 17(8), method 10; matches ``statsmodels.stats.proportion.proportion_confint(
    method="beta")`` and ``confint_proportions_2indep(method="newcomb")`` at ``2 * alpha``
    (two-sided), upper limit.
    """
    successes, n = _validate_counts(successes, n)
    alpha = _validate_alpha(alpha, upper=0.5)
    if not (
        isinstance(margin, int | float | np.floating)
        and not isinstance(margin, bool)
        and 0.0 < float(margin) <= 1.0
    ):
        raise ValueError(f"margin must be a proportion in (0, 1], got {margin!r}")
    margin = float(margin)
    level = _format_level(alpha)

    if baseline is None:
        upper = _clopper_pearson_upper(successes, n, alpha) if n > 0 else _NAN
        subject = label
        shown, shown_margin = _format_percent(upper), _format_percent(margin)
    elif isinstance(baseline, tuple):
        if len(baseline) != 2:
            raise ValueError(f"baseline must be (control_successes, control_n), got {baseline!r}")
        c_successes, c_n = _validate_counts(*baseline)
        if n == 0 or c_n == 0:
            upper = _NAN
        else:
            z = float(special.ndtri(1.0 - alpha))
            p_t, p_c = successes / n, c_successes / c_n
            u_t = _wilson(successes, n, z)[1]
            l_c = _wilson(c_successes, c_n, z)[0]
            upper = (p_t - p_c) + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
        subject = f"{label} minus control {label}"
        shown, shown_margin = _format_points(upper), _format_points(margin)
    else:
        if not (
            isinstance(baseline, int | float | np.floating)
            and not isinstance(baseline, bool)
            and 0.0 <= float(baseline) <= 1.0
        ):
            raise ValueError(
                "baseline must be None, a rate in [0, 1] or (control_successes, control_n), "
                f"got {baseline!r}"
            )
        upper = _clopper_pearson_upper(successes, n, alpha) - float(baseline) if n > 0 else _NAN
        subject = f"{label} minus baseline {_format_percent(float(baseline))}"
        shown, shown_margin = _format_points(upper), _format_points(margin)

    if math.isnan(upper):
        return NonInferiority(
            _NAN, margin, False, f"{label}: no units, cannot show non-inferiority: fails"
        )
    passes = upper <= margin
    verdict = "passes" if passes else "fails"
    sentence = f"{subject} below {shown} ({level} upper bound), margin {shown_margin}: {verdict}"
    return NonInferiority(upper, margin, passes, sentence)
