"""analysis.report: HTML with the pinned numbers and plots, JSON without NaN, CSV round trip."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
import yaml
from statsmodels.stats.proportion import proportion_confint

from analysis import report as report_module
from analysis.analyze import TABLE_COLUMNS, analyze, format_percent
from analysis.report import build_report, render_report, to_csv, to_json
from tests.analysis_support import T0, experiment, exposure, frames, outcome, write_events

COST = {
    "name": "cost_usd",
    "kind": "mean",
    "aggregate": "sum",
    "guardrail": True,
    "estimand": "absolute",
}
THUMBS = {"name": "thumbs_up", "kind": "proportion", "primary": True}

# Per-unit cost: control [1.0, 2.0, 0.0, 4.0, 3.5, 0.5], v2 [2.0, 3.0, 5.0, 0.0, 4.5, 6.0, 2.5]
CONTROL_COST = [1.0, 2.0, 0.0, 4.0, 3.5, 0.5]
V2_COST = [2.0, 3.0, 5.0, 0.0, 4.5, 6.0, 2.5]


def _events(control_cost=CONTROL_COST, v2_cost=V2_COST, extra_v2_units: int = 0):
    exposures, outcomes = [], []
    for arm, costs in (("control", control_cost), ("v2", v2_cost + [0.0] * extra_v2_units)):
        for i, cost in enumerate(costs):
            unit = f"{arm}-{i}"
            exposures.append(exposure(unit, arm, T0 + i))
            if cost:
                outcomes.append(outcome(unit, arm, "cost_usd", cost, T0 + 1000 + i))
            outcomes.append(outcome(unit, arm, "thumbs_up", float(i % 2), T0 + 2000 + i))
    return exposures, outcomes


@pytest.fixture(scope="module")
def result():
    return analyze(experiment([THUMBS, COST]), *frames(*_events()))


def test_html_has_the_pinned_numbers_arms_plots_and_srm_verdict(result):
    html = render_report(result)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # means 11/6 and 23/7; scipy.stats.ttest_ind(v2, control, equal_var=False): diff 1.45238,
    # pvalue 0.181825, confidence_interval() (-0.790781, 3.695543)
    for text in ("1.833", "3.286", "+1.452", "0.1818", "[-0.7908, 3.696]"):
        assert text in html, text
    # cost_usd is judged on its absolute difference, and the row says so
    assert "absolute difference, fixed horizon, 95% CI" in html
    assert "control" in html and "v2" in html and "exp-test" in html
    assert html.count("data:image/png;base64,") >= 4  # traffic, two forest plots, timeline
    # scipy.stats.chisquare([6, 7], [6.5, 6.5]).pvalue = 0.78151
    assert "No sample ratio mismatch: p = 0.782" in html
    assert '<span class="flag primary">primary</span>' in html
    assert '<span class="flag guardrail">guardrail</span>' in html
    for sentence in result.summary_sentences():
        assert sentence in html
    assert "units exposed (analysed)" in html  # diagnostics


def test_html_flags_srm_highlights_significant_rows_and_explains_statuses():
    control = [1.0] * 40 + [2.0] * 40
    v2 = [3.0] * 80 + [4.0] * 80  # twice the units of a 50/50 split, and a higher cost
    lower_cost_is_better = {**COST, "direction": "decrease"}
    srm = analyze(experiment([THUMBS, lower_cost_is_better]), *frames(*_events(control, v2)))
    html = render_report(srm)
    # scipy.stats.chisquare([80, 160], [120, 120]).pvalue
    assert srm.srm_warning and srm.srm_p_value == pytest.approx(2.4175638811190183e-07, rel=1e-9)
    assert "Sample ratio mismatch: p = 2.4e-07" in html and 'class="warning"' in html
    assert srm.row("cost_usd", "v2").worse
    assert '<tr class="worse">' in html and '<tr class="better">' not in html

    empty_v2 = analyze(experiment([THUMBS, COST]), *frames(*_events(CONTROL_COST, [])))
    html = render_report(empty_v2)
    assert "not enough data: an arm has no units with this metric yet" in html
    assert "NO_UNITS_IN_ARM" not in html


def test_json_has_the_table_without_nan(result):
    data = to_json(result)
    assert set(data) == {
        "experiment_id", "definition_sha", "analysis", "first_exposure", "last_exposure",
        "flow_fingerprints", "fingerprint_prompts", "as_of", "srm_p_value", "srm_until", "table",
        "guardrails", "decisions", "pairwise", "progress", "arm_states", "audit", "drift",
        "by_fingerprint",
    }  # fmt: skip
    assert data["analysis"] == {
        "engine": "frequentist", "method": "fixed", "alpha": 0.05, "correction": "none"
    }  # fmt: skip
    assert data["definition_sha"] == result.experiment.definition_sha
    text = json.dumps(data, allow_nan=False)  # raises on NaN/inf
    back = json.loads(text)
    assert back["experiment_id"] == "exp-test"
    assert back["srm_p_value"] == pytest.approx(0.7815112949987133)
    assert len(back["table"]) == 4 and all(list(r) == list(TABLE_COLUMNS) for r in back["table"])
    control_cost = next(
        r for r in back["table"] if (r["metric"], r["arm"]) == ("cost_usd", "control")
    )
    assert control_cost["diff"] is None and control_cost["status"] == "control"
    v2_cost = next(r for r in back["table"] if (r["metric"], r["arm"]) == ("cost_usd", "v2"))
    assert v2_cost["p_value"] == pytest.approx(0.18182535920075524, abs=1e-6)
    assert v2_cost["units"] == 7 and v2_cost["significant"] is False


def test_csv_parses_back_with_pandas(result):
    parsed = pd.read_csv(io.StringIO(to_csv(result)))
    assert list(parsed.columns) == list(TABLE_COLUMNS)
    pd.testing.assert_frame_equal(parsed, result.table, check_dtype=False)


def test_build_report_loads_analyses_and_renders(tmp_path, redis_url, redis_client):
    definition = {
        "id": "exp-test",
        "flow": "variants.summarization",
        "arms": [{"name": "control", "weight": 0.5}, {"name": "v2", "weight": 0.5}],
        "metrics": [THUMBS, COST],
        "analysis": {"correction": "none"},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(definition))
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**definition, "id": "other"}))
    write_events(redis_client, "exp-test", *_events())

    html = build_report("exp-test", tmp_path, redis_url)
    assert "0.1818" in html and "data:image/png;base64," in html
    data = json.loads(build_report("exp-test", tmp_path, redis_client, fmt="json"))
    v2_cost = next(r for r in data["table"] if (r["metric"], r["arm"]) == ("cost_usd", "v2"))
    assert v2_cost["mean"] == pytest.approx(23 / 7)
    csv = build_report("exp-test", tmp_path, redis_url, fmt="csv")
    assert len(pd.read_csv(io.StringIO(csv))) == 4

    with pytest.raises(ValueError, match=r"no experiment 'nope'.*known: exp-test, other"):
        build_report("nope", tmp_path, redis_url)
    with pytest.raises(ValueError, match="unknown format"):
        build_report("exp-test", tmp_path, redis_url, fmt="pdf")  # type: ignore[arg-type]


def test_report_of_an_experiment_without_events_renders():
    e, o = frames([], [])
    empty = analyze(experiment([THUMBS, COST]), e, o)
    html = render_report(empty)
    assert "No units have been exposed yet" in html
    assert "not enough units to test the traffic split" in html
    assert math.isnan(empty.srm_p_value) and to_json(empty)["srm_p_value"] is None


def test_report_shows_context_fingerprints_and_per_arm_rate_intervals(result):
    html = render_report(result)
    assert "<code>bbbbbbbbbbbb</code> (6)" in html and "<code>bbbbbbbbbbbb</code> (7)" in html
    assert f"definition sha256 {result.experiment.definition_sha[:12]}" in html
    assert "First exposure " in html
    assert to_json(result)["flow_fingerprints"] == {"control": {"b" * 64: 6}, "v2": {"b" * 64: 7}}
    thumbs = next(r for r in result.rows if r.metric.name == "thumbs_up" and r.arm == "control")
    low, high = proportion_confint(round(thumbs.mean * thumbs.units), thumbs.units, method="wilson")
    assert f"[{format_percent(low)}, {format_percent(high)}]" in html


def test_an_arm_at_2000_percent_does_not_squash_one_at_10_percent():
    control = [1.0] * 40 + [2.0] * 40
    near = [v * 1.1 for v in control]  # +10%
    far = [v * 21.0 for v in control]  # +2,000%
    exposures, outcomes = [], []
    for arm, values in (("control", control), ("v2", near), ("v3", far)):
        for i, value in enumerate(values):
            exposures.append(exposure(f"{arm}-{i}", arm))
            outcomes.append(outcome(f"{arm}-{i}", arm, "cost_usd", value, T0 + 1000))
    arms = (("control", 0.34), ("v2", 0.33), ("v3", 0.33))
    result = analyze(experiment([{"name": "cost_usd", "kind": "mean"}], arms=arms),
                     *frames(exposures, outcomes))  # fmt: skip
    effects = [abs(r.verdict.effect) * 100 for r in result.rows if r.verdict is not None]
    assert effects == pytest.approx([10.0, 2000.0])
    assert report_module._spread_out(effects)  # so the plot uses a symmetric log axis
    assert not report_module._spread_out([10.0, 50.0])
    assert report_module._forest_plot(result, "cost_usd").startswith("data:image/png;base64,")
