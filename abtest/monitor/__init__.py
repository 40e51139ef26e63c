"""The safe-rollout monitor (DESIGN.md, Safe rollouts): watches the guardrails of running
experiments that have a ``safety:`` section and stops a treatment arm an always-valid test
shows harmful beyond its margin.

* `Monitor` (`abtest.monitor.monitor`): one process's monitor; ``tick()`` runs one pass,
  ``run_forever()`` is the `abtest monitor` command's loop, `monitor_forever` the background
  task of `abtest serve` (``ABTEST_MONITOR=on``, the default).
* `abtest.monitor.tally`: the per-arm sufficient statistics kept in the store.
* `abtest.monitor.leader`: the lease that makes one monitor the leader.
* `abtest.monitor.notify`: the webhook notice of a stop.

The decision itself is pure and lives in `analysis.harm`.
"""

from __future__ import annotations

from abtest.monitor.leader import LEADER_KEY, LeaderLock
from abtest.monitor.monitor import GROUP, Monitor, Pass, Stop, monitor_forever, watched_experiments

__all__ = [
    "GROUP",
    "LEADER_KEY",
    "LeaderLock",
    "Monitor",
    "Pass",
    "Stop",
    "monitor_forever",
    "watched_experiments",
]
