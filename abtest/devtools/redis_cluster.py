"""A throwaway local Redis Cluster for tests and benchmarks.

The platform must work on Redis Cluster, not only on the single embedded server, and the only
honest check of that is a real cluster: hash slots spread over several primaries, MOVED
redirections, replicas that take over when a primary dies. `LocalCluster` starts one on
loopback ports with Debian's `redis-server` (`apt-get install redis-server`) in cluster mode,
three primaries with one replica each by default, and forms it with plain redis-py commands, so
neither `redis-cli` nor Docker is needed. Every process is a child of this Python process and
`stop()` kills them all, so a test run leaves nothing behind.

Layout: `nodes[:primaries]` are the primaries (in slot order) and the replicas of primary `i`
are `nodes[primaries + i * replicas : primaries + (i + 1) * replicas]`. That describes the
cluster as formed; after a failover ask `primary_of` who serves a key.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
SLOTS = 16384
# Redis Cluster's bus listens on the client port + 10000, so both must be free.
BUS_PORT_OFFSET = 10000
# Attempts at a whole start when a chosen port was taken before redis-server could bind it.
START_ATTEMPTS = 3
POLL_INTERVAL = 0.05
# Flags in CLUSTER NODES that mean a peer is not (yet) a healthy member.
UNHEALTHY_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})
INSTALL_HINT = "install Debian's redis-server (apt-get install redis-server)"

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster could not be started or formed; the message says why."""


class _PortClash(Exception):
    """A port chosen as free was taken before redis-server bound it: start over."""


class _NotYet(Exception):
    """A polled condition does not hold yet; the message says what is missing."""


def redis_server_binary() -> str | None:
    """Path of `redis-server` on PATH, or None: callers skip or explain instead of crashing."""
    return shutil.which("redis-server")


