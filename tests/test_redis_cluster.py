"""`abtest.devtools.redis_cluster` against real redis-server processes in cluster mode."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from abtest.devtools import redis_cluster
from abtest.devtools.redis_cluster import ClusterError, ClusterNode, LocalCluster
from tests.conftest import NO_REDIS_SERVER

pytestmark = pytest.mark.skipif(redis_cluster.redis_server_binary() is None, reason=NO_REDIS_SERVER)


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The session's healthy 3-primary, 3-replica cluster, for the read-only tests."""
    return redis_cluster


def keys_per_primary(cluster: LocalCluster) -> dict[int, str]:
    """One key served by each primary, keyed by the primary's port."""
    found: dict[int, str] = {}
    for i in itertools.count():
        key = f"key-{i}"
        found.setdefault(cluster.primary_of(key).port, key)
        if len(found) == cluster.primaries:
            return found
    raise AssertionError("unreachable")


def test_cluster_serves_keys_in_every_primary(cluster: LocalCluster) -> None:
    primaries = cluster.nodes[: cluster.primaries]
    keys = keys_per_primary(cluster)
    assert set(keys) == {node.port for node in primaries}

    client = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, decode_responses=True)
    try:
        for port, key in keys.items():
            assert client.set(key, f"value-{port}")
        for port, key in keys.items():
            assert client.get(key) == f"value-{port}"
    finally:
        client.close()

    info = cluster.nodes[0].cluster_info()
    assert info["cluster_state"] == "ok"
    assert info["cluster_size"] == "3"
    for node in primaries:
        replication = node.replication_info()
        assert replication["role"] == "master"
        assert replication["connected_slaves"] == "1"
    assert cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{node.port}" for node in cluster.nodes
    )
    assert len(cluster.nodes) == 6


def test_replica_takes_over_a_killed_primary(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        key = "survives-failover"
        old = cluster.primary_of(key)
        client = old.client()
        try:
            client.set(key, "still here")
            assert client.execute_command("WAIT", 1, 1000) == 1
        finally:
            client.close()

        cluster.kill(old)
        assert not old.alive
        new = cluster.wait_for_failover(old, key)

        assert new.port != old.port and new.alive
        assert cluster.primary_of(key).port == new.port
        direct = new.client()
        try:
            assert direct.get(key) == "still here"
        finally:
            direct.close()
        rerouted = RedisCluster(host="127.0.0.1", port=new.port, decode_responses=True)
        try:
            assert rerouted.get(key) == "still here"
        finally:
            rerouted.close()


def test_stop_ends_every_process_even_after_an_exception(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    nodes: list[ClusterNode] = []
    with pytest.raises(RuntimeError, match="boom"), cluster:
        nodes = cluster.nodes
        assert all(node.alive for node in nodes)
        raise RuntimeError("boom")

    assert len(nodes) == 6
    assert all(node.process is not None and node.process.poll() is not None for node in nodes)
    assert list(tmp_path.iterdir()) == []  # the per-node directories, not tmp_path itself
    cluster.stop()
    assert all(not node.alive for node in cluster.nodes)


def test_cluster_with_uncovered_slots_reports_fail(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, primaries=1, replicas=0, assign_slots=False) as cluster:
        info = cluster.nodes[0].cluster_info()
        assert info["cluster_state"] == "fail"
        assert int(info["cluster_slots_assigned"]) < redis_cluster.SLOTS


def test_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    with pytest.raises(ClusterError, match="timed out"):
        cluster.start(timeout=0.3)
    assert cluster.nodes, "processes were started before the timeout"
    assert all(
        node.process is not None and node.process.poll() is not None for node in cluster.nodes
    )
    assert list(tmp_path.iterdir()) == []


def test_start_retries_when_a_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_ports = redis_cluster.free_ports
        calls: list[list[int]] = []

        def first_port_taken(count: int, usable=lambda port: True) -> list[int]:
            ports = real_free_ports(count, usable)
            if not calls:
                ports[0] = taken
            calls.append(ports)
            return ports

        monkeypatch.setattr(redis_cluster, "free_ports", first_port_taken)
        with LocalCluster(tmp_path, primaries=1, replicas=0, assign_slots=False) as cluster:
            assert len(calls) == 2
            assert taken not in {node.port for node in cluster.nodes}
            assert cluster.nodes[0].alive


def test_missing_redis_server_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_cluster.redis_server_binary() is None
    with pytest.raises(ClusterError, match=r"apt-get install redis-server"):
        LocalCluster(tmp_path / "cluster").start()
    assert not (tmp_path / "cluster").exists()


def test_client_is_a_plain_client_of_one_node(cluster: LocalCluster) -> None:
    node = cluster.nodes[0]
    client = node.client()
    try:
        assert isinstance(client, redis.Redis) and not isinstance(client, RedisCluster)
        assert client.ping()
        assert int(client.info("server")["process_id"]) == node.pid
    finally:
        client.close()
