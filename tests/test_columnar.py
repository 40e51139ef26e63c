"""analysis.columnar: DuckDB over Parquet exports gives the statistics and results of the
in-memory path (`experiment_stats` / `analyze` on `load_events_parquet` of the same file).

Every test writes real Parquet files in the export schema (`abtest export`: a `kind` column and
every event field) and runs real DuckDB. Equality is to 1e-9 relative on floats (the two paths
sum in different orders; values within 1e-12 of 0 count as 0), exact on counts, names,
diagnostics and fingerprints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from abtest.event_fields import EXPORT_COLUMNS
from abtest.experiments import Experiment
from analysis.analyze import analyze, experiment_stats
from analysis.columnar import analyze_columnar, columnar_stats
from analysis.load import load_events_parquet
from analysis.sufficient import ExperimentStats
from tests.analysis_support import DAY, HOUR, T0, experiment, exposure, outcome

pytest.importorskip("duckdb")

EXP = "exp-test"
ARMS = (("control", 0.34), ("v2", 0.33), ("v3", 0.33))
RTOL = 1e-9
ATOL = 1e-12  # rounding noise around 0: e.g. a covariance of 2e-34 (NumPy) where DuckDB has 0

METRICS: list[dict[str, Any]] = [
    {"name": "thumbs_up", "kind": "proportion", "primary": True},
    {
        "name": "latency_ms",
        "kind": "mean",
        "aggregate": "mean",
        "direction": "decrease",
        "guardrail": True,
        "cap": {"absolute": 400.0},
    },
    {
        "name": "cost_usd",
        "kind": "mean",
        "aggregate": "sum",
        "direction": "decrease",
        "guardrail": True,
        "cap": {"percentile": 0.9},
        "covariate": "responses",
    },
    {"name": "spend", "kind": "mean", "aggregate": "sum", "estimand": "absolute"},
    {
        "name": "thumbs_per_response",
        "kind": "ratio",
        "numerator": "thumbs_up",
        "denominator": "responses",
    },
]

Row = tuple[str, dict[str, Any]]  # (kind, fields); a field set to None is null in the file


# --- writing exports -------------------------------------------------------------------------

_SCHEMA = pa.schema(
    [
        (name, pa.int64() if name == "ts" else pa.float64() if name == "value" else pa.string())
        for name in EXPORT_COLUMNS
    ]
)


def write_export(path, rows: Sequence[Row]) -> None:
    """`rows` as one Parquet file in the export schema, in the order given."""
    columns: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMNS}
    for kind, fields in rows:
        columns["kind"].append(kind)
        for name in EXPORT_COLUMNS[1:]:
            value = fields.get(name)
            if value is not None and name == "ts":
                value = int(value)
            elif value is not None and name == "value":
                value = float(value)
            columns[name].append(value)
    pq.write_table(pa.table(columns, schema=_SCHEMA), path, row_group_size=max(1, len(rows) // 3))


def pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def rich_events(seed: int, n_units: int = 400) -> list[Row]:
    """Three arms and every case the analysis must handle: ties and second exposures in other
    arms, unknown arms, an overridden unit, pre-exposure outcomes inside and outside the CUPED
    window and exactly on its edges, outcomes before exposure, of unexposed units, of unused
    metrics, of another experiment, with mismatching or unknown arms, with invalid fields, and
    duplicate event ids (exact repeats, conflicting repeats, ids shared across kinds)."""
    rng = np.random.default_rng(seed)
    arms = [name for name, _ in ARMS]
    exposures: list[Row] = []
    outcomes: list[Row] = []
    window = 7 * DAY
    for i in range(n_units):
        unit, arm = f"u{i}", pick(rng, arms)
        start = T0 + int(rng.integers(0, 6 * DAY))
        first = ("exposure", exposure(unit, arm, start))
        r = rng.random()
        if r < 0.08:  # a tie in another arm, earlier in the file: it wins
            exposures.append(("exposure", exposure(unit, pick(rng, arms), start)))
            exposures.append(first)
        elif r < 0.16:  # a later exposure in another arm
            exposures.append(first)
            exposures.append(("exposure", exposure(unit, pick(rng, arms), start + HOUR)))
        elif r < 0.20:  # an earlier exposure naming an unknown arm: dropped
            exposures.append(("exposure", exposure(unit, "v9", start - DAY)))
            exposures.append(first)
        elif r < 0.22:  # only an unknown arm: the unit is never exposed
            exposures.append(("exposure", exposure(unit, "v9", start)))
        else:
            exposures.append(first)
        for _ in range(int(rng.integers(0, 7))):
            metric = pick(rng, ["thumbs_up", "latency_ms", "cost_usd", "spend", "responses"])
            if metric == "thumbs_up":
                value = float(rng.random() < 0.25 + 0.05 * arms.index(arm))
            elif metric == "responses":
                value = float(rng.integers(0, 4))
            elif metric == "cost_usd":
                value = float(rng.lognormal(0.0, 1.5))
            else:
                value = float(rng.gamma(2.0, 100.0))
            offset = int(rng.integers(-10 * DAY, 3 * DAY))
            outcome_arm = arm if rng.random() > 0.03 else pick(rng, ["v2", "nope"])
            outcomes.append(("outcome", outcome(unit, outcome_arm, metric, value, start + offset)))
        edge = rng.random()
        if edge < 0.05:  # exactly at the first exposure (counts), at the window's edge (pre)
            outcomes.append(("outcome", outcome(unit, arm, "spend", 5.0, start)))
            outcomes.append(("outcome", outcome(unit, arm, "spend", 7.0, start - window)))
            outcomes.append(("outcome", outcome(unit, arm, "spend", 9.0, start - window - 1)))
    # the overridden QA unit, and an overridden id that was never exposed
    exposures.append(("exposure", exposure("qa-1", "v2", T0 + HOUR)))
    outcomes += [
        ("outcome", outcome("qa-1", "v2", "spend", 1e6, T0 + 2 * HOUR)),
        ("outcome", outcome("qa-2", "v2", "spend", 1e6, T0 + 2 * HOUR)),
        ("outcome", outcome("ghost", "control", "thumbs_up", 1.0, T0 + 2 * HOUR)),  # unexposed
        ("outcome", outcome("u1", "control", "tokens", 3.0, T0 + 3 * HOUR)),  # unused metric
        ("outcome", outcome("u2", "control", "spend", 3.0, T0 + 9 * DAY, experiment_id="other")),
    ]
    exposures.append(("exposure", exposure("u3", "v2", T0, experiment_id="other")))
    # invalid rows the loader drops
    outcomes += [
        ("outcome", {**outcome("u4", "control", "spend", 1.0, T0 + 8 * DAY), "value": math.nan}),
        ("outcome", {**outcome("u4", "control", "spend", 1.0, T0 + 8 * DAY), "metric": None}),
        ("outcome", {**outcome("u4", "control", "spend", 1.0, T0 + 8 * DAY), "unit_id": None}),
        ("outcome", {**outcome("u4", "control", "spend", 1.0, T0 + 8 * DAY), "ts": None}),
    ]
    exposures.append(("exposure", {**exposure("u5", "control", T0), "arm": None}))
    # duplicate ids: exact repeats, conflicting repeats (first kept), an id in both kinds
    for source in (exposures, outcomes):
        for j in rng.choice(len(source), size=len(source) // 20, replace=False):
            kind, fields = source[int(j)]
            source.append((kind, dict(fields)))
            if kind == "outcome" and fields.get("value") is not None:
                source.append((kind, {**fields, "value": 123.0}))
            else:
                source.append((kind, {**fields, "arm": "v3", "ts": fields["ts"]}))
    shared = exposures[0][1]["event_id"]
    outcomes.append(
        ("outcome", outcome("u0", "control", "spend", 2.0, T0 + 8 * DAY, event_id=shared))
    )
    rows = exposures + outcomes
    order = rng.permutation(len(rows))  # interleave the kinds; both paths read the same order
    return [rows[int(j)] for j in order]


def definition(**analysis: Any) -> Experiment:
    exp = experiment(METRICS, arms=ARMS, cuped_window_days=7, **analysis)
    return exp.model_copy(update={"overrides": {"qa-1": "v2", "qa-2": "v3"}})


# --- comparing ------------------------------------------------------------------------------


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)
    return a == b


def assert_same_stats(expected: ExperimentStats, got: ExperimentStats) -> None:
    """Field by field; a field added to ExperimentStats later is compared exactly."""
    for f in dataclasses.fields(ExperimentStats):
        if f.name not in ("caps", "metrics", "covariates"):
            assert getattr(got, f.name) == getattr(expected, f.name), f.name
    assert list(got.caps) == list(expected.caps)
    for name, cap in expected.caps.items():
        assert close(cap, got.caps[name]), (name, cap, got.caps[name])
    for group in ("metrics", "covariates"):
        want, have = getattr(expected, group), getattr(got, group)
        assert list(have) == list(want), group
        for name, arms in want.items():
            assert len(have[name]) == len(arms)
            for j, (a, b) in enumerate(zip(arms, have[name], strict=True)):
                assert type(a) is type(b), (group, name, j)
                for f in dataclasses.fields(a):
                    x, y = getattr(a, f.name), getattr(b, f.name)
                    assert close(x, y), (group, name, j, f.name, x, y)


def assert_same_table(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        want, have = expected[column], got[column]
        assert have.dtype == want.dtype, column
        if want.dtype == np.float64:
            np.testing.assert_allclose(
                have, want, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=column
            )
        else:
            assert have.tolist() == want.tolist(), column


def assert_same_everything(exp: Experiment, source: Any, reference, as_of: Any = None) -> None:
    """columnar(source) == in-memory path on the loaded `reference` file, stats and result."""
    exposures, outcomes = load_events_parquet(reference, exp.id)
    assert_same_stats(
        experiment_stats(exp, exposures, outcomes, as_of), columnar_stats(exp, source, as_of)
    )
    expected = analyze(exp, exposures, outcomes, as_of)
    got = analyze_columnar(exp, source, as_of)
    assert_same_table(expected.table, got.table)
    assert got.units_per_arm == expected.units_per_arm
    assert got.diagnostics == expected.diagnostics
    assert close(got.srm_p_value, expected.srm_p_value)
    assert (got.as_of, got.first_exposure, got.last_exposure) == (
        expected.as_of,
        expected.first_exposure,
        expected.last_exposure,
    )
    assert [d.decision for d in got.decisions] == [d.decision for d in expected.decisions]
    assert got.summary() == expected.summary()
    assert got.timeline.empty and list(got.timeline.columns) == list(expected.timeline.columns)


# --- equality on rich data --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "settings", "as_of"),
    [
        (1, {}, None),
        (2, {"sequential": True, "correction": "holm"}, "2026-01-04T12:00:00"),
        (3, {"engine": "bayesian"}, dt.datetime(2026, 1, 5, 6, tzinfo=dt.UTC)),
        (4, {"cuped": False, "correction": "bh"}, T0 + 4 * DAY),
        (5, {"mde": 0.05}, pd.Timestamp("2026-01-06", tz="UTC")),
    ],
)
def test_columnar_equals_in_memory_path(tmp_path, seed, settings, as_of):
    path = tmp_path / "export.parquet"
    write_export(path, rich_events(seed))
    exp = definition(**settings)
    assert_same_everything(exp, path, path, as_of)


def test_the_data_exercises_every_case(tmp_path):
    """The rich data set really hits the cases it is meant to (else the equality is cheap)."""
    path = tmp_path / "export.parquet"
    write_export(path, rich_events(1))
    exp = definition()
    stats = columnar_stats(exp, path, T0 + 4 * DAY)
    d = stats.diagnostics
    for name in (
        "exposures_after_as_of",
        "exposures_unknown_arm",
        "units_multiple_arms",
        "units_overridden",
        "outcomes_after_as_of",
        "outcomes_other_metric",
        "outcomes_unexposed",
        "outcomes_overridden",
        "outcomes_before_exposure",
        "outcomes_arm_mismatch",
        "outcomes_used",
    ):
        assert d[name] > 0, name
    assert set(stats.caps) == {"latency_ms", "cost_usd"}
    assert set(stats.covariates) == {"thumbs_up", "latency_ms", "cost_usd", "spend"}
    raw = pq.read_table(path).to_pandas()
    assert raw["event_id"].duplicated().sum() > 0
    exposures, outcomes = load_events_parquet(path, exp.id)
    assert len(exposures) + len(outcomes) < (raw["experiment_id"] == EXP).sum()


def test_first_exposure_ties_are_broken_by_file_order(tmp_path):
    rows: list[Row] = [
        ("exposure", exposure("a", "v2", T0)),
        ("exposure", exposure("a", "control", T0)),
        ("exposure", exposure("b", "control", T0 + 5)),
        ("exposure", exposure("b", "v3", T0 + 5)),
        ("exposure", exposure("b", "v2", T0 + 4)),
    ]
    path = tmp_path / "ties.parquet"
    write_export(path, rows)
    exp = experiment(METRICS[:1], arms=ARMS)
    stats = columnar_stats(exp, path)
    assert stats.arm_units == (0, 2, 0)
    assert stats.diagnostics["units_multiple_arms"] == 2
    assert_same_everything(exp, path, path)


def test_duplicates_keep_the_first_occurrence_in_file_order(tmp_path):
    first = outcome("a", "control", "spend", 1.0, T0 + 10, event_id="dup")
    rows: list[Row] = [
        ("exposure", exposure("a", "control", T0, event_id="dup")),  # other kind: both kept
        ("outcome", first),
        ("outcome", {**first, "value": 100.0}),
        ("outcome", {**first, "unit_id": "b"}),
        ("exposure", exposure("b", "v2", T0, event_id="e-b")),
        ("exposure", exposure("b", "control", T0 - 1, event_id="e-b")),  # repeat: dropped
    ]
    path = tmp_path / "dups.parquet"
    write_export(path, rows)
    exp = experiment([METRICS[3]], arms=ARMS)
    stats = columnar_stats(exp, path)
    assert stats.arm_units == (1, 1, 0)
    assert stats.metrics["spend"][0].mean == 1.0
    assert stats.diagnostics["outcomes"] == 1
    assert_same_everything(exp, path, path)


def test_several_files_are_read_in_order(tmp_path):
    rows = rich_events(6, n_units=300)
    whole = tmp_path / "whole.parquet"
    write_export(whole, rows)
    parts = tmp_path / "parts"
    parts.mkdir()
    third = len(rows) // 3
    chunks = [rows[:third], rows[third : 2 * third], rows[2 * third :]]
    for i, chunk in enumerate(chunks):
        write_export(parts / f"part-{i}.parquet", chunk)
    exp = definition()
    files = [parts / f"part-{i}.parquet" for i in range(3)]
    assert_same_everything(exp, files, whole)
    assert_same_everything(exp, str(parts / "part-*.parquet"), whole)
    reversed_rows = chunks[2] + chunks[1] + chunks[0]
    write_export(whole, reversed_rows)
    assert_same_everything(exp, files[::-1], whole)


def test_duckdb_options_spill_to_the_temp_directory(tmp_path):
    path = tmp_path / "export.parquet"
    write_export(path, rich_events(7, n_units=200))
    exp = definition()
    spill = tmp_path / "spill"
    got = columnar_stats(exp, path, threads=1, memory_limit="256MB", temp_directory=spill)
    assert_same_stats(experiment_stats(exp, *load_events_parquet(path, exp.id)), got)
    result = analyze_columnar(exp, path, threads=2, memory_limit="512MB", temp_directory=spill)
    assert result.units_per_arm == dict(zip(exp.arm_names, got.arm_units, strict=True))


def test_export_written_by_abtest_export(tmp_path, redis_client):
    """The file `abtest export` writes (from the streams) reads the same way."""
    from abtest.events import export_parquet
    from tests.analysis_support import write_events

    rng = np.random.default_rng(8)
    exposures, outcomes = [], []
    for i in range(120):
        arm = ARMS[i % 3][0]
        exposures.append(exposure(f"u{i}", arm, T0 + i * 1000, EXP))
        for metric in ("thumbs_up", "spend", "responses"):
            value = float(rng.random() < 0.3) if metric == "thumbs_up" else float(rng.gamma(2))
            ts = T0 + i * 1000 + int(rng.integers(-DAY, DAY))
            outcomes.append(outcome(f"u{i}", arm, metric, value, ts, EXP))
    write_events(redis_client, EXP, exposures, outcomes)
    path = tmp_path / "export.parquet"
    assert export_parquet(redis_client, EXP, path) == len(exposures) + len(outcomes)
    exp = experiment([METRICS[0], METRICS[3], METRICS[4]], arms=ARMS)
    assert_same_everything(exp, path, path)


# --- degenerate data ---------------------------------------------------------------------------


def test_no_exposures(tmp_path):
    rows: list[Row] = [("outcome", outcome("a", "control", "spend", 1.0, T0))]
    path = tmp_path / "none.parquet"
    write_export(path, rows)
    exp = definition()
    stats = columnar_stats(exp, path)
    assert stats.arm_units == (0, 0, 0)
    assert stats.first_exposure_ms is None
    assert_same_everything(exp, path, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.parquet"
    write_export(path, [])
    assert_same_everything(definition(), path, path)


def test_one_arm_without_units(tmp_path):
    rows = [
        (kind, fields)
        for kind, fields in rich_events(9, n_units=150)
        if fields.get("arm") != "v3" and not (kind == "exposure" and fields.get("arm") == "v9")
    ]
    path = tmp_path / "two-arms.parquet"
    write_export(path, rows)
    exp = definition()
    stats = columnar_stats(exp, path)
    assert stats.arm_units[2] == 0
    assert_same_everything(exp, path, path)


def test_single_unit_per_arm(tmp_path):
    rows: list[Row] = []
    for i, (arm, _) in enumerate(ARMS):
        rows.append(("exposure", exposure(f"u{i}", arm, T0)))
        rows.append(("outcome", outcome(f"u{i}", arm, "spend", 2.0 + i, T0 + 1)))
        rows.append(("outcome", outcome(f"u{i}", arm, "responses", 1.0, T0 + 1)))
    path = tmp_path / "single.parquet"
    write_export(path, rows)
    assert_same_everything(definition(), path, path)


def test_experiment_without_metrics(tmp_path):
    path = tmp_path / "export.parquet"
    write_export(path, rich_events(10, n_units=50))
    exp = definition().model_copy(update={"metrics": ()})
    assert columnar_stats(exp, path).diagnostics["outcomes_other_metric"] > 0
    assert_same_everything(exp, path, path)


def test_all_values_identical(tmp_path):
    rows: list[Row] = []
    for i in range(60):
        arm = ARMS[i % 3][0]
        rows.append(("exposure", exposure(f"u{i}", arm, T0 + i)))
        for metric in ("thumbs_up", "latency_ms", "cost_usd", "spend", "responses"):
            rows.append(("outcome", outcome(f"u{i}", arm, metric, 0.1, T0 + 100 + i)))
            rows.append(("outcome", outcome(f"u{i}", arm, metric, 0.1, T0 - 100 + i)))
    path = tmp_path / "constant.parquet"
    write_export(path, rows)
    exp = definition()
    stats = columnar_stats(exp, path)
    assert all(arm.variance == 0.0 for arm in stats.metrics["spend"])
    assert_same_everything(exp, path, path)


# --- errors ----------------------------------------------------------------------------------


def test_missing_sources_and_files_without_kind_are_rejected(tmp_path):
    exp = definition()
    with pytest.raises(FileNotFoundError):
        columnar_stats(exp, tmp_path / "missing.parquet")
    with pytest.raises(FileNotFoundError, match="no Parquet file matches"):
        columnar_stats(exp, str(tmp_path / "nothing-*.parquet"))
    with pytest.raises(ValueError, match="empty"):
        columnar_stats(exp, [])
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"ts": [1]}).to_parquet(bad)
    with pytest.raises(ValueError, match="no 'kind' column"):
        columnar_stats(exp, bad)
    path = tmp_path / "ok.parquet"
    write_export(path, [])
    with pytest.raises(ValueError, match="not a time"):
        columnar_stats(exp, path, as_of="not a time")
