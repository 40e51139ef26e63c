"""The event wire format: what an exposure and an outcome are and how they look in Redis.

This is the bottom layer, next to `abtest.experiments`: the standard library only, no I/O. The
writer (`abtest.events`), the pure core (`abtest.tracking` builds events) and the analysis package
(which reads the streams without the service) share this one definition of the fields, so they
cannot drift apart, and none of them has to import the others to learn it.

Two streams per experiment, hash-tagged so that an experiment's keys share one Redis Cluster
slot: ``abtest:{<experiment_id>}:exposures`` and ``abtest:{<experiment_id>}:outcomes``. Every
field value is a string (see ``encode``). This module knows the shape of an event, not what it
means: which arm a unit gets and which metrics matter are decided elsewhere.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["exposure", "outcome"]

#: Field order on the wire. ``event_id`` must stay first: the append script reads it there.
EXPOSURE_FIELDS: tuple[str, ...] = (
    "event_id",
    "ts",
    "experiment_id",
    "unit_id",
    "arm",
    "request_id",
    "definition_sha",
    "flow_fingerprint",
    "source",
)
#: Exposure fields older writers did not send: readers fill in their default.
OPTIONAL_EXPOSURE_FIELDS: dict[str, str] = {"source": "api"}
OUTCOME_FIELDS: tuple[str, ...] = (
    "event_id",
    "ts",
    "experiment_id",
    "unit_id",
    "arm",
    "request_id",
    "metric",
    "value",
    "judge_fingerprint",
)
#: Outcome fields older writers did not send: readers fill in their default.
OPTIONAL_OUTCOME_FIELDS: dict[str, str] = {"judge_fingerprint": ""}

#: Columns of a Parquet export (``abtest export``): the kind, then every field of either kind.
EXPORT_COLUMNS: tuple[str, ...] = (
    "kind",
    *EXPOSURE_FIELDS,
    *(name for name in OUTCOME_FIELDS if name not in EXPOSURE_FIELDS),
)

_MAX_TEXT = 512
_STREAM_SUFFIX: dict[str, str] = {
    "exposure": "exposures",
    "exposures": "exposures",
    "outcome": "outcomes",
    "outcomes": "outcomes",
}


class EventError(ValueError):
    """An event that must not be written: empty ids, non-finite values, malformed fields."""


def _new_event_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    """Epoch milliseconds, the unit of every ``ts``."""
    return time.time_ns() // 1_000_000


def _check_text(name: str, value: object, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise EventError(f"{name} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise EventError(f"{name} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise EventError(f"{name} is {len(value)} characters long; the limit is {_MAX_TEXT}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EventError(f"{name} is not valid Unicode text: {value!r}") from None


def _check_common(event: Exposure | Outcome) -> None:
    _check_text("event_id", event.event_id)
    _check_text("experiment_id", event.experiment_id)
    if "{" in event.experiment_id or "}" in event.experiment_id:
        # Braces would change the Redis Cluster hash tag of the stream keys.
        raise EventError(f"experiment_id must not contain '{{' or '}}': {event.experiment_id!r}")
    _check_text("unit_id", event.unit_id)
    _check_text("arm", event.arm)
    if isinstance(event.ts, bool) or not isinstance(event.ts, int) or event.ts < 0:
        raise EventError(f"ts must be a non-negative int of epoch milliseconds, got {event.ts!r}")


@dataclass(frozen=True, slots=True)
class Exposure:
    """A unit was served an arm of an experiment (one per run or assignment)."""

    experiment_id: str
    unit_id: str
    arm: str
    request_id: str
    definition_sha: str
    flow_fingerprint: str
    event_id: str = field(default_factory=_new_event_id)
    ts: int = field(default_factory=now_ms)
    #: Who saw the unit exposed: ``api`` (the service assigned or ran it) or what a client
    #: reported it as (``sdk`` for a GrowthBook SDK's tracking callback).
    source: str = "api"

    def __post_init__(self) -> None:
        _check_common(self)
        _check_text("request_id", self.request_id)
        _check_text("definition_sha", self.definition_sha)
        _check_text("flow_fingerprint", self.flow_fingerprint)
        _check_text("source", self.source)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A metric observed for a unit in an arm, optionally tied to the run (``request_id``)."""

    experiment_id: str
    unit_id: str
    arm: str
    metric: str
    value: float
    request_id: str = ""
    event_id: str = field(default_factory=_new_event_id)
    ts: int = field(default_factory=now_ms)
    #: For an online judge's score (``judge:<evaluator>``): the evaluator's fingerprint (its
    #: definition and its judge flow's prompts and config), so every score names the exact
    #: judge that gave it; empty for every other outcome.
    judge_fingerprint: str = ""

    def __post_init__(self) -> None:
        _check_common(self)
        _check_text("metric", self.metric)
        _check_text("request_id", self.request_id, allow_empty=True)
        _check_text("judge_fingerprint", self.judge_fingerprint, allow_empty=True)
        value = self.value
        if isinstance(value, str) or not isinstance(value, int | float):
            raise EventError(
                f"value of metric {self.metric!r} must be a number, got {type(value).__name__}"
            )
        value = float(value)
        if not math.isfinite(value):
            raise EventError(
                f"value of metric {self.metric!r} must be a finite number, got {value!r}"
            )
        object.__setattr__(self, "value", value)


