"""`abtest eval` end to end: real Hamilton drivers, the local model server through the openai
SDK, the real store. Every arm runs on every row; a repeated run makes no LLM call; a changed
arm re-runs alone; an interrupted run resumes; bad rows are named and the rest goes on."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from abtest.cli import app
from abtest.evaluation.cache import EvalCache
from abtest.evaluation.dataset import load_dataset
from abtest.evaluation.judges import Judges
from abtest.evaluation.runner import run_evaluation
from abtest.experiments import load_experiment
from abtest.flows import FlowRegistry
from abtest.llm import LLMClient
from analysis.evaluation import load_evaluation, read_summary

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

EVALUATORS = [
    {"name": "intent_correct", "kind": "exact", "output": "intent", "expected": "intent"},
    {"name": "mentions_keyword", "kind": "contains", "output": "reply", "expected": "keyword"},
    {"name": "short", "kind": "length", "output": "reply", "max": 30},
    {
        "name": "helpfulness",
        "kind": "llm_judge",
        "flow": "variants.judges.helpfulness",
        "model": "gpt-4o-mini",
        "scale": [1, 5],
        "output": "reply",
    },
]
ROWS = [
    {
        "id": "bill",
        "inputs": {"message": "I was charged twice on my invoice"},
        "expected": {"intent": "billing", "keyword": "charge"},
    },
    {
        "id": "ship",
        "inputs": {
            "message": "Where is my parcel? The tracking has not moved",
            "customer_tier": "pro",
        },
        "expected": {"intent": "shipping", "keyword": "tracking"},
    },
    {
        "id": "login",
        "inputs": {"message": "I cannot log in, the password reset email never comes"},
        "expected": {"intent": "account", "keyword": "password"},
    },
    {
        "id": "refund",
        "inputs": {"message": "I want my money back for the broken blender"},
        "expected": {"intent": "refund", "keyword": "refund"},
    },
    {
        "id": "bad-tier",
        "inputs": {"message": "hello", "customer_tier": "platinum"},
        "expected": {"intent": "other", "keyword": "hello"},
    },
    {
        "id": "no-message",
        "inputs": {"mesage": "typo in the input name"},
        "expected": {"intent": "other", "keyword": "x"},
    },
]
GOOD_ROWS = 4
RUN_ROWS = 5
"""Rows whose inputs fit the input schema: the flow itself refuses `bad-tier` when it runs."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder: the support-reply experiment with an evaluation section."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "datasets").mkdir()
    data = yaml.safe_load((ROOT / "experiments" / "support_reply.yaml").read_text())
    data["evaluation"] = {"dataset": "datasets/rows.jsonl", "evaluators": EVALUATORS}
    (tmp_path / "experiments" / "support.yaml").write_text(yaml.safe_dump(data))
    lines = [json.dumps(row) for row in ROWS]
    (tmp_path / "datasets" / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client, llm_server, project):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "local")
    monkeypatch.chdir(project)
    for key in redis_client.scan_iter(match="abtest:{support-reply-prompts}:*"):
        redis_client.delete(key)


def _eval(*extra: str):
    return runner.invoke(app, ["eval", "support-reply-prompts", "-e", "experiments", *extra])


def test_eval_scores_every_arm_and_writes_reports(env, project: Path, redis_client) -> None:
    result = _eval("--concurrency", "4")
    assert result.exit_code == 0, result.output
    arms = 3
    assert f"{RUN_ROWS * arms} arm runs and {GOOD_ROWS * arms * len(EVALUATORS)} scores" in (
        result.stdout
    )
    # the two bad rows are named with their input, and every other row went on
    assert "row 'bad-tier'" in result.stderr and "customer_tier" in result.stderr
    assert "row 'no-message'" in result.stderr and "message" in result.stderr
    frame = load_evaluation(project / "reports" / "support-reply-prompts-eval-rows.jsonl")
    assert len(frame) == len(ROWS) * arms * len(EVALUATORS)
    assert set(frame[frame["row_id"] == "bad-tier"]["status"]) == {"bad_input"}
    ok = frame[frame["status"] == "ok"]
    assert set(ok["row_id"]) == {r["id"] for r in ROWS[:GOOD_ROWS]}
    assert ok["score"].notna().all()
    judged = ok[ok["evaluator"] == "helpfulness"]
    assert len(judged) == GOOD_ROWS * arms and judged["score"].between(1, 5).all()
    assert (judged["judge_prompt_tokens"] > 0).all()
    assert (project / "reports" / "support-reply-prompts-eval.html").read_text().count("<table")
    document = json.loads((project / "reports" / "support-reply-prompts-eval.json").read_text())
    stored = read_summary("support-reply-prompts", redis_client)
    assert stored is not None and stored.to_json() == document


