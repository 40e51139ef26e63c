"""The store: REDIS_URL wins; otherwise one embedded Redis per ABTEST_HOME, shared by processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abtest import store

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
from abtest import store
url = store.redis_url()
client = store.sync_client()
print(url)
print(client.get("written-by-parent"))
client.set("written-by-child", "hello parent")
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ABTEST_HOME", str(home))
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield home
    store.stop_embedded()


def test_redis_url_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "rediss://:s3cret@cache.example.com:6380/2"
    monkeypatch.setenv("REDIS_URL", url)
    assert store.redis_url() == url


def test_embedded_server_is_shared_with_another_process(home: Path) -> None:
    url = store.redis_url()
    assert url.startswith("unix://") and os.path.exists(url.removeprefix("unix://"))
    assert store.redis_url() == url  # started once
    assert (home / "redis.db.settings").exists()
    client = store.sync_client()
    assert client is store.sync_client(url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.set("written-by-parent", "hello child")

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"ABTEST_HOME": str(home)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert child.stdout.splitlines() == [url, "hello child"]
    # The child's exit did not stop the server it attached to.
    assert client.get("written-by-child") == "hello parent"
    assert (home / "appendonly.aof").exists()


def test_embedded_data_survives_a_restart(home: Path) -> None:
    store.sync_client().set("kept", "yes")
    first = store.redis_url()
    store.stop_embedded()
    assert store.redis_url() != first  # a new server (new socket) on the same files
    assert store.sync_client().get("kept") == "yes"


def test_clients_are_cached_and_speak_resp2(redis_url: str) -> None:
    client = store.sync_client(redis_url)
    assert client is store.sync_client(redis_url)
    assert client.ping() is True
    assert client.connection_pool.connection_kwargs["protocol"] == 2

    async def main() -> None:
        a = store.async_client(redis_url)
        assert a is store.async_client(redis_url)
        await a.set("k", "v")
        assert await a.get("k") == "v"  # decode_responses
        assert a.connection_pool.connection_kwargs["protocol"] == 2
        await a.aclose()

    asyncio.run(main())
    asyncio.run(main())  # a new loop gets its own client


def test_async_client_needs_a_running_loop(redis_url: str) -> None:
    with pytest.raises(RuntimeError):
        store.async_client(redis_url)


def test_embedded_server_stops_when_its_last_process_exits(tmp_path: Path) -> None:
    env = {**os.environ, "ABTEST_HOME": str(tmp_path / "home")}
    env.pop("REDIS_URL", None)
    script = (
        "from abtest import store\n"
        "client = store.sync_client()\n"
        "client.set('k', 'v')\n"
        "print(client.info('server')['process_id'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    pid = int(done.stdout.strip())
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"embedded redis-server {pid} outlived the process that started it")
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            script.replace("client.set('k', 'v')", "assert client.get('k') == 'v'"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(again.stdout.strip()) != pid
