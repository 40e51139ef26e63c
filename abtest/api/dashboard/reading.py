"""What the dashboard reads from the store, and nothing else: the analysis of an experiment's
events (the same `analyze_stored` and `to_json` as `GET /v1/experiments/{id}/results`, so the
page and the API show one set of numbers), the arms' live states, the audit log and the
prompts each arm uses now.

The analysis runs in a worker thread (pandas work off the event loop) and is kept for
`RESULT_TTL_S` seconds, so that several open dashboards polling every few seconds cost one
analysis, not one each.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.exceptions

from abtest import store
from abtest.arm_state import ArmState, AuditEntry
from abtest.experiments import Experiment
from abtest.flows.registry import PromptUse
from abtest.platform import Platform
from abtest.prompts import PromptNotFoundError, PromptRegistryError
from abtest.state_store import aread_audit, aread_states
from analysis.analyze import ExperimentResult
from analysis.report import analyze_stored, to_json

RESULT_TTL_S = 1.0
"""How long an analysis is reused before the events are read again."""

STORE_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    redis.exceptions.RedisClusterException,
    store.StoreError,
    OSError,
)
"""What a read raises while the store cannot be reached (the page answers 503)."""


@dataclass(frozen=True)
class Reading:
    """One experiment as read at one moment: its analysis (`result`, and `results`, its JSON
    as the API answers it) and the arms' live states."""

    experiment: Experiment
    result: ExperimentResult
    results: dict[str, Any]
    states: dict[str, ArmState]
    read_at: float


@dataclass(frozen=True)
class ArmPrompts:
    """The templates an arm uses now and its current flow fingerprint; `problem` says why
    they could not be read (a registry label that no longer resolves)."""

    arm: str
    prompts: dict[str, PromptUse] = field(default_factory=dict)
    fingerprint: str = ""
    problem: str = ""


@dataclass(frozen=True)
class Details:
    """What only the experiment page shows: the audit log and the prompts per arm."""

    audit: list[AuditEntry]
    prompts: list[ArmPrompts]


class ResultCache:
    """Analyses by (experiment, definition hash), each reused for `ttl_s` seconds."""

    def __init__(self, ttl_s: float = RESULT_TTL_S):
        self.ttl_s = ttl_s
        self._kept: dict[tuple[str, str], tuple[float, ExperimentResult]] = {}

    async def result(self, experiment: Experiment, redis_url: str) -> ExperimentResult:
        key = (experiment.id, experiment.definition_sha)
        kept = self._kept.get(key)
        now = time.monotonic()
        if kept is not None and now - kept[0] < self.ttl_s:
            return kept[1]
        client = store.sync_client(redis_url)
        result = await asyncio.to_thread(analyze_stored, experiment, client)
        stale = [k for k in self._kept if k[0] == experiment.id]  # older definitions
        for old in stale:
            del self._kept[old]
        self._kept[key] = (time.monotonic(), result)
        return result


async def read_experiment(state: Any, experiment_id: str) -> Reading:
    """Analyse one experiment and read its arms' states. Raises `UnknownExperimentError`
    for an id the platform does not serve and one of `STORE_ERRORS` when the store is down."""
    platform: Platform = state.platform
    experiment = platform.router.experiment(experiment_id)
    cache: ResultCache = state.dashboard_results
    result = await cache.result(experiment, state.redis_url)
    states = await aread_states(state.redis, experiment_id, experiment.arm_names)
    return Reading(experiment, result, to_json(result), states, time.time())


async def read_all(state: Any) -> list[Reading]:
    """Every experiment the platform serves, in id order."""
    platform: Platform = state.platform
    return [await read_experiment(state, eid) for eid in sorted(platform.experiments)]


async def read_details(state: Any, experiment: Experiment) -> Details:
    """The audit log (oldest first) and each arm's prompts."""
    audit = await aread_audit(state.redis, experiment.id)
    platform: Platform = state.platform
    prompts = await asyncio.to_thread(
        lambda: [arm_prompts(platform, experiment.id, arm) for arm in experiment.arm_names]
    )
    return Details(audit, prompts)


def arm_prompts(platform: Platform, experiment_id: str, arm: str) -> ArmPrompts:
    """The arm's templates now (registry labels resolved) and its fingerprint; a label that
    cannot be resolved is shown as a problem of that arm, not an error of the page."""
    try:
        prompts = platform.flows.prompts(experiment_id, arm)
        fingerprint = platform.fingerprint(experiment_id, arm)
    except (PromptNotFoundError, PromptRegistryError) as exc:
        return ArmPrompts(arm, problem=f"prompts cannot be resolved: {exc}")
    return ArmPrompts(arm, dict(prompts), fingerprint)
