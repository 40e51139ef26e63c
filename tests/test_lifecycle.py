"""Stopping `abtest serve` the way operators do (SIGTERM from systemd, Docker, Kubernetes, or
SIGINT) leaves nothing running: the embedded Redis it started stops with it, and a new start on
the same ABTEST_HOME works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.api_support import wait_for_health
from tests.redis_process import free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text(errors="replace").lower()
    )


def _embedded_redis_pid(home: Path) -> int:
    settings = json.loads((home / "redis.db.settings").read_text())
    return int(Path(settings["pidfile"]).read_text().strip())


@pytest.mark.parametrize(
    ("stop", "workers"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)]
)
def test_a_stopped_service_leaves_nothing_running(tmp_path, llm_server, stop, workers) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ABTEST_HOME": str(home), "OPENAI_BASE_URL": llm_server.base_url}
    for key in ("REDIS_URL", "ABTEST_API_KEYS", "ABTEST_ADMIN_KEYS"):
        env.pop(key, None)
    for attempt in range(2):  # the second start reuses the same home (and its data)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "abtest.cli", "serve", "--port", str(port)]
            + ["--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_health(server, port)
            redis_pid = _embedded_redis_pid(home)
            assert _alive(redis_pid)
            server.send_signal(stop)
            assert server.wait(timeout=30) == 0, f"attempt {attempt}: exit code"
        finally:
            if server.poll() is None:
                server.kill()
        deadline = time.monotonic() + 15
        while _alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left_running = _alive(redis_pid)
        if left_running:  # do not leak it into the rest of the run
            os.kill(redis_pid, signal.SIGKILL)
        assert not left_running, f"attempt {attempt}: the embedded Redis is still running"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("htp://user:secret@db:6379", "REDIS_URL must start with redis://, rediss://, unix://"),
        ("redis://db:99999/0", "REDIS_URL has an invalid port"),
        ("redis://:6379", "REDIS_URL names no host"),
        ("redis+cluster://:secret@db:7000,db:70x1", "REDIS_URL: 'db:70x1' is not host:port"),
    ],
)
def test_a_malformed_redis_url_stops_serve_before_anything_starts(tmp_path, url, message):
    env = {**os.environ, "ABTEST_HOME": str(tmp_path / "home"), "REDIS_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "abtest.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {message}")
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()  # nothing half-started
