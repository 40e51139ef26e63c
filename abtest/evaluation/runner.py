"""`abtest eval`: every arm of an experiment on every dataset row, scored by every evaluator.

The arms run through the same `FlowRegistry` drivers as live traffic, so what is evaluated
offline is exactly what users get online (same prompts, model, config and fingerprint). Work
is split into one task per (row, arm), run by a thread pool of `concurrency` workers (the
flows' LLM calls block; threads keep one code path with the API's runs). Each task takes its
answer and scores from the cache when their keys match (`abtest.evaluation.cache`), so a
repeated run with nothing changed makes no LLM call, and a run after a prompt change re-runs
only the changed arm.

A row whose inputs do not fit the flow is reported with its id and input, and every other
row goes on. The result is one record per (row, arm, evaluator), the per-row file's format
(read back by `analysis.evaluation.load_evaluation`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abtest.evaluation.cache import EvalCache
from abtest.evaluation.checks import evaluator_problems
from abtest.evaluation.dataset import (
    Row,
    dataset_path,
    json_safe,
    load_dataset,
    resolve_inputs,
    row_digest,
)
from abtest.evaluation.judges import Judges
from abtest.evaluation.scorers import EvaluatorError, evaluator_fingerprint, score
from abtest.experiments import Evaluator, Experiment
from abtest.flows import FlowRegistry, FlowResult, InvalidInputs
from abtest.llm import LLMClient
from abtest.prompts import PromptRegistry

__all__ = ["EvalRun", "evaluate_experiment", "run_evaluation"]

#: Run failures that would fail again on the same row: kept, so a re-run does not retry them.
_DETERMINISTIC_FAILURES = frozenset({"bad_input"})


@dataclass
class EvalRun:
    """What one `abtest eval` did: the per-row records and how much work it really ran."""

    records: list[dict[str, Any]] = field(default_factory=list)
    flows_run: int = 0
    answers_cached: int = 0
    scores_computed: int = 0
    scores_cached: int = 0
    llm_calls: int = 0
    #: Time spent waiting for the model (arm runs and judges), summed over threads.
    llm_ms: float = 0.0
    bad_rows: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Answer:
    status: str
    detail: str
    outputs: dict[str, Any] | None
    usage: dict[str, float]


class _Evaluation:
    """One run's shared state: fingerprints computed once, the cache and the counters."""

    def __init__(
        self,
        experiment: Experiment,
        registry: FlowRegistry,
        judges: Judges,
        cache: EvalCache,
        dataset_folder: Path,
    ) -> None:
        self.experiment = experiment
        self.registry = registry
        self.judges = judges
        self.cache = cache
        self.folder = dataset_folder
        self.contract = registry.contract(experiment.id)
        self.bytes_inputs = frozenset(s.name for s in self.contract.inputs if s.type is bytes)
        self.evaluators = experiment.evaluation.evaluators if experiment.evaluation else ()
        self.arm_fingerprints = {
            arm: registry.flow_fingerprint(experiment.id, arm) for arm in experiment.arm_names
        }
        self.evaluator_fingerprints = {
            e.name: judges.fingerprint(e.name)
            if e.kind == "llm_judge"
            else evaluator_fingerprint(e)
            for e in self.evaluators
        }
        self.answers, self.scores = cache.load()
        self.run = EvalRun()
        self.lock = threading.Lock()

    def task(self, row: Row, arm: str) -> list[dict[str, Any]]:
        inputs, answer, answer_field = self._answer(row, arm)
        expected_digest = row_digest({}, row.expected)
        return [
            self._record(
                row,
                arm,
                inputs,
                answer,
                evaluator,
                self._score(row, inputs, answer, evaluator, f"{answer_field}:{expected_digest}"),
            )
            for evaluator in self.evaluators
        ]

    def _answer(self, row: Row, arm: str) -> tuple[dict[str, Any], _Answer, str]:
        try:
            inputs = resolve_inputs(row, self.bytes_inputs, self.folder)
            checked = self.registry.checked_inputs(self.experiment.id, inputs)
        except (ValueError, InvalidInputs) as exc:
            self._bad_row(row, str(exc))
            answer = _Answer("bad_input", _row_message(row, str(exc)), None, _no_usage())
            return dict(row.inputs), answer, ""
        key = f"{row.id}:{row_digest(inputs)}:{self.arm_fingerprints[arm]}"
        cached = self.answers.get(key)
        if cached is not None:
            with self.lock:
                self.run.answers_cached += 1
            return inputs, _Answer(**cached), key
        result = self.registry.run(self.experiment.id, arm, checked)
        answer = _answer_of(result)
        if answer.status == "bad_input":
            self._bad_row(row, result.error or "")
            answer = _Answer("bad_input", _row_message(row, result.error or ""), None, answer.usage)
        with self.lock:
            self.run.flows_run += 1
            self.run.llm_calls += result.llm_calls
            self.run.llm_ms += result.llm_latency_ms
        if result.error is None or result.error_kind in _DETERMINISTIC_FAILURES:
            self.cache.put_answer(key, answer.__dict__)
        return inputs, answer, key

    def _score(
        self,
        row: Row,
        inputs: dict[str, Any],
        answer: _Answer,
        evaluator: Evaluator,
        answer_field: str,
    ) -> dict[str, Any]:
        if answer.outputs is None:
            return {"score": None, "status": answer.status, "detail": answer.detail, **_no_judge()}
        key = f"{answer_field}:{self.evaluator_fingerprints[evaluator.name]}"
        cached = self.scores.get(key)
        if cached is not None:
            with self.lock:
                self.run.scores_cached += 1
            return cached
        scored, keep = self._compute(row, inputs, answer.outputs, evaluator)
        with self.lock:
            self.run.scores_computed += 1
            if evaluator.kind == "llm_judge" and scored["status"] != "judge_error":
                self.run.llm_calls += 1
        if keep:
            self.cache.put_score(key, scored)
        return scored

    def _compute(
        self, row: Row, inputs: dict[str, Any], outputs: dict[str, Any], evaluator: Evaluator
    ) -> tuple[dict[str, Any], bool]:
        """The score record, and whether it may be kept (a judge the model could not reach
        is asked again next time)."""
        output = outputs.get(evaluator.output or self.contract.outputs[0])
        if evaluator.kind == "llm_judge":
            verdict = self.judges.judge(evaluator.name, output, inputs, row.expected, row.id)
            with self.lock:
                self.run.llm_ms += verdict.llm_latency_ms
            status = "evaluator_error" if verdict.status == "judge_error" else verdict.status
            record = {
                "score": verdict.score,
                "status": status,
                "detail": verdict.detail,
                "judge_prompt_tokens": verdict.prompt_tokens,
                "judge_completion_tokens": verdict.completion_tokens,
                "judge_cost_usd": verdict.cost_usd,
            }
            return record, verdict.status != "judge_error"
        try:
            value = score(evaluator, output, expected=row.expected, inputs=inputs, row_id=row.id)
        except EvaluatorError as exc:
            return {
                "score": None,
                "status": "evaluator_error",
                "detail": str(exc),
                **_no_judge(),
            }, True
        return {"score": value, "status": "ok", "detail": "", **_no_judge()}, True

    def _record(
        self,
        row: Row,
        arm: str,
        inputs: dict[str, Any],
        answer: _Answer,
        evaluator: Evaluator,
        scored: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment.id,
            "row_id": row.id,
            "arm": arm,
            "arm_fingerprint": self.arm_fingerprints[arm],
            "evaluator": evaluator.name,
            "evaluator_kind": evaluator.kind,
            "evaluator_fingerprint": self.evaluator_fingerprints[evaluator.name],
            "score": scored["score"],
            "status": scored["status"],
            "detail": scored["detail"],
            "inputs": json_safe(inputs),
            "expected": row.expected,
            "outputs": answer.outputs,
            **answer.usage,
            "judge_prompt_tokens": scored.get("judge_prompt_tokens", 0),
            "judge_completion_tokens": scored.get("judge_completion_tokens", 0),
            "judge_cost_usd": scored.get("judge_cost_usd", 0.0),
            "scale": list(evaluator.scale) if evaluator.scale else None,
        }

    def _bad_row(self, row: Row, message: str) -> None:
        with self.lock:
            line = _row_message(row, message)
            if line not in self.run.bad_rows:
                self.run.bad_rows.append(line)


