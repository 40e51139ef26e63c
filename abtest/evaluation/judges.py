"""LLM judges: an `llm_judge` evaluator is a flow like any arm, run to score an answer.

A judge is a Hamilton module under `variants/` (contract in `variants/judges/__init__.py`):
its `INPUTS` may name `answer` (the judged output, as text), `expected` (the row's expected
value for this evaluator, as text) and any input of the evaluated flow; its config is the
evaluator's `model`, `temperature` 0 and the scale as `scale_min`/`scale_max`; its one
output is the judge model's text, from which `parse_score` reads the score.

Judges are built by the same `FlowRegistry` as the arms, one driver per judge, built once:
so a judge is validated (dry run on its `SAMPLE_INPUTS`), its LLM calls go through the
openai SDK with the platform's retries and pricing, and its fingerprint covers its prompts
and config exactly as an arm's does. Each judge is registered as a one-arm experiment of its
own, `<experiment>/judges/<evaluator>`, which is how its problems are named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from abtest.evaluation.scorers import (
    EvaluatorError,
    answer_text,
    evaluator_fingerprint,
    parse_score,
    target_of,
)
from abtest.experiments import Arm, Evaluator, Experiment
from abtest.flows import FlowConfigError, FlowProblem, FlowRegistry, InvalidInputs
from abtest.flows.contract import FlowContract
from abtest.llm import LLMClient
from abtest.prompts import PromptRegistry

__all__ = ["JUDGE_INPUTS", "Judges", "Verdict"]

JUDGE_INPUTS = frozenset({"answer", "expected"})
"""Judge inputs the platform fills itself; every other one comes from the run's inputs."""

VerdictStatus = Literal["ok", "parse_failure", "judge_error"]


@dataclass(frozen=True)
class Verdict:
    """One judge's score of one answer, or why there is none.

    `parse_failure`: the judge answered text without a score on the scale (`detail` keeps the
    text); `judge_error`: the judge flow failed (model unreachable, bad input). `retry`: the
    failure was the model's (unreachable, rate-limited after the client's retries), so asking
    again later may succeed.
    """

    score: float | None
    status: VerdictStatus
    detail: str
    fingerprint: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    llm_latency_ms: float = 0.0
    retry: bool = False


def judge_experiment_id(experiment_id: str, name: str) -> str:
    return f"{experiment_id}/judges/{name}"


def judge_config(evaluator: Evaluator) -> dict[str, Any]:
    """The judge driver's config: model, temperature 0 and the scale's ends (whole numbers
    as ints, so a prompt renders "1 to 5", not "1.0 to 5.0")."""
    low, high = evaluator.scale or (0.0, 1.0)
    return {
        "model": evaluator.model,
        "temperature": 0.0,
        "scale_min": int(low) if float(low).is_integer() else low,
        "scale_max": int(high) if float(high).is_integer() else high,
    }


def _judge_definition(experiment: Experiment, evaluator: Evaluator) -> Experiment:
    """A one-arm experiment for the judge's driver. `model_construct` skips the two-arm rule
    that a real experiment must follow; the registry only reads the arm and its modules."""
    arm = Arm(name=evaluator.name, weight=1.0, config=judge_config(evaluator))
    return Experiment.model_construct(
        id=judge_experiment_id(experiment.id, evaluator.name),
        flow=evaluator.flow,
        arms=(arm,),
    )