Event = Exposure | Outcome


def kind_of(event: Event) -> Kind:
    """``"exposure"`` or ``"outcome"`` (the ``kind`` column of exports)."""
    if isinstance(event, Exposure):
        return "exposure"
    if isinstance(event, Outcome):
        return "outcome"
    raise TypeError(f"expected Exposure or Outcome, got {type(event).__name__}")


def stream_key(experiment_id: str, kind: str) -> str:
    """Stream of one kind of event (``"exposure"``/``"outcome"``, plural accepted)."""
    try:
        suffix = _STREAM_SUFFIX[kind]
    except KeyError:
        raise ValueError(f"kind must be 'exposure' or 'outcome', got {kind!r}") from None
    return f"abtest:{{{experiment_id}}}:{suffix}"


def dedupe_key(experiment_id: str, kind: str) -> str:
    """SET of every ``event_id`` the stream has accepted (same hash slot as the stream)."""
    return stream_key(experiment_id, kind) + ":event_ids"


def wire_values(event: Event) -> list[str]:
    """Field values in wire order (``EXPOSURE_FIELDS`` / ``OUTCOME_FIELDS``), without the names:
    the writer sends the names once per batch and the values per event."""
    common = [
        event.event_id,
        str(event.ts),
        event.experiment_id,
        event.unit_id,
        event.arm,
        event.request_id,
    ]
    if isinstance(event, Exposure):
        return [*common, event.definition_sha, event.flow_fingerprint, event.source]
    return [*common, event.metric, repr(event.value), event.judge_fingerprint]


def encode(event: Event) -> dict[str, str]:
    """Stream fields of an event: every value a string, ``value`` as ``repr(float)``."""
    names = EXPOSURE_FIELDS if kind_of(event) == "exposure" else OUTCOME_FIELDS
    return dict(zip(names, wire_values(event), strict=True))


def as_str(value: object) -> str:
    """Text of a value Redis returned: bytes from a ``decode_responses=False`` client, else str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> Event:
    """Event from stream fields (an outcome when ``metric`` is present). Extra fields are ignored
    so that older readers survive newer writers; missing or malformed ones raise ``EventError``."""
    data = {as_str(k): as_str(v) for k, v in fields.items()}
    is_outcome = "metric" in data
    names = OUTCOME_FIELDS if is_outcome else EXPOSURE_FIELDS
    optional = OPTIONAL_OUTCOME_FIELDS if is_outcome else OPTIONAL_EXPOSURE_FIELDS
    missing = [name for name in names if name not in data and name not in optional]
    if missing:
        kind = "outcome" if is_outcome else "exposure"
        raise EventError(f"{kind} event is missing field(s) {', '.join(missing)}: {data!r}")
    try:
        ts = int(data["ts"])
    except ValueError:
        raise EventError(f"ts must be integer epoch milliseconds, got {data['ts']!r}") from None
    common = {
        "event_id": data["event_id"],
        "ts": ts,
        "experiment_id": data["experiment_id"],
        "unit_id": data["unit_id"],
        "arm": data["arm"],
        "request_id": data["request_id"],
    }
    if not is_outcome:
        return Exposure(
            definition_sha=data["definition_sha"],
            flow_fingerprint=data["flow_fingerprint"],
            source=data.get("source", OPTIONAL_EXPOSURE_FIELDS["source"]),
            **common,
        )
    try:
        value = float(data["value"])
    except ValueError:
        raise EventError(f"value must be a float, got {data['value']!r}") from None
    return Outcome(
        metric=data["metric"],
        value=value,
        judge_fingerprint=data.get("judge_fingerprint", optional["judge_fingerprint"]),
        **common,
    )