def _row_message(row: Row, message: str) -> str:
    prefix = f"row '{row.id}'"
    return message if message.startswith(prefix) else f"{prefix} (line {row.line}): {message}"


def _answer_of(result: FlowResult) -> _Answer:
    usage = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cost_usd": result.cost_usd,
        "latency_ms": result.latency_ms,
    }
    if result.error is None:
        return _Answer("ok", "", dict(result.outputs), usage)
    status = "bad_input" if result.error_kind == "bad_input" else "run_error"
    return _Answer(status, result.error, None, usage)


def _no_usage() -> dict[str, float]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "latency_ms": 0.0}


def _no_judge() -> dict[str, float]:
    return {"judge_prompt_tokens": 0, "judge_completion_tokens": 0, "judge_cost_usd": 0.0}


def run_evaluation(
    experiment: Experiment,
    registry: FlowRegistry,
    judges: Judges,
    rows: Sequence[Row],
    *,
    cache: EvalCache,
    dataset_folder: Path,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
) -> EvalRun:
    """Run every arm on every row and score the answers (see the module docstring). The
    records come back in (row, arm, evaluator) order, whatever order the tasks finished in."""
    started = time.perf_counter()
    state = _Evaluation(experiment, registry, judges, cache, dataset_folder)
    tasks = [(row, arm) for row in rows for arm in experiment.arm_names]

    def one(task: tuple[Row, str]) -> list[dict[str, Any]]:
        records = state.task(*task)
        if progress is not None:
            progress(1)
        return records

    pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="abtest-eval")
    try:
        for records in pool.map(one, tasks):
            state.run.records.extend(records)
    finally:
        # on Ctrl-C: the tasks running finish (and keep their results), the rest are dropped
        pool.shutdown(wait=True, cancel_futures=True)
    state.run.seconds = time.perf_counter() - started
    return state.run


