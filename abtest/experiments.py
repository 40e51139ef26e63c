"""Experiment definition files: parse, validate and fingerprint `experiments/*.yaml`.

A definition decides which users see which prompts, so a wrong one must never reach the router.
Loading gathers every problem in a file (unknown keys with a "did you mean", weights, coverage,
namespace, overrides, metrics, the targeting condition) and raises one `ExperimentFileError`
that names the file, the field and the bad value. The models are frozen pydantic models: the
router and the API share them without copying.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from abtest.targeting import condition_problems

AUTOMATIC_METRICS: tuple[str, ...] = (
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "error",
    "responses",
)
"""Outcomes every flow run records by itself (DESIGN.md, Events)."""

WEIGHT_TOLERANCE = 1e-6
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
#: Metric names; `:` allows the online judges' `judge:<evaluator>` outcomes.
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
JUDGE_METRIC_PREFIX = "judge:"


class ExperimentFileError(ValueError):
    """One or more problems in an experiment definition file.

    Carries the path and every problem found, so a user fixes the file in one pass.
    """

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        count = len(self.problems)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{count} {noun} in {self.path}:\n  " + "\n  ".join(self.problems))


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(_Frozen):
    """One arm: a whole flow (prompts, model, parameters) chosen together."""

    name: str = Field(min_length=1, max_length=64)
    weight: float
    config: dict[str, Any] = Field(default_factory=dict)
    modules: tuple[str, ...] | None = None

    @field_validator("weight")
    @classmethod
    def _weight_finite_non_negative(cls, weight: float) -> float:
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight ({weight}) must be finite and >= 0")
        return weight


class Cap(_Frozen):
    """Winsorization of a mean metric's per-unit values: exactly one of the two."""

    absolute: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    percentile: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_of(self) -> Cap:
        if (self.absolute is None) == (self.percentile is None):
            raise ValueError("give exactly one of cap.absolute or cap.percentile")
        return self


class Metric(_Frozen):
    """A metric the analysis reports; `ratio` metrics divide per-unit sums of two others."""

    name: str = Field(min_length=1, pattern=METRIC_NAME_PATTERN)
    kind: Literal["proportion", "mean", "ratio"]
    aggregate: Literal["sum", "mean"] = "sum"
    direction: Literal["increase", "decrease"] = "increase"
    primary: bool = False
    guardrail: bool = False
    numerator: str | None = None
    denominator: str | None = None
    description: str = ""
    #: What the metric is judged on: the relative lift t/c - 1 or the absolute difference t - c.
    estimand: Literal["relative", "absolute"] = "relative"
    #: Mean metrics: cap per-unit values (winsorize) at an absolute value or a percentile of
    #: all arms pooled, e.g. `{percentile: 0.99}`.
    cap: Cap | None = None
    #: CUPED: the metric whose pre-exposure outcomes of each unit adjust this one (default:
    #: this metric itself, when `analysis.cuped` is on).
    covariate: str | None = None
    #: Guardrails: the harm tolerated, as an absolute rate for a proportion (e.g. 0.005 for an
    #: error rate below 0.5%) or a relative change otherwise (0.1: may rise 10%).
    margin: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ratio_parts(self) -> Metric:
        if self.kind == "ratio" and (not self.numerator or not self.denominator):
            raise ValueError(f"ratio metric '{self.name}' needs a numerator and a denominator")
        if self.kind != "ratio" and (self.numerator or self.denominator):
            raise ValueError(
                f"metric '{self.name}' of kind '{self.kind}' takes no numerator/denominator"
            )
        if self.cap is not None and self.kind != "mean":
            raise ValueError(f"cap: only mean metrics are capped, '{self.name}' is {self.kind}")
        if self.margin is not None and not self.guardrail:
            raise ValueError(
                f"margin: only a guardrail has a margin; set guardrail: true on '{self.name}' "
                "or remove the margin"
            )
        return self


