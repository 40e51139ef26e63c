"""One monitor leader across API workers and replicas: a lease in the store.

Every `abtest serve` worker (and any `abtest monitor`) runs a monitor, and all of them read the
same streams; only one should consume them and decide, or two would race to stop the same arm
and split the stream entries between them. The leader holds ``abtest:monitor:leader``, set with
``SET key id NX PX ttl`` and renewed on each tick by a script that extends the lease only if
this monitor still holds it (compare-and-renew), so a monitor whose lease lapsed (a long pause)
cannot extend the lease another one has taken since. A leader that dies stops renewing, and
another takes over within ``ttl``. Two leaders for a moment (a paused leader waking after its
lease lapsed) are harmless: applying events is idempotent and a stop is logged once.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from abtest.event_fields import as_str

__all__ = ["LEADER_KEY", "LeaderLock", "new_monitor_id"]

LEADER_KEY = "abtest:monitor:leader"

_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def new_monitor_id() -> str:
    """``host:pid:random``: readable in ``GET abtest:monitor:leader``, unique per monitor."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLock:
    """The leader lease of one monitor, on a blocking Redis (or Redis Cluster) client."""

    def __init__(self, client: Any, holder: str, ttl_ms: int, key: str = LEADER_KEY):
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be > 0, got {ttl_ms}")
        self.client = client
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.key = key

    def acquire(self) -> bool:
        """Take the lease if nobody holds it, or renew ours; whether we lead now."""
        if self.client.set(self.key, self.holder, nx=True, px=self.ttl_ms):
            return True
        return bool(int(self.client.eval(_RENEW_SCRIPT, 1, self.key, self.holder, self.ttl_ms)))

    def release(self) -> bool:
        """Give the lease up if we hold it (on shutdown, so another takes over at once)."""
        return bool(int(self.client.eval(_RELEASE_SCRIPT, 1, self.key, self.holder)))

    def current(self) -> str | None:
        """Who holds the lease now, if anyone."""
        value = self.client.get(self.key)
        return None if value is None else as_str(value)
