"""analysis.evaluation: the per-row file loaded, summarised against scipy, rendered, stored,
and set next to the online results (offline vs online) in the experiment report."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from markupsafe import escape
from scipy import stats

from analysis.analyze import analyze
from analysis.evaluation import (
    EVALUATION_COLUMNS,
    OFFLINE_VS_ONLINE_COLUMNS,
    EvaluationSummary,
    load_evaluation,
    offline_vs_online,
    read_summary,
    render_evaluation_html,
    summarize_evaluation,
    summary_key,
)
from analysis.formatting import format_number, format_p
from analysis.paired import bootstrap_ci
from analysis.report import analyze_stored, build_report, render_report, to_json
from tests.analysis_support import T0, experiment, exposure, frames, outcome, write_events

TOL = 1e-9
SCRIPT = "<script>alert('x')</script>"

# Helpfulness (a 1-5 judge) per row r01..r10; None marks a parse failure. v2 fails its run on
# r09 (every evaluator then records run_error), v3 gets bad inputs on r10, and the exact-match
# check fails (evaluator_error) on the control's r02.
HELPFULNESS = {
    "control": [3, 4, 2, 5, 3, 4, None, 2, 4, 3],
    "v2": [4, 4, 3, None, 4, 5, 2, 5, None, 4],
    "v3": [3, 4, 2, 5, 2, 4, 3, 2, 4, None],
}
EXACT = {
    "control": [0, None, 0, 0, 0, 0, 0, 0, 0, 0],
    "v2": [0, 0, 0, 0, 0, 0, 0, 0, None, 0],  # every difference 0: t undefined
    "v3": [1, 1, 1, 1, 1, 1, 1, 1, 1, None],  # every difference +1: t infinite
}
ROWS = [f"r{i:02d}" for i in range(1, 11)]


def _status(arm: str, row: str, evaluator: str, score: Any) -> str:
    if arm == "v2" and row == "r09":
        return "run_error"
    if arm == "v3" and row == "r10":
        return "bad_input"
    if score is not None:
        return "ok"
    return "parse_failure" if evaluator == "helpfulness" else "evaluator_error"


def _cost(arm: str, index: int) -> float:
    return {"control": 0.001, "v2": 0.002, "v3": 0.0005}[arm] * (index + 1)


def record(
    row: str,
    arm: str,
    evaluator: str,
    score: float | None,
    status: str = "ok",
    *,
    experiment_id: str = "exp-test",
    cost: float = 0.001,
    output: str | None = None,
) -> dict[str, Any]:
    judge = evaluator == "helpfulness"
    ran = status not in ("run_error", "bad_input")
    return {
        "experiment_id": experiment_id,
        "row_id": row,
        "arm": arm,
        "arm_fingerprint": f"fp-{arm}",
        "evaluator": evaluator,
        "evaluator_kind": "llm_judge" if judge else "deterministic",
        "evaluator_fingerprint": f"fp-{evaluator}",
        "score": score,
        "status": status,
        "detail": "" if status == "ok" else f"{status} on {row}",
        "inputs": {"message": f"question of {row}", "tier": "free"},
        "expected": {"answer": f"answer of {row}"} if not judge else None,
        "outputs": {"reply": output if output is not None else f"{arm} answers {row}"}
        if ran
        else None,
        "prompt_tokens": 100 if ran else 0,
        "completion_tokens": 20 if ran else 0,
        "cost_usd": cost if ran else 0.0,
        "latency_ms": 12.5 if ran else None,
        "judge_prompt_tokens": 50 if judge and ran else 0,
        "judge_completion_tokens": 3 if judge and ran else 0,
        "judge_cost_usd": 0.0001 if judge and ran else 0.0,
        "scale": [1, 5] if judge else [0, 1],
    }


def known_records() -> list[dict[str, Any]]:
    records = []
    for i, row in enumerate(ROWS):
        for arm in ("control", "v2", "v3"):
            for evaluator, table in (("helpfulness", HELPFULNESS), ("exact", EXACT)):
                score = table[arm][i]
                status = _status(arm, row, evaluator, score)
                records.append(
                    record(
                        row,
                        arm,
                        evaluator,
                        None if status != "ok" else float(score),
                        status,
                        cost=_cost(arm, i),
                        output=SCRIPT if (arm, row) == ("v2", "r08") else None,
                    )
                )
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "exp-test-eval-rows.jsonl", known_records())


@pytest.fixture
def summary(rows_file: Path) -> EvaluationSummary:
    return summarize_evaluation(load_evaluation(rows_file), control="control")


def _ok_scores(frame: pd.DataFrame, evaluator: str) -> pd.DataFrame:
    ok = frame[(frame["status"] == "ok") & (frame["evaluator"] == evaluator)]
    return ok.pivot(index="row_id", columns="arm", values="score")


# --- loading ------------------------------------------------------------------------------------


def test_load_gives_one_typed_row_per_record(rows_file: Path):
    frame = load_evaluation(rows_file)
    assert list(frame.columns) == list(EVALUATION_COLUMNS)
    assert len(frame) == 10 * 3 * 2
    assert frame["score"].dtype == np.float64 and frame["prompt_tokens"].dtype == np.int64
    failed = frame[frame["status"] != "ok"]
    assert (
        failed["score"].isna().all() and frame.loc[frame["status"] == "ok", "score"].notna().all()
    )
    first = frame.iloc[0]
    assert first["inputs"] == {"message": "question of r01", "tier": "free"}
    assert first["scale"] == (1.0, 5.0) and first["outputs"] == {"reply": "control answers r01"}
    assert math.isnan(frame[frame["status"] == "run_error"]["latency_ms"].iloc[0])


def test_load_keeps_extra_fields_and_skips_blank_lines(tmp_path: Path):
    extra = {**record("r01", "control", "exact", 1.0), "judge_model": "tiny"}
    path = tmp_path / "rows.jsonl"
    path.write_text("\n" + json.dumps(extra) + "\n\n", encoding="utf-8")
    frame = load_evaluation(path)
    assert list(frame.columns) == [*EVALUATION_COLUMNS, "judge_model"]
    assert frame["judge_model"].tolist() == ["tiny"]
    assert load_evaluation(write_jsonl(tmp_path / "empty.jsonl", [])).empty


GOOD = json.dumps(record("r01", "control", "exact", 1.0))


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"experiment_id": "exp-test", "row_id": ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({**record("r02", "v2", "exact", 1.0), "arm": None}), "'arm' must be"),
        (json.dumps(record("r02", "v2", "exact", 1.0, "timeout")), "unknown status 'timeout'"),
        (json.dumps(record("r02", "v2", "exact", None)), "an 'ok' record needs a finite number"),
        (json.dumps(record("r02", "v2", "exact", 2.0, "parse_failure")), "must have a null"),
        (json.dumps({**record("r02", "v2", "exact", 1.0), "cost_usd": "free"}), "'cost_usd'"),
        (json.dumps({**record("r02", "v2", "exact", 1.0), "scale": [1]}), "'scale'"),
        (json.dumps({**record("r02", "v2", "exact", 1.0), "prompt_tokens": -3}), "whole number"),
    ],
)
def test_a_malformed_line_is_named_with_its_number(tmp_path: Path, bad_line: str, message: str):
    path = tmp_path / "rows.jsonl"
    path.write_text(f"{GOOD}\n\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        load_evaluation(path)
    assert str(caught.value).startswith(f"{path}, line 3: ")


def test_a_repeated_record_names_both_lines(tmp_path: Path):
    path = tmp_path / "rows.jsonl"
    path.write_text(f"{GOOD}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: a second record .* first is on line 1"):
        load_evaluation(path)


# --- the summary --------------------------------------------------------------------------------


def test_summary_lists_arms_evaluators_and_settings(summary: EvaluationSummary):
    assert (summary.experiment_id, summary.control, summary.alpha) == ("exp-test", "control", 0.05)
    assert summary.arm_names == ("control", "v2", "v3")
    assert [a.fingerprint for a in summary.arms] == ["fp-control", "fp-v2", "fp-v3"]
    helpfulness, exact = summary.evaluators
    assert (helpfulness.name, helpfulness.kind, helpfulness.fingerprint, helpfulness.scale) == (
        "helpfulness", "llm_judge", "fp-helpfulness", (1.0, 5.0)
    )  # fmt: skip
    assert (exact.name, exact.kind, exact.scale) == ("exact", "deterministic", (0.0, 1.0))
    assert [c.arm for c in helpfulness.comparisons] == ["v2", "v3"]


def test_paired_statistics_equal_ttest_rel_on_the_stored_scores(rows_file: Path):
    frame = load_evaluation(rows_file)
    summary = summarize_evaluation(frame, control="control", alpha=0.1)
    scores = _ok_scores(frame, "helpfulness")
    for arm in ("v2", "v3"):
        pair = scores[["control", arm]].dropna()
        expected = stats.ttest_rel(pair[arm], pair["control"])
        ci = expected.confidence_interval(0.9)
        test = summary.evaluator("helpfulness").comparison(arm).test
        assert test.n == len(pair)
        assert test.mean_diff == pytest.approx((pair[arm] - pair["control"]).mean(), abs=TOL)
        assert test.statistic == pytest.approx(expected.statistic, abs=TOL)
        assert test.p_value == pytest.approx(expected.pvalue, abs=TOL)
        assert test.df == expected.df
        assert (test.ci_low, test.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)
    # pairs need both arms' ok scores: control's r07 parse failure, v2's r04 and r09 are out
    assert summary.evaluator("helpfulness").comparison("v2").test.n == 7
    assert summary.evaluator("helpfulness").comparison("v3").test.n == 8


def test_degenerate_comparisons_follow_scipy(summary: EvaluationSummary):
    exact = summary.evaluator("exact")
    same = exact.comparison("v2").test  # every difference 0
    assert math.isnan(same.statistic) and math.isnan(same.p_value)
    assert (same.ci_low, same.ci_high) == (0.0, 0.0)
    better = exact.comparison("v3").test  # every difference +1
    assert (better.statistic, better.p_value, better.ci_low, better.ci_high) == (
        math.inf, 0.0, 1.0, 1.0
    )  # fmt: skip
    assert exact.comparison("v3").wins == 8 and exact.comparison("v2").ties == 8


def test_bootstrap_and_wins_are_computed_on_the_pairs_in_row_order(rows_file: Path):
    frame = load_evaluation(rows_file)
    summary = summarize_evaluation(frame, control="control", resamples=500, seed=3)
    pair = _ok_scores(frame, "helpfulness")[["control", "v2"]].dropna().sort_index()
    d = (pair["v2"] - pair["control"]).to_numpy()
    comparison = summary.evaluator("helpfulness").comparison("v2")
    assert (comparison.bootstrap_low, comparison.bootstrap_high) == bootstrap_ci(
        d, 0.05, 500, seed=3
    )
    assert (comparison.wins, comparison.ties, comparison.losses) == (
        int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum())
    )  # fmt: skip
    # the file's order does not matter: shuffled records give the same summary
    shuffled = known_records()
    random.Random(0).shuffle(shuffled)
    again = load_evaluation(write_jsonl(rows_file.with_name("shuffled.jsonl"), shuffled))
    assert summarize_evaluation(again, control="control", resamples=500, seed=3) == summary


def test_per_arm_scores_count_every_failure_status(summary: EvaluationSummary):
    helpfulness = summary.evaluator("helpfulness")
    control, v2, v3 = (helpfulness.scores(a) for a in ("control", "v2", "v3"))
    assert (control.records, control.scored, control.parse_failures) == (10, 9, 1)
    assert (v2.scored, v2.parse_failures, v2.run_errors, v2.bad_inputs) == (8, 1, 1, 0)
    assert (v3.scored, v3.parse_failures, v3.run_errors, v3.bad_inputs) == (9, 0, 0, 1)
    exact_control = summary.evaluator("exact").scores("control")
    assert (exact_control.evaluator_errors, exact_control.parse_failures) == (1, 0)
    values = [s for s in HELPFULNESS["control"] if s is not None]
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert control.mean == pytest.approx(np.mean(values), abs=TOL)
    assert (control.ci_low, control.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)


def test_pass_fail_checks_get_the_wilson_interval(summary: EvaluationSummary):
    """A check's mean is the share passing: its interval is Wilson's, within [0, 1], where the
    t-interval of 0/1 scores would leave it (or shrink to a point at 0% or 100%)."""
    from analysis.proportion_bounds import wilson_interval

    for arm in ("control", "v2", "v3"):
        scores = [s for s in EXACT[arm] if s is not None]
        exact = summary.evaluator("exact").scores(arm)
        low, high = wilson_interval(int(sum(scores)), len(scores), 0.05)
        assert exact.mean == pytest.approx(np.mean(scores), abs=TOL)
        assert (exact.ci_low, exact.ci_high) == pytest.approx((low, high), abs=TOL)
        assert 0.0 <= exact.ci_low <= exact.mean <= exact.ci_high <= 1.0


def test_cost_counts_each_run_once_and_judges_apart(summary: EvaluationSummary):
    for arm in ("control", "v2", "v3"):
        usage = summary.arm_usage(arm)
        ran = [i for i, row in enumerate(ROWS) if _status(arm, row, "exact", 0) == "ok"]
        assert usage.runs == 10
        assert usage.cost_usd == pytest.approx(sum(_cost(arm, i) for i in ran), abs=1e-12)
        assert usage.mean_cost_usd == pytest.approx(usage.cost_usd / 10, abs=1e-12)
        assert (usage.prompt_tokens, usage.completion_tokens) == (100 * len(ran), 20 * len(ran))
        assert usage.mean_latency_ms == 12.5
        # only the helpfulness judge has usage: one judged record per run
        assert usage.judge_cost_usd == pytest.approx(0.0001 * len(ran), abs=1e-12)
        assert (usage.judge_prompt_tokens, usage.judge_completion_tokens) == (
            50 * len(ran), 3 * len(ran)
        )  # fmt: skip
    assert (summary.arm_usage("v2").run_errors, summary.arm_usage("v2").bad_inputs) == (1, 0)
    assert (summary.arm_usage("v3").run_errors, summary.arm_usage("v3").bad_inputs) == (0, 1)


def test_disagreements_are_the_largest_differences_with_both_answers(rows_file: Path):
    frame = load_evaluation(rows_file)
    summary = summarize_evaluation(frame, control="control", top_disagreements=3)
    pair = _ok_scores(frame, "helpfulness")[["control", "v2"]].dropna()
    diff = pair["v2"] - pair["control"]
    ranked = sorted(
        (row for row in diff.index if diff[row] != 0), key=lambda row: (-abs(diff[row]), row)
    )
    found = summary.evaluator("helpfulness").comparison("v2").disagreements
    assert [d.row_id for d in found] == ranked[:3] == ["r08", "r01", "r03"]
    top = found[0]
    assert (top.control_score, top.treatment_score, top.diff) == (2.0, 5.0, 3.0)
    assert top.inputs == {"message": "question of r08", "tier": "free"}
    assert top.control_output == {"reply": "control answers r08"}
    assert top.treatment_output == {"reply": SCRIPT}
    # rows both arms scored alike are never disagreements
    assert summary.evaluator("exact").comparison("v2").disagreements == ()
    none = summarize_evaluation(frame, control="control", top_disagreements=0)
    assert none.evaluator("helpfulness").comparison("v2").disagreements == ()


def test_json_round_trip_is_exact(rows_file: Path, summary: EvaluationSummary):
    document = summary.to_json()
    text = json.dumps(document, allow_nan=False)  # NaN and inf are encoded, never bare
    back = EvaluationSummary.from_json(json.loads(text))
    assert back == summary
    assert back.to_json() == document
    assert back.evaluator("exact").comparison("v3").test.statistic == math.inf
    assert math.isnan(back.evaluator("exact").comparison("v2").test.statistic)
    assert back.evaluator("helpfulness").scale == (1.0, 5.0)
    top = back.evaluator("helpfulness").comparison("v2").disagreements[0]
    assert top.treatment_output == {"reply": SCRIPT}
    other = summarize_evaluation(load_evaluation(rows_file), control="control", alpha=0.1)
    assert other != summary


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=2), "format 2"),
        (lambda d: d.pop("arms"), "malformed"),
        (lambda d: d["evaluators"][0].update(arms=[{"arm": "control"}]), "malformed"),
        (lambda d: d.update(alpha="high"), "malformed"),
    ],
)
def test_from_json_rejects_other_documents(summary: EvaluationSummary, change, message: str):
    document = json.loads(json.dumps(summary.to_json()))
    change(document)
    with pytest.raises(ValueError, match=message):
        EvaluationSummary.from_json(document)
    with pytest.raises(ValueError, match="JSON object"):
        EvaluationSummary.from_json([1, 2])


@pytest.mark.parametrize(
    ("records", "control", "message"),
    [
        ([], "control", "no records"),
        ([record("r01", "v2", "exact", 1.0)], "control", "control arm 'control' has no records"),
        (
            [
                record("r01", "control", "exact", 1.0),
                record("r02", "v2", "exact", 1.0, experiment_id="b"),
            ],
            "control",
            "mixes experiments",
        ),
        (
            [record("r01", "control", "exact", 1.0), record("r01", "control", "exact", 0.0)],
            "control",
            "repeat a",
        ),
        (
            [
                record("r01", "control", "exact", 1.0),
                {**record("r02", "control", "exact", 1.0), "evaluator_fingerprint": "other"},
            ],
            "control",
            "'exact' is recorded under 2 fingerprints",
        ),
    ],
)
def test_summarize_rejects_frames_it_cannot_pair(records, control: str, message: str):
    frame = pd.DataFrame(records, columns=list(EVALUATION_COLUMNS))
    with pytest.raises(ValueError, match=message):
        summarize_evaluation(frame, control=control)


# --- the standalone report ----------------------------------------------------------------------


def test_html_shows_the_numbers_and_escapes_answers(summary: EvaluationSummary):
    html = render_evaluation_html(summary)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    comparison = summary.evaluator("helpfulness").comparison("v2")
    test = comparison.test
    for text in (
        "+" + format_number(test.mean_diff),
        f"[{format_number(test.ci_low)}, {format_number(test.ci_high)}]",
        f"[{format_number(comparison.bootstrap_low)}, {format_number(comparison.bootstrap_high)}]",
        format_p(test.p_value),
        f"{comparison.wins} / {comparison.ties} / {comparison.losses}",
        format_number(summary.evaluator("helpfulness").scores("control").mean),
        format_number(summary.arm_usage("control").cost_usd),
        "row r08",
        "question of r08",
    ):
        assert text in html, text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert '<tr class="better">' in html  # exact, v3: every row +1, p = 0


# --- offline vs online --------------------------------------------------------------------------

JUDGE = {"name": "judge:helpfulness", "kind": "mean", "aggregate": "mean", "estimand": "absolute"}
ARMS = (("control", 0.2), ("v2", 0.2), ("v3", 0.2), ("v4", 0.2), ("v5", 0.2))


def online_events() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Live judge scores: v2 +1, v3 +0.5 and v5 -0.5 against control (all significant with 60
    units an arm), v4 exposed only to units that were never judged (no online estimate)."""
    base = [2.0, 3.0, 4.0]
    shift = {"control": 0.0, "v2": 1.0, "v3": 0.5, "v5": -0.5}
    exposures, outcomes = [], []
    for arm, _ in ARMS:
        for i in range(60):
            unit = f"{arm}-{i}"
            exposures.append(exposure(unit, arm, T0 + i))
            if arm in shift:
                value = base[i % 3] + shift[arm]
                outcomes.append(outcome(unit, arm, JUDGE["name"], value, T0 + 1000 + i))
    return exposures, outcomes


