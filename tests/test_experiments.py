"""Experiment definition files: every rejection names the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from abtest.experiments import (
    ExperimentFileError,
    definition_sha,
    load_experiment,
    load_experiments,
)

EXAMPLE = Path(__file__).parents[1] / "experiments" / "pdf_summary.yaml"


def base() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def write(tmp_path: Path, data: Any, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems_of(tmp_path: Path, data: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(path)
    assert info.value.path == str(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_example_loads() -> None:
    experiment = load_experiment(EXAMPLE)
    assert experiment.arm_names == ("control", "v2", "v2-small-chunks")
    assert experiment.control.name == "control"
    assert len(experiment.definition_sha) == 64


def test_definition_sha_is_canonical(tmp_path: Path) -> None:
    data = base()
    reordered = dict(reversed(list(data.items())))
    a = load_experiment(write(tmp_path, data, "a.yaml"))
    b = load_experiment(write(tmp_path, reordered, "b.yaml"))
    assert definition_sha(a) == definition_sha(b)
    data["arms"][1]["config"]["prompt_version"] = "v3"
    c = load_experiment(write(tmp_path, data, "c.yaml"))
    assert definition_sha(c) != definition_sha(a)


def mutate(change) -> dict[str, Any]:
    data = copy.deepcopy(base())
    change(data)
    return data


REJECTIONS = {
    "unknown top-level key": (
        lambda d: d.update(covrage=0.5),
        ["covrage: unknown key (did you mean 'coverage'?)"],
    ),
    "unknown arm key": (
        lambda d: d["arms"][0].update(wieght=0.5),
        ["arms[0].wieght: unknown key (did you mean 'weight'?)"],
    ),
    "unknown metric key": (
        lambda d: d["metrics"][0].update(primery=True),
        ["metrics[0].primery: unknown key (did you mean 'primary'?)"],
    ),
    "duplicate arm names": (
        lambda d: d["arms"][2].update(name="v2"),
        ["arms: duplicate arm names: v2"],
    ),
    "fewer than two arms": (
        lambda d: d.update(arms=[{"name": "only", "weight": 1.0}]),
        ["arms: an experiment needs at least two arms, got 1"],
    ),
    "negative weight": (
        lambda d: d["arms"][1].update(weight=-0.33),
        ["arms[1].weight: weight (-0.33) must be finite and >= 0"],
    ),
    "infinite weight": (
        lambda d: d["arms"][1].update(weight=float("inf")),
        ["arms[1].weight: weight (inf) must be finite and >= 0"],
    ),
    "NaN weight": (
        lambda d: d["arms"][1].update(weight=float("nan")),
        ["arms[1].weight: weight (nan) must be finite and >= 0"],
    ),
    "weights not summing to 1": (
        lambda d: d["arms"][0].update(weight=0.5),
        ["arms: weights must sum to 1 (within 1e-06), got 1.16"],
    ),
    "coverage above 1": (
        lambda d: d.update(coverage=1.5),
        ["coverage: coverage (1.5) must be within [0, 1]"],
    ),
    "coverage below 0": (
        lambda d: d.update(coverage=-0.1),
        ["coverage: coverage (-0.1) must be within [0, 1]"],
    ),
    "namespace outside [0, 1]": (
        lambda d: d.update(namespace=["ns", 0.5, 1.5]),
        ["namespace: namespace range (0.5, 1.5) must lie within [0, 1]"],
    ),
    "namespace start >= end": (
        lambda d: d.update(namespace=["ns", 0.5, 0.5]),
        ["namespace: namespace start (0.5) must be < end (0.5)"],
    ),
    "override naming an unknown arm": (
        lambda d: d["overrides"].update({"qa-carol": "v3"}),
        ["overrides.qa-carol: unknown arm 'v3' (did you mean 'v2'?)"],
    ),
    "winner naming an unknown arm": (
        lambda d: d.update(status="stopped", winner="v9"),
        ["winner: unknown arm 'v9'"],
    ),
    "ratio numerator unknown": (
        lambda d: d["metrics"][-1].update(numerator="thumbsup"),
        [
            "metrics[4].numerator: 'thumbsup' is neither a declared metric nor an automatic "
            "run metric (did you mean 'thumbs_up'?)"
        ],
    ),
    "ratio denominator unknown": (
        lambda d: d["metrics"][-1].update(denominator="requests"),
        ["metrics[4].denominator: 'requests' is neither a declared metric"],
    ),
    "bad id": (
        lambda d: d.update(id="Has Spaces"),
        ["id: String should match pattern"],
    ),
    "bad status": (
        lambda d: d.update(status="paused"),
        ["status: Input should be 'draft', 'running' or 'stopped'"],
    ),
    "unknown covariate metric": (
        lambda d: d["metrics"][2].update(covariate="cost"),
        [
            "metrics[2].covariate: 'cost' is neither a declared metric nor an automatic run "
            "metric (did you mean 'cost_usd'?)"
        ],
    ),
    "cap percentile above 1": (
        lambda d: d["metrics"][2].update(cap={"percentile": 1.5}),
        ["metrics[2].cap.percentile: Input should be less than or equal to 1 (got 1.5)"],
    ),
    "cap percentile 0": (
        lambda d: d["metrics"][2].update(cap={"percentile": 0}),
        ["metrics[2].cap.percentile: Input should be greater than 0 (got 0)"],
    ),
    "cap on a proportion": (
        lambda d: d["metrics"][0].update(cap={"absolute": 5}),
        ["metrics[0]: cap: only mean metrics are capped, 'thumbs_up' is proportion"],
    ),
    "MDE of 0": (
        lambda d: d["analysis"].update(mde=0),
        ["analysis.mde: Input should be greater than 0 (got 0)"],
    ),
    "negative MDE": (
        lambda d: d["analysis"].update(mde=-0.05),
        ["analysis.mde: Input should be greater than 0 (got -0.05)"],
    ),
    "margin on a non-guardrail": (
        lambda d: d["metrics"][0].update(margin=0.01),
        ["metrics[0]: margin: only a guardrail has a margin; set guardrail: true on 'thumbs_up'"],
    ),
    "unknown engine": (
        lambda d: d["analysis"].update(engine="bayes"),
        ["analysis.engine: Input should be 'frequentist' or 'bayesian'"],
    ),
    "unknown estimand": (
        lambda d: d["metrics"][0].update(estimand="ratio"),
        ["metrics[0].estimand: Input should be 'relative' or 'absolute'"],
    ),
    "unknown condition operator": (
        lambda d: d.update(condition={"tier": {"$inn": ["pro"]}}),
        ["condition.tier.$inn: unknown operator '$inn' (did you mean '$in'?)"],
    ),
    "condition regex that does not compile": (
        lambda d: d.update(condition={"$or": [{"name": {"$regex": "(unclosed"}}]}),
        ["condition.$or[0].name.$regex: does not compile"],
    ),
    "safety alpha above 0.5": (
        lambda d: d.update(safety={"alpha": 0.6}),
        ["safety.alpha: Input should be less than or equal to 0.5 (got 0.6)"],
    ),
    "safety alpha 0": (
        lambda d: d.update(safety={"alpha": 0}),
        ["safety.alpha: Input should be greater than 0 (got 0)"],
    ),
    "negative tolerated harm": (
        lambda d: d["metrics"][1].update(margin=-0.1),
        ["metrics[1].margin: Input should be greater than 0 (got -0.1)"],
    ),
    "safety check interval under a second": (
        lambda d: d.update(safety={"check_every_s": 0.5}),
        ["safety.check_every_s: Input should be greater than or equal to 1 (got 0.5)"],
    ),
    "safety min_units 0": (
        lambda d: d.update(safety={"min_units": 0}),
        ["safety.min_units: Input should be greater than or equal to 1 (got 0)"],
    ),
    "unknown safety guardrail": (
        lambda d: d.update(safety={"guardrails": ["latencyms"]}),
        ["safety.guardrails[0]: 'latencyms' is not a guardrail metric (did you mean "
         "'latency_ms'?)"],
    ),  # fmt: skip
    "safety webhook not http": (
        lambda d: d.update(safety={"webhook": "ftp://hooks.example.com"}),
        ["safety.webhook: webhook ('ftp://hooks.example.com') must be an http:// or https:// URL"],
    ),
    "unknown safety key": (
        lambda d: d.update(safety={"autostop": True}),
        ["safety.autostop: unknown key (did you mean 'auto_stop'?)"],
    ),
    "safety without a guardrail": (
        lambda d: [
            d.update(safety={}),
            [m.update(guardrail=False, margin=None) for m in d["metrics"]],
        ],
        ["safety: no metric has guardrail: true, so there is nothing to watch"],
    ),
}


@pytest.mark.parametrize("case", REJECTIONS)
def test_rejections_name_the_field(tmp_path: Path, case: str) -> None:
    change, expected = REJECTIONS[case]
    message = problems_of(tmp_path, mutate(change))
    for fragment in expected:
        assert fragment in message


def test_automatic_metrics_are_valid_ratio_parts(tmp_path: Path) -> None:
    data = mutate(
        lambda d: d["metrics"].append(
            {"name": "cost_per_token", "kind": "ratio", "numerator": "cost_usd",
             "denominator": "completion_tokens"}
        )
    )
    metrics = {m.name: m for m in load_experiment(write(tmp_path, data)).metrics}
    assert metrics["cost_per_token"].denominator == "completion_tokens"


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    def many(d: dict[str, Any]) -> None:
        d.update(covrage=1, coverage=3, namespace=["ns", 0.9, 0.1])
        d["arms"][0]["wieght"] = 0.1

    message = problems_of(tmp_path, mutate(many))
    assert message.startswith("4 errors in ")
    for fragment in ("covrage:", "coverage:", "namespace:", "arms[0].wieght:"):
        assert fragment in message


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    text = "id: x\nstatus: running\narms:\n  - name: a\n    weight: [0.5\n"
    message = problems_of(tmp_path, text)
    assert "malformed YAML at line" in message
    assert "line 6" in message or "line 5" in message


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert "must hold a mapping of fields" in problems_of(tmp_path, text)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentFileError, match="cannot read the file"):
        load_experiment(tmp_path / "absent.yaml")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, base(), "a.yaml")
    write(tmp_path, base(), "b.yaml")
    with pytest.raises(ExperimentFileError) as info:
        load_experiments(tmp_path)
    message = str(info.value)
    assert "b.yaml" in message
    assert "id: duplicate experiment id 'pdf-summary-prompts'" in message
    assert "a.yaml" in message


def test_load_experiments_gathers_errors_of_all_files(tmp_path: Path) -> None:
    write(tmp_path, mutate(lambda d: d.update(coverage=2)), "a.yaml")
    write(tmp_path, mutate(lambda d: d.update(id="other", seed=None, covrage=1)), "b.yaml")
    with pytest.raises(ExperimentFileError) as info:
        load_experiments(tmp_path)
    message = str(info.value)
    assert "a.yaml: coverage:" in message
    assert "b.yaml: covrage: unknown key" in message


def test_seed_defaults_to_id(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, mutate(lambda d: d.pop("seed"))))
    assert experiment.hash_seed == experiment.id