def evaluate_experiment(
    experiment: Experiment,
    experiments_dir: Path,
    store_client: Any,
    *,
    llm_client: LLMClient | None = None,
    prompt_registry: PromptRegistry | None = None,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[Path, int], None] | None = None,
) -> EvalRun:
    """`abtest eval` of one experiment: load its dataset (`DatasetError`), build its arms'
    drivers and its judges (`FlowConfigError`), check its evaluators (ValueError naming
    each problem), run (`on_start(dataset, tasks)` first)."""
    if experiment.evaluation is None or experiment.evaluation.dataset is None:
        raise ValueError(f"experiment '{experiment.id}' has no evaluation.dataset to evaluate on")
    path = dataset_path(experiment.evaluation, experiments_dir)
    rows = load_dataset(path)
    registry = FlowRegistry.from_experiments(
        [experiment], llm_client=llm_client, prompt_registry=prompt_registry
    )
    problems = evaluator_problems(experiment, registry.contract(experiment.id))
    if problems:
        raise ValueError(
            f"experiment '{experiment.id}': the evaluators cannot be used:\n  "
            + "\n  ".join(problems)
        )
    judges = Judges(
        experiment,
        llm_client=llm_client,
        prompt_registry=prompt_registry,
        flow_contract=registry.contract(experiment.id),
    )
    if on_start is not None:
        on_start(path, len(rows) * len(experiment.arms))
    return run_evaluation(
        experiment,
        registry,
        judges,
        rows,
        cache=EvalCache(store_client, experiment.id),
        dataset_folder=path.parent,
        concurrency=concurrency,
        progress=progress,
    )