class AnalysisSettings(_Frozen):
    """How the analysis judges significance for this experiment."""

    alpha: float = Field(default=0.05, gt=0, lt=1)
    correction: Literal["holm", "bh", "none"] = "holm"
    sequential: bool = False
    tuning_n: int = Field(default=5000, gt=0)
    #: frequentist (p-values, fixed or sequential) or bayesian (chance to win, expected loss).
    engine: Literal["frequentist", "bayesian"] = "frequentist"
    #: CUPED: adjust mean and proportion metrics with each unit's pre-exposure outcomes.
    cuped: bool = True
    #: How far before a unit's first exposure its outcomes count as pre-exposure data.
    cuped_window_days: float = Field(default=14.0, gt=0, allow_inf_nan=False)
    #: Planning: the smallest relative lift of the primary metric worth detecting, and the
    #: power to detect it; they give the planned sample size and the progress towards it.
    mde: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    power: float = Field(default=0.8, gt=0, lt=1)
    #: Also compare every pair of treatment arms with each other (not only with control).
    pairwise: bool = False

    @property
    def method(self) -> Literal["fixed", "sequential", "bayesian"]:
        """The test every row is judged by (see `analysis.verdict`)."""
        if self.engine == "bayesian":
            return "bayesian"
        return "sequential" if self.sequential else "fixed"


class Safety(_Frozen):
    """Safe rollouts (DESIGN.md): stop a treatment arm automatically when a guardrail shows
    it harmful beyond its `margin`, judged by an always-valid sequential test (so checking
    every `check_every_s` seconds does not inflate the false-stop rate above `alpha`)."""

    auto_stop: bool = True
    #: Always-valid level of a stop: the chance an arm no worse than control is ever stopped.
    alpha: float = Field(default=0.01, gt=0, le=0.5)
    #: Units per arm (control and the treatment) before any decision about that treatment.
    min_units: int = Field(default=200, ge=1)
    check_every_s: float = Field(default=30.0, ge=1, allow_inf_nan=False)
    #: URL that receives a JSON notice (POST) on each automatic stop.
    webhook: str | None = None
    #: The guardrail metrics watched (default: every metric with `guardrail: true`).
    guardrails: tuple[str, ...] | None = None

    @field_validator("webhook")
    @classmethod
    def _webhook_is_http(cls, webhook: str | None) -> str | None:
        if webhook is None:
            return None
        if not re.match(r"^https?://[^/\s:]+(:\d+)?(/\S*)?$", webhook):
            raise ValueError(f"webhook ({webhook!r}) must be an http:// or https:// URL")
        return webhook


EvaluatorKind = Literal[
    "exact", "contains", "regex", "is_json", "json_schema", "length", "python", "llm_judge"
]

#: The parameters each evaluator kind needs, besides `name`, `kind` and `output`.
_REQUIRED_BY_KIND: dict[str, tuple[tuple[str, ...], ...]] = {
    "exact": (("expected", "value"),),
    "contains": (("expected", "value"),),
    "regex": (("pattern",),),
    "is_json": (),
    "json_schema": (("json_schema",),),
    "length": (("min", "max"),),
    "python": (("callable",),),
    "llm_judge": (("flow",), ("model",), ("scale",)),
}
#: The parameters each kind reads (any other one set is a mistake worth naming).
_USED_BY_KIND: dict[str, frozenset[str]] = {
    "exact": frozenset({"expected", "value", "case_sensitive"}),
    "contains": frozenset({"expected", "value", "case_sensitive"}),
    "regex": frozenset({"pattern", "case_sensitive"}),
    "is_json": frozenset(),
    "json_schema": frozenset({"json_schema"}),
    "length": frozenset({"min", "max", "unit"}),
    "python": frozenset({"callable", "expected"}),
    "llm_judge": frozenset({"flow", "model", "scale", "expected"}),
}
_EVALUATOR_PARAMETERS = (
    "expected",
    "value",
    "case_sensitive",
    "pattern",
    "json_schema",
    "min",
    "max",
    "unit",
    "callable",
    "flow",
    "model",
    "scale",
)


