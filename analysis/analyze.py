"""Turn exposure and outcome events into per-arm results of an experiment.

The pipeline keeps pandas at the edge (STYLE.md, analysis/report):

1. :func:`analyze` validates the frames, applies ``as_of`` and maps unit ids to integer codes
   shared by exposures and outcomes (one Arrow dictionary encoding).
2. Exposures decide who is in the experiment: a unit's *first* exposure (by ``ts``, ties in
   row order) fixes its arm. Outcomes of units never exposed, and outcomes logged before the
   unit's first exposure, are dropped and counted in ``ExperimentResult.diagnostics``.
3. Events become per-unit values with ``np.bincount`` over unit codes (a vectorised group-by):

   * ``proportion``: 1 if the unit has any event with a positive value, else 0 (every
     exposed unit counts);
   * ``mean`` with ``aggregate: sum``: the sum of the unit's values, 0 without events (every
     exposed unit counts; e.g. cost per user);
   * ``mean`` with ``aggregate: mean``: the mean of the unit's values; units without events
     are left out (e.g. latency per request, per user);
   * ``ratio``: per-unit sums of the numerator and denominator metrics (every exposed unit).

4. Per-unit values become sufficient statistics per (metric, arm) (``ArmStats`` /
   ``RatioStats``, two-pass moments), compared against control by :mod:`analysis.stats`;
   p-values are adjusted across every (metric, treatment arm) comparison.
5. The timeline holds cumulative statistics per period, built from per-(unit, period)
   increments of the per-unit value and its square, summed per (arm, period) and cumulated.

Units listed in the experiment's ``overrides`` (QA users forced into an arm) are not
randomised and are left out (``units_overridden``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from abtest.arm_state import ArmState, AuditEntry
from abtest.experiments import Experiment, Metric
from abtest.fingerprints import Manifest
from analysis.capping import cap_values
from analysis.cuped import CovariateStats, adjust, compare_adjusted, pooled_theta
from analysis.decision import (
    Decision,
    GuardrailCheck,
    Progress,
    decide_arm,
    guardrail_check,
    progress,
)
from analysis.drift import Drift, by_fingerprint, fingerprint_drift, first_fingerprints
from analysis.formatting import format_number, format_p, format_percent
from analysis.proportion_bounds import wilson_interval
from analysis.stats import (
    ArmStats,
    Comparison,
    RatioStats,
    compare,
    compare_ratio,
    srm_p_value,
)
from analysis.sufficient import DIAGNOSTICS, ExperimentStats, as_of_ms, event_metrics
from analysis.table_html import TableRow, render_table_html
from analysis.verdict import Verdict, decide, estimand_test

if TYPE_CHECKING:
    from analysis.evaluation import EvaluationSummary

__all__ = [
    "PAIRWISE_COLUMNS",
    "SRM_THRESHOLD",
    "analyze_stats",
    "experiment_stats",
    "STATUS_MESSAGES",
    "TABLE_COLUMNS",
    "TIMELINE_COLUMNS",
    "ArmMetricResult",
    "ExperimentResult",
    "analyze",
    "status_message",
]

TABLE_COLUMNS: tuple[str, ...] = (
    "metric",
    "arm",
    "units",
    "mean",
    "estimand",
    "method",
    "effect",
    "ci_low",
    "ci_high",
    "ci_level",
    "p_value",
    "p_adjusted",
    "correction",
    "significant",
    "chance_to_win",
    "risk",
    "diff",
    "lift",
    "status",
    "primary",
    "guardrail",
    "variance",
    "variance_reduction",
)
"""Columns of ``ExperimentResult.table``, in order. ``effect`` .. ``risk`` are the row's
verdict (:mod:`analysis.verdict`): the estimate of its ``estimand`` (``relative``: the lift
``t / c - 1``; ``absolute``: ``t - c``) by its ``method``, the interval shown at ``ci_level``
(widened by the ``correction`` when one applies), the estimand's p-values, ``significant``,
and with the Bayesian engine the chance to win and the expected loss. ``diff`` and ``lift``
are both point estimates, for reference."""

TIMELINE_COLUMNS: tuple[str, ...] = (
    "period",
    "metric",
    "arm",
    "units",
    "estimand",
    "effect",
    "ci_low",
    "ci_high",
)
"""Columns of ``ExperimentResult.timeline``, in order: the cumulative effect on each metric's
estimand with its unadjusted interval (always-valid in sequential mode)."""

SRM_THRESHOLD = 0.001
"""SRM p-values below this flag a sample ratio mismatch."""

STATUS_MESSAGES: dict[str, str] = {
    "ok": "",
    "control": "this is the control arm",
    "NO_UNITS_IN_ARM": "not enough data: an arm has no units with this metric yet",
    "TOO_FEW_UNITS": (
        "not enough data: an arm has a single unit, so its variance is unknown and only the "
        "point estimate is shown"
    ),
    "ZERO_VARIANCE": (
        "not enough data to test: every unit has the same value, so there is no variance to "
        "test against"
    ),
    "ZERO_CONTROL_MEAN": (
        "the control mean is 0, so the relative lift is undefined; the absolute difference "
        "is tested instead"
    ),
    "ZERO_DENOMINATOR": "not enough data: an arm's denominator is 0, so its ratio is undefined",
}
"""Plain-language reading of each row status (``Comparison.status`` plus ``"control"``)."""

_SECOND_MS = 1_000
_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS
_EPS = float(np.finfo(np.float64).eps)
_NAN = float("nan")

Granularity = Literal["second", "minute", "hour", "day", "week"]


def status_message(status: str) -> str:
    """The sentence for a row status (unknown codes are returned as they are)."""
    return STATUS_MESSAGES.get(status, status)


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmMetricResult:
    """One (metric, arm) cell of the results.

    Attributes
    ----------
    metric : Metric
        The metric definition.
    arm : str
        Arm name.
    is_control : bool
        Whether ``arm`` is the control.
    units : int
        Units contributing to the metric (for ``aggregate: mean`` only units with events).
    mean : float
        The arm's metric value (for ratio metrics the ratio of sums).
    variance : float
        Per-unit sample variance (for ratio metrics the linearised per-unit variance
        ``n * var(ratio)``).
    comparison : Comparison or None
        Treatment vs control on both scales (the details); None for the control.
    verdict : Verdict or None
        What the row says, from one estimand and one method (:mod:`analysis.verdict`); None
        for the control.
    variance_reduction : float
        With CUPED, ``1 - var(adjusted difference) / var(difference)``; NaN without.
    """

    metric: Metric
    arm: str
    is_control: bool
    units: int
    mean: float
    variance: float
    comparison: Comparison | None
    verdict: Verdict | None = None
    variance_reduction: float = _NAN

    @property
    def status(self) -> str:
        """``"control"`` or the comparison's status code (``"ok"``, ``"NO_UNITS_IN_ARM"``...)."""
        return "control" if self.comparison is None else self.comparison.status

    @property
    def significant(self) -> bool:
        """The verdict's: the interval shown excludes 0 (``p_adjusted < alpha``)."""
        return self.verdict is not None and self.verdict.significant

    @property
    def p_adjusted(self) -> float:
        return _NAN if self.verdict is None else self.verdict.p_adjusted

    @property
    def better(self) -> bool:
        """Significant and in the metric's good direction."""
        return self.significant and self._direction_sign() > 0

    @property
    def worse(self) -> bool:
        """Significant and against the metric's good direction."""
        return self.significant and self._direction_sign() < 0

    @property
    def chance_to_win(self) -> float:
        """The Bayesian engine's probability that the arm is *better* than control
        (direction-aware); NaN with the frequentist engine and for the control."""
        return _NAN if self.verdict is None else self.verdict.chance_to_win

    def _direction_sign(self) -> int:
        if self.verdict is None or not math.isfinite(self.verdict.effect):
            return 0
        effect = self.verdict.effect
        sign = (effect > 0) - (effect < 0)
        return sign if self.metric.direction == "increase" else -sign