def test_paired_statistics_equal_scipy_on_the_stored_scores(env, project: Path) -> None:
    assert _eval().exit_code == 0
    frame = load_evaluation(project / "reports" / "support-reply-prompts-eval-rows.jsonl")
    summary = json.loads((project / "reports" / "support-reply-prompts-eval.json").read_text())
    from analysis.evaluation import EvaluationSummary

    loaded = EvaluationSummary.from_json(summary)
    ok = frame[frame["status"] == "ok"]
    checked = 0
    for name in ("helpfulness", "short"):
        scores = ok[ok["evaluator"] == name].pivot(index="row_id", columns="arm", values="score")
        for arm in ("v2", "v2-short-mini"):
            pair = scores[["control", arm]].dropna()
            comparison = loaded.evaluator(name).comparison(arm)
            if pair[arm].sub(pair["control"]).std() == 0:
                continue
            expected = stats.ttest_rel(pair[arm], pair["control"])
            assert comparison.test.p_value == pytest.approx(expected.pvalue, abs=1e-9)
            assert comparison.test.statistic == pytest.approx(expected.statistic, abs=1e-9)
            checked += 1
    assert checked >= 1


def _dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_a_repeated_run_makes_no_llm_call(env, project: Path, monkeypatch) -> None:
    assert _eval().exit_code == 0
    rows_file = project / "reports" / "support-reply-prompts-eval-rows.jsonl"
    first = rows_file.read_text()
    # with no model reachable at all, the second run still gives the same results
    monkeypatch.setenv("OPENAI_BASE_URL", _dead_endpoint())
    again = _eval()
    assert again.exit_code == 0, again.output
    assert "0 arm runs and 0 scores computed" in again.stdout
    assert "0 LLM calls" in again.stdout
    assert rows_file.read_text() == first


def test_a_changed_arm_reruns_alone(env, project: Path) -> None:
    assert _eval().exit_code == 0
    path = project / "experiments" / "support.yaml"
    data = yaml.safe_load(path.read_text())
    data["arms"][2]["config"]["max_reply_words"] = 18
    path.write_text(yaml.safe_dump(data))
    again = _eval()
    assert again.exit_code == 0, again.output
    assert f"{RUN_ROWS} arm runs and {GOOD_ROWS * len(EVALUATORS)} scores computed" in (
        again.stdout
    )


def test_an_interrupted_run_resumes_where_it_stopped(
    env, project: Path, redis_client, llm_server
) -> None:
    experiment = load_experiment(project / "experiments" / "support.yaml")
    rows = load_dataset(project / "datasets" / "rows.jsonl")[:GOOD_ROWS]
    with LLMClient(base_url=llm_server.base_url, api_key="local") as client:
        registry = FlowRegistry.from_experiments([experiment], llm_client=client)
        judges = Judges(
            experiment, llm_client=client, flow_contract=registry.contract(experiment.id)
        )
        cache = EvalCache(redis_client, experiment.id)
        finished = 0

        def stop_after_five(count: int) -> None:
            nonlocal finished
            finished += count
            if finished == 5:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_evaluation(
                experiment,
                registry,
                judges,
                rows,
                cache=cache,
                dataset_folder=project / "datasets",
                concurrency=1,
                progress=stop_after_five,
            )
        done = run_evaluation(
            experiment,
            registry,
            judges,
            rows,
            cache=cache,
            dataset_folder=project / "datasets",
            concurrency=2,
        )
    total = GOOD_ROWS * len(experiment.arms)
    # the five finished (and the one task already running when the interrupt came) are kept
    assert 5 <= done.answers_cached < total
    assert done.flows_run == total - done.answers_cached
    assert len(done.records) == total * len(EVALUATORS)


