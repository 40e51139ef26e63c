"""What an analysis needs from the events: per-(metric, arm) sufficient statistics.

The per-unit aggregation (deduplication, first exposure, joining outcomes to exposed units,
per-unit values, caps, pre-exposure covariates) is done either in memory by pandas/NumPy
(:func:`analysis.analyze.experiment_stats`) or by DuckDB over Parquet exports
(:mod:`analysis.columnar`); both produce an :class:`ExperimentStats`, and
:func:`analysis.analyze.analyze_stats` turns it into results. Sums and moments are all an
analysis needs, which is what lets it scale past memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from abtest.experiments import Metric
from analysis.cuped import CovariateStats
from analysis.stats import ArmStats, RatioStats

__all__ = ["DIAGNOSTICS", "ExperimentStats", "as_of_ms", "event_metrics"]

DIAGNOSTICS: tuple[str, ...] = (
    "exposures",
    "exposures_other_experiment",
    "exposures_after_as_of",
    "exposures_unknown_arm",
    "units",
    "units_multiple_arms",
    "units_overridden",
    "outcomes",
    "outcomes_other_experiment",
    "outcomes_after_as_of",
    "outcomes_other_metric",
    "outcomes_invalid_value",
    "outcomes_unexposed",
    "outcomes_overridden",
    "outcomes_before_exposure",
    "outcomes_arm_mismatch",
    "outcomes_used",
)
"""The keys of ``ExperimentStats.diagnostics``, in order, whichever path computed them."""


@dataclass(frozen=True)
class ExperimentStats:
    """Sufficient statistics of one experiment, arms in the definition's order.

    Attributes
    ----------
    arm_units : tuple of int
        Exposed (randomised, not overridden) units per arm.
    first_exposure_ms, last_exposure_ms : int or None
        Epoch ms of the first exposure of the first and of the last unit to enter.
    metrics : dict of str to list of ArmStats or RatioStats
        Per metric, per arm: the statistics of the per-unit values (capped where the metric
        asks for it).
    covariates : dict of str to list of CovariateStats
        Per mean or proportion metric whose covariate has pre-exposure data (CUPED), per arm:
        the per-unit outcome ``y`` (as in ``metrics``) with its covariate ``x``.
    caps : dict of str to float
        The cap applied to each capped metric.
    diagnostics : dict of str to int
        Counts of dropped or suspicious events and units.
    fingerprints : dict of str to dict of str to int
        Per arm, the flow fingerprints its exposures recorded and how many of each.
    """

    arm_units: tuple[int, ...]
    first_exposure_ms: int | None
    last_exposure_ms: int | None
    metrics: dict[str, list[ArmStats | RatioStats]]
    covariates: dict[str, list[CovariateStats]] = field(default_factory=dict)
    caps: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, dict[str, int]] = field(default_factory=dict)


def event_metrics(metrics: Sequence[Metric]) -> tuple[str, ...]:
    """The event metric names an analysis reads: each metric, a ratio's two parts, covariates.

    Both aggregation paths filter outcomes to these names first, so they must agree on them.
    """
    names: list[str] = []
    for metric in metrics:
        parts = (metric.numerator, metric.denominator) if metric.kind == "ratio" else (metric.name,)
        for part in (*parts, metric.covariate):
            if part is not None and part not in names:
                names.append(part)
    return tuple(names)


def as_of_ms(as_of: Any) -> int | None:
    """``as_of`` (epoch ms, datetime or ISO string; naive means UTC) as epoch milliseconds.

    One parser for both aggregation paths, so a cutoff means the same instant in each.
    """
    if as_of is None:
        return None
    if isinstance(as_of, bool):
        raise ValueError(f"as_of must be a time, got {as_of!r}")
    if isinstance(as_of, int | np.integer):
        return int(as_of)
    try:
        stamp = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"as_of ({as_of!r}) is not a time: {exc}") from None
    if stamp is pd.NaT:
        raise ValueError(f"as_of ({as_of!r}) is not a time")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(dt.UTC)
    return int((stamp - pd.Timestamp(0, tz=dt.UTC)) // pd.Timedelta(milliseconds=1))
