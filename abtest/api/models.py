"""Request and response models of the API (pydantic at the boundary)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

MAX_BATCH = 1000
UNIT_ID_MAX = 256
ATTRIBUTES_MAX_DEPTH = 10
"""Deepest nesting of a unit's attributes (the object itself is level 1)."""
ATTRIBUTES_MAX_BYTES = 65_536
"""Largest JSON size of a unit's attributes, well below the body limits."""


def _depth(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= ATTRIBUTES_MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, level + 1) for child in children)
    return deepest


def _shallow(attributes: Any) -> Any:
    """Refuse deep nesting before pydantic walks it (its own limit would name every level)."""
    if _depth(attributes) > ATTRIBUTES_MAX_DEPTH:
        raise ValueError(f"attributes nest deeper than {ATTRIBUTES_MAX_DEPTH} levels")
    return attributes


def _small(attributes: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode())
    if size > ATTRIBUTES_MAX_BYTES:
        raise ValueError(f"attributes take {size} bytes of JSON, over {ATTRIBUTES_MAX_BYTES}")
    return attributes


UnitId = Annotated[str, Field(min_length=1, max_length=UNIT_ID_MAX)]
Attributes = Annotated[
    dict[str, JsonValue],
    BeforeValidator(_shallow),
    AfterValidator(_small),
    Field(
        description="The unit's attributes (a JSON object), read by the experiment's "
        "`hash_attribute`, `fallback_attribute` and `condition`"
    ),
]


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssignIn(StrictIn):
    unit_id: UnitId
    attributes: Attributes = Field(default_factory=dict)


class AssignOut(BaseModel):
    experiment_id: str
    unit_id: str
    arm: str
    in_experiment: bool
    reason: str
    config: dict[str, Any]
    request_id: str
    exposure_logged: bool


class RunIn(StrictIn):
    """A run request. `inputs` must fit the experiment's input model, whose JSON schema
    `GET /v1/experiments/{id}` gives (`inputs`); bytes inputs are base64 strings."""

    unit_id: UnitId
    attributes: Attributes = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(
        description="The flow's run inputs by name (see the experiment's `inputs` schema)."
    )


class PromptOut(BaseModel):
    prompt_id: str
    version: str
    sha256: str


class RunOut(BaseModel):
    experiment_id: str
    unit_id: str
    arm: str
    in_experiment: bool
    request_id: str
    outputs: dict[str, Any]
    prompts: dict[str, PromptOut]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    error: str | None = None


class OutcomeIn(StrictIn):
    experiment_id: str = Field(min_length=1, max_length=128)
    unit_id: UnitId
    metric: str = Field(min_length=1, max_length=128)
    value: float = Field(allow_inf_nan=False)
    request_id: str = Field(default="", max_length=128)
    event_id: str | None = Field(default=None, min_length=1, max_length=64)
    ts: int | None = Field(default=None, ge=0, le=32503680000000)
    #: The unit's attributes, as given when it was assigned: the arm is recomputed with them.
    attributes: Attributes | None = None


class OutcomesOut(BaseModel):
    accepted: int
    event_ids: list[str]


class ArmOut(BaseModel):
    """An arm with its runtime state (a safe rollout or an admin may have stopped it)."""

    name: str
    weight: float
    state: Literal["active", "stopped"] = "active"
    reason: str | None = None
    stopped_at: int | None = Field(default=None, description="epoch milliseconds")


class ArmChangeIn(BaseModel):
    """Why an admin stops or resumes an arm (kept in the audit log)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1000)


class AuditEntryOut(BaseModel):
    id: str
    ts: int = Field(description="epoch milliseconds")
    arm: str
    action: Literal["stop", "resume"]
    actor: str
    reason: str
    statistics: dict[str, Any]


class ArmChangeOut(BaseModel):
    experiment_id: str
    arm: ArmOut
    changed: bool = Field(description="false when the arm already was in that state")
    audit: AuditEntryOut | None


class ExperimentSummary(BaseModel):
    id: str
    description: str
    status: str
    arms: list[ArmOut]
    definition_sha: str


class ReloadOut(BaseModel):
    reloaded: bool
    experiments: list[str]


class ReadyOut(BaseModel):
    status: str
    store: str
    spool_depth: int
