"""The monitor's running sufficient statistics in the store, updated once per event.

A check needs, per guardrail and arm, the unit count and the sum and sum of squares of the
per-unit values (``analysis.stats.ArmStats.from_sums``). They are kept in Redis rather than in
the monitor's memory, so that a restarted monitor, or another replica that becomes the leader,
continues from them instead of re-reading every stream.

Per-unit values follow the analysis (``analysis.analyze``, top docstring): a unit's first
exposure fixes its arm; ``proportion``: 1 if the unit has any positive event; ``mean`` with
``aggregate: sum``: the sum of its values, 0 without events; ``mean`` with ``aggregate:
mean``: the mean of its values, units without events left out. Outcomes of units not (yet)
exposed, or logged before the unit's first exposure, are ignored; overridden units are
excluded by the caller. Absolute caps (``cap: {absolute: ...}``) apply to the per-unit value;
percentile caps need every unit's value at once and are not applied here.

Keys, all with the experiment's hash tag so a Redis Cluster keeps them (and its streams) on
one slot, so one script can touch them all:

- ``abtest:{<id>}:monitor:units``: hash unit -> ``"<first exposure ts>|<arm>"``;
- ``abtest:{<id>}:monitor:applied``: set of the ``event_id`` s that changed the statistics;
- ``abtest:{<id>}:monitor:stats``: hash ``units|<arm>`` (exposed units) and ``n|<tag>|<arm>``,
  ``s|<tag>|<arm>``, ``q|<tag>|<arm>`` (units with a value, sum, sum of squares of the
  per-unit values; ``n`` only for ``aggregate: mean``, the others count every exposed unit);
- ``abtest:{<id>}:monitor:unit:<tag>``: hash unit -> ``"<events> <sum> <any positive>"``.

``<tag>`` names the metric and how it is aggregated (``error:proportion``,
``latency_ms:mean``, ``cost_usd:sum:cap=5.0``): a definition that changes the aggregation
starts new statistics rather than mixing two kinds of value; a guardrail added later counts
the outcomes read from then on.

One batch is one Lua script (``APPLY_SCRIPT``): it skips events already applied, applies the
rest and records their ids, atomically. The consumer acknowledges the stream entries only
after it returns, so a crash between the two re-delivers events that then change nothing:
at-least-once delivery, exactly-once statistics. The applied-id set costs ~70 bytes per event
that changed something (duplicate exposures of a unit do not), like the streams' own dedupe
sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from abtest.event_fields import Event, Exposure, as_str
from abtest.experiments import Experiment, Metric
from analysis.stats import ArmStats

__all__ = [
    "APPLY_SCRIPT",
    "Tracked",
    "apply_events",
    "monitor_keys",
    "read_arm_stats",
    "tracked_metrics",
]

Mode = Literal["proportion", "sum", "mean"]

APPLY_SCRIPT = """
local m = tonumber(ARGV[1])
local specs = {}
for i = 1, m do
  local mode, cap, tag = string.match(ARGV[1 + i], '^([^|]*)|([^|]*)|(.*)$')
  specs[i] = {mode = mode, cap = tonumber(cap) or math.huge, tag = tag}
end
local function fmt(x) return string.format('%.17g', x) end
local function value_of(spec, c, s, p)
  if spec.mode == 'proportion' then return p end
  if spec.mode == 'sum' then return math.min(s, spec.cap) end
  if c == 0 then return nil end
  return math.min(s / c, spec.cap)
end
local function outcome(j)
  local exposed = redis.call('HGET', KEYS[1], ARGV[j + 2])
  if not exposed then return false end
  local since, arm = string.match(exposed, '^(%d+)|(.*)$')
  if tonumber(ARGV[j + 4]) < tonumber(since) then return false end
  local i = tonumber(ARGV[j + 5])
  local spec, key, value = specs[i], KEYS[3 + i], tonumber(ARGV[j + 6])
  local c, s, p = 0, 0, 0
  local state = redis.call('HGET', key, ARGV[j + 2])
  if state then
    local a, b, d = string.match(state, '^(%S+) (%S+) (%S+)$')
    c, s, p = tonumber(a), tonumber(b), tonumber(d)
  end
  local old = value_of(spec, c, s, p)
  c = c + 1
  s = s + value
  if value > 0 then p = 1 end
  local new = value_of(spec, c, s, p)
  redis.call('HSET', key, ARGV[j + 2], fmt(c) .. ' ' .. fmt(s) .. ' ' .. fmt(p))
  local suffix = '|' .. spec.tag .. '|' .. arm
  if old == nil then
    redis.call('HINCRBY', KEYS[3], 'n' .. suffix, 1)
    old = 0
  end
  if new ~= old then
    redis.call('HINCRBYFLOAT', KEYS[3], 's' .. suffix, fmt(new - old))
    redis.call('HINCRBYFLOAT', KEYS[3], 'q' .. suffix, fmt(new * new - old * old))
  end
  return true
