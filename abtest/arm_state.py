"""Runtime state of arms (active or stopped) and its audit log, kept in the store.

A safe rollout stops a harmful arm without editing the experiment file (DESIGN.md, Safe
rollouts): the file says what the experiment is, the store says what is live. Two keys per
experiment, hash-tagged like its streams so they share one Redis Cluster slot:

- `abtest:{<id>}:arm_state`, a hash: arm name -> JSON `{"state", "reason", "stopped_at",
  "actor"}`; an arm without a field is active;
- `abtest:{<id>}:audit`, a stream: one entry per change, field `data` = JSON `{"ts", "arm",
  "action", "actor", "reason", "statistics"}`.

A change is one Lua script: it compares the arm's current state, and only when the state
changes appends the audit entry and then sets the state, so every decision is in the audit
stream before it takes effect, and two deciders (the monitor and an admin) cannot log one
stop twice. This module is the encoding only (keys, script, parsers), no I/O: the calls
are in `abtest.state_store` (the service, the monitor, the CLI) and `analysis.load` (reports).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CHANGE_SCRIPT",
    "Action",
    "ArmState",
    "ArmStateError",
    "AuditEntry",
    "audit_key",
    "change_args",
    "check_change",
    "parse_audit",
    "parse_states",
    "states_key",
]

Action = Literal["stop", "resume"]
AUDIT_MAXLEN = 10_000
"""Audit entries kept per experiment (approximate trimming)."""

CHANGE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local state = 'active'
if current then state = cjson.decode(current)['state'] end
if state == ARGV[2] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[4])
if ARGV[2] == 'active' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""


class ArmStateError(ValueError):
    """A change that cannot be made (the control arm cannot be stopped)."""


@dataclass(frozen=True)
class ArmState:
    """An arm's runtime state; `stopped_at` is epoch milliseconds."""

    arm: str
    state: Literal["active", "stopped"] = "active"
    reason: str | None = None
    stopped_at: int | None = None
    actor: str | None = None

    @property
    def stopped(self) -> bool:
        return self.state == "stopped"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "stopped_at": self.stopped_at,
            "actor": self.actor,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One change of an arm's state: who or what made it, why, and the statistics then."""

    experiment_id: str
    arm: str
    action: Action
    actor: str
    reason: str
    ts: int
    statistics: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "experiment_id": self.experiment_id,
            "arm": self.arm,
            "action": self.action,
            "actor": self.actor,
            "reason": self.reason,
            "statistics": self.statistics,
        }


def states_key(experiment_id: str) -> str:
    return f"abtest:{{{experiment_id}}}:arm_state"


def audit_key(experiment_id: str) -> str:
    return f"abtest:{{{experiment_id}}}:audit"


def check_change(arm_names: Sequence[str], arm: str, action: str) -> None:
    """Refuse what no store call should attempt: an unknown arm (KeyError), an unknown
    action, or stopping the control (the first arm), which stopped units fall back to."""
    if arm not in arm_names:
        raise KeyError(f"no arm '{arm}' (arms: {', '.join(arm_names)})")
    if action not in ("stop", "resume"):
        raise ArmStateError(f"action must be 'stop' or 'resume', got {action!r}")
    if action == "stop" and arm == arm_names[0]:
        raise ArmStateError(
            f"'{arm}' is the control arm: stopped arms fall back to it, so it cannot be stopped"
        )


def change_args(
    experiment_id: str,
    arm: str,
    action: Action,
    actor: str,
    reason: str,
    statistics: Mapping[str, Any] | None,
    now_ms: int | None,
) -> tuple[AuditEntry, list[str], list[str]]:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    entry = AuditEntry(experiment_id, arm, action, actor, reason, now, dict(statistics or {}))
    target = "stopped" if action == "stop" else "active"
    state = ArmState(arm, "stopped", reason, now, actor) if action == "stop" else None
    audit = {k: v for k, v in entry.as_dict().items() if k not in ("id", "experiment_id")}
    args = [
        arm,
        target,
        json.dumps(state.as_dict() if state else {"state": "active"}, sort_keys=True),
        json.dumps(audit, sort_keys=True, allow_nan=False, default=_plain),
        str(AUDIT_MAXLEN),
    ]
    return entry, [states_key(experiment_id), audit_key(experiment_id)], args


def _plain(value: Any) -> Any:
    """NumPy scalars and other number-likes in statistics, as JSON numbers or text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_states(raw: Mapping[Any, Any], arms: Sequence[str]) -> dict[str, ArmState]:
    """Every arm's state from the states hash (as `HGETALL` returns it), in `arms` order."""
    stored = {_text(k): json.loads(v) for k, v in raw.items()}
    states = {}
    for arm in arms:
        data = stored.get(arm)
        if data is None or data.get("state") != "stopped":
            states[arm] = ArmState(arm)
        else:
            states[arm] = ArmState(
                arm, "stopped", data.get("reason"), data.get("stopped_at"), data.get("actor")
            )
    return states


def parse_audit(
    experiment_id: str, raw: Sequence[tuple[Any, Mapping[Any, Any]]]
) -> list[AuditEntry]:
    entries = []
    for entry_id, fields in raw:
        data = json.loads(_text(fields.get(b"data", fields.get("data", "{}"))))
        entries.append(
            AuditEntry(
                experiment_id=experiment_id,
                arm=str(data.get("arm", "")),
                action=data.get("action", "stop"),
                actor=str(data.get("actor", "")),
                reason=str(data.get("reason", "")),
                ts=int(data.get("ts", 0)),
                statistics=dict(data.get("statistics") or {}),
                id=_text(entry_id),
            )
        )
    return entries