class Evaluator(_Frozen):
    """One way to score an arm's answer to a dataset row (DESIGN.md, Evaluation).

    Every evaluator yields a number per answer: 1/0 for the checks (`exact`, `contains`,
    `regex`, `is_json`, `json_schema`, `length`), what the callable returns for `python`, and
    the judge's score on `scale` for `llm_judge`. `output` names the flow output scored
    (default: the flow's first output); `expected` names the key of the row's `expected`
    object compared against (`value` gives a literal instead).
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: EvaluatorKind
    output: str | None = None
    expected: str | None = None
    value: str | None = None
    case_sensitive: bool = False
    pattern: str | None = None
    json_schema: dict[str, Any] | None = None
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    unit: Literal["words", "chars"] = "words"
    #: `python`: "package.module:function", called as function(output, expected, inputs).
    callable: str | None = None
    #: `llm_judge`: the judge's flow module, its model and the score's scale [low, high].
    flow: str | None = None
    model: str | None = None
    scale: tuple[float, float] | None = None

    @field_validator("callable")
    @classmethod
    def _import_path(cls, path: str | None) -> str | None:
        if path is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", path):
            raise ValueError(f"callable ({path!r}) must be 'package.module:function'")
        return path

    @model_validator(mode="after")
    def _parameters_fit_kind(self) -> Evaluator:
        problems = []
        for needed in _REQUIRED_BY_KIND[self.kind]:
            if all(getattr(self, name) is None for name in needed):
                problems.append(f"a {self.kind} evaluator needs {' or '.join(needed)}")
        used = _USED_BY_KIND[self.kind]
        defaults = type(self).model_fields
        for name in _EVALUATOR_PARAMETERS:
            if name not in used and getattr(self, name) != defaults[name].default:
                problems.append(f"{name}: a {self.kind} evaluator takes no {name}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                problems.append(f"pattern ({self.pattern!r}) does not compile: {exc}")
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(f"min ({self.min}) must be <= max ({self.max})")
        if self.scale is not None:
            low, high = self.scale
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                problems.append(f"scale ({low}, {high}) must be finite with low < high")
        if problems:
            raise ValueError(f"evaluator '{self.name}': " + "; ".join(problems))
        return self

    @property
    def metric(self) -> str:
        """The outcome an online judge records: `judge:<name>`."""
        return JUDGE_METRIC_PREFIX + self.name


class Evaluation(_Frozen):
    """Offline evaluation of the experiment's arms on a dataset, and online judging.

    `dataset` is a JSONL file (rows `{"id", "inputs", "expected"?}`); a relative path is
    resolved against the folder that holds the experiments folder (the project root).
    `judge_sample_rate` is the share of live runs that the `llm_judge` evaluators score,
    off the request path; each score becomes the outcome `judge:<evaluator>`.
    """

    dataset: str | None = Field(default=None, min_length=1)
    evaluators: tuple[Evaluator, ...] = ()
    judge_sample_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> Evaluation:
        problems = []
        names = [e.name for e in self.evaluators]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            problems.append(f"evaluators: duplicate names: {', '.join(duplicated)}")
        if self.dataset is None and not self.judges:
            problems.append(
                "dataset: needed to evaluate offline (or add an llm_judge to judge online)"
            )
        if self.dataset is not None and not self.evaluators:
            problems.append("evaluators: a dataset needs at least one evaluator to score it")
        if self.judge_sample_rate > 0 and not self.judges:
            problems.append(
                f"judge_sample_rate ({self.judge_sample_rate}) needs an llm_judge evaluator"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def judges(self) -> tuple[Evaluator, ...]:
        return tuple(e for e in self.evaluators if e.kind == "llm_judge")

    @property
    def online_judges(self) -> tuple[Evaluator, ...]:
        """The judges that score live runs (none when `judge_sample_rate` is 0)."""
        return self.judges if self.judge_sample_rate > 0 else ()


class Experiment(_Frozen):
    """An experiment definition, as written in `experiments/*.yaml` (DESIGN.md)."""

    id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    description: str = ""
    status: Literal["draft", "running", "stopped"] = "draft"
    winner: str | None = None
    flow: str | tuple[str, ...]
    hash_attribute: str = "user_id"
    #: Hashed when the unit's attributes give no value of `hash_attribute` (see the router).
    fallback_attribute: str | None = Field(default=None, min_length=1)
    #: Targeting: units whose attributes do not match (GrowthBook condition syntax) stay out.
    condition: dict[str, Any] | None = None
    hash_version: Literal[1, 2] = 2
    seed: str | None = None
    coverage: float = 1.0
    namespace: tuple[str, float, float] | None = None
    overrides: dict[str, str] = Field(default_factory=dict)
    arms: tuple[Arm, ...]
    metrics: tuple[Metric, ...] = ()
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    safety: Safety | None = None
    evaluation: Evaluation | None = None

    @model_validator(mode="before")
    @classmethod
    def _judge_metrics(cls, data: Any) -> Any:
        """Declare `judge:<name>` for every online judge the file did not declare itself, so
        the analysis, the dashboard and the guardrails see the scores like any outcome. They
        are means of the per-unit average score, judged on the absolute difference: the
        offline evaluation's paired difference is on the same scale, so the report can put
        both side by side."""
        online = _online_judge_names(data)
        if not online:
            return data
        metrics = data.get("metrics") or []
        if not isinstance(metrics, list | tuple):
            return data
        declared = {m.get("name") for m in metrics if isinstance(m, dict)}
        added = [
            {
                "name": JUDGE_METRIC_PREFIX + name,
                "kind": "mean",
                "aggregate": "mean",
                "estimand": "absolute",
                "description": f"online LLM judge '{name}'",
            }
            for name in online
            if JUDGE_METRIC_PREFIX + name not in declared
        ]
        return {**data, "metrics": [*metrics, *added]} if added else data

    @field_validator("coverage")
    @classmethod
    def _coverage_in_unit_interval(cls, coverage: float) -> float:
        if not (math.isfinite(coverage) and 0.0 <= coverage <= 1.0):
            raise ValueError(f"coverage ({coverage}) must be within [0, 1]")
        return coverage

    @field_validator("namespace")
    @classmethod
    def _namespace_range(
        cls, namespace: tuple[str, float, float] | None
    ) -> tuple[str, float, float] | None:
        if namespace is None:
            return None
        name, start, end = namespace
        if not name:
            raise ValueError("namespace name must not be empty")
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (start, end)):
            raise ValueError(f"namespace range ({start}, {end}) must lie within [0, 1]")
        if start >= end:
            raise ValueError(f"namespace start ({start}) must be < end ({end})")
        return namespace

    @field_validator("arms")
    @classmethod
    def _arms_shape(cls, arms: tuple[Arm, ...]) -> tuple[Arm, ...]:
        problems = []
        if len(arms) < 2:
            problems.append(f"an experiment needs at least two arms, got {len(arms)}")
        names = [arm.name for arm in arms]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            problems.append(f"duplicate arm names: {', '.join(duplicated)}")
        total = math.fsum(arm.weight for arm in arms)
        if arms and abs(total - 1.0) > WEIGHT_TOLERANCE:
            problems.append(f"weights must sum to 1 (within {WEIGHT_TOLERANCE}), got {total:g}")
        if problems:
            raise ValueError("; ".join(problems))
        return arms

    @field_validator("metrics")
    @classmethod
    def _unique_metric_names(cls, metrics: tuple[Metric, ...]) -> tuple[Metric, ...]:
        names = [m.name for m in metrics]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicate metric names: {', '.join(duplicated)}")
        return metrics

    @model_validator(mode="after")
    def _cross_references(self) -> Experiment:
        arm_names = [arm.name for arm in self.arms]
        problems = []
        for unit, arm in self.overrides.items():
            if arm not in arm_names:
                problems.append(f"overrides.{unit}: unknown arm '{arm}'{_suggest(arm, arm_names)}")
        if self.winner is not None and self.winner not in arm_names:
            hint = _suggest(self.winner, arm_names)
            problems.append(f"winner: unknown arm '{self.winner}'{hint}")
        known = [m.name for m in self.metrics if m.kind != "ratio"] + list(AUTOMATIC_METRICS)
        for index, metric in enumerate(self.metrics):
            if metric.covariate is not None and metric.covariate not in known:
                problems.append(
                    f"metrics[{index}].covariate: '{metric.covariate}' is neither a declared "
                    f"metric nor an automatic run metric{_suggest(metric.covariate, known)}"
                )
            for part in ("numerator", "denominator"):
                ref = getattr(metric, part)
                if ref is not None and ref not in known:
                    problems.append(
                        f"metrics[{index}].{part}: '{ref}' is neither a declared metric nor an "
                        f"automatic run metric{_suggest(ref, known)}"
                    )
        problems.extend(self._safety_problems())
        problems.extend(self._condition_problems())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _safety_problems(self) -> list[str]:
        if self.safety is None:
            return []
        guardrails = [m.name for m in self.metrics if m.guardrail]
        if not guardrails:
            return ["safety: no metric has guardrail: true, so there is nothing to watch"]
        return [
            f"safety.guardrails[{index}]: '{name}' is not a guardrail metric"
            f"{_suggest(name, guardrails)} (guardrails: {', '.join(guardrails)})"
            for index, name in enumerate(self.safety.guardrails or ())
            if name not in guardrails
        ]

    def _condition_problems(self) -> list[str]:
        if not self.condition:
            return []
        return [_under("condition", problem) for problem in condition_problems(self.condition)]

    @property
    def watched_guardrails(self) -> tuple[Metric, ...]:
        """The guardrail metrics the safety monitor checks (none without `safety:`)."""
        if self.safety is None:
            return ()
        names = self.safety.guardrails
        return tuple(m for m in self.metrics if m.guardrail and (names is None or m.name in names))

    @property
    def hash_seed(self) -> str:
        """The hashing seed: `seed`, defaulting to the experiment id."""
        return self.seed if self.seed is not None else self.id

    @property
    def control(self) -> Arm:
        """The first arm is the control."""
        return self.arms[0]

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.arms)

    def arm(self, name: str) -> Arm:
        """The arm called `name` (KeyError naming it otherwise)."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"experiment '{self.id}' has no arm '{name}'")

    def modules_for(self, arm: Arm) -> tuple[str, ...]:
        """Hamilton modules of an arm: its own `modules`, else the experiment's `flow`."""
        if arm.modules:
            return arm.modules
        return (self.flow,) if isinstance(self.flow, str) else self.flow

    @property
    def definition_sha(self) -> str:
        return definition_sha(self)


