"""The `evaluation:` section, the deterministic evaluators, the score parser and datasets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from abtest.evaluation.dataset import (
    DatasetError,
    dataset_path,
    load_dataset,
    resolve_inputs,
    row_digest,
)
from abtest.evaluation.scorers import (
    EvaluatorError,
    evaluator_fingerprint,
    parse_score,
    score,
)
from abtest.experiments import Evaluator, ExperimentFileError, parse_experiment

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "support_reply.yaml"


def _experiment(evaluation: dict, **extra):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.pop("evaluation", None)
    return parse_experiment({**data, **extra, "evaluation": evaluation}, "exp.yaml")


def _problems(evaluation: dict) -> str:
    with pytest.raises(ExperimentFileError) as caught:
        _experiment(evaluation)
    return str(caught.value)


JUDGE = {
    "name": "helpfulness",
    "kind": "llm_judge",
    "flow": "variants.judges.helpfulness",
    "model": "gpt-4o-mini",
    "scale": [1, 5],
    "output": "reply",
}


def test_online_judges_are_declared_as_absolute_mean_metrics() -> None:
    experiment = _experiment({"evaluators": [JUDGE], "judge_sample_rate": 0.25})
    metric = {m.name: m for m in experiment.metrics}["judge:helpfulness"]
    assert (metric.kind, metric.aggregate, metric.estimand) == ("mean", "mean", "absolute")
    assert experiment.evaluation.online_judges[0].metric == "judge:helpfulness"


def test_a_declared_judge_metric_is_kept_as_written() -> None:
    declared = {"name": "judge:helpfulness", "kind": "mean", "guardrail": True, "margin": 0.1}
    data = yaml.safe_load(EXAMPLE.read_text())
    data.pop("evaluation", None)
    data["metrics"] = [*data["metrics"], declared]
    experiment = parse_experiment(
        {**data, "evaluation": {"evaluators": [JUDGE], "judge_sample_rate": 0.5}}, "x"
    )
    judged = [m for m in experiment.metrics if m.name == "judge:helpfulness"]
    assert len(judged) == 1 and judged[0].guardrail and judged[0].estimand == "relative"


def test_offline_only_judges_add_no_metric() -> None:
    experiment = _experiment({"dataset": "d.jsonl", "evaluators": [JUDGE]})
    assert not any(m.name.startswith("judge:") for m in experiment.metrics)
    assert experiment.evaluation.online_judges == ()


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        (
            {"dataset": "d.jsonl", "evaluators": [{"name": "a", "kind": "contains"}]},
            "evaluation.evaluators[0]: evaluator 'a': a contains evaluator needs expected or value",
        ),
        (
            {"dataset": "d", "evaluators": [{"name": "a", "kind": "regex", "pattern": "x["}]},
            "pattern ('x[') does not compile",
        ),
        (
            {"dataset": "d", "evaluators": [{"name": "a", "kind": "is_json", "unti": 1}]},
            "evaluation.evaluators[0].unti: unknown key",
        ),
        (
            {"dataset": "d", "evaluators": [{"name": "a", "kind": "length", "min": 5, "max": 2}]},
            "min (5) must be <= max (2)",
        ),
        (
            {"dataset": "d", "evaluators": [{"name": "a", "kind": "python", "callable": "nope"}]},
            "evaluators[0].callable: callable ('nope') must be 'package.module:function'",
        ),
        (
            {"dataset": "d", "evaluators": [{**JUDGE, "scale": [5, 1]}]},
            "scale (5.0, 1.0) must be finite with low < high",
        ),
        (
            {"dataset": "d", "evaluators": [{**JUDGE, "flow": None}]},
            "a llm_judge evaluator needs flow",
        ),
        (
            {"dataset": "d", "evaluators": [{"name": "a", "kind": "is_json", "model": "x"}]},
            "model: a is_json evaluator takes no model",
        ),
        (
            {
                "dataset": "d",
                "evaluators": [
                    {"name": "a", "kind": "is_json"},
                    {"name": "a", "kind": "is_json"},
                ],
            },
            "evaluators: duplicate names: a",
        ),
        (
            {
                "dataset": "d",
                "evaluators": [{"name": "a", "kind": "is_json"}],
                "judge_sample_rate": 0.1,
            },
            "judge_sample_rate (0.1) needs an llm_judge evaluator",
        ),
        ({"dataset": "d"}, "evaluators: a dataset needs at least one evaluator"),
        ({"evaluators": [JUDGE], "judge_sample_rate": 1.5}, "judge_sample_rate"),
        (
            {"evaluators": [{"name": "a", "kind": "is_json"}]},
            "dataset: needed to evaluate offline",
        ),
    ],
)
def test_bad_evaluation_sections_name_the_field(evaluation: dict, expected: str) -> None:
    assert expected in _problems(evaluation)


def _evaluator(**fields) -> Evaluator:
    return Evaluator.model_validate({"name": "e", **fields})


@pytest.mark.parametrize(
    ("fields", "output", "expected", "want"),
    [
        ({"kind": "exact", "expected": "intent"}, " Billing ", {"intent": "billing"}, 1.0),
        (
            {"kind": "exact", "expected": "intent", "case_sensitive": True},
            "Billing",
            {"intent": "billing"},
            0.0,
        ),
        ({"kind": "exact", "value": "refund"}, "billing", None, 0.0),
        (
            {"kind": "contains", "expected": "keyword"},
            "See your INVOICE page",
            {"keyword": "invoice"},
            1.0,
        ),
        (
            {"kind": "contains", "expected": "keyword"},
            "See your account",
            {"keyword": "invoice"},
            0.0,
        ),
        ({"kind": "regex", "pattern": r"\b\d{3}-\d{4}\b"}, "call 555-1234", None, 1.0),
        ({"kind": "regex", "pattern": r"^yes$"}, "YES", None, 1.0),
        ({"kind": "is_json"}, '```json\n{"a": 1}\n```', None, 1.0),
        ({"kind": "is_json"}, "{a: 1}", None, 0.0),
        ({"kind": "is_json"}, {"already": "parsed"}, None, 1.0),
        (
            {"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}},
            '{"a": 2}',
            None,
            1.0,
        ),
        (
            {"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}},
            '{"b": 2}',
            None,
            0.0,
        ),
        ({"kind": "json_schema", "json_schema": {"type": "object"}}, "not json", None, 0.0),
        ({"kind": "length", "min": 2, "max": 4}, "one two three", None, 1.0),
        ({"kind": "length", "max": 2}, "one two three", None, 0.0),
        ({"kind": "length", "max": 5, "unit": "chars"}, "abcdef", None, 0.0),
        (
            {"kind": "python", "callable": "tests.test_evaluation:word_share"},
            "a b",
            {"k": "b c"},
            0.5,
        ),
    ],
)
def test_deterministic_evaluators_score_answers(fields, output, expected, want) -> None:
    if fields["kind"] == "python":
        fields = {**fields, "expected": "k"}
    assert score(_evaluator(**fields), output, expected=expected, row_id="r1") == want


def word_share(output: str, expected: str, inputs: dict) -> float:
    """A `python` evaluator for the tests: the share of the expected words in the answer."""
    wanted = expected.split()
    return sum(word in output.split() for word in wanted) / len(wanted)


def returns_text(output, expected, inputs):
    return "high"


def test_missing_expected_key_and_bad_callable_results_are_evaluator_errors() -> None:
    with pytest.raises(EvaluatorError, match=r"row 'r7' has no expected.keyword"):
        score(_evaluator(kind="contains", expected="keyword"), "x", expected={}, row_id="r7")
    unresolvable = _evaluator(kind="json_schema", json_schema={"$ref": "urn:not-here"})
    with pytest.raises(EvaluatorError, match="json_schema cannot be applied: Unresolvable"):
        score(unresolvable, "{}")
    bad = _evaluator(kind="python", callable="tests.test_evaluation:returns_text")
    with pytest.raises(EvaluatorError, match="must return a finite number or a bool"):
        score(bad, "x", expected=None)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The reply answers the question.\nScore: 4", 4.0),
        ("score=2.5", 2.5),
        ("**Score:** 5", 5.0),
        ("Score: 2\nOn reflection, Score: 3", 3.0),
        ("  3 ", 3.0),
        ("Score: 9", None),
        ("I would rate this highly.", None),
        ("", None),
        ("Score: -1", None),
    ],
)
def test_judge_scores_parse_or_fail_never_default(text: str, value: float | None) -> None:
    assert parse_score(text, (1.0, 5.0)) == value


def test_fingerprints_follow_what_decides_the_scores() -> None:
    base = _evaluator(kind="contains", expected="keyword")
    assert evaluator_fingerprint(base) == evaluator_fingerprint(
        _evaluator(kind="contains", expected="keyword")
    )
    assert evaluator_fingerprint(base) != evaluator_fingerprint(
        _evaluator(kind="contains", expected="keyword", case_sensitive=True)
    )
    judge = Evaluator.model_validate(JUDGE)
    assert evaluator_fingerprint(judge, "a" * 64) != evaluator_fingerprint(judge, "b" * 64)
    one = _evaluator(kind="python", callable="tests.test_evaluation:word_share")
    other = _evaluator(kind="python", callable="tests.test_evaluation:returns_text")
    assert evaluator_fingerprint(one) != evaluator_fingerprint(other)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_dataset_rows_load_and_bad_lines_are_named_by_number(tmp_path: Path) -> None:
    good = _write(
        tmp_path / "d.jsonl",
        [
            json.dumps({"id": "a", "inputs": {"message": "hi"}, "expected": {"intent": "other"}}),
            "",
            json.dumps({"id": 2, "inputs": {"message": "yo"}}),
        ],
    )
    rows = load_dataset(good)
    assert [(r.id, r.line, r.expected) for r in rows] == [
        ("a", 1, {"intent": "other"}),
        ("2", 3, None),
    ]
    bad = _write(
        tmp_path / "bad.jsonl",
        [
            json.dumps({"id": "a", "inputs": {}}),
            '{"id": "b", "inputs": {',
            json.dumps({"id": "a", "inputs": {}}),
            json.dumps(["not", "a", "row"]),
            json.dumps({"id": "c", "inputs": "text"}),
            json.dumps({"id": "d", "inputs": {}, "extra": 1}),
        ],
    )
    with pytest.raises(DatasetError) as caught:
        load_dataset(bad)
    message = str(caught.value)
    assert f"5 problems in {bad}" in message
    for expected in (
        "line 2: malformed JSON",
        "line 3: duplicate id 'a' (also line 1)",
        "line 4: a row must be a JSON object, got list",
        "line 5: row 'c': inputs must be an object",
        "line 6: unknown key(s) extra",
    ):
        assert expected in message
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "missing.jsonl")


def test_bytes_inputs_come_from_files_or_base64(tmp_path: Path) -> None:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4 test")
    rows = load_dataset(
        _write(
            tmp_path / "d.jsonl",
            [
                json.dumps({"id": "f", "inputs": {"pdf": {"path": "doc.pdf"}, "q": "x"}}),
                json.dumps({"id": "b", "inputs": {"pdf": base64.b64encode(b"raw").decode()}}),
                json.dumps({"id": "m", "inputs": {"pdf": {"path": "missing.pdf"}}}),
                json.dumps({"id": "n", "inputs": {"pdf": "not base64!"}}),
            ],
        )
    )
    wanted = frozenset({"pdf"})
    assert resolve_inputs(rows[0], wanted, tmp_path) == {"pdf": b"%PDF-1.4 test", "q": "x"}
    assert resolve_inputs(rows[1], wanted, tmp_path) == {"pdf": b"raw"}
    with pytest.raises(ValueError, match="row 'm': input 'pdf': cannot read"):
        resolve_inputs(rows[2], wanted, tmp_path)
    with pytest.raises(ValueError, match="row 'n': input 'pdf' must be base64 text"):
        resolve_inputs(rows[3], wanted, tmp_path)
    assert row_digest({"pdf": b"a"}) != row_digest({"pdf": b"b"})
    assert row_digest({"q": "x"}, {"k": 1}) != row_digest({"q": "x"}, {"k": 2})


def test_dataset_paths_are_relative_to_the_project_root(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    evaluation = _experiment({"dataset": "datasets/d.jsonl", "evaluators": [JUDGE]}).evaluation
    expected = tmp_path.resolve() / "datasets" / "d.jsonl"
    assert dataset_path(evaluation, experiments) == expected
    assert dataset_path(evaluation, experiments / "x.yaml") == expected


def test_a_judge_reading_expected_scores_rows_and_live_runs(llm_client) -> None:
    """Offline, the row's expected value reaches the judge; online there is none, and the
    judge's default applies instead of an error; a row without the key is an error."""
    from abtest.evaluation.judges import Judges

    judge = {
        "name": "reference",
        "kind": "llm_judge",
        "flow": "tests.flows.reference_judge",
        "model": "gpt-4o-mini",
        "scale": [1, 5],
        "output": "reply",
        "expected": "keyword",
    }
    experiment = _experiment({"evaluators": [judge], "judge_sample_rate": 1.0})
    judges = Judges(experiment, llm_client=llm_client)
    reply = "Your invoice is on the Billing page; the double charge is a hold."
    offline = judges.judge("reference", reply, {}, {"keyword": "invoice billing"}, "r1")
    online = judges.judge("reference", reply, {}, None)
    missing = judges.judge("reference", reply, {}, {"intent": "billing"}, "r2")
    assert offline.status == "ok" and online.status == "ok"
    assert offline.score != online.score  # the reference was read offline
    assert missing.status == "judge_error" and "row 'r2' has no expected.keyword" in missing.detail
