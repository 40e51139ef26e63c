"""analysis.analyze: per-unit aggregation, comparisons, SRM, timeline and summary.

Expected numbers are pinned with the scipy/statsmodels call that produced them in a comment.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from analysis.analyze import TABLE_COLUMNS, TIMELINE_COLUMNS, analyze
from analysis.stats import RatioStats, compare_ratio
from tests.analysis_support import DAY, HOUR, T0, experiment, exposure, frames, outcome
from tests.analysis_support import synthetic_frames as synthetic

COST = {"name": "cost_usd", "kind": "mean", "aggregate": "sum"}
LATENCY = {"name": "latency_ms", "kind": "mean", "aggregate": "mean", "direction": "decrease"}
THUMBS = {"name": "thumbs_up", "kind": "proportion"}
RATIO = {
    "name": "thumbs_per_response",
    "kind": "ratio",
    "numerator": "thumbs_up",
    "denominator": "responses",
}


def events(per_unit: dict[str, tuple[str, dict[str, list[float]]]], t0: int = T0):
    """Exposures (one per unit, at t0) and outcomes after them.

    `per_unit` maps unit -> (arm, {metric: [values]}).
    """
    exposures, outcomes = [], []
    for i, (unit, (arm, metrics)) in enumerate(per_unit.items()):
        exposures.append(exposure(unit, arm, t0 + i))
        for metric, values in metrics.items():
            for j, value in enumerate(values):
                outcomes.append(outcome(unit, arm, metric, value, t0 + 1000 + i * 10 + j))
    return frames(exposures, outcomes)


def row(result, metric: str, arm: str) -> pd.Series:
    table = result.table
    return table[(table["metric"] == metric) & (table["arm"] == arm)].iloc[0]


# --- per-unit values and Welch's test ----------------------------------------------------------

# Per-unit cost sums: control [1.0, 2.0, 0.0, 4.0, 3.5, 0.5], v2 [2.0, 3.0, 5.0, 0.0, 4.5, 6.0,
# 2.5]; units without events count as 0 and several units have two events.
COST_UNITS = {
    "c1": ("control", {"cost_usd": [1.0]}),
    "c2": ("control", {"cost_usd": [1.5, 0.5]}),
    "c3": ("control", {}),
    "c4": ("control", {"cost_usd": [4.0]}),
    "c5": ("control", {"cost_usd": [3.5]}),
    "c6": ("control", {"cost_usd": [0.25, 0.25]}),
    "t1": ("v2", {"cost_usd": [2.0]}),
    "t2": ("v2", {"cost_usd": [3.0]}),
    "t3": ("v2", {"cost_usd": [5.0]}),
    "t4": ("v2", {}),
    "t5": ("v2", {"cost_usd": [4.5]}),
    "t6": ("v2", {"cost_usd": [6.0]}),
    "t7": ("v2", {"cost_usd": [1.0, 1.5]}),
}


def test_sum_metric_matches_scipy_welch_on_per_unit_values():
    exposures, outcomes = events(COST_UNITS)
    result = analyze(experiment([{**COST, "estimand": "absolute"}]), exposures, outcomes)
    assert list(result.table.columns) == list(TABLE_COLUMNS)
    control, v2 = row(result, "cost_usd", "control"), row(result, "cost_usd", "v2")
    assert (control["units"], v2["units"]) == (6, 7)
    assert control["mean"] == pytest.approx(1.8333333333333333, abs=1e-9)
    assert v2["mean"] == pytest.approx(3.2857142857142856, abs=1e-9)
    # np.var([1.0, 2.0, 0.0, 4.0, 3.5, 0.5], ddof=1)
    assert control["variance"] == pytest.approx(2.666666666666667, abs=1e-9)
    # r = scipy.stats.ttest_ind(v2, control, equal_var=False); r.pvalue; r.confidence_interval()
    assert v2["diff"] == pytest.approx(1.4523809523809523, abs=1e-9)
    assert v2["p_value"] == pytest.approx(0.18182535920075524, abs=1e-6)
    assert v2["ci_low"] == pytest.approx(-0.7907806468326328, abs=1e-6)
    assert v2["ci_high"] == pytest.approx(3.6955425515945377, abs=1e-6)
    assert v2["p_adjusted"] == v2["p_value"]  # correction: none
    assert v2["status"] == "ok" and not v2["significant"]
    assert control["status"] == "control" and math.isnan(control["p_value"])
    assert math.isnan(control["diff"]) and math.isnan(control["lift"])


def test_raw_welch_agrees_with_scipy_on_random_per_unit_values():
    rng = np.random.default_rng(7)
    a, b = rng.gamma(2.0, 3.0, 40), rng.gamma(2.0, 3.6, 55)
    per_unit = {f"a{i}": ("control", {"cost_usd": [x]}) for i, x in enumerate(a)}
    per_unit |= {f"b{i}": ("v2", {"cost_usd": [x]}) for i, x in enumerate(b)}
    result = analyze(experiment([{**COST, "estimand": "absolute"}]), *events(per_unit))
    expected = sps.ttest_ind(b, a, equal_var=False)
    v2 = row(result, "cost_usd", "v2")
    assert v2["p_value"] == pytest.approx(expected.pvalue, abs=1e-6)
    assert v2["diff"] == pytest.approx(b.mean() - a.mean(), abs=1e-9)
    ci = expected.confidence_interval(0.95)
    assert (v2["ci_low"], v2["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-6)


def test_proportion_is_any_positive_event_and_units_without_events_are_zero():
    per_unit = {
        "c1": ("control", {"thumbs_up": [0.0, 1.0]}),  # 1
        "c2": ("control", {"thumbs_up": [0.0, 0.0]}),  # 0
        "c3": ("control", {}),  # 0
        "c4": ("control", {"thumbs_up": [-1.0]}),  # 0: not positive
        "t1": ("v2", {"thumbs_up": [2.5]}),  # 1
        "t2": ("v2", {"thumbs_up": [1.0, 1.0, 1.0]}),  # 1, not 3
        "t3": ("v2", {}),  # 0
    }
    result = analyze(experiment([THUMBS]), *events(per_unit))
    control, v2 = row(result, "thumbs_up", "control"), row(result, "thumbs_up", "v2")
    assert (control["units"], control["mean"]) == (4, 0.25)
    assert v2["units"] == 3 and v2["mean"] == pytest.approx(2 / 3)
    # scipy.stats.ttest_ind([1, 1, 0], [1, 0, 0, 0], equal_var=False).pvalue
    assert v2["p_value"] == pytest.approx(0.3734797469866549, abs=1e-6)


def test_mean_aggregate_averages_each_units_events_and_leaves_out_units_without_any():
    per_unit = {
        "c1": ("control", {"latency_ms": [100.0, 300.0]}),  # 200
        "c2": ("control", {"latency_ms": [150.0]}),  # 150
        "c3": ("control", {}),  # left out
        "c4": ("control", {"latency_ms": [250.0, 250.0, 100.0]}),  # 200
        "t1": ("v2", {"latency_ms": [90.0]}),  # 90
        "t2": ("v2", {"latency_ms": [120.0, 140.0]}),  # 130
        "t3": ("v2", {}),  # left out
        "t4": ("v2", {}),  # left out
    }
    result = analyze(experiment([LATENCY]), *events(per_unit))
    control, v2 = row(result, "latency_ms", "control"), row(result, "latency_ms", "v2")
    assert (control["units"], v2["units"]) == (3, 2)
    assert control["mean"] == pytest.approx(550 / 3)
    assert v2["mean"] == pytest.approx(110.0)
    # scipy.stats.ttest_ind([90, 130], [200, 150, 200], equal_var=False).pvalue
    assert v2["p_value"] == pytest.approx(0.09022593156118264, abs=1e-6)
    assert result.units_per_arm == {"control": 4, "v2": 4}  # exposure counts are unaffected


def test_ratio_metric_uses_per_unit_sums_of_numerator_and_denominator():
    per_unit = {
        "c1": ("control", {"thumbs_up": [1.0], "responses": [1.0, 1.0]}),
        "c2": ("control", {"responses": [1.0]}),
        "c3": ("control", {"thumbs_up": [1.0, 1.0], "responses": [1.0, 1.0]}),
        "c4": ("control", {}),
        "t1": ("v2", {"thumbs_up": [1.0], "responses": [1.0]}),
        "t2": ("v2", {"thumbs_up": [1.0, 1.0], "responses": [1.0, 1.0, 1.0]}),
        "t3": ("v2", {"responses": [1.0, 1.0]}),
    }
    result = analyze(experiment([THUMBS, RATIO]), *events(per_unit))
    control, v2 = (
        row(result, "thumbs_per_response", "control"),
        row(result, "thumbs_per_response", "v2"),
    )
    assert (control["units"], v2["units"]) == (4, 3)  # every exposed unit, zeros included
    assert control["mean"] == pytest.approx(3 / 5)  # sum(num) / sum(den)
    assert v2["mean"] == pytest.approx(3 / 6)
    expected = compare_ratio(
        RatioStats.from_values([1, 0, 2, 0], [2, 1, 2, 0]),
        RatioStats.from_values([1, 2, 0], [1, 3, 2]),
    )
    assert v2["diff"] == pytest.approx(expected.diff)
    assert v2["lift"] == pytest.approx(expected.lift)
    absolute = analyze(experiment([THUMBS, {**RATIO, "estimand": "absolute"}]), *events(per_unit))
    v2 = row(absolute, "thumbs_per_response", "v2")
    assert v2["p_value"] == pytest.approx(expected.p_value, abs=1e-9)
    assert v2["ci_low"] == pytest.approx(expected.ci_low, abs=1e-9)


# --- who is in the experiment --------------------------------------------------------------


def test_first_exposure_decides_the_arm():
    exposures = [
        exposure("u1", "v2", T0 + 5000),  # later row, later time
        exposure("u1", "control", T0 + 1000),  # first by time: decides
        exposure("u2", "v2", T0 + 1000),
        exposure("u3", "control", T0),
        exposure("u4", "v2", T0),
    ]
    outcomes = [
        outcome("u1", "v2", "cost_usd", 10.0, T0 + 6000),
        outcome("u2", "v2", "cost_usd", 2.0, T0 + 6000),
        outcome("u4", "v2", "cost_usd", 4.0, T0 + 6000),
    ]
    result = analyze(experiment([COST]), *frames(exposures, outcomes))
    assert result.units_per_arm == {"control": 2, "v2": 2}
    assert row(result, "cost_usd", "control")["mean"] == pytest.approx(5.0)  # u1 10 + u3 0
    assert row(result, "cost_usd", "v2")["mean"] == pytest.approx(3.0)  # u2 2 + u4 4
    assert result.diagnostics["units_multiple_arms"] == 1
    assert result.diagnostics["outcomes_arm_mismatch"] == 1  # u1's outcome says v2


def test_outcomes_before_exposure_and_of_unexposed_units_are_ignored_and_counted():
    exposures = [exposure("u1", "control", T0 + 1000), exposure("u2", "v2", T0 + 1000)]
    exposures += [exposure("u3", "control", T0), exposure("u4", "v2", T0)]
    outcomes = [
        outcome("u1", "control", "cost_usd", 100.0, T0 + 999),  # before exposure
        outcome("u1", "control", "cost_usd", 1.0, T0 + 1000),  # same ms: counts
        outcome("u2", "v2", "cost_usd", 2.0, T0 + 2000),
        outcome("ghost", "v2", "cost_usd", 50.0, T0 + 2000),  # never exposed
        outcome("ghost2", "control", "cost_usd", 50.0, T0 + 2000),  # never exposed
        outcome("u2", "v2", "unrelated_metric", 5.0, T0 + 2000),  # not used by the experiment
        outcome("u2", "v2", "cost_usd", math.nan, T0 + 2000),  # not a finite value
    ]
    result = analyze(experiment([COST]), *frames(exposures, outcomes))
    assert row(result, "cost_usd", "control")["mean"] == pytest.approx(0.5)
    assert row(result, "cost_usd", "v2")["mean"] == pytest.approx(1.0)
    d = result.diagnostics
    assert d["outcomes_before_exposure"] == 1
    assert d["outcomes_unexposed"] == 2
    assert d["outcomes_other_metric"] == 1
    assert d["outcomes_invalid_value"] == 1
    assert d["outcomes_used"] == 2
    assert d["units"] == 4


def test_as_of_ignores_later_exposures_and_outcomes():
    exposures = [exposure("u1", "control", T0), exposure("u2", "v2", T0)]
    exposures += [exposure("u3", "v2", T0 + DAY)]
    outcomes = [outcome("u1", "control", "cost_usd", 1.0, T0 + 10)]
    outcomes += [outcome("u2", "v2", "cost_usd", 3.0, T0 + 2 * DAY)]
    cutoff = pd.Timestamp(T0 + HOUR, unit="ms", tz="UTC")
    result = analyze(experiment([COST]), *frames(exposures, outcomes), as_of=cutoff)
    assert result.units_per_arm == {"control": 1, "v2": 1}
    assert row(result, "cost_usd", "v2")["mean"] == 0.0
    assert result.diagnostics["exposures_after_as_of"] == 1
    assert result.diagnostics["outcomes_after_as_of"] == 1
    assert result.as_of == cutoff
    same = analyze(experiment([COST]), *frames(exposures, outcomes), as_of=T0 + HOUR)
    assert same.units_per_arm == result.units_per_arm


def test_unknown_arms_other_experiments_and_overrides_are_left_out():
    exp = experiment([COST]).model_copy(update={"overrides": {"qa-1": "v2"}})
    exposures = [exposure("u1", "control"), exposure("u2", "v2"), exposure("u3", "v9")]
    exposures += [exposure("u4", "v2", experiment_id="other"), exposure("qa-1", "v2")]
    outcomes = [outcome("qa-1", "v2", "cost_usd", 99.0)]
    e, o = frames(exposures, outcomes)
    e["experiment_id"] = [x["experiment_id"] for x in exposures]
    result = analyze(exp, e, o)
    assert result.units_per_arm == {"control": 1, "v2": 1}
    d = result.diagnostics
    assert (d["exposures_unknown_arm"], d["exposures_other_experiment"]) == (1, 1)
    assert (d["units_overridden"], d["outcomes_overridden"], d["outcomes_unexposed"]) == (1, 1, 0)


def test_a_time_column_can_stand_in_for_ts():
    e, o = events(COST_UNITS)
    for frame in (e, o):
        frame["time"] = pd.to_datetime(frame.pop("ts"), unit="ms", utc=True).dt.tz_convert(
            "Europe/Paris"
        )
    result = analyze(experiment([COST]), e, o, as_of="2026-01-01T00:00:01.005Z")
    # c1..c6 and t1 (exposed at T0 + 0..6 ms) are in; their outcomes come after 1 s + 10 ms * i
    assert result.units_per_arm == {"control": 6, "v2": 7}
    assert row(result, "cost_usd", "control")["mean"] == pytest.approx(1.0 / 6)  # c1's 1.0 only


def test_missing_columns_raise_a_clear_error():
    e, o = frames([exposure("u1", "control")], [])
    with pytest.raises(ValueError, match="exposures frame lacks column.*arm"):
        analyze(experiment(), e.drop(columns=["arm"]), o)


# --- multiple comparisons and SRM ------------------------------------------------------------


@pytest.mark.parametrize(("correction", "method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjusted_p_values_match_statsmodels(correction, method):
    rng = np.random.default_rng(3)
    per_unit = {}
    for arm, shift in (("control", 0.0), ("v2", 0.6), ("v3", 0.25)):
        for i in range(30):
            per_unit[f"{arm}-{i}"] = (
                arm,
                {"cost_usd": [rng.normal(5 + shift, 1.5)], "latency_ms": [rng.normal(100, 20)]},
            )
    exp = experiment(
        [COST, LATENCY], arms=(("control", 0.4), ("v2", 0.3), ("v3", 0.3)), correction=correction
    )
    result = analyze(exp, *events(per_unit))
    treated = result.table[result.table["arm"] != "control"]
    raw = treated["p_value"].to_numpy()
    # statsmodels.stats.multitest.multipletests(raw, method=...)[1]
    expected = multipletests(raw, method=method)[1]
    np.testing.assert_allclose(treated["p_adjusted"].to_numpy(), expected, rtol=1e-12)
    assert not np.allclose(raw, expected)  # the correction did something


def test_srm_is_flagged_on_a_60_40_split_of_a_50_50_experiment():
    units = {f"c{i}": ("control", {}) for i in range(600)}
    units |= {f"t{i}": ("v2", {}) for i in range(400)}
    result = analyze(experiment([COST]), *events(units))
    # scipy.stats.chisquare([600, 400], [500, 500]).pvalue
    assert result.srm_p_value == pytest.approx(2.5396285894708634e-10, rel=1e-9)
    assert result.srm_warning
    assert "sample ratio mismatch" in result.summary()
    balanced = {f"c{i}": ("control", {}) for i in range(510)}
    balanced |= {f"t{i}": ("v2", {}) for i in range(490)}
    fine = analyze(experiment([COST]), *events(balanced))
    # scipy.stats.chisquare([510, 490], [500, 500]).pvalue
    assert fine.srm_p_value == pytest.approx(0.5270892568655381, rel=1e-9)
    assert not fine.srm_warning and "mismatch" not in fine.summary()


# --- degenerate data -------------------------------------------------------------------------


def test_an_arm_without_units_gives_a_no_units_row():
    units = {"c1": ("control", {"cost_usd": [1.0]}), "c2": ("control", {"cost_usd": [2.0]})}
    result = analyze(experiment([COST]), *events(units))
    v2 = row(result, "cost_usd", "v2")
    assert v2["units"] == 0 and math.isnan(v2["mean"]) and v2["status"] == "NO_UNITS_IN_ARM"
    assert math.isnan(v2["p_adjusted"]) and not v2["significant"]
    assert "cannot be judged yet (not enough data" in result.summary()


def test_zero_variance_control_mean_zero_and_single_unit():
    same = {f"c{i}": ("control", {"cost_usd": [1.0]}) for i in range(3)}
    same |= {f"t{i}": ("v2", {"cost_usd": [1.0]}) for i in range(3)}
    assert row(analyze(experiment([COST]), *events(same)), "cost_usd", "v2")["status"] == (
        "ZERO_VARIANCE"
    )

    zero = {f"c{i}": ("control", {}) for i in range(3)}
    zero |= {"t1": ("v2", {"cost_usd": [1.0]}), "t2": ("v2", {"cost_usd": [3.0]})}
    r = row(analyze(experiment([COST]), *events(zero)), "cost_usd", "v2")
    assert r["status"] == "ZERO_CONTROL_MEAN" and math.isnan(r["lift"])
    assert r["diff"] == pytest.approx(2.0) and math.isfinite(r["p_value"])

    single = {"c1": ("control", {"cost_usd": [1.0]}), "c2": ("control", {"cost_usd": [2.0]})}
    single |= {"t1": ("v2", {"cost_usd": [4.0]})}
    r = row(analyze(experiment([COST]), *events(single)), "cost_usd", "v2")
    assert r["status"] == "TOO_FEW_UNITS" and r["units"] == 1
    assert r["diff"] == pytest.approx(2.5) and math.isnan(r["p_value"])


def test_ratio_with_zero_denominator_and_empty_inputs_do_not_raise():
    units = {"c1": ("control", {"thumbs_up": [1.0]}), "t1": ("v2", {"thumbs_up": [1.0]})}
    result = analyze(experiment([THUMBS, RATIO]), *events(units))
    assert row(result, "thumbs_per_response", "v2")["status"] == "ZERO_DENOMINATOR"

    e, o = frames([], [])
    empty = analyze(experiment([COST, THUMBS, LATENCY, RATIO]), e, o)
    assert set(empty.table["status"]) == {"control", "NO_UNITS_IN_ARM"}
    assert math.isnan(empty.srm_p_value) and not empty.srm_warning
    assert empty.timeline.empty and list(empty.timeline.columns) == list(TIMELINE_COLUMNS)
    assert empty.summary() == "No units have been exposed yet, so there is nothing to compare."


# --- summary, planted effects, timeline ------------------------------------------------------


def _thumbs_and_latency(n: int, rate_c: float, rate_t: float, latency_t: float):
    per_unit = {}
    for arm, rate, latency in (("control", rate_c, 100.0), ("v2", rate_t, latency_t)):
        for i in range(n):
            thumbs = [1.0] if i < rate * n else [0.0]
            per_unit[f"{arm}-{i}"] = (
                arm,
                {"thumbs_up": thumbs, "latency_ms": [latency + (i % 7) * 10.0]},
            )
    return events(per_unit)


def test_summary_names_arm_metric_lift_and_interval():
    metrics = [{**THUMBS, "primary": True}, {**LATENCY, "guardrail": True}]
    result = analyze(experiment(metrics), *_thumbs_and_latency(400, 0.2, 0.3, 100.0))
    thumbs = row(result, "thumbs_up", "v2")
    assert thumbs["lift"] == pytest.approx(0.5)  # 0.30 / 0.20 - 1
    # lift interval, Fieller: the roots R of (m_t - R m_c)**2 = q**2 (v_t / n + R**2 v_c / n),
    # v = numpy.var(per_unit_values, ddof=1), q = scipy.stats.t.ppf(0.975, df=783.7) (Welch),
    # minus 1 -> 17.7% to 94.3% (the delta method's symmetric 12.9% to 87.1% undercovers)
    assert result.summary() == (
        "v2 raises thumbs_up by 50.0% (95% CI 17.7% to 94.3%); no guardrail is worse. "
        "Decision for v2: ship (thumbs_up significantly better and every guardrail passes)."
    )

    worse = analyze(experiment(metrics), *_thumbs_and_latency(400, 0.2, 0.2, 120.0))
    sentence = worse.summary()
    assert sentence.startswith("v2 shows no significant change in thumbs_up (0.0%, 95% CI ")
    # latency per unit 100 + 10 * (i % 7) in control, 20 more in v2: lift 20 / 129.9 = 15.4%
    assert "guardrail latency_ms (+15.4%, 95% CI 13.1% to 17.7%) is worse." in sentence
    assert worse.row("latency_ms", "v2").worse and not worse.row("latency_ms", "v2").better
    assert math.isnan(worse.row("latency_ms", "v2").chance_to_win)  # the Bayesian engine's


def test_a_planted_effect_is_found_and_a_null_one_is_not():
    exp = experiment([{**THUMBS, "primary": True}, COST], correction="holm")
    planted = analyze(exp, *synthetic(exp, 20_000, 60_000, seed=11, lift=0.15))
    for metric in ("thumbs_up", "cost_usd"):
        r = planted.row(metric, "v2")
        assert r.significant and r.better
        assert r.comparison.lift_ci_low < 0.15 < r.comparison.lift_ci_high
    null = analyze(exp, *synthetic(exp, 20_000, 60_000, seed=12, lift=0.0))
    assert not null.table["significant"].any()


def test_timeline_is_the_analysis_as_of_the_end_of_each_period():
    exp = experiment([THUMBS, COST, LATENCY, RATIO], arms=(("control", 0.5), ("v2", 0.5)))
    exposures, outcomes = synthetic(exp, 600, 2400, seed=5, lift=0.1, days=4)
    result = analyze(exp, exposures, outcomes)
    timeline = result.timeline
    assert list(timeline.columns) == list(TIMELINE_COLUMNS)
    assert result.granularity == "day"
    periods = sorted(timeline["period"].unique())
    assert len(periods) == 6  # 4 days of exposures + up to 2 days of outcomes
    for period in periods[::2] + periods[-1:]:
        end = period + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)
        at = analyze(exp, exposures, outcomes, as_of=end)
        for metric in ("thumbs_up", "cost_usd", "latency_ms", "thumbs_per_response"):
            point = timeline[(timeline["period"] == period) & (timeline["metric"] == metric)]
            expected = row(at, metric, "v2")
            assert point["units"].item() == expected["units"]
            assert point["estimand"].item() == expected["estimand"]
            np.testing.assert_allclose(
                point[["effect", "ci_low", "ci_high"]].to_numpy(dtype=float)[0],
                expected[["effect", "ci_low", "ci_high"]].to_numpy(dtype=float),
                rtol=1e-8,
            )


def test_short_experiments_get_an_hourly_timeline():
    exp = experiment([COST])
    exposures, outcomes = synthetic(exp, 200, 400, seed=2, days=1)
    outcomes = outcomes[outcomes["ts"] < T0 + 30 * HOUR]
    result = analyze(exp, exposures, outcomes)
    assert result.granularity == "hour"
    assert timeline_units_never_shrink(result.timeline)


def test_experiments_of_minutes_get_a_timeline_by_minute():
    exp = experiment([COST])
    exposures, outcomes = synthetic(exp, 200, 400, seed=3, days=1)
    exposures = exposures.assign(ts=T0 + (exposures["ts"] - T0) % (40 * 60_000))
    outcomes = outcomes.assign(ts=T0 + 40 * 60_000 + (outcomes["ts"] - T0) % (60 * 60_000))
    result = analyze(exp, exposures, outcomes)
    assert result.granularity == "minute"
    assert result.timeline["period"].nunique() > 40
    assert timeline_units_never_shrink(result.timeline)


def timeline_units_never_shrink(timeline: pd.DataFrame) -> bool:
    units = timeline.sort_values("period")["units"].to_numpy()
    return bool(len(units) > 1 and np.all(np.diff(units) >= 0))


def test_repr_html_shows_the_table():
    result = analyze(experiment([COST]), *events(COST_UNITS))
    html = result._repr_html_()
    assert "<table" in html and "cost_usd" in html and "v2" in html


def test_capping_winsorizes_per_unit_values_at_the_pooled_percentile():
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 1.0, 200), rng.gamma(2.0, 1.0, 200)
    b[0] = 10_000.0  # one runaway unit
    per_unit = {f"a{i}": ("control", {"cost_usd": [x]}) for i, x in enumerate(a)}
    per_unit |= {f"b{i}": ("v2", {"cost_usd": [x]}) for i, x in enumerate(b)}
    capped_metric = {**COST, "estimand": "absolute", "cap": {"percentile": 0.99}}
    capped = analyze(experiment([capped_metric]), *events(per_unit))
    cap = np.quantile(np.concatenate([a, b]), 0.99)  # linear interpolation, arms pooled
    expected = sps.ttest_ind(np.minimum(b, cap), np.minimum(a, cap), equal_var=False)
    v2 = row(capped, "cost_usd", "v2")
    assert v2["mean"] == pytest.approx(np.minimum(b, cap).mean(), rel=1e-12)
    assert v2["p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
    raw = row(
        analyze(experiment([{**COST, "estimand": "absolute"}]), *events(per_unit)), "cost_usd", "v2"
    )
    assert raw["mean"] > 50 and v2["mean"] < 3  # the runaway unit no longer decides the mean
    last = capped.timeline[capped.timeline["metric"] == "cost_usd"].iloc[-1]
    assert last["effect"] == pytest.approx(v2["effect"], rel=1e-9)  # same cap in the timeline


def test_a_run_of_seconds_gets_a_timeline_by_second():
    """A demo or a load test lasting under a minute still draws a curve, not one point."""
    exp = experiment([COST])
    exposures, outcomes = synthetic(exp, 200, 400, seed=4, days=1)
    exposures = exposures.assign(ts=T0 + (exposures["ts"] - T0) % 40_000)
    outcomes = outcomes.assign(ts=T0 + 40_000 + (outcomes["ts"] - T0) % 20_000)
    result = analyze(exp, exposures, outcomes)
    assert result.granularity == "second"
    assert result.timeline["period"].nunique() > 40
    assert timeline_units_never_shrink(result.timeline)