def offline_records() -> list[dict[str, Any]]:
    """Offline helpfulness on 40 rows: v2 and v5 about +1 (significant), v3 +0.1 (p = 0.4), v4
    differs from the control row by row but not on average."""
    control = np.random.default_rng(12).integers(2, 5, 40)
    shifted = {
        "control": control,
        "v2": np.minimum(control + np.resize([0, 1, 1, 2], 40), 5),
        "v3": control + np.resize([-1, 0, 1, 0, 0, 1, -1, 0, 1, 0], 40),
        "v4": control + np.resize([1, -1], 40),
        "v5": np.minimum(control + np.resize([0, 1, 1, 2], 40), 5),
    }
    return [
        record(f"r{i:02d}", arm, evaluator, float(scores[i]))
        for i in range(40)
        for arm, scores in shifted.items()
        for evaluator in ("helpfulness", "exact")
    ]


@pytest.fixture
def offline(tmp_path: Path) -> EvaluationSummary:
    frame = load_evaluation(write_jsonl(tmp_path / "rows.jsonl", offline_records()))
    return summarize_evaluation(frame, control="control")


def test_offline_vs_online_sets_both_estimates_side_by_side(offline: EvaluationSummary):
    result = analyze(experiment([JUDGE], arms=ARMS), *frames(*online_events()))
    table = offline_vs_online(offline, result)
    assert list(table.columns) == list(OFFLINE_VS_ONLINE_COLUMNS)
    # exact has no online metric judge:exact, so only helpfulness, in the summary's arm order
    assert table["evaluator"].tolist() == ["helpfulness"] * 4
    assert table["arm"].tolist() == ["v2", "v3", "v4", "v5"]
    for row in table.itertuples(index=False):
        test = offline.evaluator("helpfulness").comparison(row.arm).test
        online = result.row("judge:helpfulness", row.arm)
        assert row.metric == "judge:helpfulness" and row.online_estimand == "absolute"
        assert (row.offline_n, row.offline_diff, row.offline_p) == (
            test.n, test.mean_diff, test.p_value
        )  # fmt: skip
        assert (row.offline_ci_low, row.offline_ci_high) == (test.ci_low, test.ci_high)
        assert row.online_units == online.units
        assert row.offline_significant == (test.p_value < offline.alpha)
        assert row.online_significant == online.significant
        verdict = online.verdict
        assert verdict is not None
        for ours, theirs in (
            (row.online_effect, verdict.effect),
            (row.online_ci_low, verdict.ci_low),
            (row.online_ci_high, verdict.ci_high),
            (row.online_p_adjusted, verdict.p_adjusted),
        ):
            assert ours == theirs or (math.isnan(ours) and math.isnan(theirs))
    v2, v3, v4, v5 = table.itertuples(index=False)
    assert v2.online_effect == pytest.approx(1.0) and v2.offline_diff > 0
    assert (v2.same_sign, v2.offline_significant, v2.online_significant) == (True, True, True)
    assert (v2.agreement, v2.reason) == ("agree", "both significant, in the same direction")
    assert v3.online_significant and not v3.offline_significant and v3.same_sign
    assert v3.agreement == "disagree" and "significant online only" in v3.reason
    assert math.isnan(v4.online_effect) and not v4.same_sign
    assert v4.agreement == "n/a" and v4.reason.startswith("no online estimate yet")
    assert v5.offline_significant and v5.online_significant and not v5.same_sign
    assert (v5.agreement, v5.reason) == ("disagree", "signs differ: offline +0.925, online -0.5")