def poll_until(check: Callable[[], T], deadline: float, what: str) -> T:
    """Call `check` until it returns without raising `_NotYet` or a Redis error.

    Cluster formation and failover are asynchronous (gossip, elections), so every step is a
    wait; on timeout the error names the step and the last reason it was not done yet.
    """
    reason = "not checked"
    while True:
        try:
            return check()
        except (_NotYet, redis.RedisError) as exc:
            reason = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out waiting for {what}: {reason}")
        time.sleep(POLL_INTERVAL)


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """Split the 16384 hash slots into `primaries` contiguous, near-equal inclusive ranges."""
    return [(i * SLOTS // primaries, (i + 1) * SLOTS // primaries - 1) for i in range(primaries)]


def _bindable(port: int) -> bool:
    """Whether nothing listens on (or holds) `port` on loopback right now."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, usable: Callable[[int], bool] = lambda port: True) -> list[int]:
    """`count` distinct loopback ports whose cluster bus port (port + 10000) is free too.

    The sockets stay bound until all ports are chosen so the kernel cannot hand out one twice.
    Another process can still grab a port before redis-server binds it; `start` retries then.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 50):
            if len(ports) == count:
                break
            sock = socket.socket()
            held.append(sock)
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            if port + BUS_PORT_OFFSET > 65535 or not usable(port):
                continue
            if _bindable(port + BUS_PORT_OFFSET):
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise ClusterError(f"found only {len(ports)} of {count} free loopback port pairs")
    return ports


@dataclass(frozen=True)
class Peer:
    """One line of CLUSTER NODES: how a node sees another (or itself)."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str

    @property
    def role(self) -> str:
        """Either "master" or "slave", the words CLUSTER NODES uses."""
        return "slave" if "slave" in self.flags else "master"

    @classmethod
    def parse(cls, line: str) -> Peer:
        """Parse `<id> <ip:port@cport[,hostname]> <flags> <master> ...`."""
        node_id, address, flags, master_id = line.split(" ")[:4]
        port = address.split("@")[0].rsplit(":", 1)[1]
        return cls(node_id, int(port or 0), frozenset(flags.split(",")), master_id)


@dataclass
class ClusterNode:
    """One redis-server process of the cluster, listening on 127.0.0.1:`port`."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    _admin: redis.Redis | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def pid(self) -> int | None:
        """The server's process id (None before it was started)."""
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    @property
    def log_file(self) -> Path:
        """Where the server logs: the first place to look when the cluster misbehaves."""
        return self.directory / "redis.log"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this node alone, e.g. for WAIT or INFO."""
        return redis.Redis(
            host=HOST, port=self.port, decode_responses=True, protocol=2, socket_timeout=2
        )

    def command(self, *args: str | int) -> Any:
        """Run one command on this node with no retries and no reply parsing.

        redis-py's default retry sleeps with backoff on a refused connection, which would
        stall every poll that touches a dead node; the raw reply keeps parsing in one place.
        """
        if self._admin is None:
            self._admin = redis.Redis(
                host=HOST,
                port=self.port,
                decode_responses=True,
                protocol=2,
                socket_timeout=2,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
            )
            self._admin.response_callbacks.clear()  # raw replies: we parse them ourselves
        return self._admin.execute_command(*args)

    def probe_pid(self) -> int | None:
        """The process id of whatever server answers on this port (None if not reported).

        A short timeout, because when another program holds the port the connection may be
        accepted and never answered; the caller compares the id with its own child's.
        """
        with redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            retry=Retry(NoBackoff(), 0),
        ) as probe:
            probe.response_callbacks.clear()
            pid = _fields(probe.execute_command("INFO", "server").decode()).get("process_id")
        return int(pid) if pid else None

    def close(self) -> None:
        """Drop the admin connection (after the process is gone, or before stopping)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def cluster_info(self) -> dict[str, str]:
        """CLUSTER INFO as a dict, e.g. {"cluster_state": "ok", "cluster_size": "3"}."""
        return _fields(str(self.command("CLUSTER", "INFO")))

    def replication_info(self) -> dict[str, str]:
        """INFO replication as a dict (role, master_link_status, connected_slaves...)."""
        return _fields(str(self.command("INFO", "replication")))

    def peers(self) -> list[Peer]:
        """This node's view of the cluster (CLUSTER NODES), itself included."""
        return [Peer.parse(line) for line in str(self.command("CLUSTER", "NODES")).splitlines()]

    def slot_owner_port(self, slot: int) -> int | None:
        """Port of the primary that serves `slot` in this node's view (None: not covered)."""
        for entry in self.command("CLUSTER", "SLOTS"):
            start, end, primary = entry[0], entry[1], entry[2]
            if int(start) <= slot <= int(end):
                return int(primary[1])
        return None

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _fields(text: str) -> dict[str, str]:
    """Parse `key:value` lines (CLUSTER INFO, INFO) and skip `# Section` headers."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


class LocalCluster:
    """Redis Cluster of `primaries` primaries with `replicas` replicas each, on loopback.

    Use as a context manager, or call `start()` and `stop()`. Each node keeps its data
    (nodes.conf, AOF, redis.log) in `directory/<port>`; `stop()` removes those directories
    and nothing else. With `assign_slots=False` only the first primary's slot range is
    assigned (half the slots when there is a single primary), so the cluster reports
    cluster_state:fail: a cluster with slots not covered.
    """

    def __init__(
        self,
        directory: Path,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        appendfsync: str = "everysec",
        assign_slots: bool = True,
    ):
        if primaries < 1 or replicas < 0:
            raise ValueError("need at least one primary and a non-negative replica count")
        self.directory = Path(directory)
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendfsync = appendfsync
        self.assign_slots = assign_slots
        self._nodes: list[ClusterNode] = []
        self._node_ids: dict[int, str] = {}

    @property
    def nodes(self) -> list[ClusterNode]:
        """Every node, primaries first (see the module docstring for the layout)."""
        return list(self._nodes)

    @property
    def url(self) -> str:
        """`redis+cluster://host:port,...` naming every node, so any survivor can bootstrap."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self._nodes)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        ports = ",".join(str(node.port) for node in self._nodes)
        return f"LocalCluster({self.primaries}x{1 + self.replicas}, ports={ports or '-'})"

    # -- starting and stopping ------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every process and form the cluster; on any failure stop them all and raise.

        Returns self once the cluster is ok (every slot served, replicas in sync), or, with
        `assign_slots=False`, once the nodes know each other.
        """
        if any(node.alive for node in self._nodes):
            raise ClusterError(f"{self!r} is already running")
        binary = redis_server_binary()
        if binary is None:
            raise ClusterError(f"redis-server not found on PATH: {INSTALL_HINT}")
        deadline = time.monotonic() + timeout
        for _ in range(START_ATTEMPTS):
            try:
                self._launch(binary, deadline)
                self._form(deadline)
                return self
            except _PortClash:
                self.stop()
            except (OSError, redis.RedisError) as exc:
                self.stop()
                raise ClusterError(f"could not start the cluster: {exc}") from exc
            except BaseException:
                self.stop()
                raise
        raise ClusterError(f"ports kept being taken by other processes ({START_ATTEMPTS} tries)")

    def stop(self) -> None:
        """Kill every process this cluster started, wait for them, remove their directories.

        Idempotent, and safe after a failed start or from `__exit__` after an exception.
        `nodes` still lists the (now dead) nodes afterwards.
        """
        for node in self._nodes:
            node.close()
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
        for node in self._nodes:
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=10)
            shutil.rmtree(node.directory, ignore_errors=True)

    def _launch(self, binary: str, deadline: float) -> None:
        """Start `primaries * (1 + replicas)` servers and wait until each answers PING."""
        self._nodes = []
        self._node_ids = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        count = self.primaries * (1 + self.replicas)
        ports = free_ports(count, lambda port: not (self.directory / str(port)).exists())
        for port in ports:
            node = ClusterNode(port, self.directory / str(port))
            node.directory.mkdir()
            self._nodes.append(node)
            node.process = subprocess.Popen(
                self._server_args(binary, node),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for node in self._nodes:
            self._wait_ready(node, deadline)

    def _server_args(self, binary: str, node: ClusterNode) -> list[str]:
        """The redis-server command line of one cluster node."""
        return [
            binary,
            *("--port", str(node.port), "--bind", HOST, "--dir", str(node.directory)),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            *("--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", ""),
            *("--daemonize", "no", "--protected-mode", "no"),
            # A replica may always be promoted, however long it was disconnected.
            *("--cluster-replica-validity-factor", "0"),
            # Full syncs start at once instead of after the default 5 s diskless-sync delay.
            *("--repl-diskless-sync-delay", "0"),
            *("--logfile", str(node.log_file)),
        ]

    def _wait_ready(self, node: ClusterNode, deadline: float) -> None:
        """Wait until `node`'s own process answers; detect a port taken by someone else."""

        def ready() -> None:
            assert node.process is not None
            code = node.process.poll()
            if code is not None:
                log = node.log_tail()
                if "Address already in use" in log:
                    raise _PortClash(node.port)
                raise ClusterError(f"redis-server on port {node.port} exited ({code}):\n{log}")
            pid = node.probe_pid()
            if pid is not None and pid != node.process.pid:
                raise _PortClash(node.port)  # another server answers on our port

        poll_until(ready, deadline, f"redis-server on port {node.port} to answer")

    # -- forming the cluster ----------------------------------------------------------------

    def _form(self, deadline: float) -> None:
        """Assign slots, MEET, attach replicas, and wait for the cluster to be usable."""
        for epoch, node in enumerate(self._nodes, start=1):
            self._node_ids[node.port] = str(node.command("CLUSTER", "MYID"))
            # Distinct config epochs up front (as redis-cli does) skip the collision dance.
            node.command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        primaries = self._nodes[: self.primaries]
        if self.assign_slots:
            assignments = list(zip(primaries, slot_ranges(self.primaries), strict=True))
        else:
            assignments = [(primaries[0], slot_ranges(max(self.primaries, 2))[0])]
        for node, (start, end) in assignments:
            node.command("CLUSTER", "ADDSLOTSRANGE", start, end)
        first = self._nodes[0]
        for node in self._nodes[1:]:
            first.command("CLUSTER", "MEET", HOST, node.port)
        poll_until(self._check_acquainted, deadline, "the nodes to know each other")
        for index, primary in enumerate(primaries):
            start = self.primaries + index * self.replicas
            for replica in self._nodes[start : start + self.replicas]:
                replica.command("CLUSTER", "REPLICATE", self._node_ids[primary.port])
        if self.assign_slots:
            self.wait_until_ok(max(deadline - time.monotonic(), 0.0))

    def _check_acquainted(self) -> None:
        """Every node lists every other as a healthy peer (REPLICATE needs the primary's id)."""
        ids = set(self._node_ids.values())
        for node in self._nodes:
            healthy = {p.node_id for p in node.peers() if not p.flags & UNHEALTHY_FLAGS}
            if missing := ids - healthy:
                raise _NotYet(f"port {node.port} does not know {len(missing)} node(s) yet")

    # -- health and failover ----------------------------------------------------------------

    def live_nodes(self) -> list[ClusterNode]:
        """Nodes whose process is running."""
        return [node for node in self._nodes if node.alive]

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node says cluster_state:ok, agrees on who replicates whom,
        and every replica's link to its primary is up (so writes replicate and a failover
        can be voted)."""
        poll_until(self._check_ok, time.monotonic() + timeout, "cluster_state:ok")

    def _check_ok(self) -> None:
        live = self.live_nodes()
        if not live:
            raise ClusterError("no node of the cluster is running")
        for node in live:
            state = node.cluster_info().get("cluster_state")
            if state != "ok":
                raise _NotYet(f"port {node.port} says cluster_state:{state}")
            info = node.replication_info()
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                raise _NotYet(f"replica on port {node.port} is not in sync with its primary")
        self._check_views_agree(live)

    def _check_views_agree(self, live: list[ClusterNode]) -> None:
        """All live nodes see the same roles for each other: failover votes depend on it."""
        ids = [self._node_ids[node.port] for node in live]
        first_view: dict[str, tuple[str, str]] | None = None
        for node in live:
            peers = {peer.node_id: peer for peer in node.peers()}
            view: dict[str, tuple[str, str]] = {}
            for node_id in ids:
                peer = peers.get(node_id)
                if peer is None or peer.flags & UNHEALTHY_FLAGS:
                    raise _NotYet(f"port {node.port} does not see every live node as healthy")
                view[node_id] = (peer.role, peer.master_id)
            if first_view is None:
                first_view = view
            elif view != first_view:
                raise _NotYet(f"port {node.port} disagrees about the cluster's roles")

    def _node_at(self, port: int) -> ClusterNode:
        for node in self._nodes:
            if node.port == port:
                return node
        raise ClusterError(f"port {port} is not a node of {self!r}")

    def _key_slot(self, key: str) -> int:
        live = self.live_nodes()
        if not live:
            raise ClusterError("no node of the cluster is running")
        return int(live[0].command("CLUSTER", "KEYSLOT", key))

    def primary_of(self, key: str) -> ClusterNode:
        """The node currently serving `key`'s hash slot, as a live node sees it."""
        slot = self._key_slot(key)
        port = self.live_nodes()[0].slot_owner_port(slot)
        if port is None:
            raise ClusterError(f"no node serves slot {slot} (key {key!r})")
        return self._node_at(port)

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL `node` (a crash: no shutdown, no final fsync) and wait until it is gone."""
        node = self._node_at(node.port)
        node.close()
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=10)

    def restart(self, node: ClusterNode, timeout: float = 30.0) -> None:
        """Start a killed node again on its port and files, as an operator would after a
        crash: it rejoins from its ``nodes.conf``, as a replica of whoever replaced it, and
        the call returns once the cluster is ok with its replicas in sync."""
        node = self._node_at(node.port)
        if node.alive:
            raise ClusterError(f"node on port {node.port} is still running")
        binary = redis_server_binary()
        if binary is None:
            raise ClusterError(f"redis-server not found on PATH: {INSTALL_HINT}")
        node.process = subprocess.Popen(
            self._server_args(binary, node), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        self._wait_ready(node, deadline)
        self.wait_until_ok(max(deadline - time.monotonic(), 0.1))

    def wait_for_failover(
        self, killed: ClusterNode, key: str, timeout: float = 30.0
    ) -> ClusterNode:
        """Wait until a live node (the former replica) serves `key`'s slot as primary, every
        live node agrees on it and says cluster_state:ok; return that new primary."""
        if killed.alive:
            raise ClusterError(f"node on port {killed.port} is still running: kill it first")
        slot = self._key_slot(key)

        def promoted() -> ClusterNode:
            live = self.live_nodes()
            owners = {node.slot_owner_port(slot) for node in live}
            if len(owners) != 1:
                raise _NotYet(f"live nodes disagree on slot {slot}: {sorted(map(str, owners))}")
            port = next(iter(owners))
            if port is None or port == killed.port:
                raise _NotYet(f"slot {slot} is still served by port {port}")
            new = self._node_at(port)
            if new.replication_info().get("role") != "master":
                raise _NotYet(f"port {new.port} is not a primary yet")
            for node in live:
                if (state := node.cluster_info().get("cluster_state")) != "ok":
                    raise _NotYet(f"port {node.port} says cluster_state:{state}")
            return new

        return poll_until(promoted, time.monotonic() + timeout, f"a failover of slot {slot}")
