"""Keeps every process's view of stopped arms fresh: a background task of the lifespan reads
the arms' runtime state from the store every `ABTEST_STATE_REFRESH_S` seconds (default 1) and
hands it to the live platform, so a stop made by the monitor or an admin on any replica
reaches every worker within about that long. A failed read keeps the last known state (the
event log's spool covers the store being away; assignment must not stop with it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis

from abtest.arm_state import ArmState
from abtest.state_store import aread_states

logger = logging.getLogger("abtest.api")


async def refresh_once(app: Any) -> dict[str, dict[str, ArmState]]:
    """Read every experiment's arm states and apply them to the live platform; returns them."""
    platform = app.state.platform
    client = app.state.redis
    seen: dict[str, dict[str, ArmState]] = {}
    for experiment_id, experiment in platform.experiments.items():
        states = await aread_states(client, experiment_id, experiment.arm_names)
        stopped = frozenset(arm for arm, state in states.items() if state.stopped)
        platform.set_stopped_arms(experiment_id, stopped)
        seen[experiment_id] = states
    app.state.telemetry.set_arm_states(seen)
    return seen


async def refresh_forever(app: Any, every_s: float) -> None:
    """`refresh_once` every `every_s` seconds until cancelled."""
    while True:
        try:
            await refresh_once(app)
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            logger.warning("arm states not refreshed (keeping the last known): %s", exc)
        await asyncio.sleep(every_s)
