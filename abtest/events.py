"""The event log: durable writes of exposures and outcomes to Redis Streams, and readers.

An edge: this module does the I/O. What an event is, its fields and its stream keys are the
wire format in `abtest.event_fields`, kept apart so that the pure core and the analysis package
can use them without importing Redis clients, spools and threads.

Write path, and why it looks the way it does:

* Group commit. ``EventLog.append`` queues the caller's events and waits; one writer task drains
  the queue and sends everything queued in one ``pipeline(transaction=False)`` round trip, then
  resolves every caller. Under load, N concurrent requests cost one round trip, not N.
* Acknowledged means durable somewhere. A caller returns only once Redis holds its events, or,
  when Redis is unreachable, once they are appended to a local JSON-lines spool and fsynced. The
  spool is replayed when Redis is back.
* Idempotent by ``event_id``. Each stream has a companion Redis SET, ``<stream>:event_ids``
  (same hash slot), holding every event id the stream has accepted. Events are written by a
  small Lua script, one ``EVAL`` per stream and up to 2000 events, inside the pipeline: it looks
  the ids up (``SMISMEMBER``), ``XADD``s only the new ones and ``SADD``s them. A script runs
  atomically, so "id recorded" and "entry added" can never be separated by a crash, a
  ``SHUTDOWN`` or a dropped connection. That is what makes it safe to replay the spool after a
  crash between the Redis write and the spool truncation, to retry a pipeline whose reply was
  lost, and for clients to post the same ``event_id`` twice: it lands once. (A check-then-XADD
  from the client needs two round trips and loses or duplicates events at a crash between them;
  a plain XADD+SADD pipeline can be cut in half by a server shutdown.) The SET costs ~70 bytes
  per event and, like the streams by default, is never trimmed; the optional approximate
  ``MAXLEN`` trims the streams only, so ids stay deduped after their entries are gone.
* Readers still dedupe on ``event_id`` (``iter_events``), so data written by other tools is safe.
* What "Redis holds" means is an ``AckPolicy`` (``ABTEST_ACK``). ``primary`` (the default): the
  primary's reply, so a primary that dies before its replica copied the last writes loses them
  (Redis replication is asynchronous). ``replicated``: the batch's pipeline ends with ``WAIT``
  (``WAITAOF`` on Redis >= 7.2) on the same connection, per primary written to, and the callers
  are acknowledged only when a replica confirms; otherwise the batch goes to the spool as if
  Redis were down, and its replay, deduplicated, waits for a replica again. The script then
  also bumps ``<stream>:sync`` so that even a replay that adds nothing new is a write ``WAIT``
  can wait for (``WAIT`` counts only the calling connection's own writes).
* Redis Cluster: every key of a stream shares its experiment's hash tag, so each script runs
  on one node, and the pipeline sends each node its scripts (and its ``WAIT``) on one
  connection. Failover errors (``CLUSTERDOWN``, ``TRYAGAIN``, moved slots on a dead node) count
  as unavailability: the batch is spooled and replayed once the cluster has a new primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from abtest.event_fields import (
    EXPORT_COLUMNS,
    EXPOSURE_FIELDS,
    OUTCOME_FIELDS,
    Event,
    Exposure,
    Outcome,
    as_str,
    decode,
    dedupe_key,
    encode,
    stream_key,
    wire_values,
)
from abtest.settings import Settings

log = logging.getLogger(__name__)


class NotReplicated(redis.RedisError):
    """``ABTEST_ACK=replicated`` and no replica confirmed a batch within the timeout."""


#: Errors meaning "Redis cannot take the write right now": the batch goes to the spool.
#: (redis-py's ConnectionError/TimeoutError are not the builtins; BusyLoadingError, raised while
#: a restarted server loads its AOF, and ReadOnlyError, raised by a demoted primary, are
#: transient too; so are a cluster's failover errors, and a replica that did not confirm.)
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.RedisClusterException,
    NotReplicated,
    OSError,
)


@dataclass(frozen=True)
class AckPolicy:
    """What an acknowledgement waits for: the primary's reply (``replicas=0``), or also
    ``replicas`` replicas of each primary written to, for at most ``timeout_ms``."""

    replicas: int = 0
    timeout_ms: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> AckPolicy:
        """``ABTEST_ACK`` / ``ABTEST_ACK_TIMEOUT_MS``: ``replicated`` waits for one replica."""
        return cls(1 if settings.ack == "replicated" else 0, settings.ack_timeout_ms)

    def wait_command(self, waitaof: bool) -> tuple[Any, ...]:
        """``WAITAOF 0 n t`` (the replica fsynced its AOF) where the server has it, else
        ``WAIT n t`` (the replica received the writes)."""
        if waitaof:
            return ("WAITAOF", 0, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def confirmed(self, reply: Any) -> bool:
        """Whether a ``WAIT`` (a count) or ``WAITAOF`` (``[local, replicas]``) reply meets it."""
        count = reply[1] if isinstance(reply, list | tuple) else reply
        return int(count) >= self.replicas


PRIMARY_ONLY = AckPolicy()

#: Seconds between replay attempts while the spool is non-empty.
REPLAY_INTERVAL_S = 0.5

#: Events per EVAL. Bounds how long one script blocks the server (~10 ms) and stays well under
#: Lua's unpack() limit (~8000 values).
_EVENTS_PER_SCRIPT = 2000


# ---------------------------------------------------------------------------------------------
# Writing: the dedupe script and the commands of a batch
# ---------------------------------------------------------------------------------------------

# KEYS[1] stream, KEYS[2] its event-id SET, KEYS[3] its sync counter.
# ARGV[1] approximate MAXLEN ("0": untrimmed), ARGV[2] nf = fields per event,
# ARGV[3 .. 2+nf] field names (event_id first), ARGV[3+nf] a JSON array of events, each an
# array of nf string values, ARGV[4+nf] "1" to bump the sync counter (a write for WAIT).
# One JSON argument instead of nf per event: redis-py's asyncio
# client packs arguments in pure Python, which was the bottleneck, while cjson decodes in C.
# One SMISMEMBER finds the ids already present, XADD adds the others (an id repeated within the
# batch once), one SADD records them: ~25% less server time than SADD+XADD per event. On an XADD
# error the ids added so far are still recorded, so a retry never duplicates them.
# Returns the number of events added (the rest were already there). Needs Redis >= 6.2.
_APPEND_LUA = """
local maxlen = tonumber(ARGV[1])
local nf = tonumber(ARGV[2])
local cmd
if maxlen > 0 then cmd = {'MAXLEN', '~', ARGV[1], '*'} else cmd = {'*'} end
local base = #cmd
for j = 1, nf do cmd[base + 2 * j - 1] = ARGV[2 + j] end
local rows = cjson.decode(ARGV[3 + nf])
local ids = {}
for r = 1, #rows do ids[r] = rows[r][1] end
local present = redis.call('SMISMEMBER', KEYS[2], unpack(ids))
local fresh = {}
local seen = {}
for r = 1, #rows do
  local id = ids[r]
  if present[r] == 0 and not seen[id] then
    seen[id] = true
    local row = rows[r]
    for j = 1, nf do cmd[base + 2 * j] = row[j] end
    local res = redis.pcall('XADD', KEYS[1], unpack(cmd))
    if type(res) == 'table' and res.err then
      if #fresh > 0 then redis.call('SADD', KEYS[2], unpack(fresh)) end
      return res
    end
    fresh[#fresh + 1] = id
  end
end
if #fresh > 0 then redis.call('SADD', KEYS[2], unpack(fresh)) end
if ARGV[4 + nf] == '1' then redis.call('INCR', KEYS[3]) end
return #fresh
"""

_json_rows = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _script_calls(
    events: Iterable[Event], maxlen: int | None, sync: bool = False
) -> list[tuple[Any, ...]]:
    """EVAL argument tuples writing ``events``: one per stream, at most ``_EVENTS_PER_SCRIPT``
    events each, in first-seen order (the order within each stream is preserved). ``sync``
    makes each script write even when every event was already there (see ``AckPolicy``)."""
    groups: dict[tuple[str, bool], list[list[str]]] = {}
    calls: list[tuple[Any, ...]] = []
    trim = str(maxlen) if maxlen else "0"

    def flush(key: tuple[str, bool], rows: list[list[str]]) -> None:
        kind = "exposure" if key[1] else "outcome"
        names = EXPOSURE_FIELDS if key[1] else OUTCOME_FIELDS
        stream = stream_key(key[0], kind)
        calls.append(
            (
                _APPEND_LUA,
                3,
                stream,
                dedupe_key(key[0], kind),
                stream + ":sync",
                trim,
                len(names),
                *names,
                _json_rows(rows),
                "1" if sync else "0",
            )
        )

    for event in events:
        key = (event.experiment_id, isinstance(event, Exposure))
        rows = groups.get(key)
        if rows is None:
            rows = groups[key] = []
        rows.append(wire_values(event))
        if len(rows) >= _EVENTS_PER_SCRIPT:
            flush(key, rows)
            del groups[key]
    for key, rows in groups.items():
        flush(key, rows)
    return calls


def _check_events(events: Iterable[Event]) -> list[Event]:
    if isinstance(events, Exposure | Outcome):
        raise TypeError("append() takes a sequence of events; wrap a single event in a list")
    checked = list(events)
    for event in checked:
        if not isinstance(event, Exposure | Outcome):
            raise TypeError(f"expected Exposure or Outcome, got {type(event).__name__}")
    return checked


def _chunks(events: Sequence[Event], size: int) -> Iterator[Sequence[Event]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


# ---------------------------------------------------------------------------------------------
# The spool: where acknowledged events wait while Redis is unreachable
# ---------------------------------------------------------------------------------------------


class Spool:
    """Append-only JSON-lines file of encoded events, fsynced before callers are acknowledged.

    An exclusive ``flock`` on ``<path>.lock`` serialises appends and replays, across processes
    too, so a replay's atomic truncate (write the rest to a temp file, rename) never drops a line
    another writer appended meanwhile. Lines that do not parse (a torn last line after a crash
    mid-write, whose caller was never acknowledged) are moved to ``<path>.rejected``.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def lock(self) -> int:
        """Take the exclusive lock; returns the fd to pass to ``unlock``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = self.lock()
        try:
            yield
        finally:
            self.unlock(fd)

    def append(self, events: Sequence[Event]) -> None:
        """Append and fsync; only then may the events' callers be told they are stored."""
        # ASCII JSON (non-ASCII escaped), so no line separator can hide inside a line.
        data = "".join(json.dumps(encode(e), separators=(",", ":")) + "\n" for e in events)
        with self.locked():
            created = not self.path.exists()
            with open(self.path, "a+b") as fh:
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":  # a torn line from a crash: don't glue onto it
                        data = "\n" + data
                fh.write(data.encode("ascii"))
                fh.flush()
                os.fsync(fh.fileno())
            if created:
                _fsync_dir(self.path.parent)

    def depth(self) -> int:
        """Number of spooled events (lines)."""
        with self.locked():
            return len(self.read_locked())

    def read_locked(self) -> list[tuple[str, Event]]:
        """Spooled ``(line, event)`` pairs; call with the lock held."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        good: list[tuple[str, Event]] = []
        bad: list[str] = []
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                good.append((line, decode(json.loads(line))))
            except (ValueError, TypeError, AttributeError):
                bad.append(line)
        if bad:
            log.warning("moving %d unreadable spool line(s) to %s.rejected", len(bad), self.path)
            with open(self.path.with_name(self.path.name + ".rejected"), "a") as fh:
                fh.write("".join(line + "\n" for line in bad))
                fh.flush()
                os.fsync(fh.fileno())
            self.replace_locked([line for line, _ in good])
        return good

    def replace_locked(self, lines: Sequence[str]) -> None:
        """Atomically make the spool hold exactly ``lines``; call with the lock held."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Async event log (the API)
# ---------------------------------------------------------------------------------------------


_CLUSTERS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)


