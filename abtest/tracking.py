"""What gets recorded, and when: the rules that turn assignments and runs into events.

Pure functions over plain data, shared by the API, the CLI and the demo, so the rules live in
one place: only units inside an experiment are exposed; every run records the automatic
outcomes; an outcome's arm is the router's, never the client's; outcomes must name a metric the
experiment knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from abtest.event_fields import Exposure, Outcome
from abtest.experiments import AUTOMATIC_METRICS, Experiment
from abtest.router import Assignment


class OutcomeRejected(ValueError):
    """An outcome the experiment cannot attribute (unknown metric, unit not in it)."""


def known_metrics(experiment: Experiment) -> tuple[str, ...]:
    """Metrics a client may post: declared non-ratio metrics and the automatic run metrics.

    Ratio metrics are computed from their parts, so they are never posted themselves.
    """
    declared = tuple(m.name for m in experiment.metrics if m.kind != "ratio")
    return declared + tuple(m for m in AUTOMATIC_METRICS if m not in declared)


def exposure(
    assignment: Assignment,
    unit_id: str,
    request_id: str,
    definition_sha: str,
    flow_fingerprint: str,
    *,
    source: str = "api",
    event_id: str | None = None,
) -> Exposure | None:
    """The exposure of an assignment, or None for a unit outside the experiment. `source`
    says who saw it (the service, or a client's SDK); a client's `event_id` makes a resent
    report idempotent."""
    if not assignment.in_experiment:
        return None
    extra = {"event_id": event_id} if event_id is not None else {}
    return Exposure(
        experiment_id=assignment.experiment_id,
        unit_id=unit_id,
        arm=assignment.arm,
        request_id=request_id,
        definition_sha=definition_sha,
        flow_fingerprint=flow_fingerprint,
        source=source,
        **extra,
    )


def client_arm_mismatch(assignment: Assignment, claimed_arm: str) -> str | None:
    """Why a client's report that it exposed a unit to `claimed_arm` is refused, or None when
    the server assigns the unit there too: the server recomputes, never trusts, the arm."""
    if not assignment.in_experiment:
        return (
            f"the unit is not in the experiment (reason '{assignment.reason}'), but the "
            f"client reported arm '{claimed_arm}'"
        )
    if assignment.arm != claimed_arm:
        return (
            f"the unit's arm is '{assignment.arm}' (reason '{assignment.reason}'), but the "
            f"client reported '{claimed_arm}'"
        )
    return None


class RunUsage(Protocol):
    """What the automatic outcomes read of a finished run.

    `abtest.flows.FlowResult` is one. Described here rather than imported, so that these rules
    stay below the flow runtime (a layer up) and can be tested with a plain object.
    """

    @property
    def run_id(self) -> str: ...

    @property
    def ok(self) -> bool: ...

    @property
    def latency_ms(self) -> float: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> float: ...


def run_outcomes(assignment: Assignment, unit_id: str, result: RunUsage) -> list[Outcome]:
    """The automatic outcomes of one run (DESIGN.md, Events), empty outside the experiment."""
    if not assignment.in_experiment:
        return []
    values = {
        "latency_ms": result.latency_ms,
        "prompt_tokens": float(result.prompt_tokens),
        "completion_tokens": float(result.completion_tokens),
        "cost_usd": result.cost_usd,
        "error": 0.0 if result.ok else 1.0,
        "responses": 1.0,
    }
    return [
        Outcome(
            experiment_id=assignment.experiment_id,
            unit_id=unit_id,
            arm=assignment.arm,
            metric=metric,
            value=values[metric],
            request_id=result.run_id,
        )
        for metric in AUTOMATIC_METRICS
    ]


@dataclass(frozen=True)
class OutcomeReport:
    """An outcome as a client reports it: no arm, which the router decides."""

    experiment_id: str
    unit_id: str
    metric: str
    value: float
    request_id: str = ""
    event_id: str | None = None
    ts: int | None = None


def attributed_outcome(
    experiment: Experiment, assignment: Assignment, report: OutcomeReport
) -> Outcome:
    """The outcome event for a client's report, with the router's arm.

    Raises `OutcomeRejected` for a metric the experiment does not know or a unit that is not
    in the experiment (its outcome could not be attributed to any arm).
    """
    metrics = known_metrics(experiment)
    if report.metric not in metrics:
        raise OutcomeRejected(
            f"metric '{report.metric}' is not a metric of experiment '{experiment.id}' "
            f"(known: {', '.join(metrics)})"
        )
    if not assignment.in_experiment:
        raise OutcomeRejected(
            f"unit '{report.unit_id}' is not in experiment '{experiment.id}' "
            f"({assignment.reason}); outcomes are recorded only for participants"
        )
    extra: dict[str, object] = {}
    if report.event_id is not None:
        extra["event_id"] = report.event_id
    if report.ts is not None:
        extra["ts"] = report.ts
    return Outcome(
        experiment_id=experiment.id,
        unit_id=report.unit_id,
        arm=assignment.arm,
        metric=report.metric,
        value=report.value,
        request_id=report.request_id,
        **extra,
    )
