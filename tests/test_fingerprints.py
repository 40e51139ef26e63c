"""Fingerprint manifests (abtest.fingerprints, abtest.state_store) on a real Redis server:
written once per process, never overwritten, retried after a failed write, and read back
skipping junk."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import redis
import redis.asyncio

from abtest.fingerprints import manifests_key, parse_manifests
from abtest.state_store import ManifestRecorder


@dataclass(frozen=True)
class Use:
    prompt_id: str
    version: str
    sha256: str
    text: str
    source: str = ""


PROMPTS = {"final": Use("final_summary", "final-summary@3", "ab" * 32, "Answer {query}")}


def _record(url: str, recorder: ManifestRecorder, fp: str, prompts=PROMPTS) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            await recorder.record(client, "exp-fp", fp, "v2", prompts)
        finally:
            await client.aclose()

    asyncio.run(go())


def test_a_manifest_is_written_once_and_read_back(redis_client, redis_url) -> None:
    recorder = ManifestRecorder()
    _record(redis_url, recorder, "f1")
    other = {"final": Use("final_summary", "final-summary@4", "cd" * 32, "changed")}
    _record(redis_url, ManifestRecorder(), "f1", other)  # another process: HSETNX keeps the first
    manifest = parse_manifests(redis_client.hgetall(manifests_key("exp-fp")))["f1"]
    assert manifest.arm == "v2"
    assert manifest.prompts["final"]["version"] == "final-summary@3"
    assert manifest.prompts["final"]["text"] == "Answer {query}"
    assert manifest.versions() == "final: final-summary@3"
    assert manifests_key("exp-fp") == "abtest:{exp-fp}:fingerprints"


def test_a_failed_write_is_retried_by_the_next_request(redis_client, redis_url) -> None:
    recorder = ManifestRecorder()
    _record("redis://127.0.0.1:1", recorder, "f2")  # nothing listens there: logged, not raised
    assert "f2" not in parse_manifests(redis_client.hgetall(manifests_key("exp-fp")))
    _record(redis_url, recorder, "f2")
    assert "f2" in parse_manifests(redis_client.hgetall(manifests_key("exp-fp")))


def test_unreadable_entries_are_skipped(redis_client: redis.Redis) -> None:
    key = manifests_key("exp-fp")
    good = {"arm": "control", "recorded_at": 1, "prompts": {"p": {"version": "v1"}}}
    redis_client.hset(key, mapping={"bad": "not json", "worse": "[]", "ok": json.dumps(good)})
    manifests = parse_manifests(redis_client.hgetall(manifests_key("exp-fp")))
    assert set(manifests) == {"ok"}
    assert manifests["ok"].versions() == "p: v1"