class Judges:
    """The `llm_judge` evaluators of one experiment, each with its driver, built once.

    Raises `FlowConfigError` when a judge flow does not build, or asks for an input that the
    evaluated flow (`flow_contract`, when given) does not have.
    """

    def __init__(
        self,
        experiment: Experiment,
        *,
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
        flow_contract: FlowContract | None = None,
    ) -> None:
        self.experiment = experiment
        evaluators = experiment.evaluation.judges if experiment.evaluation else ()
        self._evaluators = {e.name: e for e in evaluators}
        self._fingerprints: dict[tuple[str, str], str] = {}
        definitions = [_judge_definition(experiment, e) for e in evaluators]
        self._registry = FlowRegistry.from_experiments(
            definitions, llm_client=llm_client, prompt_registry=prompt_registry
        )
        if flow_contract is not None:
            problems = self._input_problems(flow_contract)
            if problems:
                raise FlowConfigError(problems)

    def __contains__(self, name: object) -> bool:
        return name in self._evaluators

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._evaluators)

    def flow_fingerprint(self, name: str) -> str:
        """The judge flow's fingerprint (prompts and config, model and scale included)."""
        return self._registry.flow_fingerprint(self._id(name), name)

    def fingerprint(self, name: str) -> str:
        """The evaluator's fingerprint: its definition and its judge flow's fingerprint
        (hashed once per judge flow fingerprint: it is asked for at every verdict)."""
        key = (name, self.flow_fingerprint(name))
        found = self._fingerprints.get(key)
        if found is None:
            found = evaluator_fingerprint(self._evaluators[name], key[1])
            self._fingerprints[key] = found
        return found

    def input_names(self, name: str) -> tuple[str, ...]:
        return tuple(spec.name for spec in self._registry.contract(self._id(name)).inputs)

    def judge(
        self,
        name: str,
        output: Any,
        inputs: Mapping[str, Any],
        expected: Mapping[str, Any] | None = None,
        row_id: str = "",
    ) -> Verdict:
        """Score one answer (`output`, the judged flow output) with judge `name`.

        `expected` is the dataset row's expected object; a live run has none (None), and then
        a judge that reads `expected` gets its default (a judge whose `expected` is required
        records a judge error naming it). A row without the evaluator's key is an error."""
        evaluator = self._evaluators[name]
        fingerprint = self.fingerprint(name)
        try:
            values = self._judge_inputs(name, output, inputs, expected, row_id)
            self._registry.checked_inputs(self._id(name), values)
        except (EvaluatorError, InvalidInputs) as exc:
            return Verdict(None, "judge_error", str(exc), fingerprint)
        result = self._registry.run(self._id(name), name, values)
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": result.cost_usd,
            "llm_latency_ms": result.llm_latency_ms,
        }
        if result.error is not None:
            retry = result.error_kind == "llm"
            return Verdict(None, "judge_error", result.error, fingerprint, **usage, retry=retry)
        text = answer_text(next(iter(result.outputs.values()), ""))
        value = parse_score(text, evaluator.scale or (0.0, 1.0))
        if value is None:
            return Verdict(None, "parse_failure", text[:500], fingerprint, **usage)
        return Verdict(value, "ok", "", fingerprint, **usage)

    def _judge_inputs(
        self,
        name: str,
        output: Any,
        inputs: Mapping[str, Any],
        expected: Mapping[str, Any] | None,
        row_id: str,
    ) -> dict[str, Any]:
        evaluator = self._evaluators[name]
        values: dict[str, Any] = {}
        for input_name in self.input_names(name):
            if input_name == "answer":
                values["answer"] = answer_text(output)
            elif input_name == "expected":
                if evaluator.value is not None or (
                    evaluator.expected is not None and expected is not None
                ):
                    values["expected"] = answer_text(target_of(evaluator, expected, row_id))
            elif input_name in inputs:
                values[input_name] = inputs[input_name]
        return values

    def _input_problems(self, contract: FlowContract) -> list[FlowProblem]:
        available = {spec.name for spec in contract.inputs} | JUDGE_INPUTS
        problems = []
        for name, evaluator in self._evaluators.items():
            for input_name in self.input_names(name):
                if input_name not in available:
                    problems.append(
                        FlowProblem(
                            self._id(name),
                            name,
                            f"judge input '{input_name}' is neither answer, expected nor an "
                            f"input of the evaluated flow ({', '.join(sorted(available))})",
                        )
                    )
            if evaluator.output is not None and evaluator.output not in contract.outputs:
                problems.append(
                    FlowProblem(
                        self._id(name),
                        name,
                        f"output '{evaluator.output}' is not an output of the evaluated flow "
                        f"({', '.join(contract.outputs)})",
                    )
                )
        return problems

    def _id(self, name: str) -> str:
        return judge_experiment_id(self.experiment.id, name)