def test_offline_vs_online_needs_the_same_control(offline: EvaluationSummary):
    arms = (("v2", 0.2), ("control", 0.2), ("v3", 0.2), ("v4", 0.2), ("v5", 0.2))
    result = analyze(experiment([JUDGE], arms=arms), *frames(*online_events()))
    with pytest.raises(ValueError, match="control is 'control', the experiment's 'v2'"):
        offline_vs_online(offline, result)


# --- in the experiment report, read from the store ----------------------------------------------


def _store(redis_client, offline: EvaluationSummary | None = None) -> None:
    write_events(redis_client, "exp-test", *online_events())
    if offline is not None:
        redis_client.set(summary_key("exp-test"), json.dumps(offline.to_json(), allow_nan=False))


def test_report_shows_offline_vs_online_when_the_store_has_a_summary(
    tmp_path: Path, redis_client, offline: EvaluationSummary
):
    _store(redis_client, offline)
    exp = experiment([JUDGE], arms=ARMS)
    assert read_summary("exp-test", redis_client) == offline
    result = analyze_stored(exp, redis_client)
    assert result.offline == offline
    assert "offline_summary_ignored" not in result.diagnostics
    expected = offline_vs_online(offline, result)

    html = render_report(result)
    assert "<h2>Offline vs online</h2>" in html
    v2 = expected.iloc[0]
    for text in (
        "+" + format_number(v2["offline_diff"]),
        f"[{format_number(v2['offline_ci_low'])}, {format_number(v2['offline_ci_high'])}]",
        escape(format_p(v2["offline_p"])),
        "+" + format_number(v2["online_effect"]),
        "both significant, in the same direction",
        "significant online only",
        "no online estimate yet",
    ):
        assert text in html, text

    data = to_json(result)
    json.dumps(data, allow_nan=False)
    rows = data["offline_vs_online"]
    assert [(r["arm"], r["agreement"]) for r in rows] == [
        ("v2", "agree"), ("v3", "disagree"), ("v4", "n/a"), ("v5", "disagree")
    ]  # fmt: skip
    assert rows[0]["offline_diff"] == v2["offline_diff"] and rows[2]["online_effect"] is None
    assert list(rows[0]) == list(OFFLINE_VS_ONLINE_COLUMNS)

    definition = {
        "id": "exp-test",
        "flow": "variants.summarization",
        "arms": [{"name": name, "weight": weight} for name, weight in ARMS],
        "metrics": [JUDGE],
        "analysis": {"correction": "none"},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(definition))
    built = json.loads(build_report("exp-test", tmp_path, redis_client, fmt="json"))
    assert built["offline_vs_online"] == rows