end
local applied = 0
for j = 2 + m, #ARGV, 7 do
  if redis.call('SISMEMBER', KEYS[2], ARGV[j + 1]) == 0 then
    local changed = false
    if ARGV[j] == 'x' then
      changed = redis.call('HSETNX', KEYS[1], ARGV[j + 2], ARGV[j + 4] .. '|' .. ARGV[j + 3]) == 1
      if changed then redis.call('HINCRBY', KEYS[3], 'units|' .. ARGV[j + 3], 1) end
    else
      changed = outcome(j)
    end
    if changed then
      redis.call('SADD', KEYS[2], ARGV[j + 1])
      applied = applied + 1
    end
  end
end
return applied
"""


@dataclass(frozen=True)
class Tracked:
    """A guardrail as the monitor aggregates it: how its per-unit value is formed."""

    name: str
    mode: Mode
    cap: float | None = None

    @property
    def tag(self) -> str:
        cap = f":cap={self.cap!r}" if self.cap is not None else ""
        return f"{self.name}:{self.mode}{cap}"

    @classmethod
    def of(cls, metric: Metric) -> Tracked:
        """How `metric` (a proportion or mean metric) is aggregated per unit."""
        if metric.kind == "ratio":
            raise ValueError(f"'{metric.name}' is a ratio metric; the monitor tracks none")
        mode: Mode = "proportion" if metric.kind == "proportion" else metric.aggregate
        cap = metric.cap.absolute if metric.cap is not None else None
        return cls(metric.name, mode, cap)


def tracked_metrics(experiment: Experiment) -> tuple[tuple[Metric, Tracked], ...]:
    """The watched guardrails the monitor checks, with their aggregation: ratio metrics are
    skipped (see `analysis.harm`)."""
    return tuple((m, Tracked.of(m)) for m in experiment.watched_guardrails if m.kind != "ratio")


def _prefix(experiment_id: str) -> str:
    return f"abtest:{{{experiment_id}}}:monitor"


def monitor_keys(experiment_id: str, tracked: Sequence[Tracked]) -> list[str]:
    """KEYS of `APPLY_SCRIPT`: units, applied ids, statistics, then one per tracked metric."""
    prefix = _prefix(experiment_id)
    fixed = [f"{prefix}:units", f"{prefix}:applied", f"{prefix}:stats"]
    return fixed + [f"{prefix}:unit:{t.tag}" for t in tracked]


def _spec(tracked: Tracked) -> str:
    return f"{tracked.mode}|{'' if tracked.cap is None else repr(tracked.cap)}|{tracked.tag}"


def _event_args(event: Event, index: Mapping[str, int]) -> list[str] | None:
    """The 7 script arguments of one event, or None when it cannot change the statistics."""
    common = [event.event_id, event.unit_id, event.arm, str(event.ts)]
    if isinstance(event, Exposure):
        return ["x", *common, "0", "0"]
    position = index.get(event.metric)
    if position is None:
        return None
    return ["o", *common, str(position), repr(event.value)]


def apply_events(
    client: Any, experiment_id: str, tracked: Sequence[Tracked], events: Iterable[Event]
) -> int:
    """Apply a batch of events to the statistics, idempotently per ``event_id``; returns how
    many changed them. The caller has dropped events the experiment does not count
    (overridden units, unknown arms); outcomes of metrics not in `tracked` are skipped here."""
    index = {t.name: i for i, t in enumerate(tracked, start=1)}
    rows = [args for event in events if (args := _event_args(event, index)) is not None]
    if not rows:
        return 0
    keys = monitor_keys(experiment_id, tracked)
    argv = [str(len(tracked)), *(_spec(t) for t in tracked), *(a for row in rows for a in row)]
    return int(client.eval(APPLY_SCRIPT, len(keys), *keys, *argv))


def read_arm_stats(
    client: Any, experiment_id: str, tracked: Sequence[Tracked], arms: Sequence[str]
) -> dict[str, dict[str, ArmStats]]:
    """Per tracked metric, per arm (in `arms` order): the per-unit values' statistics."""
    raw = client.hgetall(f"{_prefix(experiment_id)}:stats")
    fields = {as_str(k): as_str(v) for k, v in raw.items()}
    units = {arm: int(fields.get(f"units|{arm}", 0)) for arm in arms}
    result: dict[str, dict[str, ArmStats]] = {}
    for t in tracked:
        per_arm = {}
        for arm in arms:
            suffix = f"|{t.tag}|{arm}"
            n = int(fields.get("n" + suffix, 0)) if t.mode == "mean" else units[arm]
            total = float(fields.get("s" + suffix, 0.0))
            total_sq = float(fields.get("q" + suffix, 0.0))
            per_arm[arm] = ArmStats.from_sums(n, total, total_sq)
        result[t.name] = per_arm
    return result