@dataclass(frozen=True, eq=False, repr=False)
class ExperimentResult:
    """Everything :func:`analyze` found; rendered by :mod:`analysis.report`.

    Attributes
    ----------
    experiment : Experiment
        The definition analysed.
    rows : tuple of ArmMetricResult
        One per (metric, arm), metrics in definition order, control first.
    table : pandas.DataFrame
        The rows as a tidy frame with :data:`TABLE_COLUMNS`.
    units_per_arm : dict of str to int
        Exposed units per arm.
    srm_p_value : float
        Sample-ratio-mismatch p-value of ``units_per_arm`` against the arm weights.
    timeline : pandas.DataFrame
        Cumulative lift per period with :data:`TIMELINE_COLUMNS` (treatment arms only).
    granularity : {"second", "minute", "hour", "day", "week"}
        The timeline's period length.
    diagnostics : dict of str to int
        Counts of dropped or suspicious events and units.
    as_of : pandas.Timestamp or None
        The cut-off applied, if any.
    guardrails, decisions, progress
        Each treatment arm's guardrail checks and ship / don't ship / keep running decision,
        and the progress towards the planned sample size (:mod:`analysis.decision`).
    first_exposure, last_exposure : pandas.Timestamp or None
        When the first and the last analysed unit entered the experiment.
    fingerprints : dict of str to dict of str to int
        Per arm, the flow fingerprints its exposures recorded, with their counts.
    manifests : dict of str to abtest.fingerprints.Manifest
        What each fingerprint stands for (its prompts, with the registry version a label
        resolved to), when the results were read from the store (:func:`analyze_stored`).
    drift : tuple of analysis.drift.Drift
        Each change of an arm's flow fingerprint during the experiment (prompt drift).
    by_fingerprint : pandas.DataFrame or None
        With drift, the drifting arms' rows of the table once per fingerprint (columns
        ``fingerprint``, ``first_seen``, then :data:`TABLE_COLUMNS`), each against the whole
        control.
    arm_states, audit : dict of str to ArmState, tuple of AuditEntry
        The arms' runtime states (stopped by a safe rollout or an admin) and the log of their
        changes, when read from the store (:mod:`abtest.arm_state`).
    traffic : pandas.DataFrame or None
        Cumulative units that entered each arm (control included) per timeline period:
        columns ``period``, ``arm``, ``units`` (None from :func:`analyze_stats` alone).
    srm_until : pandas.Timestamp or None
        When an arm was stopped: the first stop, before which ``srm_p_value`` counts units
        (:mod:`analysis.rollout`).
    pairwise : pandas.DataFrame or None
        With ``analysis: {pairwise: true}``, every treatment against every other treatment
        (:data:`PAIRWISE_COLUMNS`), corrected as its own family of comparisons.
    offline : analysis.evaluation.EvaluationSummary or None
        The experiment's offline evaluation (``abtest eval``), when the results were read from
        a store that holds one (:func:`analysis.report.analyze_stored`); the report sets it
        next to the online results of the same evaluators.
    judge_verdicts : dict of str to dict of str to dict of str to int
        The online judges' verdicts on sampled live runs so far, arm -> evaluator ->
        ``{ok, parse_failure, judge_error}`` counts, when read from the store: only ``ok``
        ones are scores (the ``judge:<evaluator>`` rows of the table); the others are shown
        so that a judge that cannot be parsed is seen, never silently missing.
    """

    experiment: Experiment
    rows: tuple[ArmMetricResult, ...]
    table: pd.DataFrame
    units_per_arm: dict[str, int]
    srm_p_value: float
    timeline: pd.DataFrame
    granularity: Granularity
    diagnostics: dict[str, int] = field(default_factory=dict)
    as_of: pd.Timestamp | None = None
    guardrails: tuple[GuardrailCheck, ...] = ()
    decisions: tuple[Decision, ...] = ()
    progress: Progress | None = None
    first_exposure: pd.Timestamp | None = None
    last_exposure: pd.Timestamp | None = None
    fingerprints: dict[str, dict[str, int]] = field(default_factory=dict)
    pairwise: pd.DataFrame | None = None
    manifests: dict[str, Manifest] = field(default_factory=dict)
    drift: tuple[Drift, ...] = ()
    by_fingerprint: pd.DataFrame | None = None
    arm_states: dict[str, ArmState] = field(default_factory=dict)
    audit: tuple[AuditEntry, ...] = ()
    srm_until: pd.Timestamp | None = None
    traffic: pd.DataFrame | None = None
    offline: EvaluationSummary | None = None
    judge_verdicts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def experiment_id(self) -> str:
        return self.experiment.id

    @property
    def arms(self) -> tuple[str, ...]:
        return self.experiment.arm_names

    @property
    def control(self) -> str:
        return self.experiment.control.name

    @property
    def alpha(self) -> float:
        return self.experiment.analysis.alpha

    @property
    def srm_warning(self) -> bool:
        """True when the SRM p-value is below :data:`SRM_THRESHOLD` (0.001)."""
        return bool(self.srm_p_value < SRM_THRESHOLD)

    def row(self, metric: str, arm: str) -> ArmMetricResult:
        """The result of ``metric`` in ``arm`` (KeyError naming both otherwise)."""
        for row in self.rows:
            if row.metric.name == metric and row.arm == arm:
                return row
        raise KeyError(f"no result for metric '{metric}' in arm '{arm}'")

    def summary_sentences(self) -> list[str]:
        """Plain-language findings: one sentence per treatment arm, then warnings."""
        return _summary_sentences(self)

    def summary(self) -> str:
        """The findings in plain words, e.g. "v2 raises thumbs_up by 4.1% (95% CI ...)"."""
        return " ".join(self.summary_sentences())

    def __repr__(self) -> str:
        p = f"{self.srm_p_value:.3g}"
        return (
            f"ExperimentResult({self.experiment_id!r}, units_per_arm={self.units_per_arm}, "
            f"metrics={[m.name for m in self.experiment.metrics]}, srm_p_value={p})"
        )

    def _repr_html_(self) -> str:
        """The summary and the results table, which notebooks show for a result."""
        rows = [table_row(row) for row in self.rows]
        bayesian = self.experiment.analysis.engine == "bayesian"
        return render_table_html(self.experiment_id, self.summary_sentences(), rows, bayesian)


# --- analysis ---------------------------------------------------------------------------


def analyze(
    experiment: Experiment,
    exposures: pd.DataFrame,
    outcomes: pd.DataFrame,
    as_of: Any = None,
) -> ExperimentResult:
    """Analyse an experiment from its exposure and outcome events.

    Parameters
    ----------
    experiment : Experiment
        The definition: arms (the first is control), metrics and analysis settings.
    exposures : pandas.DataFrame
        Columns ``unit_id``, ``arm`` and ``ts`` (epoch ms; or a ``time`` datetime column), as
        returned by :func:`analysis.load.load_events`. An ``experiment_id`` column, if
        present, restricts the rows to this experiment.
    outcomes : pandas.DataFrame
        Columns ``unit_id``, ``metric``, ``value`` and ``ts`` (or ``time``).
    as_of : int, str, datetime or pandas.Timestamp, optional
        Ignore events after this time (an int is epoch ms; naive datetimes are UTC).

    Returns
    -------
    ExperimentResult

    Raises
    ------
    ValueError
        If a required column is missing or ``as_of`` cannot be read as a time.

    Notes
    -----
    Events are expected to be deduplicated on ``event_id`` already (``load_events`` does it).
    Outcomes are attributed to the arm of the unit's first exposure, whatever their own
    ``arm`` field says (mismatches are counted in ``outcomes_arm_mismatch``). Exposures naming
    an arm the definition does not have are dropped (``exposures_unknown_arm``).
    """
    result = _analyze(experiment, exposures, outcomes, as_of)
    return _with_drift(result, exposures, outcomes, as_of)


def _analyze(
    experiment: Experiment, exposures: pd.DataFrame, outcomes: pd.DataFrame, as_of: Any
) -> ExperimentResult:
    cutoff = as_of_ms(as_of)
    prepared = _prepare(experiment, exposures, outcomes, cutoff)
    stats = _experiment_stats(prepared, experiment)
    timeline, granularity, traffic = _timeline(prepared, experiment, stats.caps)
    result = analyze_stats(experiment, stats, cutoff, timeline, granularity)
    return dataclasses.replace(result, traffic=traffic)