def definition_sha(experiment: Experiment) -> str:
    """sha256 of the canonical JSON form (sorted keys, no whitespace, defaults filled in).

    Two files that mean the same experiment hash alike; any change that could move a user or
    change what an arm runs changes the hash, so every exposure records the definition in force.
    """
    canonical = json.dumps(
        experiment.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_experiment(data: Any, source: str | Path = "<memory>") -> Experiment:
    """Validate already-parsed YAML/JSON data into an `Experiment`, or raise ExperimentFileError."""
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "an empty document"
        raise ExperimentFileError(source, [f"the file must hold a mapping of fields, got {kind}"])
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ExperimentFileError(source, _describe(exc, data)) from None


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate one experiment definition file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentFileError(path, [f"cannot read the file: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExperimentFileError(path, [_yaml_problem(exc)]) from None
    return parse_experiment(data, path)


def partial_experiment(path: str | Path) -> Experiment | None:
    """The flow and arms of a file that fails validation, as a minimal experiment (equal
    weights, no metrics), so that `abtest validate` can check the arms' flows in the same pass
    and list every problem of the file at once. None when even that cannot be read."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("arms"), list):
        return None
    arms = [
        {key: arm[key] for key in ("name", "config", "modules") if key in arm}
        for arm in data["arms"]
        if isinstance(arm, dict) and isinstance(arm.get("name"), str)
    ]
    raw_id = data.get("id")
    minimal = {
        "id": raw_id if isinstance(raw_id, str) and re.fullmatch(ID_PATTERN, raw_id) else "unnamed",
        "flow": data.get("flow"),
        "arms": [{**arm, "weight": 1 / len(arms)} for arm in arms] if arms else [],
    }
    try:
        return Experiment.model_validate(minimal)
    except ValidationError:
        return None


def experiment_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their `*.yaml`/`*.yml` files, sorted; keep files as given."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"}))
        else:
            files.append(path)
    return files


def check_files(
    paths: Iterable[str | Path],
) -> list[tuple[Path, Experiment | ExperimentFileError]]:
    """Load each definition file under `paths`, keeping each file's result or error.

    A file whose id an earlier file already uses is an error naming both files.
    """
    results: list[tuple[Path, Experiment | ExperimentFileError]] = []
    origin: dict[str, Path] = {}
    for path in experiment_files(paths):
        try:
            experiment = load_experiment(path)
        except ExperimentFileError as exc:
            results.append((path, exc))
            continue
        if experiment.id in origin:
            first = origin[experiment.id]
            problem = f"id: duplicate experiment id '{experiment.id}' (also in {first})"
            results.append((path, ExperimentFileError(path, [problem])))
            continue
        origin[experiment.id] = path
        results.append((path, experiment))
    return results


def load_experiments(directory: str | Path | Iterable[str | Path]) -> dict[str, Experiment]:
    """Load every definition file under `directory` (or the given paths), keyed by id.

    Problems of all files are gathered and raised together.
    """
    sources = [directory] if isinstance(directory, str | Path) else list(directory)
    results = check_files(sources)
    errors = [r for _, r in results if isinstance(r, ExperimentFileError)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExperimentFileError(
            ", ".join(e.path for e in errors), [p for e in errors for p in _prefixed(e)]
        )
    return {r.id: r for _, r in results if isinstance(r, Experiment)}


def _online_judge_names(data: Any) -> list[str]:
    """Names of the `llm_judge` evaluators of raw data whose judge_sample_rate is above 0
    (nothing when the section is malformed: validation then says what is wrong)."""
    if not isinstance(data, dict) or not isinstance(data.get("evaluation"), dict):
        return []
    evaluation = data["evaluation"]
    rate = evaluation.get("judge_sample_rate", 0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not rate > 0:
        return []
    evaluators = evaluation.get("evaluators") or []
    if not isinstance(evaluators, list | tuple):
        return []
    return [
        e["name"]
        for e in evaluators
        if isinstance(e, dict) and e.get("kind") == "llm_judge" and isinstance(e.get("name"), str)
    ]


def _prefixed(error: ExperimentFileError) -> list[str]:
    return [f"{error.path}: {problem}" for problem in error.problems]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"malformed YAML: {problem}"


def _suggest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _under(field: str, problem: str) -> str:
    """A problem `"<path>: <message>"` found inside `field`, with the path made absolute."""
    path, sep, message = problem.partition(": ")
    if not sep:
        return f"{field}: {problem}"
    if not path:
        return f"{field}: {message}"
    joiner = "" if path.startswith("[") else "."
    return f"{field}{joiner}{path}: {message}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names allowed at the mapping that holds `loc`'s last key."""
    model: type[BaseModel] | None = Experiment
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = {
            "arms": Arm,
            "metrics": Metric,
            "analysis": AnalysisSettings,
            "safety": Safety,
            "evaluation": Evaluation,
            "evaluators": Evaluator,
        }
        model = nested.get(str(part))
    return list(model.model_fields) if model is not None else []


def _describe(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = _field_path(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            problems.append(f"{where}: unknown key{_suggest(key, _allowed_keys(loc))}")
            continue
        message = re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
        if error["type"] == "value_error" and not loc:
            problems.extend(message.splitlines())
            continue
        value = error.get("input")
        shown = "" if error["type"] in {"missing", "value_error"} else f" (got {value!r:.60})"
        problems.append(f"{where}: {message}{shown}")
    return problems
