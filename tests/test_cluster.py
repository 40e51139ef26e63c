"""The platform on a real Redis Cluster: start-up errors that name the setting, and a primary
SIGKILLed under a steady stream of outcome posts (the event log and API suites run on the
cluster too: see `both_stores` in conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from abtest.devtools.failover_drill import run_drill
from abtest.devtools.redis_cluster import LocalCluster, free_ports, redis_server_binary
from tests.api_support import EXAMPLES, EXPERIMENT
from tests.conftest import NO_REDIS_SERVER

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason=NO_REDIS_SERVER)


def _serve(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ABTEST_HOME": str(tmp_path / "home"), "REDIS_URL": url}
    command = [sys.executable, "-m", "abtest.cli", "serve", "--port", str(free_ports(1)[0])]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_an_unreachable_cluster_stops_serve_with_the_setting_named(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    done = _serve(tmp_path, f"redis+cluster://:secret@127.0.0.1:{port}")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"error: REDIS_URL=redis+cluster://:***@127.0.0.1:{port}: cannot use the Redis Cluster"
    )
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()  # nothing half-started


def test_a_cluster_with_uncovered_slots_stops_serve(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "cluster", primaries=2, replicas=0, assign_slots=False) as bad:
        done = _serve(tmp_path, bad.url)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"error: REDIS_URL={bad.url}: cannot use the Redis Cluster")
    assert "covered" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()


def test_replicated_acks_survive_a_primary_killed_mid_stream(tmp_path: Path) -> None:
    """ABTEST_ACK=replicated: every acknowledged outcome is in the stream after the failover,
    once, and posts kept being acknowledged while the slot had no primary (the spool). The
    replica is paused for a second before the kill, so WAIT times out and the spool takes
    batches the primary wrote but no replica confirmed."""
    with LocalCluster(tmp_path / "cluster") as cluster:
        result = run_drill(
            cluster, tmp_path / "home", EXAMPLES, EXPERIMENT, "thumbs_up", "replicated", lag_s=1.0
        )
    assert result.refused == 0
    assert result.acknowledged > 100
    assert result.acknowledged_after_kill > 0
    assert result.lost == 0, result.lost_ids
    assert result.duplicates == 0
    assert result.read_during_failover == (503, "5")  # a read without a primary: retry later