def _with_drift(
    result: ExperimentResult, exposures: pd.DataFrame, outcomes: pd.DataFrame, as_of: Any
) -> ExperimentResult:
    """`result` with the arms whose fingerprint changed reported once per fingerprint
    (:mod:`analysis.drift`), instead of pooling two different prompts silently."""
    if all(len(seen) < 2 for seen in result.fingerprints.values()):
        return result  # drift needs an arm whose exposures recorded two fingerprints
    experiment = result.experiment
    frame = exposures.assign(ts=_timestamps_ms(exposures, "exposures"))
    cutoff = as_of_ms(as_of)
    if cutoff is not None:
        frame = frame[frame["ts"] <= cutoff]
    firsts = first_fingerprints(experiment, frame)
    drifts = fingerprint_drift(experiment, firsts)
    if not drifts:
        return result
    table = by_fingerprint(
        experiment,
        frame,
        firsts,
        drifts,
        lambda subset: _analyze(experiment, subset, outcomes, as_of).table,
    )
    return dataclasses.replace(result, drift=tuple(drifts), by_fingerprint=table)


def experiment_stats(
    experiment: Experiment, exposures: pd.DataFrame, outcomes: pd.DataFrame, as_of: Any = None
) -> ExperimentStats:
    """The sufficient statistics :func:`analyze` works from (the in-memory path; see
    :mod:`analysis.sufficient`)."""
    prepared = _prepare(experiment, exposures, outcomes, as_of_ms(as_of))
    return _experiment_stats(prepared, experiment)


def _experiment_stats(prepared: _Prepared, experiment: Experiment) -> ExperimentStats:
    k = len(experiment.arm_names)
    caps: dict[str, float] = {}
    metrics: dict[str, list[ArmStats | RatioStats]] = {}
    covariates: dict[str, list[CovariateStats]] = {}
    for metric in experiment.metrics:
        if metric.kind == "ratio":
            num, den = _ratio_values(prepared, metric)
            metrics[metric.name] = list(
                _ratio_stats(prepared.unit_arm[prepared.exposed], num, den, k)
            )
            continue
        units, values = _unit_values(prepared, metric)
        cap = _cap(metric, values)
        if cap is not None:
            caps[metric.name] = cap
            values = np.minimum(values, cap)
        metrics[metric.name] = list(_arm_stats(prepared.unit_arm[units], values, k))
        if experiment.analysis.cuped:
            pairs = _covariate_stats(prepared, experiment, metric, units, values, k)
            if pairs is not None:
                covariates[metric.name] = pairs
    starts = prepared.unit_start[prepared.exposed]
    first, last = (int(starts.min()), int(starts.max())) if len(starts) else (None, None)
    return ExperimentStats(
        arm_units=tuple(int(n) for n in prepared.arm_units),
        first_exposure_ms=first,
        last_exposure_ms=last,
        metrics=metrics,
        covariates=covariates,
        caps=caps,
        diagnostics=prepared.diagnostics,
        fingerprints=prepared.fingerprints,
    )


def analyze_stats(
    experiment: Experiment,
    stats: ExperimentStats,
    as_of_ms: int | None = None,
    timeline: pd.DataFrame | None = None,
    granularity: Granularity = "day",
) -> ExperimentResult:
    """Results from sufficient statistics (in memory or from :mod:`analysis.columnar`): the
    verdicts, the table, guardrails, decisions, progress and SRM. Without a `timeline` (the
    columnar path computes none) the result's timeline is empty."""
    settings = experiment.analysis
    arms = experiment.arm_names
    k = len(arms)
    comparisons: list[list[Comparison | None]] = []
    tested: list[list[ArmStats]] = []  # what the verdicts test: CUPED-adjusted where it applies
    reductions: list[list[float]] = []
    for metric in experiment.metrics:
        arm_stats = stats.metrics[metric.name]
        covariate = stats.covariates.get(metric.name)
        cuped = _cuped_from(covariate, settings) if covariate is not None else None
        if cuped is not None:
            comparisons.append([None, *cuped.comparisons])
            tested.append(cuped.adjusted)
            reductions.append([_NAN, *cuped.variance_reductions])
            continue
        cmp = compare_ratio if metric.kind == "ratio" else compare
        comparisons.append(
            [None]
            + [
                cmp(
                    arm_stats[0],  # type: ignore[arg-type]
                    arm_stats[j],  # type: ignore[arg-type]
                    alpha=settings.alpha,
                    sequential=settings.sequential,
                    tuning_n=settings.tuning_n,
                )
                for j in range(1, k)
            ]
        )
        tested.append([_as_arm_stats(arm) for arm in arm_stats])
        reductions.append([_NAN] * k)
    pairs = [
        (arms_tested[0], arms_tested[j], metric.estimand, _better_up(metric))
        for metric, arms_tested in zip(experiment.metrics, tested, strict=True)
        for j in range(1, k)
    ]
    verdicts = iter(
        decide(
            pairs,
            alpha=settings.alpha,
            method=settings.method,
            correction=settings.correction,
            tuning_n=settings.tuning_n,
        )
    )

    rows: list[ArmMetricResult] = []
    for metric, row_cmp, reduction in zip(experiment.metrics, comparisons, reductions, strict=True):
        for j, arm in enumerate(arms):
            units, mean, variance = _moments(stats.metrics[metric.name][j])
            rows.append(
                ArmMetricResult(
                    metric=metric,
                    arm=arm,
                    is_control=j == 0,
                    units=units,
                    mean=mean,
                    variance=variance,
                    comparison=row_cmp[j],
                    verdict=None if j == 0 else next(verdicts),
                    variance_reduction=reduction[j],
                )
            )

    units = np.asarray(stats.arm_units, dtype=np.int64)
    weights = [arm.weight for arm in experiment.arms]
    srm = srm_p_value(units, weights) if units.sum() > 0 else _NAN
    checks, decisions = _decisions(experiment, rows)
    first, last = stats.first_exposure_ms, stats.last_exposure_ms
    pairwise = _pairwise(experiment, tested) if settings.pairwise and k > 2 else None
    return ExperimentResult(
        experiment=experiment,
        rows=tuple(rows),
        table=_table(rows, settings.correction),
        units_per_arm=dict(zip(arms, units.tolist(), strict=True)),
        srm_p_value=srm,
        timeline=timeline if timeline is not None else _empty_timeline(),
        granularity=granularity,
        diagnostics=dict(stats.diagnostics),
        as_of=None if as_of_ms is None else pd.Timestamp(as_of_ms, unit="ms", tz="UTC"),
        guardrails=checks,
        decisions=decisions,
        progress=_progress(experiment, rows, units.tolist(), first, last),
        first_exposure=None if first is None else pd.Timestamp(first, unit="ms", tz="UTC"),
        last_exposure=None if last is None else pd.Timestamp(last, unit="ms", tz="UTC"),
        fingerprints=stats.fingerprints,
        pairwise=pairwise,
    )


PAIRWISE_COLUMNS: tuple[str, ...] = (
    "metric", "arm", "baseline", "estimand", "method", "effect", "ci_low", "ci_high",
    "ci_level", "p_value", "p_adjusted", "significant", "chance_to_win",
)  # fmt: skip
"""Columns of ``ExperimentResult.pairwise``: ``arm`` against ``baseline`` (both treatments),
judged as the main table is, the correction applied within these comparisons."""


def _pairwise(experiment: Experiment, tested: list[list[ArmStats]]) -> pd.DataFrame:
    """Every later treatment against every earlier one, per metric."""
    settings = experiment.analysis
    arms = experiment.arm_names
    keys, pairs = [], []
    for metric, arm_stats in zip(experiment.metrics, tested, strict=True):
        for i in range(1, len(arms)):
            for j in range(i + 1, len(arms)):
                keys.append((metric.name, arms[j], arms[i]))
                pairs.append((arm_stats[i], arm_stats[j], metric.estimand, _better_up(metric)))
    verdicts = decide(
        pairs,
        alpha=settings.alpha,
        method=settings.method,
        correction=settings.correction,
        tuning_n=settings.tuning_n,
    )
    rows = [
        (*key, v.estimand, v.method, v.effect, v.ci_low, v.ci_high, v.level, v.p_value,
         v.p_adjusted, v.significant, v.chance_to_win)
        for key, v in zip(keys, verdicts, strict=True)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(PAIRWISE_COLUMNS))


