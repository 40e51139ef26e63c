"""What a stopped arm changes for the analysis.

After a safe rollout (or an admin) stops an arm, its units get the control's config and are
no longer exposed, while the other arms keep taking units: the traffic split stops matching
the weights by design, not because assignment or logging broke. The sample-ratio check is
therefore made on the units that entered before the first stop, when every arm was taking
its share; everything else (units exposed before the stop are analysed as usual) is
unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from abtest.arm_state import ArmState, AuditEntry
from analysis.analyze import ExperimentResult
from analysis.drift import first_exposures
from analysis.stats import srm_p_value

__all__ = ["first_stop_ms", "with_arm_states"]


def first_stop_ms(states: Mapping[str, ArmState], audit: Sequence[AuditEntry]) -> int | None:
    """When an arm was first stopped (epoch ms), from the audit log and the current states (a
    resumed arm was stopped once all the same); None if no arm ever was."""
    times = [entry.ts for entry in audit if entry.action == "stop"]
    times += [s.stopped_at for s in states.values() if s.stopped and s.stopped_at is not None]
    return min(times) if times else None


def with_arm_states(
    result: ExperimentResult,
    exposures: pd.DataFrame,
    states: Mapping[str, ArmState],
    audit: Sequence[AuditEntry],
) -> ExperimentResult:
    """`result` with the arms' runtime states and audit log, and, when an arm was stopped,
    the sample-ratio p-value of the units that entered before the first stop."""
    result = dataclasses.replace(result, arm_states=dict(states), audit=tuple(audit))
    until = first_stop_ms(states, audit)
    if until is None:
        return result
    experiment = result.experiment
    firsts = first_exposures(experiment, exposures)
    before = firsts[firsts["ts"].astype("int64") <= until]
    counts = [int((before["arm"] == arm).sum()) for arm in experiment.arm_names]
    weights = [arm.weight for arm in experiment.arms]
    p = srm_p_value(counts, weights) if sum(counts) > 0 else math.nan
    return dataclasses.replace(
        result, srm_p_value=p, srm_until=pd.Timestamp(until, unit="ms", tz="UTC")
    )
