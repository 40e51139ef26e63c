"""Nothing acknowledged is ever lost: Redis outages and a SIGKILLed API process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from abtest.event_fields import stream_key
from tests.api_support import EXAMPLES, EXPERIMENT, api_client, experiments_copy
from tests.redis_process import RedisProcess, free_port


def _outcome(unit: str, event_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "experiment_id": EXPERIMENT,
        "unit_id": unit,
        "metric": "thumbs_up",
        "value": 1,
    }
    if event_id is not None:
        body["event_id"] = event_id
    return body


def _wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _event_ids(client) -> list[str]:
    return [f["event_id"] for _, f in client.xrange(stream_key(EXPERIMENT, "outcomes"))]


def test_redis_outage_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server
) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    total = 60
    try:
        with api_client(tmp_path / "home") as client:
            for i in range(total):
                if i == 20:
                    server.stop()
                if i == 40:
                    server.start()
                response = client.post("/v1/outcomes", json=_outcome(f"u{i}"))
                assert response.status_code == 200, (i, response.text)
            assert _wait_for(lambda: client.get("/health").json()["spool_depth"] == 0)
        ids = _event_ids(server.client())
        assert len(ids) == total
        assert len(set(ids)) == total
    finally:
        server.stop()


def _serve(port: int, env: dict[str, str], experiments: Path = EXAMPLES) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "abtest.cli", "serve", "--port", str(port), "-e", str(experiments)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/health"
    assert _wait_for(lambda: _healthy(url), timeout=60), "the API did not start"
    return process


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigkill_during_load_keeps_every_acknowledged_event(tmp_path: Path, llm_server) -> None:
    redis_server = RedisProcess(tmp_path / "redis").start()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "ABTEST_HOME": str(tmp_path / "home"),
        "OPENAI_BASE_URL": llm_server.base_url,
    }
    env.pop("ABTEST_API_KEYS", None)
    env.pop("ABTEST_ADMIN_KEYS", None)
    api = _serve(port, env)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            i = 0
            while not stop.is_set():
                batch = [_outcome(f"w{worker}-{i}-{k}", uuid.uuid4().hex) for k in range(5)]
                i += 1
                try:
                    response = http.post("/v1/outcomes", json=batch)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    with lock:
                        acknowledged.extend(str(e["event_id"]) for e in batch)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        redis_server.stop()
        time.sleep(1.0)
        api.send_signal(signal.SIGKILL)
        api.wait(10)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(10)
        assert len(acknowledged) > 50
        spool = tmp_path / "home" / "spool.jsonl"
        assert spool.exists() and spool.stat().st_size > 0, "the outage should have spooled"
        redis_server.start()
        api = _serve(port, env)
        client = redis_server.client()
        expected = set(acknowledged)
        assert _wait_for(lambda: expected <= set(_event_ids(client)), timeout=30)
        ids = _event_ids(client)
        assert len(ids) == len(set(ids))
    finally:
        stop.set()
        api.kill()
        api.wait(10)
        redis_server.stop()


def test_sighup_reloads_and_a_bad_file_keeps_the_live_definitions(
    tmp_path: Path, redis_url: str, llm_server
) -> None:
    experiments = experiments_copy(tmp_path)
    path = experiments / "pdf_summary.yaml"
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ABTEST_HOME": str(tmp_path / "home"),
        "OPENAI_BASE_URL": llm_server.base_url,
    }
    api = _serve(port, env, experiments)
    url = f"http://127.0.0.1:{port}/v1/experiments/{EXPERIMENT}"

    def description() -> str:
        return httpx.get(url, timeout=5).json()["definition"]["description"]

    try:
        path.write_text(path.read_text().replace("description: ", "description: reloaded "))
        api.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: description().startswith("reloaded"), timeout=10)
        path.write_text(path.read_text().replace("coverage: 1.0", "coverage: 7"))
        api.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert api.poll() is None
        assert description().startswith("reloaded")
        assert httpx.get(url, timeout=5).json()["definition"]["coverage"] == 1.0
    finally:
        api.kill()
        api.wait(10)