def test_validate_names_a_missing_callable_and_a_bad_dataset_line(env, project: Path) -> None:
    path = project / "experiments" / "support.yaml"
    data = yaml.safe_load(path.read_text())
    data["evaluation"]["evaluators"].append(
        {"name": "custom", "kind": "python", "callable": "variants.nowhere:score_it"}
    )
    path.write_text(yaml.safe_dump(data))
    with (project / "datasets" / "rows.jsonl").open("a") as handle:
        handle.write('{"id": "broken", "inputs": \n')
    result = runner.invoke(app, ["validate", "experiments"])
    assert result.exit_code == 1
    assert "evaluation.evaluators[4].callable: callable 'variants.nowhere:score_it'" in (
        result.stderr
    )
    assert f"line {len(ROWS) + 1}: malformed JSON" in result.stderr
    bad = _eval()
    assert bad.exit_code == 1 and f"line {len(ROWS) + 1}: malformed JSON" in bad.stderr


def test_the_bundled_examples_validate_with_their_evaluations() -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "experiments")])
    assert result.exit_code == 0, result.output


def test_unknown_experiment_and_missing_section_are_plain_errors(env, project: Path) -> None:
    result = runner.invoke(app, ["eval", "nope", "-e", "experiments"])
    assert result.exit_code == 1 and "unknown experiment 'nope'" in result.stderr
    path = project / "experiments" / "support.yaml"
    data = yaml.safe_load(path.read_text())
    del data["evaluation"]
    path.write_text(yaml.safe_dump(data))
    missing = _eval()
    assert missing.exit_code == 1 and "has no evaluation.dataset" in missing.stderr
    shutil.rmtree(project / "datasets")


@pytest.mark.both_stores
def test_unparseable_judges_are_counted_per_arm_and_shown(env, project: Path) -> None:
    """A judge whose answers hold no score: every verdict is a parse failure, counted per arm
    in the summary, the printed table and the HTML report, never a score; on a plain Redis
    server and on a Redis Cluster alike."""
    path = project / "experiments" / "support.yaml"
    data = yaml.safe_load(path.read_text())
    rambling = {
        "name": "rambling",
        "kind": "llm_judge",
        "flow": "tests.flows.rambling_judge",
        "model": "gpt-4o-mini",
        "scale": [1, 5],
        "output": "reply",
    }
    data["evaluation"]["evaluators"] = [EVALUATORS[1], rambling]
    path.write_text(yaml.safe_dump(data))
    result = _eval()
    assert result.exit_code == 0, result.output
    document = json.loads((project / "reports" / "support-reply-prompts-eval.json").read_text())
    from analysis.evaluation import EvaluationSummary

    summary = EvaluationSummary.from_json(document)
    for arm in ("control", "v2", "v2-short-mini"):
        scores = summary.evaluator("rambling").scores(arm)
        assert (scores.scored, scores.parse_failures) == (0, GOOD_ROWS)
        assert summary.evaluator("mentions_keyword").scores(arm).scored == GOOD_ROWS
    table = result.stdout.split("-- rambling (llm_judge) --")[1]
    lines = [line.split() for line in table.splitlines() if line.strip()][1:4]
    # arm, n scored, mean (none), parse failures, errors (the two rows that do not fit)
    bad = str(len(ROWS) - GOOD_ROWS)
    assert [line[:5] for line in lines] == [
        [arm, "0", "–", str(GOOD_ROWS), bad] for arm in ("control", "v2", "v2-short-mini")
    ]
    frame = load_evaluation(project / "reports" / "support-reply-prompts-eval-rows.jsonl")
    failed = frame[(frame["evaluator"] == "rambling") & (frame["status"] == "parse_failure")]
    assert len(failed) == GOOD_ROWS * 3 and failed["score"].isna().all()
    assert (failed["detail"].str.len() > 0).all()  # the judge's text is kept
    html = (project / "reports" / "support-reply-prompts-eval.html").read_text()
    assert "parse failures" in html


def test_eval_refuses_evaluators_it_cannot_use_before_running(env, project: Path) -> None:
    path = project / "experiments" / "support.yaml"
    data = yaml.safe_load(path.read_text())
    data["evaluation"]["evaluators"][0]["output"] = "replies"
    data["evaluation"]["evaluators"].append(
        {"name": "shape", "kind": "json_schema", "json_schema": {"type": "objekt"}}
    )
    path.write_text(yaml.safe_dump(data))
    result = _eval()
    assert result.exit_code == 1
    assert "evaluation.evaluators[0].output: 'replies' is not an output of the flow" in (
        result.stderr
    )
    assert "evaluation.evaluators[4].json_schema: json_schema is not a valid JSON Schema" in (
        result.stderr
    )
    assert "arm runs" not in result.stdout and "Traceback" not in result.output
