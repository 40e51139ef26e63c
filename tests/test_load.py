"""analysis.load: events from a real Redis (and from a Parquet export) into typed frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abtest.event_fields import stream_key
from abtest.store import open_client
from analysis.load import (
    EXPOSURE_COLUMNS,
    OUTCOME_COLUMNS,
    empty_events,
    load_events,
    load_events_parquet,
)
from tests.analysis_support import T0, exposure, outcome, write_events

pytestmark = pytest.mark.both_stores

EXP = "exp-test"


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def test_columns_are_typed(redis_url, redis_client):
    write_events(
        redis_client,
        EXP,
        [exposure("u1", "control", T0), exposure("u2", "v2", T0 + 5)],
        [outcome("u1", "control", "latency_ms", 812.5, T0 + 10, request_id="r-1")],
    )
    exposures, outcomes = load_events(EXP, redis_url)
    assert tuple(exposures.columns) == EXPOSURE_COLUMNS
    assert tuple(outcomes.columns) == OUTCOME_COLUMNS
    assert _dtypes(exposures) == {
        "event_id": "str",
        "ts": "int64",
        "time": "datetime64[ms, UTC]",
        "experiment_id": "category",
        "unit_id": "str",
        "arm": "category",
        "request_id": "str",
        "definition_sha": "category",
        "flow_fingerprint": "category",
        "source": "category",  # absent in these entries (written as older writers did)
    }
    assert exposures["source"].isna().all()
    assert _dtypes(outcomes)["value"] == "float64"
    assert _dtypes(outcomes)["metric"] == "category"
    assert exposures["unit_id"].tolist() == ["u1", "u2"]
    assert exposures["arm"].tolist() == ["control", "v2"]
    assert exposures["ts"].tolist() == [T0, T0 + 5]
    assert exposures["time"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00Z")
    first = outcomes.iloc[0]
    assert (first["metric"], first["value"], first["request_id"]) == ("latency_ms", 812.5, "r-1")
    assert first["time"] == pd.Timestamp(T0 + 10, unit="ms", tz="UTC")


def test_duplicate_event_ids_keep_the_first_occurrence(redis_url, redis_client):
    first = outcome("u1", "control", "cost_usd", 1.0, T0 + 1, event_id="e" * 32)
    retry = outcome("u1", "control", "cost_usd", 99.0, T0 + 2, event_id="e" * 32)
    other = outcome("u1", "control", "cost_usd", 2.0, T0 + 3)
    dup_exposure = exposure("u1", "control", T0, event_id="x" * 32)
    write_events(redis_client, EXP, [dup_exposure, dup_exposure], [first, retry, other, retry])
    exposures, outcomes = load_events(EXP, redis_url)
    assert len(exposures) == 1
    assert outcomes["value"].tolist() == [1.0, 2.0]
    assert outcomes["event_id"].is_unique


def test_reads_across_batch_boundaries(redis_url, redis_client):
    n = 1037
    rows = [
        outcome(f"u{i % 50}", "control", "responses", float(i), T0 + i, event_id=f"{i:032x}")
        for i in range(n)
    ]
    rows.append(rows[3])  # a duplicate in a later batch than the original
    write_events(redis_client, EXP, [exposure(f"u{i}", "control") for i in range(300)], rows)
    for batch_size in (100, 300, 1037, 5000):
        exposures, outcomes = load_events(EXP, redis_url, batch_size=batch_size)
        assert len(exposures) == 300  # 300 is an exact multiple of 100 and equal to 300
        assert outcomes["value"].tolist() == [float(i) for i in range(n)]
        assert outcomes["ts"].is_monotonic_increasing


def test_accepts_a_client_and_returns_empty_frames_for_missing_streams(redis_url, redis_client):
    write_events(redis_client, EXP, [exposure("u1", "control")], [])
    exposures, outcomes = load_events(EXP, redis_client)  # decode_responses=True client
    assert exposures["unit_id"].tolist() == ["u1"]
    assert outcomes.empty and tuple(outcomes.columns) == OUTCOME_COLUMNS
    bytes_client = open_client(redis_url, decode_responses=False)
    assert load_events(EXP, bytes_client)[0]["unit_id"].tolist() == ["u1"]
    bytes_client.close()
    nothing_e, nothing_o = load_events("no-such-experiment", redis_client)
    expected_e, expected_o = empty_events()
    pd.testing.assert_frame_equal(nothing_e, expected_e)
    pd.testing.assert_frame_equal(nothing_o, expected_o)


def test_mixed_field_order_and_bad_rows(redis_url, redis_client):
    exposures_key, outcomes_key = stream_key(EXP, "exposure"), stream_key(EXP, "outcome")
    good = outcome("u1", "control", "cost_usd", 0.25, T0 + 1)
    reordered = dict(reversed(list(outcome("u2", "v2", "cost_usd", 0.5, T0 + 2).items())))
    extra = {**outcome("u3", "v2", "cost_usd", 0.75, T0 + 3), "note": "ignored"}
    no_value = {k: v for k, v in outcome("u4", "v2", "cost_usd", 1, T0 + 4).items() if k != "value"}
    not_a_number = {**outcome("u5", "v2", "cost_usd", 1, T0 + 5), "value": "lots"}
    infinite = {**outcome("u6", "v2", "cost_usd", 1, T0 + 6), "value": "inf"}
    bad_ts = {**outcome("u7", "v2", "cost_usd", 1, T0 + 7), "ts": "yesterday"}
    for event in (good, reordered, extra, no_value, not_a_number, infinite, bad_ts):
        redis_client.xadd(outcomes_key, event)
    redis_client.xadd(exposures_key, exposure("u1", "control"))
    _, outcomes = load_events(EXP, redis_url)
    assert outcomes["unit_id"].tolist() == ["u1", "u2", "u3"]
    assert outcomes["value"].tolist() == [0.25, 0.5, 0.75]
    assert outcomes["arm"].tolist() == ["control", "v2", "v2"]


def test_batch_size_must_be_positive(redis_url):
    with pytest.raises(ValueError, match="batch_size"):
        load_events(EXP, redis_url, batch_size=0)


def _export_frame(exposures: list[dict], outcomes: list[dict]) -> pd.DataFrame:
    """The `abtest export` shape: a kind column, every field, ts int64, value float64."""
    rows = [{"kind": "exposure", **e} for e in exposures] + [
        {"kind": "outcome", **o} for o in outcomes
    ]
    frame = pd.DataFrame(rows)
    frame["ts"] = frame["ts"].astype(np.int64)
    frame["value"] = pd.to_numeric(frame["value"]).astype(np.float64)
    return frame


def test_parquet_round_trip_equals_redis(tmp_path, redis_url, redis_client):
    exposures = [exposure(f"u{i}", ("control", "v2")[i % 2], T0 + i) for i in range(20)]
    exposures.append(exposures[0])  # duplicate
    outcomes = [
        outcome(f"u{i % 20}", ("control", "v2")[i % 2], "thumbs_up", float(i % 3 == 0), T0 + 50 + i)
        for i in range(40)
    ]
    write_events(redis_client, EXP, exposures, outcomes)
    from_redis = load_events(EXP, redis_url)

    other = [exposure("z1", "control", T0, experiment_id="other-exp")]
    frame = _export_frame(exposures + other, outcomes)
    path = tmp_path / "export.parquet"
    frame.to_parquet(path, index=False)
    from_parquet = load_events_parquet(path, experiment_id=EXP)
    pd.testing.assert_frame_equal(from_parquet[0], from_redis[0])
    pd.testing.assert_frame_equal(from_parquet[1], from_redis[1])
    assert len(load_events_parquet(path)[0]) == 21  # no filter: the other experiment too


def test_parquet_without_kind_is_rejected(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"ts": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="no 'kind' column"):
        load_events_parquet(path)


def test_judge_fingerprints_load_from_redis_and_from_an_export(tmp_path, redis_url, redis_client):
    """Scores of online judges carry `judge_fingerprint`; other outcomes, also those written
    before the field existed (the helpers here write them so), load as "", through `abtest
    export` too."""
    from abtest.event_fields import Outcome
    from abtest.events import SyncEventLog, export_parquet

    write_events(
        redis_client,
        EXP,
        [exposure("u1", "control", T0), exposure("u2", "v2", T0)],
        [outcome("u1", "control", "thumbs_up", 1.0, T0 + 1)],
    )
    scores = [
        Outcome(EXP, unit, arm, "judge:helpfulness", 4.0, ts=T0 + 2, judge_fingerprint="f" * 64)
        for unit, arm in (("u1", "control"), ("u2", "v2"))
    ]
    with SyncEventLog(redis_client, tmp_path / "spool.jsonl") as log:
        log.append([*scores, Outcome(EXP, "u2", "v2", "thumbs_up", 0.0, ts=T0 + 3)])
    from_redis = load_events(EXP, redis_url)[1]
    assert str(from_redis["judge_fingerprint"].dtype) == "category"
    assert from_redis["judge_fingerprint"].tolist() == ["", "f" * 64, "f" * 64, ""]
    path = tmp_path / "export.parquet"
    assert export_parquet(redis_client, EXP, path) == 6
    pd.testing.assert_frame_equal(load_events_parquet(path, EXP)[1], from_redis)
