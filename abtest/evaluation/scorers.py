"""Deterministic evaluators, the judges' score parser and every evaluator's fingerprint.

A score is a number per answer, so that every evaluator feeds the same paired statistics:
the checks (`exact`, `contains`, `regex`, `is_json`, `json_schema`, `length`) give 1.0 or 0.0,
a `python` callable gives what it returns, a judge gives its score on the declared scale. An
evaluator that cannot score an answer raises `EvaluatorError` naming why: the run records it
as an evaluator error for that row, never as a zero.

Fingerprints key the offline cache (DESIGN.md, Evaluation): a changed evaluator must be
re-scored, an unchanged one never. A check's fingerprint covers its definition; a `python`
evaluator's also covers the callable's source; a judge's covers the judge flow's fingerprint
(its prompts and config, the model and scale included).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jsonschema

from abtest.experiments import Evaluator

__all__ = [
    "EvaluatorError",
    "answer_text",
    "evaluator_fingerprint",
    "load_callable",
    "parse_score",
    "score",
]

_SCORE_LINE = re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*")


class EvaluatorError(ValueError):
    """An evaluator could not score an answer (missing expected value, bad callable result)."""


def answer_text(value: Any) -> str:
    """The text an evaluator reads from a flow output: strings as they are, anything else as
    canonical JSON (so `exact` on a dict output compares its JSON form)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def target_of(evaluator: Evaluator, expected: Mapping[str, Any] | None, row_id: str) -> Any:
    """What the evaluator compares with: its literal `value`, else the row's
    `expected[evaluator.expected]` (EvaluatorError naming the row and key when missing)."""
    if evaluator.value is not None:
        return evaluator.value
    if evaluator.expected is None:
        return expected
    if not isinstance(expected, Mapping) or evaluator.expected not in expected:
        raise EvaluatorError(f"row '{row_id}' has no expected.{evaluator.expected}")
    return expected[evaluator.expected]


def score(
    evaluator: Evaluator,
    output: Any,
    *,
    expected: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    row_id: str = "",
) -> float:
    """The deterministic evaluator's score of one answer (`output` is the flow output it
    names). Judges are scored by `abtest.evaluation.judges`, not here."""
    kind = evaluator.kind
    if kind == "llm_judge":
        raise ValueError("llm_judge evaluators are scored by abtest.evaluation.judges")
    if kind == "python":
        return _call(evaluator, output, target_of(evaluator, expected, row_id), inputs or {})
    text = answer_text(output)
    if kind in ("exact", "contains"):
        target = answer_text(target_of(evaluator, expected, row_id))
        if not evaluator.case_sensitive:
            text, target = text.casefold(), target.casefold()
        hit = text.strip() == target.strip() if kind == "exact" else target.strip() in text
        return float(hit)
    if kind == "regex":
        flags = 0 if evaluator.case_sensitive else re.IGNORECASE
        return float(re.search(evaluator.pattern or "", text, flags) is not None)
    if kind == "is_json":
        return float(_parsed_json(output) is not _INVALID)
    if kind == "json_schema":
        document = _parsed_json(output)
        if document is _INVALID:
            return 0.0
        try:
            return float(_validator(_canonical(evaluator.json_schema)).is_valid(document))
        except Exception as exc:  # e.g. a $ref that cannot be resolved: that row's error
            raise EvaluatorError(f"json_schema cannot be applied: {exc}") from None
    if kind == "length":
        size = len(text.split()) if evaluator.unit == "words" else len(text)
        low = evaluator.min if evaluator.min is not None else 0
        high = evaluator.max if evaluator.max is not None else math.inf
        return float(low <= size <= high)
    raise ValueError(f"unknown evaluator kind {kind!r}")


_INVALID = object()


def _parsed_json(output: Any) -> Any:
    """A JSON document: an output that already is one (dict, list, number), else the output
    text parsed (a Markdown code fence around it is tolerated, as models often add one)."""
    if not isinstance(output, str):
        return output
    text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", output)
    try:
        return json.loads(text)
    except ValueError:
        return _INVALID


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_problem(evaluator: Evaluator) -> str | None:
    """Why a `json_schema` evaluator's schema is not a valid JSON Schema (None when it is)."""
    if evaluator.json_schema is None:
        return None
    schema = evaluator.json_schema
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"json_schema is not a valid JSON Schema: {exc.message}"
    return None


def load_callable(path: str) -> Callable[..., Any]:
    """The function at "package.module:function"; ImportError naming what is missing."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"callable '{path}': cannot import module '{module_name}': {exc}"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ImportError(
            f"callable '{path}': module '{module_name}' has no function '{attribute}'"
        )
    return function


def _call(evaluator: Evaluator, output: Any, target: Any, inputs: Mapping[str, Any]) -> float:
    function = load_callable(evaluator.callable or "")
    try:
        value = function(output, target, dict(inputs))
    except Exception as exc:  # the user's code: any failure is that row's evaluator error
        raise EvaluatorError(f"{evaluator.callable} raised {type(exc).__name__}: {exc}") from None
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise EvaluatorError(
            f"{evaluator.callable} must return a finite number or a bool, got {value!r:.60}"
        )
    return float(value)


def parse_score(text: str, scale: tuple[float, float]) -> float | None:
    """The score a judge answered: the last `Score: N` in its text (any case, `=` too), else
    the whole text being a number; None (a parse failure) for anything else or a number
    outside `scale`. Never a default: an unparseable answer is counted, not scored zero."""
    matches = _SCORE_LINE.findall(text)
    if matches:
        raw = matches[-1]
    else:
        bare = _BARE_NUMBER.fullmatch(text)
        if bare is None:
            return None
        raw = bare.group(1)
    value = float(raw)
    low, high = scale
    return value if low <= value <= high else None


def evaluator_fingerprint(evaluator: Evaluator, judge_fingerprint: str | None = None) -> str:
    """sha256 of what decides the evaluator's scores (see the module docstring)."""
    parts: dict[str, Any] = {"definition": evaluator.model_dump(mode="json")}
    if evaluator.kind == "python" and evaluator.callable:
        parts["source"] = _source_of(evaluator.callable)
    if judge_fingerprint is not None:
        parts["judge"] = judge_fingerprint
    return hashlib.sha256(_canonical(parts).encode("utf-8")).hexdigest()


def _source_of(path: str) -> str:
    try:
        return inspect.getsource(load_callable(path))
    except (OSError, TypeError):
        return path
