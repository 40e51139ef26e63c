"""Keeps every process's view of stopped arms fresh: a background task of the lifespan reads
the arms' runtime state from the store every `ABTEST_STATE_REFRESH_S` seconds (default 1) and
hands it to the live platform, so a stop made by the monitor or an admin on any replica
reaches every worker within about that long. A failed read keeps the last known state (the
event log's spool covers the store being away; assignment must not stop with it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import redis

from abtest.arm_state import ArmState
from abtest.platform import Platform
from abtest.state_store import aread_states
from abtest.telemetry import Telemetry

logger = logging.getLogger("abtest.api")


def apply_states(
    platform: Platform, telemetry: Telemetry, experiment_id: str, states: Mapping[str, ArmState]
) -> None:
    """Make `states` live in this process: the arms assignment skips, and `/metrics`."""
    stopped = frozenset(arm for arm, state in states.items() if state.stopped)
    platform.set_stopped_arms(experiment_id, stopped)
    telemetry.set_arm_states({experiment_id: states})


async def refresh_once(app: Any) -> dict[str, dict[str, ArmState]]:
    """Read every experiment's arm states and apply them to the live platform; returns them."""
    platform = app.state.platform
    seen: dict[str, dict[str, ArmState]] = {}
    for experiment_id, experiment in platform.experiments.items():
        states = await aread_states(app.state.redis, experiment_id, experiment.arm_names)
        apply_states(platform, app.state.telemetry, experiment_id, states)
        seen[experiment_id] = states
    return seen


async def refresh_forever(app: Any, every_s: float) -> None:
    """`refresh_once` every `every_s` seconds until cancelled."""
    while True:
        try:
            await refresh_once(app)
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            logger.warning("arm states not refreshed (keeping the last known): %s", exc)
        await asyncio.sleep(every_s)