def _primary_metrics(experiment: Experiment) -> list[Metric]:
    """The primary metrics, or every metric that is not a guardrail when none is marked."""
    metrics = experiment.metrics
    return [m for m in metrics if m.primary] or [m for m in metrics if not m.guardrail]


def _decisions(
    experiment: Experiment, rows: Sequence[ArmMetricResult]
) -> tuple[tuple[GuardrailCheck, ...], tuple[Decision, ...]]:
    by_key = {(r.metric.name, r.arm): r for r in rows}
    control = experiment.control.name
    primaries = _primary_metrics(experiment)
    checks: list[GuardrailCheck] = []
    decisions: list[Decision] = []
    for arm in experiment.arm_names[1:]:
        arm_checks = [
            guardrail_check(by_key[m.name, arm], by_key[m.name, control], experiment.analysis.alpha)
            for m in experiment.metrics
            if m.guardrail and m not in primaries
        ]
        checks.extend(arm_checks)
        primary_rows = [by_key[m.name, arm] for m in primaries]
        decisions.append(decide_arm(arm, primary_rows, arm_checks))
    return tuple(checks), tuple(decisions)


def _progress(
    experiment: Experiment,
    rows: Sequence[ArmMetricResult],
    units_per_arm: list[int],
    first: int | None,
    last: int | None,
) -> Progress:
    settings = experiment.analysis
    primaries = _primary_metrics(experiment)
    control = next(
        (r for r in rows if primaries and r.metric == primaries[0] and r.is_control), None
    )
    span_days = 0.0 if first is None or last is None else (last - first) / _DAY_MS
    return progress(
        control.mean if control else _NAN,
        control.variance if control else _NAN,
        units_per_arm,
        span_days,
        mde=settings.mde,
        power=settings.power,
        alpha=settings.alpha,
    )


# --- preparation: who is in, which events count --------------------------------------------


@dataclass(frozen=True, eq=False)
class _Prepared:
    """Integer-coded units and the events that count, shared by every metric."""

    n_codes: int  # unit codes are 0..n_codes-1; n_codes itself is "no unit"
    unit_arm: np.ndarray  # arm index per unit code (-1: not exposed), length n_codes + 1
    unit_start: np.ndarray  # first exposure ts per unit code
    exposed: np.ndarray  # codes of exposed units
    arm_units: np.ndarray  # exposed units per arm
    base_metrics: tuple[str, ...]  # metric names outcomes are kept for
    ev_unit: np.ndarray  # kept outcomes, grouped by metric: unit code
    ev_value: np.ndarray
    ev_ts: np.ndarray
    ev_slices: dict[str, slice]  # metric name -> its outcomes in the ev_* arrays
    diagnostics: dict[str, int]
    pre_unit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pre_value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pre_slices: dict[str, slice] = field(default_factory=dict)  # pre-exposure window, by metric
    fingerprints: dict[str, dict[str, int]] = field(default_factory=dict)  # arm -> fp -> count


