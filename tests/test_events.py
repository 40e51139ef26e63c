"""Event encoding (pure), and the event log and readers against a real Redis."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

import pandas as pd
import pytest
import redis

from abtest import store
from abtest.event_fields import (
    EventError,
    Exposure,
    Outcome,
    decode,
    dedupe_key,
    encode,
    kind_of,
    stream_key,
)
from abtest.events import (
    AckPolicy,
    EventLog,
    SyncEventLog,
    ack,
    aiter_events,
    autoclaim,
    ensure_group,
    export_parquet,
    iter_events,
    read_group,
)
from abtest.experiments import AUTOMATIC_METRICS
from abtest.settings import Settings, SettingsError, cluster_nodes, is_cluster_url

pytestmark = pytest.mark.both_stores

SHA = "a" * 64
FLOW = "b" * 64


def exposure(i: int = 0, experiment_id: str = "exp1", **kw: object) -> Exposure:
    return Exposure(experiment_id, f"user-{i}", "control", f"req-{i}", SHA, FLOW, **kw)


def outcome(i: int = 0, experiment_id: str = "exp1", **kw: object) -> Outcome:
    kw.setdefault("value", 1.5 * i)
    return Outcome(experiment_id, f"user-{i}", "treatment", "latency_ms", **kw)


# --- encoding: pure, no Redis -----------------------------------------------------------------


def test_round_trip_exposure_and_outcome() -> None:
    for event in (
        exposure(3),
        outcome(4, request_id="req-4", value=0.1),
        outcome(5, value=-2.5e-300),
        Outcome("e", "u", "a", "error", 1),
    ):
        fields = encode(event)
        assert all(isinstance(v, str) for v in fields.values())
        assert decode(fields) == event
        assert decode({k.encode(): v.encode() for k, v in fields.items()}) == event


def test_encoded_fields_follow_the_contract() -> None:
    event = outcome(1, value=0.1, event_id="abc", ts=1_700_000_000_123)
    assert encode(event) == {
        "event_id": "abc",
        "ts": "1700000000123",
        "experiment_id": "exp1",
        "unit_id": "user-1",
        "arm": "treatment",
        "request_id": "",
        "metric": "latency_ms",
        "value": "0.1",
        "judge_fingerprint": "",
    }
    older_outcome = {k: v for k, v in encode(event).items() if k != "judge_fingerprint"}
    assert decode(older_outcome) == event  # entries written before `judge_fingerprint` existed
    assert decode(encode(replace(event, judge_fingerprint="f" * 64))).judge_fingerprint == "f" * 64
    assert set(encode(exposure())) == {
        "event_id",
        "ts",
        "experiment_id",
        "unit_id",
        "arm",
        "request_id",
        "definition_sha",
        "flow_fingerprint",
        "source",
    }
    older = {k: v for k, v in encode(exposure()).items() if k != "source"}
    assert decode(older).source == "api"  # entries written before `source` existed
    assert kind_of(exposure()) == "exposure" and kind_of(event) == "outcome"


def test_defaults_event_id_uuid4_hex_and_ts_now() -> None:
    before = time.time_ns() // 1_000_000
    a, b = exposure(), exposure()
    assert len(a.event_id) == 32 and int(a.event_id, 16) >= 0 and a.event_id != b.event_id
    assert before <= a.ts <= time.time_ns() // 1_000_000
    assert Outcome("e", "u", "a", "m", 3).value == 3.0
    assert isinstance(Outcome("e", "u", "a", "m", 3).value, float)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_rejected_with_clear_message(bad: float) -> None:
    with pytest.raises(EventError, match=r"value of metric 'latency_ms' must be a finite number"):
        outcome(value=bad)
    fields = encode(outcome(value=1.0)) | {"value": repr(bad)}
    with pytest.raises(EventError, match="finite"):
        decode(fields)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Exposure("", "u", "a", "r", SHA, FLOW), "experiment_id must be a non-empty"),
        (lambda: Exposure("e", "", "a", "r", SHA, FLOW), "unit_id must be a non-empty"),
        (lambda: Exposure("e", "u", "", "r", SHA, FLOW), "arm must be a non-empty"),
        (lambda: Exposure("e", "u", "a", "", SHA, FLOW), "request_id must be a non-empty"),
        (lambda: Exposure("e", "u", "a", "r", "", FLOW), "definition_sha must be a non-empty"),
        (lambda: Exposure("e", "u", "a", "r", SHA, FLOW, event_id=""), "event_id must be"),
        (lambda: Exposure("e{x}", "u", "a", "r", SHA, FLOW), "must not contain"),
        (lambda: Exposure("e", "u", "a", "r", SHA, FLOW, ts=-1), "ts must be"),
        (lambda: Exposure("e", "u", "a", "r", SHA, FLOW, ts=1.5), "ts must be"),
        (lambda: Outcome("e", "u", "a", "", 1.0), "metric must be a non-empty"),
        (lambda: Outcome("e", "u", "a", "m", "1.0"), "must be a number"),  # type: ignore[arg-type]
        (lambda: Outcome("e", 7, "a", "m", 1.0), "unit_id must be a string"),  # type: ignore[arg-type]
        (lambda: Outcome("e", "u\ud800", "a", "m", 1.0), "not valid Unicode"),
    ],
)
def test_invalid_events_rejected(make, message: str) -> None:
    with pytest.raises(EventError, match=message):
        make()


def test_outcome_request_id_may_be_empty() -> None:
    assert outcome().request_id == ""


def test_decode_reports_missing_and_malformed_fields() -> None:
    fields = encode(exposure())
    del fields["flow_fingerprint"]
    with pytest.raises(EventError, match="missing field.*flow_fingerprint"):
        decode(fields)
    with pytest.raises(EventError, match="ts must be integer"):
        decode(encode(exposure()) | {"ts": "soon"})
    with pytest.raises(EventError, match="value must be a float"):
        decode(encode(outcome()) | {"value": "lots"})
    event = exposure(1)
    assert decode(encode(event) | {"future_field": "x"}) == event


def test_keys_are_hash_tagged_per_experiment() -> None:
    assert stream_key("exp1", "exposure") == "abtest:{exp1}:exposures"
    assert stream_key("exp1", "outcomes") == "abtest:{exp1}:outcomes"
    assert dedupe_key("exp1", "outcome") == "abtest:{exp1}:outcomes:event_ids"
    with pytest.raises(ValueError, match="kind must be"):
        stream_key("exp1", "clicks")


def test_automatic_metrics() -> None:
    assert AUTOMATIC_METRICS == (
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "error",
        "responses",
    )


# --- the async event log ----------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


def test_group_commit_200_concurrent_appends_share_few_round_trips(
    redis_url: str, redis_client: redis.Redis, tmp_path
) -> None:
    events = [outcome(i) for i in range(200)]

    async def main() -> EventLog:
        client = store.async_client(redis_url)
        async with EventLog(client, tmp_path / "spool.jsonl") as log:
            await asyncio.gather(*(log.append([e]) for e in events))
        await client.aclose()
        return log

    log = run(main())
    assert redis_client.xlen(stream_key("exp1", "outcome")) == 200
    assert log.events_written == 200 and log.spool_depth == 0
    assert 1 <= log.batches_written <= 5, log.batches_written
    assert {e.event_id for e in iter_events(redis_client, "exp1", "outcome")} == {
        e.event_id for e in events
    }


def test_batch_larger_than_max_batch_and_mixed_streams(
    redis_url: str, redis_client: redis.Redis, tmp_path
) -> None:
    events = [exposure(i, "expA") if i % 3 else outcome(i, "expB") for i in range(2500)]

    async def main() -> EventLog:
        client = store.async_client(redis_url)
        async with EventLog(client, tmp_path / "spool.jsonl", max_batch=1000) as log:
            await log.append(events)
        await client.aclose()
        return log

    log = run(main())
    assert log.batches_written == 3
    assert list(iter_events(redis_client, "expA", "exposure")) == [
        e for e in events if isinstance(e, Exposure)
    ]
    assert list(iter_events(redis_client, "expB", "outcome")) == [
        e for e in events if isinstance(e, Outcome)
    ]


def test_non_ascii_text_round_trips_through_redis(redis_client: redis.Redis, tmp_path) -> None:
    event = Outcome("exp-ü", "usér 日本 🙂", 'arm "quoted" \\ ,[]', "m", 2.0, "req\n\t\x00")
    SyncEventLog(redis_client, tmp_path / "spool.jsonl").append([event])
    assert list(iter_events(redis_client, "exp-ü", "outcome")) == [event]


def test_same_event_id_lands_once(redis_url: str, redis_client: redis.Redis, tmp_path) -> None:
    event = outcome(1, event_id="client-supplied-1")

    async def main() -> EventLog:
        client = store.async_client(redis_url)
        async with EventLog(client, tmp_path / "spool.jsonl") as log:
            await log.append([event])
            await log.append([event])  # a client retry
            await asyncio.gather(log.append([event, event]), log.append([event]))
        await client.aclose()
        return log

    log = run(main())
    assert redis_client.xlen(stream_key("exp1", "outcome")) == 1
    assert log.events_written == 1 and log.events_duplicate == 4

    sync_log = SyncEventLog(redis_client, tmp_path / "sync-spool.jsonl")
    sync_log.append([event, outcome(2, event_id="client-supplied-2")])
    sync_log.close()
    assert redis_client.xlen(stream_key("exp1", "outcome")) == 2
    assert sync_log.events_written == 1 and sync_log.events_duplicate == 1


def test_redis_error_fails_the_callers_and_records_nothing(
    redis_url: str, redis_client: redis.Redis, tmp_path
) -> None:
    """A write Redis rejects (not an outage) raises to the caller; the id is not marked seen, so
    the retry after the fix lands."""
    redis_client.set(stream_key("exp1", "outcome"), "not a stream")
    event = outcome(1)

    async def main() -> EventLog:
        client = store.async_client(redis_url)
        async with EventLog(client, tmp_path / "spool.jsonl") as log:
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await log.append([event])
            redis_client.delete(stream_key("exp1", "outcome"))
            await log.append([event])
        await client.aclose()
        return log

    log = run(main())
    assert log.spool_depth == 0 and log.events_spooled == 0
    assert list(iter_events(redis_client, "exp1", "outcome")) == [event]


def test_append_misuse(redis_url: str, tmp_path) -> None:
    async def main() -> None:
        client = store.async_client(redis_url)
        log = EventLog(client, tmp_path / "spool.jsonl")
        with pytest.raises(RuntimeError, match="start"):
            await log.append([outcome()])
        await log.start()
        with pytest.raises(TypeError, match="wrap a single event"):
            await log.append(outcome())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected Exposure or Outcome"):
            await log.append([encode(outcome())])  # type: ignore[list-item]
        await log.append([])
        await log.close()
        await client.aclose()

    run(main())


def test_optional_approximate_maxlen_trims_streams_only(
    redis_client: redis.Redis, tmp_path
) -> None:
    log = SyncEventLog(redis_client, tmp_path / "spool.jsonl", maxlen=100)
    log.append(outcome(i) for i in range(1000))
    log.close()
    assert 100 <= redis_client.xlen(stream_key("exp1", "outcome")) < 1000
    assert redis_client.scard(dedupe_key("exp1", "outcome")) == 1000


def test_sync_log_streams_large_iterables(redis_client: redis.Redis, tmp_path) -> None:
    log = SyncEventLog(redis_client, tmp_path / "spool.jsonl", max_batch=1000)
    log.append(exposure(i) for i in range(10_500))
    log.close()
    assert log.batches_written == 11 and log.events_written == 10_500
    assert redis_client.xlen(stream_key("exp1", "exposure")) == 10_500


# --- readers ----------------------------------------------------------------------------------


def test_iter_events_in_order_in_batches_and_deduped(redis_client: redis.Redis, tmp_path) -> None:
    events = [outcome(i) for i in range(53)]
    SyncEventLog(redis_client, tmp_path / "spool.jsonl").append(events)
    key = stream_key("exp1", "outcome")
    redis_client.xadd(key, encode(events[10]))  # written around the dedupe set

    calls = []
    original = redis_client.xrange

    def counting_xrange(*args, **kwargs):
        calls.append(kwargs.get("count"))
        return original(*args, **kwargs)

    redis_client.xrange = counting_xrange  # type: ignore[method-assign]
    assert list(iter_events(redis_client, "exp1", "outcome", batch=7)) == events
    assert calls == [7] * 8  # 54 entries: seven full batches, then a short one
    del redis_client.xrange
    raw = list(iter_events(redis_client, "exp1", "outcome", raw=True, dedupe=False))
    assert len(raw) == 54 and raw[0] == encode(events[0])
    assert list(iter_events(redis_client, "nothing", "exposure")) == []


def test_aiter_events(redis_url: str, redis_client: redis.Redis, tmp_path) -> None:
    events = [exposure(i) for i in range(25)]
    SyncEventLog(redis_client, tmp_path / "spool.jsonl").append(events)

    async def main() -> list:
        client = store.async_client(redis_url)
        found = [e async for e in aiter_events(client, "exp1", "exposure", batch=10)]
        await client.aclose()
        return found

    assert run(main()) == events


def test_consumer_group_read_ack_autoclaim(redis_client: redis.Redis, tmp_path) -> None:
    key = stream_key("exp1", "outcome")
    assert ensure_group(redis_client, key, "analysts") is True  # creates the stream too
    assert ensure_group(redis_client, key, "analysts") is False
    events = [outcome(i) for i in range(5)]
    SyncEventLog(redis_client, tmp_path / "spool.jsonl").append(events)

    first = read_group(redis_client, key, "analysts", "worker-1", count=3)
    assert [e for _, e in first] == events[:3]
    rest = read_group(redis_client, key, "analysts", "worker-1", count=10, block_ms=10)
    assert [e for _, e in rest] == events[3:]
    assert read_group(redis_client, key, "analysts", "worker-1", count=10, block_ms=10) == []
    assert ack(redis_client, key, "analysts", first[0][0], first[1][0]) == 2
    assert ack(redis_client, key, "analysts") == 0

    # worker-1 "dies" with three entries pending; worker-2 takes them over.
    time.sleep(0.01)
    next_id, claimed = autoclaim(redis_client, key, "analysts", "worker-2", min_idle_ms=5)
    assert next_id == "0-0"
    assert [e for _, e in claimed] == events[2:]
    pending = redis_client.xpending(key, "analysts")
    assert pending["pending"] == 3 and pending["consumers"] == [{"name": "worker-2", "pending": 3}]
    assert ack(redis_client, key, "analysts", *(entry_id for entry_id, _ in claimed)) == 3
    raw = autoclaim(redis_client, key, "analysts", "worker-3", min_idle_ms=0, raw=True)
    assert raw == ("0-0", [])


def test_export_parquet_round_trip(redis_client: redis.Redis, tmp_path) -> None:
    exposures = [exposure(i) for i in range(30)]
    outcomes = [outcome(i, request_id=f"req-{i}", value=i / 3) for i in range(45)]
    SyncEventLog(redis_client, tmp_path / "spool.jsonl").append([*exposures, *outcomes])
    SyncEventLog(redis_client, tmp_path / "spool.jsonl").append([outcome(0, experiment_id="x")])

    path = tmp_path / "exp1.parquet"
    assert export_parquet(redis_client, "exp1", path, batch=20) == 75
    frame = pd.read_parquet(path)
    assert len(frame) == 75
    assert str(frame["ts"].dtype) == "int64" and str(frame["value"].dtype) == "float64"
    assert list(frame["kind"].value_counts().sort_index().items()) == [
        ("exposure", 30),
        ("outcome", 45),
    ]
    got_exposures = frame[frame["kind"] == "exposure"]
    assert got_exposures["metric"].isna().all() and got_exposures["value"].isna().all()
    assert list(got_exposures["event_id"]) == [e.event_id for e in exposures]
    assert list(got_exposures["definition_sha"]) == [SHA] * 30
    got_outcomes = frame[frame["kind"] == "outcome"]
    assert got_outcomes["definition_sha"].isna().all()
    assert list(got_outcomes["value"]) == [e.value for e in outcomes]
    assert list(got_outcomes["ts"]) == [e.ts for e in outcomes]
    assert list(got_outcomes["request_id"]) == [e.request_id for e in outcomes]

    empty = tmp_path / "none.parquet"
    assert export_parquet(redis_client, "no-such-experiment", empty) == 0
    assert list(pd.read_parquet(empty).columns)[:3] == ["kind", "event_id", "ts"]


def test_replicated_acks_wait_for_a_replica_else_spool(
    redis_url: str, redis_client: redis.Redis, tmp_path
) -> None:
    """ABTEST_ACK=replicated: on the cluster (a replica per primary) a WAIT after each node's
    scripts confirms every batch; on a server with no replica none can confirm, so the events,
    written to the primary, are acknowledged through the spool, and the replay, which waits for
    a replica again, keeps them there."""
    replicated = AckPolicy(replicas=1, timeout_ms=100)
    sync_events = [outcome(i, experiment_id=f"exp{i % 3}") for i in range(30)]
    async_events = [outcome(i, experiment_id=f"exp{i % 3}") for i in range(30, 60)]
    sync_log = SyncEventLog(store.sync_client(redis_url), tmp_path / "s.jsonl", ack=replicated)
    with sync_log:
        sync_log.append(sync_events)

    async def main() -> EventLog:
        client = store.async_client(redis_url)
        async with EventLog(client, tmp_path / "a.jsonl", ack=replicated) as log:
            await asyncio.gather(*(log.append([e]) for e in async_events))
        await store.close_async_client(client)
        return log

    async_log = run(main())
    stored = {e.event_id for i in range(3) for e in iter_events(redis_client, f"exp{i}", "outcome")}
    assert stored == {e.event_id for e in sync_events + async_events}  # on the primary
    if is_cluster_url(redis_url):
        assert sync_log.events_spooled == async_log.events_spooled == 0
        assert sync_log.spool_depth == async_log.spool_depth == 0
    else:
        assert sync_log.events_spooled == sync_log.spool_depth == 30
        assert async_log.events_spooled == async_log.spool_depth == 30


def test_ack_policy_reads_the_settings_and_replies() -> None:
    settings = Settings.from_env({"ABTEST_ACK": "Replicated", "ABTEST_ACK_TIMEOUT_MS": "250"})
    policy = AckPolicy.from_settings(settings)
    assert policy == AckPolicy(replicas=1, timeout_ms=250)
    assert AckPolicy.from_settings(Settings.from_env({})) == AckPolicy(0, 1000)
    assert policy.wait_command(waitaof=False) == ("WAIT", 1, 250)
    assert policy.wait_command(waitaof=True) == ("WAITAOF", 0, 1, 250)
    assert policy.confirmed(1) and not policy.confirmed(0)
    assert policy.confirmed([1, 1]) and not policy.confirmed([1, 0])
    with pytest.raises(SettingsError, match="ABTEST_ACK must be one of primary, replicated"):
        Settings.from_env({"ABTEST_ACK": "quorum"})
    with pytest.raises(SettingsError, match="ABTEST_ACK_TIMEOUT_MS must be a positive integer"):
        Settings.from_env({"ABTEST_ACK_TIMEOUT_MS": "0"})


def test_cluster_urls_name_their_start_up_nodes() -> None:
    url = "redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002"
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url
    assert is_cluster_url(url) and not is_cluster_url("redis://10.0.0.1:7000")
    assert cluster_nodes(url) == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)]
    with pytest.raises(SettingsError, match=r"REDIS_URL: 'b:0' is not host:port in 'redis\+c"):
        Settings.from_env({"REDIS_URL": "redis+cluster://:secret@a:1,b:0"})
