"""What `abtest validate` checks of an `evaluation:` section beyond its schema.

The schema (abtest.experiments) knows the keys; only code that can import and build things
knows that a callable exists, a JSON Schema is one, the dataset parses, an evaluator's
`output` is an output of the flow and a judge flow builds with inputs the platform can give
it. Every problem is a sentence naming the field, like the schema's.
"""

from __future__ import annotations

from pathlib import Path

from abtest.evaluation.dataset import DatasetError, dataset_path, load_dataset
from abtest.evaluation.judges import Judges
from abtest.evaluation.scorers import load_callable, schema_problem
from abtest.experiments import Experiment
from abtest.flows import FlowConfigError
from abtest.flows.contract import FlowContract
from abtest.prompts import PromptRegistry

__all__ = ["evaluation_problems", "evaluator_problems"]


def evaluation_problems(
    experiment: Experiment,
    experiments_dir: Path,
    contract: FlowContract,
    prompt_registry: PromptRegistry | None = None,
) -> list[str]:
    """Every problem of the experiment's `evaluation:` section (none without one)."""
    evaluation = experiment.evaluation
    if evaluation is None:
        return []
    problems = evaluator_problems(experiment, contract)
    if evaluation.dataset is not None:
        try:
            load_dataset(dataset_path(evaluation, experiments_dir))
        except DatasetError as exc:
            problems.append(f"evaluation.dataset: {exc}")
    if evaluation.judges:
        try:
            Judges(experiment, prompt_registry=prompt_registry, flow_contract=contract)
        except FlowConfigError as exc:
            problems.extend(f"evaluation: {problem}" for problem in exc.problems)
    return problems


def evaluator_problems(experiment: Experiment, contract: FlowContract) -> list[str]:
    """The evaluators' problems that need no build: outputs the flow does not have, callables
    that do not import, JSON Schemas that are not valid (what `abtest eval` checks before it
    runs anything, as a bad evaluator would otherwise fail on every row)."""
    evaluation = experiment.evaluation
    problems: list[str] = []
    for index, evaluator in enumerate(evaluation.evaluators if evaluation else ()):
        where = f"evaluation.evaluators[{index}]"
        if evaluator.output is not None and evaluator.output not in contract.outputs:
            problems.append(
                f"{where}.output: '{evaluator.output}' is not an output of the flow "
                f"(outputs: {', '.join(contract.outputs)})"
            )
        if evaluator.callable is not None:
            try:
                load_callable(evaluator.callable)
            except ImportError as exc:
                problems.append(f"{where}.callable: {exc}")
        schema = schema_problem(evaluator)
        if schema is not None:
            problems.append(f"{where}.json_schema: {schema}")
    return problems
