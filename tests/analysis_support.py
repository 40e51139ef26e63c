"""Helpers for the analysis tests and benchmark: events in the contract's shape.

`exposure()` and `outcome()` build one event as the field mapping `abtest.events` writes (all
values strings); `write_events()` appends them with pipelined XADDs; `frames()` turns the same
mappings into DataFrames shaped like `load_events` output; `synthetic_frames()` builds large
data sets vectorised (for the benchmark and the planted-effect test).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from abtest.event_fields import stream_key
from abtest.experiments import Experiment, parse_experiment

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms
HOUR = 3_600_000
DAY = 24 * HOUR

_counter = itertools.count()


def experiment(
    metrics: Sequence[Mapping[str, object]] | None = None,
    arms: Sequence[tuple[str, float]] = (("control", 0.5), ("v2", 0.5)),
    **analysis: object,
) -> Experiment:
    """A small valid experiment definition (default: one proportion metric, 50/50)."""
    return parse_experiment(
        {
            "id": "exp-test",
            "flow": "variants.summarization",
            "arms": [{"name": name, "weight": weight} for name, weight in arms],
            "metrics": list(metrics or [{"name": "thumbs_up", "kind": "proportion"}]),
            "analysis": {"correction": "none", **analysis},
        }
    )


def exposure(
    unit: str,
    arm: str,
    ts: int = T0,
    experiment_id: str = "exp-test",
    event_id: str | None = None,
) -> dict[str, str]:
    """One exposure event as written to the stream."""
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "ts": str(int(ts)),
        "experiment_id": experiment_id,
        "unit_id": unit,
        "arm": arm,
        "request_id": f"req-{next(_counter)}",
        "definition_sha": "a" * 64,
        "flow_fingerprint": "b" * 64,
    }


def outcome(
    unit: str,
    arm: str,
    metric: str,
    value: float,
    ts: int = T0 + 1000,
    experiment_id: str = "exp-test",
    event_id: str | None = None,
    request_id: str = "",
) -> dict[str, str]:
    """One outcome event as written to the stream."""
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "ts": str(int(ts)),
        "experiment_id": experiment_id,
        "unit_id": unit,
        "arm": arm,
        "request_id": request_id,
        "metric": metric,
        "value": repr(float(value)),
    }


def write_events(
    client,
    experiment_id: str,
    exposures: Iterable[Mapping[str, str]] = (),
    outcomes: Iterable[Mapping[str, str]] = (),
    chunk: int = 5000,
) -> None:
    """Append events with plain pipelined XADDs, in the order given."""
    pipe = client.pipeline(transaction=False)
    for kind, events in (("exposure", exposures), ("outcome", outcomes)):
        key = stream_key(experiment_id, kind)
        for event in events:
            pipe.xadd(key, dict(event))
            if len(pipe) >= chunk:
                pipe.execute()
    pipe.execute()


def frames(
    exposures: Iterable[Mapping[str, str]], outcomes: Iterable[Mapping[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plain DataFrames (object/str columns, int ts, float value) from event mappings."""
    e = pd.DataFrame(
        list(exposures), columns=["event_id", "ts", "unit_id", "arm", "flow_fingerprint"]
    )
    columns = ["event_id", "ts", "unit_id", "arm", "metric", "value"]
    o = pd.DataFrame(list(outcomes), columns=columns)
    e["ts"] = e["ts"].astype(np.int64)
    o["ts"] = o["ts"].astype(np.int64)
    o["value"] = o["value"].astype(np.float64)
    return e, o


def synthetic_frames(
    exp: Experiment,
    n_units: int,
    n_outcomes: int,
    seed: int = 0,
    lift: float = 0.0,
    days: int = 14,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Vectorised synthetic exposures (one per unit) and outcomes for `exp`'s base metrics.

    Every treatment arm multiplies the rate of positive `proportion` events and the mean of
    other values by ``1 + lift``. Outcomes are spread evenly over the base metrics and land
    after their unit's exposure.
    """
    rng = np.random.default_rng(seed)
    arms = np.array(exp.arm_names)
    weights = np.array([a.weight for a in exp.arms])
    unit_ids = np.array([f"u{i}" for i in range(n_units)], dtype=object)
    arm_idx = rng.choice(len(arms), size=n_units, p=weights / weights.sum())
    e_ts = T0 + rng.integers(0, days * DAY, n_units)
    exposures = pd.DataFrame(
        {
            "ts": e_ts,
            "unit_id": pd.array(unit_ids, dtype="str"),
            "arm": pd.Categorical.from_codes(arm_idx, categories=list(arms)),
        }
    )
    base: list[tuple[str, str]] = []
    for m in exp.metrics:
        parts = [(m.numerator, "sum"), (m.denominator, "sum")] if m.kind == "ratio" else []
        for name, kind in parts or [(m.name, m.kind)]:
            if name not in [b[0] for b in base]:
                base.append((str(name), kind))
    unit = rng.integers(0, n_units, n_outcomes)
    metric_idx = rng.integers(0, len(base), n_outcomes)
    factor = np.where(arm_idx[unit] > 0, 1.0 + lift, 1.0)
    value = np.empty(n_outcomes)
    for j, (_, kind) in enumerate(base):
        sel = metric_idx == j
        if kind == "proportion":
            value[sel] = rng.random(sel.sum()) < 0.2 * factor[sel]
        else:
            value[sel] = rng.gamma(2.0, 50.0, sel.sum()) * factor[sel]
    o_ts = e_ts[unit] + rng.integers(0, 2 * DAY, n_outcomes)
    outcomes = pd.DataFrame(
        {
            "ts": o_ts,
            "unit_id": pd.array(unit_ids[unit], dtype="str"),
            "arm": pd.Categorical.from_codes(arm_idx[unit], categories=list(arms)),
            "metric": pd.Categorical.from_codes(metric_idx, categories=[b[0] for b in base]),
            "value": value,
        }
    )
    return exposures, outcomes
