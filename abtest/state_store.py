"""The store calls for runtime state: arms' states and audit log (`abtest.arm_state`), and
fingerprint manifests (`abtest.fingerprints`), on blocking and asyncio clients.

The encodings live in those two schema modules, so analysis can read the same keys without
this edge module; the service, the monitor and the CLI write and read through here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from abtest.arm_state import (
    CHANGE_SCRIPT,
    Action,
    ArmState,
    AuditEntry,
    audit_key,
    change_args,
    parse_audit,
    parse_states,
    states_key,
)
from abtest.fingerprints import PromptRecord, manifest_json, manifests_key

__all__ = [
    "ManifestRecorder",
    "achange_state",
    "aread_audit",
    "aread_states",
    "change_state",
    "read_audit",
    "read_states",
]

logger = logging.getLogger("abtest.state_store")

#: A process remembers this many fingerprints it has written before it starts forgetting
#: (forgetting only costs one redundant `HSETNX`).
MAX_REMEMBERED = 4096


def change_state(
    client: Any,
    experiment_id: str,
    arm: str,
    action: Action,
    *,
    actor: str,
    reason: str,
    statistics: Mapping[str, Any] | None = None,
    now_ms: int | None = None,
) -> AuditEntry | None:
    """Stop or resume `arm`; the audit entry written, or None when the arm already was in
    that state (nothing written). Callers check the change first (`check_change`)."""
    entry, keys, args = change_args(experiment_id, arm, action, actor, reason, statistics, now_ms)
    changed = client.eval(CHANGE_SCRIPT, len(keys), *keys, *args)
    return entry if int(changed) else None


async def achange_state(
    client: Any,
    experiment_id: str,
    arm: str,
    action: Action,
    *,
    actor: str,
    reason: str,
    statistics: Mapping[str, Any] | None = None,
    now_ms: int | None = None,
) -> AuditEntry | None:
    """`change_state` on an asyncio client."""
    entry, keys, args = change_args(experiment_id, arm, action, actor, reason, statistics, now_ms)
    changed = await client.eval(CHANGE_SCRIPT, len(keys), *keys, *args)
    return entry if int(changed) else None


def read_states(client: Any, experiment_id: str, arms: Sequence[str]) -> dict[str, ArmState]:
    """Every arm's state, in `arms` order (active unless stopped)."""
    return parse_states(client.hgetall(states_key(experiment_id)), arms)


async def aread_states(client: Any, experiment_id: str, arms: Sequence[str]) -> dict[str, ArmState]:
    """`read_states` on an asyncio client."""
    return parse_states(await client.hgetall(states_key(experiment_id)), arms)


def read_audit(client: Any, experiment_id: str, count: int = 200) -> list[AuditEntry]:
    """The latest `count` audit entries, oldest first."""
    raw = client.xrevrange(audit_key(experiment_id), count=count)
    return parse_audit(experiment_id, list(reversed(raw)))


async def aread_audit(client: Any, experiment_id: str, count: int = 200) -> list[AuditEntry]:
    """`read_audit` on an asyncio client."""
    raw = await client.xrevrange(audit_key(experiment_id), count=count)
    return parse_audit(experiment_id, list(reversed(raw)))


class ManifestRecorder:
    """Writes each (experiment, fingerprint) manifest once per process, through an asyncio
    Redis (or Redis Cluster) client."""

    def __init__(self) -> None:
        self._written: set[tuple[str, str]] = set()

    async def record(
        self,
        client: Any,
        experiment_id: str,
        fingerprint: str,
        arm: str,
        prompts: Mapping[str, PromptRecord],
    ) -> None:
        key = (experiment_id, fingerprint)
        if key in self._written:
            return
        try:
            await client.hsetnx(
                manifests_key(experiment_id), fingerprint, manifest_json(arm, prompts)
            )
        except (redis.RedisError, OSError) as exc:
            logger.warning("fingerprint manifest %s not written (will retry): %s", fingerprint, exc)
            return
        if len(self._written) >= MAX_REMEMBERED:
            self._written.clear()
        self._written.add(key)