def test_report_without_a_summary_has_no_offline_section(redis_client):
    _store(redis_client)
    result = analyze_stored(experiment([JUDGE], arms=ARMS), redis_client)
    assert result.offline is None
    assert "Offline vs online" not in render_report(result)
    assert "offline_vs_online" not in to_json(result)


def test_a_summary_without_online_judge_metrics_says_so(redis_client, offline):
    _store(redis_client, offline)
    exp = experiment([{**JUDGE, "name": "judge:tone"}], arms=ARMS)
    result = analyze_stored(exp, redis_client)
    assert result.offline == offline
    assert to_json(result)["offline_vs_online"] == []
    html = render_report(result)
    assert "<h2>Offline vs online</h2>" in html
    assert "has no online metric judge:&lt;evaluator&gt; for any of them" in html


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        json.dumps({"format": 1, "experiment_id": "exp-test"}),
        json.dumps([1, 2, 3]),
        "other-experiment",
        "other-control",
        "hash",
    ],
)
def test_a_bad_stored_summary_is_ignored_with_a_diagnostic(
    redis_client, offline: EvaluationSummary, stored: str, caplog
):
    _store(redis_client)
    key = summary_key("exp-test")
    if stored == "other-experiment":
        other = EvaluationSummary.from_json({**offline.to_json(), "experiment_id": "other"})
        redis_client.set(key, json.dumps(other.to_json()))
    elif stored == "other-control":
        changed = {**offline.to_json(), "control": "v2"}
        redis_client.set(key, json.dumps(changed))
    elif stored == "hash":
        redis_client.hset(key, "field", "value")
    else:
        redis_client.set(key, stored)
    with caplog.at_level("WARNING", logger="analysis.report"):
        result = analyze_stored(experiment([JUDGE], arms=ARMS), redis_client)
    assert result.offline is None
    assert result.diagnostics["offline_summary_ignored"] == 1
    assert "offline evaluation summary of exp-test ignored" in caplog.text
    html = render_report(result)
    assert "Offline vs online" not in html
    assert "offline evaluation summary in the store that is unreadable" in html
    assert "offline_vs_online" not in to_json(result)
