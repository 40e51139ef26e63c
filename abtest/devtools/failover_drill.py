"""Failover drill: what a Redis Cluster primary's death does to acknowledged outcomes.

An operator choosing ``ABTEST_ACK`` needs a figure, not a promise. The drill runs ``abtest
serve`` on a local cluster (``LocalCluster``), posts outcomes with their own ``event_id`` from
several threads without pause, SIGKILLs the primary that holds the experiment's streams, lets
the cluster promote its replica, keeps posting, restarts the killed node (it rejoins as the new
primary's replica, as after an operator's restart), then stops, lets the service drain its
spool and compares the ids it was acknowledged with the ids the stream holds. Until the node is
back, the promoted primary has no replica: in ``replicated`` mode the service then acknowledges
through its local spool, which drains once a replica confirms again. The test suite runs it
with ``ABTEST_ACK=replicated`` (nothing may be lost); ``benchmarks/bench_cluster.py`` runs it in
both modes and prints the losses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from abtest.devtools.redis_cluster import ClusterNode, LocalCluster, free_ports
from abtest.event_fields import stream_key
from abtest.events import iter_events
from abtest.store import open_client


@dataclass
class DrillResult:
    """What one drill saw. ``lost`` are acknowledged ids the stream does not hold."""

    ack: str
    acknowledged: int
    refused: int
    stored: int
    lost: int
    duplicates: int
    acknowledged_after_kill: int
    failover_s: float
    lost_ids: list[str] = field(default_factory=list)
    #: Status and Retry-After of GET .../results right after the kill (503 and "5" expected).
    read_during_failover: tuple[int, str | None] = (0, None)


class _Poster(threading.Thread):
    """Posts one outcome at a time, each with a fresh event id, until told to stop."""

    def __init__(self, base_url: str, experiment_id: str, metric: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.base_url = base_url
        self.experiment_id = experiment_id
        self.metric = metric
        self.stop = stop
        self.acknowledged: list[tuple[float, str]] = []
        self.refused = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            while not self.stop.is_set():
                event_id = uuid.uuid4().hex
                body = {
                    "experiment_id": self.experiment_id,
                    "unit_id": f"u-{event_id[:12]}",
                    "metric": self.metric,
                    "value": 1,
                    "event_id": event_id,
                }
                try:
                    response = client.post("/v1/outcomes", json=body)
                except httpx.HTTPError:
                    self.refused += 1
                    continue
                if response.status_code == 200:
                    self.acknowledged.append((time.monotonic(), event_id))
                else:
                    self.refused += 1


def run_drill(
    cluster: LocalCluster,
    home: Path,
    experiments: Path,
    experiment_id: str,
    metric: str,
    ack: str,
    *,
    posters: int = 6,
    before_s: float = 1.5,
    after_s: float = 2.0,
    lag_s: float = 0.0,
) -> DrillResult:
    """Serve on `cluster` with ``ABTEST_ACK=ack``, kill the primary of `experiment_id`'s
    streams mid-stream, restart it once the cluster has failed over, and count what
    survived. With `lag_s`, the primary's replica is paused (SIGSTOP) for that long before
    the kill, as a replica behind on a slow link or a busy host would be, then resumed to
    take over. The cluster is left with the former replica as primary."""
    port = free_ports(1)[0]
    env = {
        **os.environ,
        "REDIS_URL": cluster.url,
        "ABTEST_ACK": ack,
        "ABTEST_HOME": str(home),
        "OPENAI_BASE_URL": os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    }
    env.pop("ABTEST_API_KEYS", None)
    command = [sys.executable, "-m", "abtest.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "-e", str(experiments)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, server)
        stop = threading.Event()
        threads = [_Poster(base_url, experiment_id, metric, stop) for _ in range(posters)]
        for thread in threads:
            thread.start()
        time.sleep(before_s)
        victim = cluster.primary_of(stream_key(experiment_id, "outcome"))
        replica = _replica_pid(victim) if lag_s else None
        if replica is not None:
            os.kill(replica, signal.SIGSTOP)  # its copy falls behind while posts go on
            time.sleep(lag_s)
        cluster.kill(victim)
        killed_at = time.monotonic()
        if replica is not None:
            os.kill(replica, signal.SIGCONT)
        read = httpx.get(f"{base_url}/v1/experiments/{experiment_id}/results", timeout=30)
        read_during_failover = (read.status_code, read.headers.get("retry-after"))
        cluster.wait_for_failover(victim, stream_key(experiment_id, "outcome"))
        failover_s = time.monotonic() - killed_at
        time.sleep(after_s)
        cluster.restart(victim)
        time.sleep(after_s)
        stop.set()
        for thread in threads:
            thread.join(60)
        _wait_drained(base_url)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    acknowledged = [item for thread in threads for item in thread.acknowledged]
    result = _count(cluster, experiment_id, ack, acknowledged, threads, killed_at, failover_s)
    result.read_during_failover = read_during_failover
    return result


def _count(
    cluster: LocalCluster,
    experiment_id: str,
    ack: str,
    acknowledged: list[tuple[float, str]],
    threads: list[_Poster],
    killed_at: float,
    failover_s: float,
) -> DrillResult:
    client = open_client(cluster.url)
    try:
        stored = [
            fields["event_id"]
            for fields in iter_events(client, experiment_id, "outcome", raw=True, dedupe=False)
        ]
    finally:
        client.close()
    ids = {event_id for _, event_id in acknowledged}
    lost = sorted(ids - set(stored))
    return DrillResult(
        ack=ack,
        acknowledged=len(ids),
        refused=sum(thread.refused for thread in threads),
        stored=len(stored),
        lost=len(lost),
        duplicates=len(stored) - len(set(stored)),
        acknowledged_after_kill=sum(1 for at, _ in acknowledged if at > killed_at),
        failover_s=failover_s,
        lost_ids=lost[:20],
    )


def _replica_pid(primary: ClusterNode) -> int:
    """The process id of `primary`'s (first) replica, from its INFO replication."""
    info = primary.replication_info()
    port = int(dict(item.split("=", 1) for item in info["slave0"].split(","))["port"])
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _wait_healthy(base_url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"abtest serve exited with {server.returncode} at start-up")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("abtest serve did not become ready")


def _wait_drained(base_url: str, timeout: float = 60.0) -> None:
    """Until the service's spool is empty: everything it acknowledged is in the cluster."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=2).json()["spool_depth"] == 0:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service's spool did not drain")
