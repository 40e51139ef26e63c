"""Honest answers when the store is down, probes a load balancer can use, docs that work with
no internet: a real Redis server stopped and started under the API."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.api_support import EXPERIMENT, api_client
from tests.redis_process import RedisProcess


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server):
    server = RedisProcess(tmp_path / "redis").start()
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.delenv("ABTEST_API_KEYS", raising=False)
    monkeypatch.delenv("ABTEST_ADMIN_KEYS", raising=False)
    try:
        yield server
    finally:
        server.stop()


def test_reads_answer_503_naming_the_store_while_writes_are_spooled(store, tmp_path) -> None:
    outcome = {"experiment_id": EXPERIMENT, "unit_id": "u1", "metric": "thumbs_up", "value": 1}
    with api_client(tmp_path / "home", api_keys=frozenset({"k"})) as client:
        auth = {"Authorization": "Bearer k"}
        assert client.get("/health/ready").json()["status"] == "ready"
        store.stop()
        results = client.get(f"/v1/experiments/{EXPERIMENT}/results", headers=auth)
        report = client.get(f"/v1/experiments/{EXPERIMENT}/report", headers=auth)
        written = client.post("/v1/outcomes", json=outcome, headers=auth)
        live = client.get("/health")
        not_ready = client.get("/health/ready")
        store.start()
        ready_again = client.get("/health/ready")
    for response in (results, report):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        body = response.json()
        assert body["error"] == "store_unavailable"
        host = urlsplit(store.url).netloc
        assert f"the event store (Redis at {host}) cannot be reached" in body["detail"]
    assert written.status_code == 200  # acknowledged through the spool
    assert live.status_code == 200 and live.json()["spool_depth"] == 1
    assert not_ready.status_code == 503 and not_ready.headers["retry-after"] == "5"
    assert not_ready.json()["status"] == "not_ready"
    assert "unreachable" in not_ready.json()["store"]
    assert ready_again.status_code == 200 and ready_again.json()["status"] == "ready"


def test_docs_are_served_from_the_installed_package(store, tmp_path) -> None:
    with api_client(tmp_path / "home") as client:
        page = client.get("/docs")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        fetched = {url: client.get(url) for url in assets}
        redoc = client.get("/redoc")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert assets and all(url.startswith("/docs/static/") for url in assets), assets
    assert "http" not in " ".join(assets)
    for url, response in fetched.items():
        assert response.status_code == 200 and len(response.content) > 500, url
    assert redoc.status_code == 404