class _LogState:
    """What both event logs keep: the spool, the batching limits, the acknowledgement policy
    and the write counters; and how a batch's pipeline is laid out and its replies read."""

    def __init__(
        self,
        spool_path: str | os.PathLike[str],
        maxlen: int | None,
        max_batch: int,
        ack: AckPolicy,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.spool = Spool(spool_path)
        self.maxlen = maxlen
        self.max_batch = max_batch
        self.ack = ack
        #: Whether the server has WAITAOF (asked once, on the first replicated write).
        self._waitaof: bool | None = None
        #: Pipelines Redis executed (append batches and replay chunks).
        self.batches_written = 0
        #: Events Redis accepted as new.
        self.events_written = 0
        #: Events Redis already held (same event_id), so skipped.
        self.events_duplicate = 0
        #: Events sent to the spool.
        self.events_spooled = 0
        self._spool_depth = 0

    @property
    def spool_depth(self) -> int:
        """Events in the spool waiting for Redis (as this process last saw it)."""
        return self._spool_depth

    def _calls(self, events: Iterable[Event]) -> list[tuple[Any, ...]]:
        return _script_calls(events, self.maxlen, sync=self.ack.replicas > 0)

    def _wait_targets(self, client: Any, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Where the batch's WAITs go: none for ``primary`` acks; else each cluster node the
        scripts are routed to, or ``None`` for the one server."""
        if not self.ack.replicas:
            return []
        if not isinstance(client, _CLUSTERS):
            return [None]
        nodes = {}
        for call in calls:
            node = client.get_node_from_key(call[2])
            nodes[node.name] = node
        return list(nodes.values())

    def _queue(self, pipe: Any, calls: Sequence[tuple[Any, ...]], targets: list[Any]) -> None:
        """The scripts, then one WAIT per target: on a node's connection after its scripts."""
        for call in calls:
            pipe.execute_command("EVAL", *call)  # cluster pipelines have no eval()
        command = self.ack.wait_command(bool(self._waitaof))
        for node in targets:
            if node is None:
                pipe.execute_command(*command)
            else:
                pipe.execute_command(*command, target_nodes=node)

    def _settle(
        self,
        events: Sequence[Event],
        calls: Sequence[tuple[Any, ...]],
        replies: list[Any],
        moved: bool,
    ) -> int:
        """Count a batch's script replies (raising the first error among them) and check its
        WAIT replies; returns events Redis accepted as new. A WAIT that failed or fell short,
        or a slot that moved meanwhile (the script was redirected away from its WAIT), raises
        ``NotReplicated``: the events are in Redis but not yet acknowledged."""
        scripts = replies[: len(calls)]
        for reply in scripts:
            if isinstance(reply, Exception):
                raise reply
        written = sum(int(r) for r in scripts)
        self.batches_written += 1
        self.events_written += written
        self.events_duplicate += len(events) - written
        waits = replies[len(calls) :]
        if moved or any(isinstance(w, Exception) or not self.ack.confirmed(w) for w in waits):
            raise NotReplicated(
                f"no replica confirmed {len(events)} events within {self.ack.timeout_ms} ms "
                f"(replies: {waits!r})"
            )
        return written


class EventLog(_LogState):
    """Group-committing, spool-backed writer for asyncio code.

    One writer task owns Redis writes and the spool: it drains whatever callers queued (up to
    ``max_batch`` events), writes it in one pipelined round trip and resolves their futures. While
    the spool is non-empty it retries replay every ``REPLAY_INTERVAL_S`` and sends new batches to
    the spool too, so each stream keeps the order in which events were acknowledged.

    The client is borrowed, not closed. It should fail fast when Redis is down (few, short
    retries, as ``abtest.store.async_client`` configures), or callers wait out its retries before
    their events reach the spool.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
        spool_path: str | os.PathLike[str],
        maxlen: int | None = None,
        max_batch: int = 5000,
        ack: AckPolicy = PRIMARY_ONLY,
    ):
        super().__init__(spool_path, maxlen, max_batch, ack)
        self.client = client
        self._pending: deque[tuple[list[Event], asyncio.Future[None]]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._spool_lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._next_replay = 0.0

    async def start(self) -> None:
        """Start the writer task; replays a spool left by an earlier run first thing."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._spool_lock = asyncio.Lock()
        self._closing = False
        self._spool_depth = await asyncio.to_thread(self.spool.depth)
        self._task = asyncio.create_task(self._run(), name="abtest-eventlog-writer")

    async def close(self) -> None:
        """Write (or spool) everything queued, try a last replay, stop the writer task."""
        if self._task is None:
            return
        self._closing = True
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            await self._task
        finally:
            self._task = None
        if self._spool_depth:
            with contextlib.suppress(*UNAVAILABLE):
                await self.replay_spool()

    async def __aenter__(self) -> EventLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def append(self, events: Sequence[Event]) -> None:
        """Return once Redis or the fsynced spool holds ``events``.

        Raises what Redis raised for errors other than unavailability (those reach the spool),
        or the OSError of a spool that could not be written.
        """
        batch = _check_events(events)
        if self._task is None or self._closing:
            raise RuntimeError("EventLog is not running: call start() first")
        if not batch:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        assert self._wakeup is not None
        self._wakeup.set()
        # A caller cancelled meanwhile cancels only its wait: the writer skips done futures, and
        # the events are written anyway (as with any write whose reply is lost).
        await future

    async def replay_spool(self) -> int:
        """Write spooled events to Redis, then truncate the spool. Returns events written new
        (duplicates of what Redis already holds are skipped, so running it twice is harmless).
        Raises one of ``UNAVAILABLE`` if Redis is still down; the spool keeps what is unsent."""
        assert self._spool_lock is not None, "call start() first"
        async with self._spool_lock:
            fd = await asyncio.to_thread(self.spool.lock)
            try:
                entries = await asyncio.to_thread(self.spool.read_locked)
                sent = written = 0
                try:
                    for chunk in _chunks(entries, self.max_batch):
                        written += await self._send([event for _, event in chunk])
                        sent += len(chunk)
                finally:
                    if sent:
                        rest = [line for line, _ in entries[sent:]]
                        await asyncio.to_thread(self.spool.replace_locked, rest)
                    self._spool_depth = len(entries) - sent
            finally:
                await asyncio.to_thread(self.spool.unlock, fd)
        if sent:
            log.info("replayed %d spooled events (%d new)", sent, written)
        return written

    async def _send(self, events: Sequence[Event]) -> int:
        """One pipelined round trip; returns events Redis accepted as new."""
        calls = self._calls(events)
        if self.ack.replicas:
            if isinstance(self.client, redis.asyncio.cluster.RedisCluster):
                await self.client.initialize()  # the slot map, to address the WAITs
            if self._waitaof is None:
                self._waitaof = await _has_waitaof(self.client)
        targets = self._wait_targets(self.client, calls)
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue(pipe, calls, targets)
            replies = await pipe.execute(raise_on_error=False)
        moved = targets != self._wait_targets(self.client, calls)
        return self._settle(events, calls, replies, moved)

    def _take_batch(self) -> tuple[list[Event], list[asyncio.Future[None]]]:
        events: list[Event] = []
        futures: list[asyncio.Future[None]] = []
        while self._pending:
            batch, future = self._pending[0]
            if events and len(events) + len(batch) > self.max_batch:
                break
            self._pending.popleft()
            events.extend(batch)
            futures.append(future)
        return events, futures

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                timeout = REPLAY_INTERVAL_S if self._spool_depth else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
            if self._spool_depth and time.monotonic() >= self._next_replay:
                try:
                    await self.replay_spool()
                except UNAVAILABLE as exc:
                    log.debug("spool replay deferred: %s", exc)
                except Exception:
                    log.exception("spool replay failed")
                if self._spool_depth:
                    self._next_replay = time.monotonic() + REPLAY_INTERVAL_S
            if self._pending:
                events, futures = self._take_batch()
                await self._commit(events, futures)

    async def _commit(self, events: list[Event], futures: list[asyncio.Future[None]]) -> None:
        error: BaseException | None = None
        sent = 0
        try:
            if not self._spool_depth:  # else: keep order behind the spool, Redis is likely down
                for chunk in _chunks(events, self.max_batch):
                    await self._send(chunk)
                    sent += len(chunk)
        except UNAVAILABLE as exc:
            log.warning("Redis unavailable (%s); spooling %d events", exc, len(events) - sent)
        except Exception as exc:
            error = exc
        if error is None and sent < len(events):
            try:
                async with self._spool_lock:  # type: ignore[union-attr]
                    await asyncio.to_thread(self.spool.append, events[sent:])
                self.events_spooled += len(events) - sent
                self._spool_depth += len(events) - sent
            except Exception as exc:
                log.exception("could not spool %d events", len(events) - sent)
                error = exc
        for future in futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


# ---------------------------------------------------------------------------------------------
# Sync event log (CLI, scripts, benchmarks)
# ---------------------------------------------------------------------------------------------


class SyncEventLog(_LogState):
    """Blocking writer with the same dedupe and spool semantics as ``EventLog``.

    ``append`` streams any iterable in pipelines of ``max_batch`` events, so millions of events
    need not be in memory at once. Redis and the spool are touched only by one writer thread:
    while it waits for Redis to run batch k, the calling thread encodes batch k+1 (~15% more
    throughput on two cores), and calls from several threads are serialised for free. There is
    no timer: replay is attempted at most every ``REPLAY_INTERVAL_S`` on ``append``, on
    ``close`` and with ``replay_spool``.
    """

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        spool_path: str | os.PathLike[str],
        maxlen: int | None = None,
        max_batch: int = 5000,
        ack: AckPolicy = PRIMARY_ONLY,
    ):
        super().__init__(spool_path, maxlen, max_batch, ack)
        self.client = client
        self._spool_depth = self.spool.depth()
        self._next_replay = 0.0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abtest-eventlog")

    def append(self, events: Iterable[Event]) -> None:
        """Return once Redis or the fsynced spool holds every event.

        Raises the first error other than unavailability (which spools), after every batch was
        tried.
        """
        if isinstance(events, Exposure | Outcome):
            raise TypeError("append() takes a sequence of events; wrap a single event in a list")
        in_flight: deque[Future[None]] = deque()
        errors: list[BaseException] = []

        def submit(batch: list[Event]) -> None:
            calls = self._calls(batch)  # encoded here, overlapping the writer
            in_flight.append(self._writer.submit(self._commit, batch, calls))
            while len(in_flight) > 1:
                _collect(in_flight.popleft(), errors)

        batch: list[Event] = []
        try:
            for event in events:
                if not isinstance(event, Exposure | Outcome):
                    raise TypeError(f"expected Exposure or Outcome, got {type(event).__name__}")
                batch.append(event)
                if len(batch) >= self.max_batch:
                    submit(batch)
                    batch = []
            if batch:
                submit(batch)
        finally:
            while in_flight:
                _collect(in_flight.popleft(), errors)
        if errors:
            raise errors[0]

    def replay_spool(self) -> int:
        """Write spooled events to Redis and truncate the spool; see ``EventLog.replay_spool``."""
        return self._writer.submit(self._replay).result()

    def close(self) -> None:
        """Try a last replay and stop the writer thread; the client is borrowed and stays open."""
        if self._spool_depth:
            with contextlib.suppress(*UNAVAILABLE):
                self.replay_spool()
        self._writer.shutdown(wait=True)

    def __enter__(self) -> SyncEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The methods below run on the writer thread only.

    def _replay(self) -> int:
        with self.spool.locked():
            entries = self.spool.read_locked()
            sent = written = 0
            try:
                for chunk in _chunks(entries, self.max_batch):
                    events = [event for _, event in chunk]
                    written += self._send(events, self._calls(events))
                    sent += len(chunk)
            finally:
                if sent:
                    self.spool.replace_locked([line for line, _ in entries[sent:]])
                self._spool_depth = len(entries) - sent
        if sent:
            log.info("replayed %d spooled events (%d new)", sent, written)
        return written

    def _send(self, events: Sequence[Event], calls: list[tuple[Any, ...]]) -> int:
        if self.ack.replicas and self._waitaof is None:
            self._waitaof = _has_waitaof_sync(self.client)
        targets = self._wait_targets(self.client, calls)
        with self.client.pipeline(transaction=False) as pipe:
            self._queue(pipe, calls, targets)
            replies = pipe.execute(raise_on_error=False)
        moved = targets != self._wait_targets(self.client, calls)
        return self._settle(events, calls, replies, moved)

    def _commit(self, events: list[Event], calls: list[tuple[Any, ...]]) -> None:
        if self._spool_depth and time.monotonic() >= self._next_replay:
            try:
                self._replay()
            except UNAVAILABLE as exc:
                log.debug("spool replay deferred: %s", exc)
            if self._spool_depth:
                self._next_replay = time.monotonic() + REPLAY_INTERVAL_S
        if not self._spool_depth:  # else: keep order behind the spool, Redis is likely down
            try:
                self._send(events, calls)
                return
            except UNAVAILABLE as exc:
                log.warning("Redis unavailable (%s); spooling %d events", exc, len(events))
        self.spool.append(events)
        self.events_spooled += len(events)
        self._spool_depth += len(events)


_WAITAOF_PROBE = ("WAITAOF", 0, 0, 0)


def _has_waitaof_sync(client: Any) -> bool:
    """Whether the server knows WAITAOF (Redis >= 7.2); a probe that waits for nothing."""
    try:
        client.execute_command(*_WAITAOF_PROBE)
    except redis.ResponseError:
        return False
    return True


async def _has_waitaof(client: Any) -> bool:
    """``_has_waitaof_sync`` for asyncio clients."""
    try:
        await client.execute_command(*_WAITAOF_PROBE)
    except redis.ResponseError:
        return False
    return True


def _collect(future: Future[None], errors: list[BaseException]) -> None:
    try:
        future.result()
    except Exception as exc:
        errors.append(exc)


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def iter_events(
    client: redis.Redis,
    experiment_id: str,
    kind: str,
    batch: int = 10_000,
    *,
    raw: bool = False,
    dedupe: bool = True,
) -> Iterator[Any]:
    """Every event of one stream in stream order, fetched ``batch`` entries per XRANGE.

    Yields decoded events, or the stored field dicts with ``raw=True``. With ``dedupe`` (the
    default) an ``event_id`` seen before is skipped, which keeps readers correct even for data
    written around the dedupe SET.
    """
    key = stream_key(experiment_id, kind)
    seen: set[str | bytes] = set()
    low = "-"
    while True:
        entries = client.xrange(key, min=low, max="+", count=batch)
        yield from _unseen(entries, seen if dedupe else None, raw)
        if len(entries) < batch:
            return
        low = "(" + as_str(entries[-1][0])  # exclusive range start (Redis >= 6.2)


def _unseen(entries: Iterable[tuple[Any, Any]], seen: set[Any] | None, raw: bool) -> Iterator[Any]:
    """The events of one XRANGE batch whose `event_id` is not in `seen` (None: all of them),
    adding theirs to it; decoded, or the stored field dicts with `raw`."""
    for _entry_id, fields in entries:
        event_id = fields.get("event_id") or fields.get(b"event_id")
        if seen is not None and event_id is not None:
            if event_id in seen:
                continue
            seen.add(event_id)
        yield fields if raw else decode(fields)


async def aiter_events(
    client: redis.asyncio.Redis,
    experiment_id: str,
    kind: str,
    batch: int = 10_000,
    *,
    raw: bool = False,
    dedupe: bool = True,
) -> AsyncIterator[Any]:
    """``iter_events`` for asyncio clients."""
    key = stream_key(experiment_id, kind)
    seen: set[str | bytes] = set()
    low = "-"
    while True:
        entries = await client.xrange(key, min=low, max="+", count=batch)
        for event in _unseen(entries, seen if dedupe else None, raw):
            yield event
        if len(entries) < batch:
            return
        low = "(" + as_str(entries[-1][0])


def ensure_group(client: redis.Redis, key: str, group: str, start_id: str = "0") -> bool:
    """Create consumer group ``group`` on stream ``key`` (and the stream if missing).

    ``start_id="0"`` delivers the whole history, ``"$"`` only new entries. Returns False when the
    group already exists, so every consumer may call it on start-up.
    """
    try:
        client.xgroup_create(key, group, id=start_id, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


def _entries(entries: Iterable[tuple[Any, Any]], raw: bool) -> list[tuple[str, Any]]:
    # Entries deleted from the stream while pending come back as (id, None) / (None, None).
    return [
        (as_str(entry_id), fields if raw else decode(fields))
        for entry_id, fields in entries
        if entry_id is not None and fields is not None
    ]


def read_group(
    client: redis.Redis,
    key: str,
    group: str,
    consumer: str,
    count: int = 100,
    block_ms: int | None = None,
    *,
    raw: bool = False,
) -> list[tuple[str, Any]]:
    """New entries for ``consumer`` as ``(entry_id, event)`` pairs (fields with ``raw=True``).

    ``block_ms`` waits for entries; keep it below the client's socket timeout (5 s by default).
    Entries stay pending until ``ack``ed; ``autoclaim`` hands those of dead consumers to others.
    A malformed entry raises ``abtest.event_fields.EventError``; read it with ``raw=True`` to ack
    it past.
    """
    reply = client.xreadgroup(group, consumer, {key: ">"}, count=count, block=block_ms)
    if not reply:
        return []
    return _entries(reply[0][1], raw)


def ack(client: redis.Redis, key: str, group: str, *entry_ids: str) -> int:
    """Mark entries processed; returns how many were pending."""
    if not entry_ids:
        return 0
    return int(client.xack(key, group, *entry_ids))


def autoclaim(
    client: redis.Redis,
    key: str,
    group: str,
    consumer: str,
    min_idle_ms: int,
    start_id: str = "0-0",
    count: int = 100,
    *,
    raw: bool = False,
) -> tuple[str, list[tuple[str, Any]]]:
    """Take over entries pending longer than ``min_idle_ms`` (XAUTOCLAIM).

    Returns ``(next_start_id, [(entry_id, event), ...])``; call again from ``next_start_id``
    until it is ``"0-0"`` to sweep the whole pending list.
    """
    reply = client.xautoclaim(key, group, consumer, min_idle_ms, start_id=start_id, count=count)
    return as_str(reply[0]), _entries(reply[1], raw)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def export_parquet(
    client: redis.Redis,
    experiment_id: str,
    path: str | os.PathLike[str],
    batch: int = 10_000,
) -> int:
    """Write both streams of an experiment to one Parquet file; returns rows written.

    Columns are ``kind`` (``exposure``/``outcome``) and every field, typed (``ts`` int64,
    ``value`` float64); fields a kind lacks are null. Events are deduped on ``event_id`` and
    validated by ``decode``. Written to a temp file and renamed, so readers never see half a file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            (name, pa.int64() if name == "ts" else pa.float64() if name == "value" else pa.string())
            for name in EXPORT_COLUMNS
        ]
    )
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for kind in ("exposure", "outcome"):
                columns: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMNS}
                for event in iter_events(client, experiment_id, kind, batch):
                    row = encode(event)
                    columns["kind"].append(kind)
                    for name in EXPORT_COLUMNS[1:]:
                        columns[name].append(row.get(name))
                    columns["ts"][-1] = event.ts
                    if isinstance(event, Outcome):
                        columns["value"][-1] = event.value
                    rows += 1
                    if len(columns["kind"]) >= batch:
                        writer.write_batch(pa.record_batch(columns, schema=schema))
                        columns = {name: [] for name in EXPORT_COLUMNS}
                if columns["kind"]:
                    writer.write_batch(pa.record_batch(columns, schema=schema))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows
