"""The safe-rollout monitor: consume the streams, keep the statistics, stop harmful arms.

Each tick (every ``tick_s``, 1 s by default) the monitor renews its leader lease
(`abtest.monitor.leader`); only the leader goes on. For every running experiment with a
``safety:`` section it then

1. reads the experiment's new stream entries through the consumer group ``abtest-monitor``
   and applies them to the per-arm statistics in the store (`abtest.monitor.tally`),
   acknowledging them only once the statistics are saved;
2. every ``safety.check_every_s`` seconds, checks each watched guardrail (ratio metrics are
   skipped, see `analysis.harm`) of each active treatment arm against control with
   :func:`analysis.harm.check_harm`, and when an arm is harmful and ``auto_stop`` is on, stops
   it through `abtest.state_store.change_state` (the audit entry, with the check's numbers, is
   written before the state) and POSTs a notice to ``safety.webhook``.

Why outcomes are read before exposures: a unit's outcomes count only once its exposure is
applied. The outcome entries of a pass are taken first, then every exposure entry is applied,
then the outcomes: an outcome written after its exposure finds it applied, even when both
arrived during the pass. Entries a pass does not finish stay pending and are claimed
(``XAUTOCLAIM``) by the next pass, of this monitor or of the next leader: only the leader
consumes, so a pending entry is a previous leader's (crashed, or its pass failed), and
applying an event twice changes nothing.

The experiments come from a callable, read at each tick: the live platform's inside `abtest
serve` (a reload may swap it), the loaded files in `abtest monitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from abtest.arm_state import AuditEntry, check_change
from abtest.event_fields import Event, EventError, Exposure, decode, stream_key
from abtest.events import ack, autoclaim, ensure_group, read_group
from abtest.experiments import Experiment
from abtest.monitor.leader import LeaderLock, new_monitor_id
from abtest.monitor.notify import notice, send_notice
from abtest.monitor.tally import Tracked, apply_events, read_arm_stats, tracked_metrics
from abtest.state_store import change_state, read_states
from analysis.harm import HarmCheck, check_harm

__all__ = ["GROUP", "Monitor", "Pass", "Stop", "counted", "monitor_forever", "watched_experiments"]

logger = logging.getLogger("abtest.monitor")

GROUP = "abtest-monitor"
"""The consumer group of the monitor on every exposure and outcome stream."""

STORE_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)

Entries = list[tuple[str, Any]]


@dataclass(frozen=True)
class Stop:
    """An arm the monitor stopped: the check that showed harm, the audit entry written, and
    whether the webhook took the notice (None without a webhook)."""

    check: HarmCheck
    entry: AuditEntry
    notified: bool | None


@dataclass(frozen=True)
class Pass:
    """What one tick did. ``leader`` False: another monitor (``holder``) leads, nothing done."""

    leader: bool
    holder: str | None
    applied: dict[str, int] = field(default_factory=dict)
    checks: dict[str, tuple[HarmCheck, ...]] = field(default_factory=dict)
    stops: tuple[Stop, ...] = ()

    def lines(self, *, every_check: bool) -> list[str]:
        """Human-readable lines: each stop; with `every_check` also each check's sentence, or
        who leads instead of this monitor (a long-running monitor waits for it silently)."""
        if not every_check:
            return [f"STOPPED {s.entry.experiment_id}/{s.entry.arm}: {s.entry.reason}"
                    for s in self.stops]  # fmt: skip
        if not self.leader:
            return [f"not the leader: {self.holder or 'another monitor'} leads"]
        return [
            f"{experiment_id}/{check.arm}: {check.reason}"
            for experiment_id, checks in self.checks.items()
            for check in checks
        ] + self.lines(every_check=False)


def watched_experiments(experiments: Mapping[str, Experiment]) -> list[Experiment]:
    """Running experiments with a ``safety:`` section and at least one guardrail to check."""
    return [
        e
        for e in experiments.values()
        if e.status == "running" and e.safety is not None and tracked_metrics(e)
    ]


class Monitor:
    """The monitor of one process, on a blocking Redis (or Redis Cluster) client.

    Parameters
    ----------
    client
        The store (``abtest.store.sync_client``).
    experiments
        Returns the definitions to watch; called at every tick.
    monitor_id
        This monitor's name: its consumer name and the value of the leader lease.
    lease_ms
        How long the leader lease lasts unless renewed; a dead leader is replaced that soon.
    batch
        Stream entries per read and per script call.
    max_per_pass
        Entries of one stream one pass takes at most (the rest waits for the next pass).
    clock
        Monotonic seconds, for the ``check_every_s`` schedule.
    webhook_timeout_s
        How long a stop notice may take (it is sent from the pass, after the stop).
    """

    def __init__(
        self,
        client: Any,
        experiments: Callable[[], Mapping[str, Experiment]],
        *,
        monitor_id: str | None = None,
        lease_ms: int = 15_000,
        batch: int = 500,
        max_per_pass: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        webhook_timeout_s: float = 2.0,
    ):
        self.client = client
        self.experiments = experiments
        self.id = monitor_id or new_monitor_id()
        self.lease = LeaderLock(client, self.id, lease_ms)
        self.batch = batch
        self.max_per_pass = max_per_pass
        self.clock = clock
        self.webhook_timeout_s = webhook_timeout_s
        self._last_check: dict[str, float] = {}
        self._lock = threading.Lock()

    def tick(self) -> Pass:
        """One pass: lead or step back; consume and check every watched experiment. A store
        error in one experiment is logged and the others go on."""
        with self._lock:
            if not self.lease.acquire():
                return Pass(False, self.lease.current())
            applied: dict[str, int] = {}
            checks: dict[str, tuple[HarmCheck, ...]] = {}
            stops: list[Stop] = []
            for experiment in watched_experiments(self.experiments()):
                try:
                    applied[experiment.id] = self._consume(experiment)
                    if self._due(experiment):
                        found, stopped = self._check(experiment)
                        checks[experiment.id] = tuple(found)
                        stops.extend(stopped)
                except STORE_ERRORS as exc:
                    logger.warning(
                        "monitor: experiment %s skipped this pass: %s", experiment.id, exc
                    )
            return Pass(True, self.id, applied, checks, tuple(stops))

    def close(self) -> None:
        """Give up the leader lease (after any running tick), so another monitor takes over
        without waiting for it to expire."""
        with self._lock, contextlib.suppress(*STORE_ERRORS):
            self.lease.release()

    def run_forever(
        self, tick_s: float = 1.0, on_pass: Callable[[Pass], None] | None = None
    ) -> None:
        """Tick every `tick_s` seconds until interrupted (the `abtest monitor` command); store
        errors are logged and retried at the next tick. The lease is released on the way out."""
        try:
            while True:
                try:
                    report = self.tick()
                except STORE_ERRORS as exc:
                    logger.warning("monitor: pass failed, retrying: %s", exc)
                else:
                    if on_pass is not None:
                        on_pass(report)
                time.sleep(tick_s)
        finally:
            self.close()

    # --- consuming ---------------------------------------------------------------------------

    def _consume(self, experiment: Experiment) -> int:
        """Apply the experiment's new events (outcomes taken first, see the module
        docstring); returns how many changed the statistics."""
        tracked = [t for _, t in tracked_metrics(experiment)]
        outcome_key = stream_key(experiment.id, "outcome")
        exposure_key = stream_key(experiment.id, "exposure")
        outcomes = [entry for chunk in self._entries(outcome_key) for entry in chunk]
        applied = taken = 0
        for chunk in self._entries(exposure_key):
            applied += self._apply(experiment, tracked, exposure_key, chunk)
            taken += len(chunk)
        if taken < self.max_per_pass:  # else exposures may remain: the outcomes wait, pending
            for start in range(0, len(outcomes), self.batch):
                chunk = outcomes[start : start + self.batch]
                applied += self._apply(experiment, tracked, outcome_key, chunk)
        return applied

    def _entries(self, key: str) -> Iterator[Entries]:
        """Chunks of entries for this consumer: first every pending one (claimed from
        whichever consumer holds it), then new ones, up to ``max_per_pass``."""
        # Every pass: a stream deleted and written again (a fresh demo) has lost its group.
        ensure_group(self.client, key, GROUP, "0")
        taken = 0
        start = "0-0"
        while taken < self.max_per_pass:
            start, entries = autoclaim(
                self.client, key, GROUP, self.id, 0, start, count=self.batch, raw=True
            )
            if entries:
                taken += len(entries)
                yield entries
            if start == "0-0":
                break
        while taken < self.max_per_pass:
            entries = read_group(self.client, key, GROUP, self.id, count=self.batch, raw=True)
            if not entries:
                return
            taken += len(entries)
            yield entries

    def _apply(
        self, experiment: Experiment, tracked: Sequence[Tracked], key: str, entries: Entries
    ) -> int:
        """Apply one chunk, then acknowledge it (after the statistics are saved)."""
        events = [event for _, fields in entries if (event := counted(experiment, fields))]
        applied = apply_events(self.client, experiment.id, tracked, events)
        ack(self.client, key, GROUP, *(entry_id for entry_id, _ in entries))
        return applied

    # --- checking ----------------------------------------------------------------------------

    def _due(self, experiment: Experiment) -> bool:
        assert experiment.safety is not None
        now = self.clock()
        last = self._last_check.get(experiment.id)
        if last is not None and now - last < experiment.safety.check_every_s:
            return False
        self._last_check[experiment.id] = now
        return True

    def _check(self, experiment: Experiment) -> tuple[list[HarmCheck], list[Stop]]:
        """Check every watched guardrail of every active treatment arm; stop the harmful."""
        safety = experiment.safety
        assert safety is not None
        pairs = tracked_metrics(experiment)
        arms = experiment.arm_names
        states = read_states(self.client, experiment.id, arms)
        stats = read_arm_stats(self.client, experiment.id, [t for _, t in pairs], arms)
        checks: list[HarmCheck] = []
        stops: list[Stop] = []
        for arm in arms[1:]:
            if states[arm].stopped:
                continue
            found = [
                check_harm(
                    metric,
                    arm,
                    stats[metric.name][arms[0]],
                    stats[metric.name][arm],
                    alpha=safety.alpha,
                    min_units=safety.min_units,
                    tuning_n=experiment.analysis.tuning_n,
                )
                for metric, _ in pairs
            ]
            checks.extend(found)
            harmful = next((check for check in found if check.harmful), None)
            if harmful is None:
                continue
            if not safety.auto_stop:
                logger.warning(
                    "monitor: %s/%s harmful, auto_stop off: %s", experiment.id, arm, harmful.reason
                )
                continue
            stop = self._stop(experiment, harmful)
            if stop is not None:
                stops.append(stop)
        return checks, stops

    def _stop(self, experiment: Experiment, check: HarmCheck) -> Stop | None:
        """Stop the arm (audit entry first); None when it already was stopped meanwhile."""
        safety = experiment.safety
        assert safety is not None
        check_change(experiment.arm_names, check.arm, "stop")
        entry = change_state(
            self.client,
            experiment.id,
            check.arm,
            "stop",
            actor="monitor",
            reason=check.reason,
            statistics=check.statistics(),
        )
        if entry is None:
            return None
        logger.warning("monitor: stopped %s/%s: %s", experiment.id, check.arm, check.reason)
        notified = None
        if safety.webhook:
            body = notice(entry, check.metric)
            notified = send_notice(safety.webhook, body, self.webhook_timeout_s)
        return Stop(check, entry, notified)


def counted(experiment: Experiment, fields: Mapping[Any, Any]) -> Event | None:
    """The event of a stream entry if the experiment counts it: not malformed (logged and
    skipped), not of an overridden unit, an exposure to one of its arms."""
    try:
        event = decode(fields)
    except EventError as exc:
        logger.warning("monitor: malformed entry of %s skipped: %s", experiment.id, exc)
        return None
    if event.unit_id in experiment.overrides:
        return None
    if isinstance(event, Exposure) and event.arm not in experiment.arm_names:
        return None
    return event


async def monitor_forever(monitor: Monitor, tick_s: float = 1.0) -> None:
    """`Monitor.tick` every `tick_s` seconds on a worker thread until cancelled (the
    background task of `abtest serve`); the lease is released on the way out."""
    try:
        while True:
            try:
                await asyncio.to_thread(monitor.tick)
            except STORE_ERRORS as exc:
                logger.warning("monitor: pass failed, retrying: %s", exc)
            except Exception:  # a bug must not end the service's only monitor silently
                logger.exception("monitor: pass failed, retrying")
            await asyncio.sleep(tick_s)
    finally:
        await asyncio.to_thread(monitor.close)