def _prepare(
    experiment: Experiment, exposures: pd.DataFrame, outcomes: pd.DataFrame, cutoff: int | None
) -> _Prepared:
    _require(exposures, "exposures", ("unit_id", "arm"))
    _require(outcomes, "outcomes", ("unit_id", "metric", "value"))
    arms = experiment.arm_names
    diag = dict.fromkeys(DIAGNOSTICS, 0)
    diag["exposures"], diag["outcomes"] = len(exposures), len(outcomes)

    # exposures that count: this experiment, up to as_of, a known arm
    e_keep = _same_experiment(exposures, experiment.id)
    diag["exposures_other_experiment"] = int((~e_keep).sum())
    e_ts = _timestamps_ms(exposures, "exposures")
    if cutoff is not None:
        late = e_keep & (e_ts > cutoff)
        diag["exposures_after_as_of"] = int(late.sum())
        e_keep &= ~late
    e_arm = _category_codes(exposures["arm"], arms)
    unknown = e_keep & (e_arm < 0)
    diag["exposures_unknown_arm"] = int(unknown.sum())
    e_keep &= ~unknown

    # outcomes that may count: this experiment, up to as_of, a metric some metric uses
    base = event_metrics(experiment.metrics)
    o_keep = _same_experiment(outcomes, experiment.id)
    diag["outcomes_other_experiment"] = int((~o_keep).sum())
    o_ts = _timestamps_ms(outcomes, "outcomes")
    if cutoff is not None:
        late = o_keep & (o_ts > cutoff)
        diag["outcomes_after_as_of"] = int(late.sum())
        o_keep &= ~late
    o_metric = _category_codes(outcomes["metric"], base)
    other = o_keep & (o_metric < 0)
    diag["outcomes_other_metric"] = int(other.sum())
    o_keep &= ~other
    o_value = pd.to_numeric(outcomes["value"], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    invalid = o_keep & ~np.isfinite(o_value)
    diag["outcomes_invalid_value"] = int(invalid.sum())
    o_keep &= ~invalid

    e_idx = np.flatnonzero(e_keep)
    o_idx = np.flatnonzero(o_keep)
    e_unit, o_unit, n_codes = _unit_codes(
        exposures["unit_id"].take(e_idx), outcomes["unit_id"].take(o_idx)
    )
    e_ts = e_ts[e_idx]
    e_arm = e_arm[e_idx]
    e_fingerprint = (
        exposures["flow_fingerprint"].take(e_idx).to_numpy(dtype=object)
        if "flow_fingerprint" in exposures
        else np.full(len(e_idx), None, dtype=object)
    )

    # overridden (QA) units are not randomised: treat them as not exposed
    overridden = np.zeros(n_codes + 1, dtype=bool)
    if experiment.overrides and len(e_unit):
        forced = _unit_code_lookup(exposures["unit_id"].take(e_idx), e_unit, experiment.overrides)
        overridden[forced] = True
        diag["units_overridden"] = int(len(forced))
        drop = overridden[e_unit]
        e_unit, e_ts, e_arm = e_unit[~drop], e_ts[~drop], e_arm[~drop]
        e_fingerprint = e_fingerprint[~drop]

    # the first exposure decides the arm (ties: row order)
    order = np.argsort(e_ts, kind="stable")
    u_sorted = e_unit[order]
    first = ~pd.Series(u_sorted).duplicated().to_numpy()
    first_units = u_sorted[first]
    unit_arm = np.full(n_codes + 1, -1, dtype=np.int16)
    unit_arm[first_units] = e_arm[order][first]
    unit_start = np.full(n_codes + 1, np.iinfo(np.int64).max, dtype=np.int64)
    unit_start[first_units] = e_ts[order][first]
    k = len(arms)
    pairs = pd.unique(e_unit.astype(np.int64) * k + e_arm)
    diag["units_multiple_arms"] = int((np.bincount(pairs // k, minlength=n_codes + 1) > 1).sum())
    exposed = np.sort(first_units)
    diag["units"] = int(len(exposed))
    arm_units = np.bincount(unit_arm[exposed], minlength=k)[:k].astype(np.int64)

    # outcomes of exposed units, at or after their first exposure
    o_ts = o_ts[o_idx]
    o_arm_of_unit = unit_arm[o_unit]
    unexposed = o_arm_of_unit < 0
    forced = overridden[o_unit]
    diag["outcomes_overridden"] = int(forced.sum())
    diag["outcomes_unexposed"] = int(unexposed.sum()) - diag["outcomes_overridden"]
    before = ~unexposed & (o_ts < unit_start[o_unit])
    diag["outcomes_before_exposure"] = int(before.sum())
    used = ~(unexposed | before)
    diag["outcomes_used"] = int(used.sum())
    o_arm_field = _category_codes(outcomes["arm"].take(o_idx), arms) if "arm" in outcomes else None
    if o_arm_field is not None:
        diag["outcomes_arm_mismatch"] = int((used & (o_arm_field != o_arm_of_unit)).sum())

    # group the events by metric once; every metric then reads a contiguous slice
    kept, slices = _by_metric(np.flatnonzero(used), o_metric[o_idx], base)
    window_ms = int(experiment.analysis.cuped_window_days * _DAY_MS)
    pre_mask = before & (o_ts >= unit_start[o_unit] - window_ms)
    pre, pre_slices = _by_metric(np.flatnonzero(pre_mask), o_metric[o_idx], base)
    return _Prepared(
        n_codes=n_codes,
        unit_arm=unit_arm,
        unit_start=unit_start,
        exposed=exposed,
        arm_units=arm_units,
        base_metrics=base,
        ev_unit=o_unit[kept],
        ev_value=o_value[o_idx[kept]],
        ev_ts=o_ts[kept],
        ev_slices=slices,
        diagnostics=diag,
        pre_unit=o_unit[pre],
        pre_value=o_value[o_idx[pre]],
        pre_slices=pre_slices,
        fingerprints=_fingerprints(e_arm, e_fingerprint, arms),
    )


def _fingerprints(
    arm: np.ndarray, fingerprint: np.ndarray, arms: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Per arm, the flow fingerprints its exposures recorded and how many of each: one per
    arm unless the arm's flow changed during the experiment (a deploy, a prompt label)."""
    known = np.array([f is not None and f == f for f in fingerprint], dtype=bool)
    counts = pd.DataFrame({"arm": arm[known], "fp": fingerprint[known]}).value_counts()
    found: dict[str, dict[str, int]] = {name: {} for name in arms}
    for (j, fp), n in counts.items():
        found[arms[int(j)]][str(fp)] = int(n)
    return found


def _by_metric(
    positions: np.ndarray, metric_codes: np.ndarray, base: Sequence[str]
) -> tuple[np.ndarray, dict[str, slice]]:
    """`positions` sorted by metric (stable), and each metric's slice of them."""
    codes = metric_codes[positions]
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(base) + 1))
    slices = {name: slice(int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(base)}
    return positions[order], slices


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if "ts" not in frame.columns and "time" not in frame.columns:
        missing.append("ts (or time)")
    if missing:
        raise ValueError(
            f"{name} frame lacks column(s) {', '.join(missing)}; got {list(frame.columns)}"
        )


def _same_experiment(frame: pd.DataFrame, experiment_id: str) -> np.ndarray:
    if "experiment_id" not in frame.columns or len(frame) == 0:
        return np.ones(len(frame), dtype=bool)
    codes = _category_codes(frame["experiment_id"], (experiment_id,))
    return codes == 0


def _timestamps_ms(frame: pd.DataFrame, name: str) -> np.ndarray:
    if "ts" in frame.columns:
        ts = frame["ts"]
        if pd.api.types.is_integer_dtype(ts.dtype) and not ts.hasnans:
            return ts.to_numpy(dtype=np.int64)
        numeric = pd.to_numeric(ts, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(numeric).any():
            raise ValueError(f"{name}: column 'ts' must hold epoch milliseconds without gaps")
        return numeric.astype(np.int64)
    time = pd.to_datetime(frame["time"], utc=True)
    if time.isna().any():
        raise ValueError(f"{name}: column 'time' has missing values")
    naive = time.dt.tz_localize(None).dt.as_unit("ms")  # UTC wall time
    return naive.to_numpy().view(np.int64)


def _category_codes(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Index of each value in ``categories`` (-1 when absent or missing)."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int16)
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = pd.Index(values.cat.categories.astype(str)).get_indexer(list(categories))
        mapping = np.full(len(values.cat.categories) + 1, -1, dtype=np.int16)
        for position, code in enumerate(lookup):
            if code >= 0:
                mapping[code] = position
        return mapping[values.cat.codes.to_numpy()]  # code -1 (missing) picks the last slot
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = pd.Index(list(categories)).get_indexer(pd.Index(uniques).astype(str))
    mapping = np.append(lookup, -1).astype(np.int16)  # code -1 (missing) picks the last slot
    return mapping[codes]


def _as_arrow_strings(values: pd.Series) -> pa.ChunkedArray | pa.Array:
    array = pa.array(values.array) if values.dtype == "str" else None
    if array is None:
        try:
            array = pa.Array.from_pandas(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.Array.from_pandas(values.astype(str))
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not pa.types.is_string(array.type):
        array = array.cast(pa.string())
    return array


def _unit_codes(
    exposure_units: pd.Series, outcome_units: pd.Series
) -> tuple[np.ndarray, np.ndarray, int]:
    """Shared integer codes of exposure and outcome unit ids (missing ids get ``n_codes``)."""
    parts = [_as_arrow_strings(exposure_units), _as_arrow_strings(outcome_units)]
    chunks = [c for p in parts for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])]
    lengths = [len(p) for p in parts]
    if not chunks or sum(lengths) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), 0
    encoded = pa.chunked_array(chunks, type=pa.string()).dictionary_encode()
    n_codes = max(len(chunk.dictionary) for chunk in encoded.chunks)
    codes = np.concatenate(
        [c.indices.fill_null(n_codes).to_numpy(zero_copy_only=False) for c in encoded.chunks]
    ).astype(np.int64)
    return codes[: lengths[0]], codes[lengths[0] :], n_codes


def _unit_code_lookup(units: pd.Series, codes: np.ndarray, wanted: dict[str, str]) -> np.ndarray:
    """Codes of the units whose id is in ``wanted``."""
    mask = units.astype(str).isin(list(wanted)).to_numpy()
    return np.unique(codes[mask])


# --- per-unit values and sufficient statistics ---------------------------------------------


def _events_of(prepared: _Prepared, name: str | None) -> tuple[np.ndarray, np.ndarray]:
    part = prepared.ev_slices[str(name)]
    return prepared.ev_unit[part], prepared.ev_value[part]


def _unit_values(prepared: _Prepared, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the units that count for a non-ratio metric and their per-unit values."""
    size = prepared.n_codes + 1
    units, values = _events_of(prepared, metric.name)
    exposed = prepared.exposed
    if metric.kind == "proportion":
        positive = np.bincount(units, weights=values > 0, minlength=size)
        return exposed, (positive[exposed] > 0).astype(np.float64)
    sums = np.bincount(units, weights=values, minlength=size)
    if metric.aggregate == "sum":
        return exposed, sums[exposed]
    counts = np.bincount(units, minlength=size)[exposed]
    has = counts > 0
    return exposed[has], sums[exposed][has] / counts[has]


def _ratio_values(prepared: _Prepared, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    size = prepared.n_codes + 1
    parts = []
    for name in (metric.numerator, metric.denominator):
        units, values = _events_of(prepared, name)
        parts.append(np.bincount(units, weights=values, minlength=size)[prepared.exposed])
    return parts[0], parts[1]


@dataclass(frozen=True)
class _Cuped:
    adjusted: list[ArmStats]  # per arm: the centred adjusted mean and the adjusted variance
    comparisons: list[Comparison]  # per treatment arm (gbstats' regression adjustment)
    variance_reductions: list[float]  # per treatment arm


def _covariate_stats(
    prepared: _Prepared,
    experiment: Experiment,
    metric: Metric,
    units: np.ndarray,
    y: np.ndarray,
    k: int,
) -> list[CovariateStats] | None:
    """Per arm, the outcome and covariate statistics CUPED needs for one mean or proportion
    metric (:mod:`analysis.cuped`): each unit's covariate is its pre-exposure value of
    ``metric.covariate`` (default: the metric itself) within ``analysis.cuped_window_days``
    before its first exposure, 0 without pre-exposure events. None when the covariate has no
    variance (no pre-exposure data): the plain analysis applies. `units` and `y` are the
    metric's units and (capped) per-unit values."""
    x = _pre_values(prepared, experiment, metric.covariate or metric.name)[units]
    if len(x) < 2 or not np.any(x != x[0]):
        return None
    arm = prepared.unit_arm[units]
    return [CovariateStats.from_values(y[arm == j], x[arm == j]) for j in range(k)]


def _cuped_from(arms: list[CovariateStats], settings: Any) -> _Cuped | None:
    """The CUPED-adjusted arms (theta pooled over all arms; each adjusted mean centred on the
    pooled covariate mean, so it stays on the metric's scale) and gbstats' comparisons.
    None when theta is 0 (nothing to adjust)."""
    theta = pooled_theta(arms)
    if theta == 0.0:
        return None
    total = sum(a.n for a in arms)
    grand_x = sum(a.sum_x for a in arms) / total if total else 0.0
    adjusted = []
    for stats in arms:
        moved = adjust(stats, theta)
        centred = moved.mean + theta * grand_x if stats.n else _NAN
        adjusted.append(ArmStats(stats.n, centred, moved.variance))
    results = [
        compare_adjusted(
            arms[0], arms[j], settings.alpha, settings.sequential, settings.tuning_n, theta=theta
        )
        for j in range(1, len(arms))
    ]
    return _Cuped(adjusted, [c for c, _ in results], [r for _, r in results])


def _pre_values(prepared: _Prepared, experiment: Experiment, name: str) -> np.ndarray:
    """Per unit code, the pre-exposure value of metric `name`: for a proportion the number of
    positive events (a user's past thumbs-up count tells more than whether there was one),
    else the sum of its values."""
    part = prepared.pre_slices.get(name, slice(0, 0))
    units, values = prepared.pre_unit[part], prepared.pre_value[part]
    kinds = {m.name: m.kind for m in experiment.metrics}
    weights = (values > 0).astype(np.float64) if kinds.get(name) == "proportion" else values
    return np.bincount(units, weights=weights, minlength=prepared.n_codes + 1)


def _cap(metric: Metric, values: np.ndarray) -> float | None:
    """The metric's cap, if it has one: its absolute value, or the percentile of the per-unit
    `values` of all arms pooled (:func:`analysis.capping.cap_values`)."""
    if metric.cap is None:
        return None
    _, cap = cap_values([values], absolute=metric.cap.absolute, percentile=metric.cap.percentile)
    return cap if math.isfinite(cap) else None


def _floor(m2: np.ndarray, n: np.ndarray, sum_sq: np.ndarray) -> np.ndarray:
    """Zero out second moments within rounding noise of their sum of squares."""
    return np.where(m2 <= n * _EPS * sum_sq, 0.0, m2)


def _arm_stats(arm: np.ndarray, x: np.ndarray, k: int) -> list[ArmStats]:
    """Two-pass per-arm count, mean and sample variance."""
    n = np.bincount(arm, minlength=k)[:k]
    total = np.bincount(arm, weights=x, minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
    centred = x - mean[arm]
    m2 = _floor(
        np.bincount(arm, weights=centred * centred, minlength=k)[:k],
        n,
        np.bincount(arm, weights=x * x, minlength=k)[:k],
    )
    stats = []
    for j in range(k):
        nj = int(n[j])
        stats.append(
            ArmStats(
                nj,
                float(mean[j]) if nj >= 1 else _NAN,
                float(m2[j] / (nj - 1)) if nj >= 2 else _NAN,
            )
        )
    return stats


def _ratio_stats(arm: np.ndarray, num: np.ndarray, den: np.ndarray, k: int) -> list[RatioStats]:
    """Two-pass per-arm moments of numerator and denominator, with their covariance."""
    n = np.bincount(arm, minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(arm, weights=num, minlength=k)[:k] / n
        my = np.bincount(arm, weights=den, minlength=k)[:k] / n
    dx = num - mx[arm]
    dy = den - my[arm]
    sxx = _floor(
        np.bincount(arm, weights=dx * dx, minlength=k)[:k],
        n,
        np.bincount(arm, weights=num * num, minlength=k)[:k],
    )
    syy = _floor(
        np.bincount(arm, weights=dy * dy, minlength=k)[:k],
        n,
        np.bincount(arm, weights=den * den, minlength=k)[:k],
    )
    sxy = np.bincount(arm, weights=dx * dy, minlength=k)[:k]
    stats = []
    for j in range(k):
        nj = int(n[j])
        if nj == 0:
            stats.append(RatioStats(0, _NAN, _NAN, _NAN, _NAN, _NAN))
        elif nj == 1:
            stats.append(RatioStats(1, float(mx[j]), float(my[j]), _NAN, _NAN, _NAN))
        else:
            d = nj - 1
            stats.append(
                RatioStats(
                    nj,
                    float(mx[j]),
                    float(my[j]),
                    float(sxx[j] / d),
                    float(syy[j] / d),
                    float(sxy[j] / d),
                )
            )
    return stats


def _as_arm_stats(stats: ArmStats | RatioStats) -> ArmStats:
    """A ratio arm as the mean of its linearised per-unit values (the same n, estimate and
    variance of the estimate), so that one set of tests serves both kinds."""
    if isinstance(stats, ArmStats):
        return stats
    if stats.n == 0 or stats.mean_den == 0.0:
        return ArmStats(0, _NAN, _NAN)  # no ratio: nothing to test
    return ArmStats(*_moments(stats))


def _better_up(metric: Metric) -> bool:
    return metric.direction == "increase"


def _moments(stats: ArmStats | RatioStats) -> tuple[int, float, float]:
    """Units, metric value and per-unit variance of one arm, as shown in the table."""
    if isinstance(stats, RatioStats):
        ratio_var = stats.ratio_variance
        return stats.n, stats.ratio, ratio_var * stats.n if stats.n >= 2 else _NAN
    return stats.n, stats.mean, stats.variance


# --- timeline -----------------------------------------------------------------------------


def _granularity(span_ms: int) -> tuple[Granularity, int]:
    """Periods short enough for a readable curve: seconds for a run of a few minutes (a demo,
    a load test), then minutes, hours, days, weeks."""
    if span_ms <= 5 * _MINUTE_MS:
        return "second", _SECOND_MS
    if span_ms <= 3 * _HOUR_MS:
        return "minute", _MINUTE_MS
    if span_ms <= 2 * _DAY_MS:
        return "hour", _HOUR_MS
    if span_ms <= 180 * _DAY_MS:
        return "day", _DAY_MS
    return "week", _WEEK_MS


def _empty_timeline() -> pd.DataFrame:
    empty = pd.DataFrame({name: [] for name in TIMELINE_COLUMNS})
    empty["period"] = pd.to_datetime(empty["period"], utc=True)
    return empty


def _timeline(
    prepared: _Prepared, experiment: Experiment, caps: dict[str, float]
) -> tuple[pd.DataFrame, Granularity, pd.DataFrame]:
    """Cumulative lift per period, from cumulative per-(arm, period) sufficient statistics,
    and the cumulative units per arm and period (every arm, control included)."""
    empty = _empty_timeline()
    exposed = prepared.exposed
    k = len(experiment.arms)
    if len(exposed) == 0 or not experiment.metrics or k < 2:
        return empty, "day", _traffic_frame([], [], [])
    starts = prepared.unit_start[exposed]
    low = int(starts.min())
    high = int(max(starts.max(), prepared.ev_ts.max() if len(prepared.ev_ts) else low))
    granularity, step = _granularity(high - low)
    origin = (low // step) * step
    n_periods = int((high - origin) // step) + 1

    unit_period = np.zeros(prepared.n_codes + 1, dtype=np.int64)
    unit_period[exposed] = (starts - origin) // step
    unit_arm = prepared.unit_arm
    entered = np.bincount(
        unit_arm[exposed] * n_periods + unit_period[exposed], minlength=k * n_periods
    ).reshape(k, n_periods)
    cum_entered = entered.cumsum(axis=1)
    ev_period = (prepared.ev_ts - origin) // step

    settings = experiment.analysis
    periods = pd.to_datetime(origin + step * np.arange(n_periods), unit="ms", utc=True)
    columns: dict[str, list[Any]] = {name: [] for name in TIMELINE_COLUMNS}
    for metric in experiment.metrics:
        per_arm = _cumulative_stats(
            prepared, metric, ev_period, n_periods, unit_arm, cum_entered, k,
            caps.get(metric.name, math.inf),
        )  # fmt: skip
        for t in range(n_periods):
            control = _as_arm_stats(per_arm[0][t])
            for j in range(1, k):
                treatment = per_arm[j][t]
                test = estimand_test(
                    control,
                    _as_arm_stats(treatment),
                    metric.estimand,
                    settings.alpha,
                    settings.sequential,
                    settings.tuning_n,
                )
                columns["period"].append(periods[t])
                columns["metric"].append(metric.name)
                columns["arm"].append(experiment.arms[j].name)
                columns["units"].append(treatment.n)
                columns["estimand"].append(test.estimand)
                columns["effect"].append(test.effect)
                columns["ci_low"].append(test.ci_low)
                columns["ci_high"].append(test.ci_high)
    frame = pd.DataFrame(columns)
    frame["period"] = pd.to_datetime(frame["period"], utc=True)
    frame["units"] = frame["units"].astype(np.int64)
    traffic = _traffic_frame(
        [p for _ in range(k) for p in periods],
        [arm.name for arm in experiment.arms for _ in range(n_periods)],
        cum_entered.reshape(-1).tolist(),
    )
    return frame, granularity, traffic


def _traffic_frame(periods: list[Any], arms: list[str], units: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame({"period": periods, "arm": arms, "units": units})
    frame["period"] = pd.to_datetime(frame["period"], utc=True)
    frame["units"] = frame["units"].astype(np.int64)
    return frame


def _grouped(unit: np.ndarray, period: np.ndarray, n_periods: int, weights: list[np.ndarray]):
    """Per-(unit, period) sums of each weight array, sorted by unit then period."""
    key = unit * n_periods + period
    uniq, inverse = np.unique(key, return_inverse=True)
    sums = [np.bincount(inverse, weights=w, minlength=len(uniq)) for w in weights]
    return uniq // n_periods, uniq % n_periods, sums


def _within_unit_cumsum(group_unit: np.ndarray, values: np.ndarray) -> np.ndarray:
    return pd.Series(values).groupby(group_unit, sort=False).cumsum().to_numpy()


def _previous_in_unit(group_unit: np.ndarray, values: np.ndarray, fill: float) -> np.ndarray:
    """``values`` shifted by one row within each unit's run (``fill`` at a unit's first row)."""
    previous = np.empty_like(values)
    if len(values) == 0:
        return previous
    previous[0] = fill
    previous[1:] = values[:-1]
    previous[np.r_[True, group_unit[1:] != group_unit[:-1]]] = fill
    return previous


def _per_arm_period(arm, period, weights, k, n_periods) -> list[np.ndarray]:
    index = arm * n_periods + period
    return [
        np.bincount(index, weights=w, minlength=k * n_periods).reshape(k, n_periods).cumsum(axis=1)
        for w in weights
    ]


def _cumulative_stats(
    prepared: _Prepared,
    metric: Metric,
    ev_period: np.ndarray,
    n_periods: int,
    unit_arm: np.ndarray,
    cum_entered: np.ndarray,
    k: int,
    cap: float = math.inf,
) -> list[list[ArmStats | RatioStats]]:
    """Per arm and period, the statistics of per-unit values cumulated up to that period
    (mean metrics capped at `cap`: the final analysis's cap, at every period)."""
    slices = prepared.ev_slices
    if metric.kind == "ratio":
        num, den = slices[str(metric.numerator)], slices[str(metric.denominator)]
        num_value, den_value = prepared.ev_value[num], prepared.ev_value[den]
        g_unit, g_period, (sx, sy) = _grouped(
            np.concatenate([prepared.ev_unit[num], prepared.ev_unit[den]]),
            np.concatenate([ev_period[num], ev_period[den]]),
            n_periods,
            [
                np.concatenate([num_value, np.zeros_like(den_value)]),
                np.concatenate([np.zeros_like(num_value), den_value]),
            ],
        )
        x = _within_unit_cumsum(g_unit, sx)
        y = _within_unit_cumsum(g_unit, sy)
        x0 = x - sx
        y0 = y - sy
        sums = _per_arm_period(
            unit_arm[g_unit],
            g_period,
            [sx, sy, x * x - x0 * x0, y * y - y0 * y0, x * y - x0 * y0],
            k,
            n_periods,
        )
        return [
            [
                RatioStats.from_sums(
                    int(cum_entered[j, t]),
                    sums[0][j, t],
                    sums[1][j, t],
                    sums[2][j, t],
                    sums[3][j, t],
                    sums[4][j, t],
                )
                for t in range(n_periods)
            ]
            for j in range(k)
        ]

    sel = slices[metric.name]
    value = prepared.ev_value[sel]
    if metric.kind == "proportion":
        g_unit, g_period, (positive,) = _grouped(
            prepared.ev_unit[sel], ev_period[sel], n_periods, [(value > 0).astype(np.float64)]
        )
        reached = _within_unit_cumsum(g_unit, positive) > 0
        was = _previous_in_unit(g_unit, reached.astype(np.float64), 0.0)
        dx = reached - was
        weights = [dx, dx]  # x is 0/1, so x**2 changes like x
        counts = cum_entered
    elif metric.aggregate == "sum":
        g_unit, g_period, (s,) = _grouped(prepared.ev_unit[sel], ev_period[sel], n_periods, [value])
        cumulated = _within_unit_cumsum(g_unit, s)
        x, x0 = np.minimum(cumulated, cap), np.minimum(cumulated - s, cap)
        weights = [x - x0, x * x - x0 * x0]
        counts = cum_entered
    else:  # mean of the unit's events; a unit counts from its first event on
        g_unit, g_period, (s, c) = _grouped(
            prepared.ev_unit[sel], ev_period[sel], n_periods, [value, np.ones_like(value)]
        )
        x = np.minimum(_within_unit_cumsum(g_unit, s) / _within_unit_cumsum(g_unit, c), cap)
        x0 = _previous_in_unit(g_unit, x, 0.0)
        new = _previous_in_unit(g_unit, np.zeros_like(x), 1.0)
        weights = [x - x0, x * x - x0 * x0, new]
        counts = None
    sums = _per_arm_period(unit_arm[g_unit], g_period, weights, k, n_periods)
    if counts is None:
        counts = np.rint(sums[2]).astype(np.int64)
    return [
        [
            ArmStats.from_sums(int(counts[j, t]), sums[0][j, t], sums[1][j, t])
            for t in range(n_periods)
        ]
        for j in range(k)
    ]


# --- table and summary --------------------------------------------------------------------


_VERDICT_FIELDS = (
    "estimand", "method", "effect", "ci_low", "ci_high", "level", "p_value", "p_adjusted",
    "significant", "chance_to_win", "risk",
)  # fmt: skip
_TEXT_COLUMNS = ("metric", "arm", "estimand", "method", "correction", "status")
_BOOL_COLUMNS = ("significant", "primary", "guardrail")


def _table(rows: Sequence[ArmMetricResult], correction: str) -> pd.DataFrame:
    data: dict[str, list[Any]] = {name: [] for name in TABLE_COLUMNS}
    for r in rows:
        data["metric"].append(r.metric.name)
        data["arm"].append(r.arm)
        data["units"].append(r.units)
        data["mean"].append(r.mean)
        verdict = r.verdict
        for name in _VERDICT_FIELDS:
            column = "ci_level" if name == "level" else name
            data[column].append(None if verdict is None else getattr(verdict, name))
        data["correction"].append(
            None if verdict is None or verdict.method == "bayesian" else correction
        )
        data["significant"][-1] = r.significant
        data["diff"].append(_NAN if r.comparison is None else r.comparison.diff)
        data["lift"].append(_NAN if r.comparison is None else r.comparison.lift)
        data["status"].append(r.status)
        data["primary"].append(r.metric.primary)
        data["guardrail"].append(r.metric.guardrail)
        data["variance"].append(r.variance)
        data["variance_reduction"].append(r.variance_reduction)
    frame = pd.DataFrame(data, columns=list(TABLE_COLUMNS))
    frame["units"] = frame["units"].astype(np.int64)
    for name in _BOOL_COLUMNS:
        frame[name] = frame[name].astype(bool)
    for name in TABLE_COLUMNS:
        if name not in (*_TEXT_COLUMNS, *_BOOL_COLUMNS, "units"):
            frame[name] = frame[name].astype(np.float64)
    return frame


def _signed_number(x: float) -> str:
    return ("+" if x > 0 else "") + format_number(x) if math.isfinite(x) else "–"


def _signed_percent(x: float) -> str:
    return ("+" if x > 0 else "") + format_percent(x) if math.isfinite(x) else "–"


def _interval(low: float, high: float, fmt) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{fmt(low)}, {fmt(high)}]"


def table_row(row: ArmMetricResult) -> TableRow:
    """The row as the results table shows it (:mod:`analysis.table_html`): numbers formatted,
    the verdict's interval in brackets, the status in words, ``css`` marking significant
    changes."""
    flags = tuple(
        flag
        for flag, on in (("primary", row.metric.primary), ("guardrail", row.metric.guardrail))
        if on
    )
    direction = "higher is better" if row.metric.direction == "increase" else "lower is better"
    verdict = row.verdict
    mean_ci = _arm_interval(row)
    if verdict is None:
        return TableRow(
            row.metric.name, row.arm, flags, direction, f"{row.units:,}",
            format_number(row.mean), mean_ci, "", "", "", "", "", "", "", "control", "control",
        )  # fmt: skip
    css = "better" if row.better else "worse" if row.worse else ""
    status = "" if row.status == "ok" else status_message(row.status)
    if row.significant:
        status = ("better" if row.better else "worse") + (f"; {status}" if status else "")
    fmt = _effect_format(verdict)
    return TableRow(
        metric=row.metric.name,
        arm=row.arm,
        flags=flags,
        direction=direction,
        units=f"{row.units:,}",
        mean=format_number(row.mean),
        mean_ci=mean_ci,
        effect=("+" if verdict.effect > 0 else "") + fmt(verdict.effect)
        if math.isfinite(verdict.effect)
        else "–",
        interval=_interval(verdict.ci_low, verdict.ci_high, fmt),
        judged_by=judged_by(verdict) + _cuped_words(row.variance_reduction),
        p_value=format_p(verdict.p_value),
        p_adjusted=format_p(verdict.p_adjusted),
        chance=format_percent(verdict.chance_to_win),
        risk=fmt(verdict.risk) if math.isfinite(verdict.risk) else "",
        status=status,
        css=css,
    )


def _arm_interval(row: ArmMetricResult) -> str:
    """A proportion's own 95% Wilson interval, which stays inside [0, 1] and is honest with
    few or no events ("[0, 0.55%]" for 0 of 700)."""
    if row.metric.kind != "proportion" or row.units == 0 or not math.isfinite(row.mean):
        return ""
    low, high = wilson_interval(round(row.mean * row.units), row.units)
    return _interval(low, high, format_percent)


def _cuped_words(reduction: float) -> str:
    """ ", CUPED: 38% less variance" when the row is CUPED-adjusted."""
    if not math.isfinite(reduction):
        return ""
    return f", CUPED: {format_percent(reduction)} less variance"


def _effect_format(verdict: Verdict):
    return format_percent if verdict.estimand == "relative" else format_number


def judged_by(verdict: Verdict) -> str:
    """How the row was judged, e.g. "relative lift, fixed horizon, 98.3% CI (holm)"."""
    scale = "relative lift" if verdict.estimand == "relative" else "absolute difference"
    method = {"fixed": "fixed horizon", "sequential": "sequential", "bayesian": "Bayesian"}
    kind = "credible interval" if verdict.method == "bayesian" else "CI"
    level = f"{verdict.level * 100:.3g}% {kind}"
    return f"{scale}, {method[verdict.method]}, {level}"


def _ci_words(result: ArmMetricResult) -> str:
    verdict = result.verdict
    assert verdict is not None
    kind = "credible interval" if verdict.method == "bayesian" else "CI"
    level = f"{verdict.level * 100:.3g}% {kind}"
    if math.isfinite(verdict.ci_low) and math.isfinite(verdict.ci_high):
        fmt = _effect_format(verdict)
        return f"{level} {fmt(verdict.ci_low)} to {fmt(verdict.ci_high)}"
    return "no interval"


def _effect_words(result: ArmMetricResult) -> str:
    verdict = result.verdict
    assert verdict is not None
    return _effect_format(verdict)(abs(verdict.effect))


def _signed_effect(result: ArmMetricResult) -> str:
    verdict = result.verdict
    assert verdict is not None
    if not math.isfinite(verdict.effect):
        return "–"
    return ("+" if verdict.effect > 0 else "") + _effect_format(verdict)(verdict.effect)


def _untestable(result: ArmMetricResult) -> bool:
    verdict = result.verdict
    return verdict is None or not (math.isfinite(verdict.ci_low) and math.isfinite(verdict.ci_high))


def _primary_clause(result: ArmMetricResult, alpha: float) -> str:
    name = result.metric.name
    if _untestable(result):
        return f"{name} cannot be judged yet ({status_message(result.status)})"
    verdict = result.verdict
    assert verdict is not None
    if result.significant:
        verb = "raises" if verdict.effect > 0 else "lowers"
        return f"{verb} {name} by {_effect_words(result)} ({_ci_words(result)})"
    caveat = " after correcting for multiple comparisons" if verdict.p_value < alpha else ""
    return (
        f"shows no significant change in {name}{caveat} "
        f"({_signed_effect(result)}, {_ci_words(result)})"
    )


def _arm_sentence(result: ExperimentResult, arm: str) -> str:
    metrics = result.experiment.metrics
    primaries = [m for m in metrics if m.primary] or [m for m in metrics if not m.guardrail]
    guardrails = [m for m in metrics if m.guardrail and m not in primaries]
    alpha = result.alpha
    clauses = [_primary_clause(result.row(m.name, arm), alpha) for m in primaries]
    sentence = arm + " " + " and ".join(clauses) if clauses else f"{arm} has no primary metric"
    if guardrails:
        rows = [result.row(m.name, arm) for m in guardrails]
        worse = [r for r in rows if r.worse and r.metric.margin is None]
        unjudged = [r for r in rows if _untestable(r)]
        parts = []
        if worse:
            listed = ", ".join(
                f"{r.metric.name} ({_signed_effect(r)}, {_ci_words(r)})" for r in worse
            )
            noun = "guardrail" if len(worse) == 1 else "guardrails"
            verb = "is" if len(worse) == 1 else "are"
            parts.append(f"{noun} {listed} {verb} worse")
        else:
            parts.append("no guardrail is worse")
        margins = {g.metric: g for g in result.guardrails if g.arm == arm}
        unjudged = [r for r in unjudged if r.metric.margin is None]
        if unjudged:
            names = ", ".join(r.metric.name for r in unjudged)
            parts.append(f"{names} cannot be judged yet")
        parts.extend(margins[r.metric.name].sentence for r in rows if r.metric.margin and (
            r.metric.name in margins
        ))  # fmt: skip
        sentence += "; " + "; ".join(parts)
    return sentence + "."


def _summary_sentences(result: ExperimentResult) -> list[str]:
    sentences: list[str] = []
    if sum(result.units_per_arm.values()) == 0:
        sentences.append("No units have been exposed yet, so there is nothing to compare.")
    elif not result.experiment.metrics:
        sentences.append("The experiment defines no metrics.")
    else:
        for arm in result.arms[1:]:
            sentences.append(_arm_sentence(result, arm))
        for decision in result.decisions:
            sentences.append(
                f"Decision for {decision.arm}: {decision.decision} ({decision.reason})."
            )
        if result.progress is not None and result.experiment.analysis.mde is not None:
            sentences.append(f"Progress: {result.progress.sentence}.")
    if result.srm_warning:
        counts = ", ".join(f"{arm} {n:,}" for arm, n in result.units_per_arm.items())
        weights = ", ".join(
            f"{arm.name} {format_percent(arm.weight)}" for arm in result.experiment.arms
        )
        sentences.append(
            f"Warning: sample ratio mismatch (p = {result.srm_p_value:.2g}): units per arm "
            f"({counts}) do not match the configured weights ({weights}); check assignment and "
            "logging before trusting these results."
        )
    return sentences
