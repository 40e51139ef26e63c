"""Run experiment arms' flows: one Hamilton driver per (experiment, arm), built at load.

`FlowRegistry.from_experiments(experiments, llm_client, prompt_registry)` builds every arm's
driver once, `driver.Builder().with_modules(*modules).with_config(config).with_adapters(hook)`,
reads its contract from the graph (`abtest.flows.contract`) and checks it before any request
arrives; every problem of every arm is gathered into one `FlowConfigError` naming the
experiment, the arm and the node:

1. the modules import and the driver builds;
2. a module listed after the first replaces only prompt nodes (module switching, below);
3. the contract holds: `INPUTS` are external inputs of supported types, `FINAL_VARS` are
   nodes, every arm config key is read by the flow (with a did-you-mean), every input a node
   requires is provided (a `@config.when` prompt that no arm value selects would otherwise
   become a required *input* and fail only at execute time);
4. config keys do not shadow nodes (Hamilton would silently use the value instead of the
   node), except registry bindings, which must resolve in the prompt registry;
5. prompt nodes carry the `prompt_version` the arm's config asks for, when it asks;
6. a dry run of the whole flow on the module's `SAMPLE_INPUTS`, against an offline stub LLM
   client, renders every prompt and runs every node, and yields the templates for the
   fingerprint;
7. all arms of an experiment share inputs and outputs.

`run(experiment_id, arm, inputs)` validates the inputs against the experiment's input model,
executes the arm's driver and returns a `FlowResult`; it never raises for a failed run (bad
input, `FlowInputError`, LLM down after retries, missing registry prompt, bugs): `error` and
`error_kind` say what happened.

Module switching. An arm may list modules, e.g. `[flow.base, flow.prompts.v2]`. Drivers are
built with Hamilton's `allow_module_overrides()`, so the prompt nodes of a later module replace
the base module's nodes of the same name; check 2 keeps that from replacing anything but
prompts, and check 5 makes the arm's `prompt_version` agree with the tags of the prompts
actually in the graph.

Registry binding (prompts as runtime data). A config entry whose key is a prompt node and whose
value is `"registry:<name>@<label or version>"` binds that node to the prompt registry. The key
is removed from the config given to Hamilton; each run resolves the reference (cached by the
registry) and passes the template through `execute(overrides=...)`, and records the exact
version in `FlowResult.prompts[node].version` ("final-summary@3").

Observability. `FlowRecorder`, a `NodeExecutionHook`, times every node, records every node
tagged `prompt_id` as a `PromptUse` (with its sha256) and sums usage from every node result that
is a `Completion` or a list of them. Per-run state lives in a `ContextVar` that `run` sets:
Hamilton's default executor calls the hooks in the thread that called `execute`, so concurrent
runs of the same driver from several threads (or `asyncio.to_thread`, which copies the
context) each see only their own record, without locks. Node bodies log nothing; Hamilton's
own error logging is muted while a run is handled here, and `run` logs one line per failure.

Async. `arun` is `asyncio.to_thread(run, ...)`: Hamilton's `AsyncDriver` runs synchronous nodes
on the event loop and would block it (DESIGN.md, Known pitfalls), and a worker thread keeps one
code path for sync and async callers.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any, Literal

from hamilton import driver
from hamilton import graph as hamilton_graph
from hamilton import graph_utils as hamilton_graph_utils
from hamilton.lifecycle import NodeExecutionHook
from pydantic import BaseModel, ValidationError

from abtest.experiments import Arm, Experiment
from abtest.flows.contract import INJECTED, FlowContract, input_model, read_contract
from abtest.flows.contract import prompt_nodes as graph_prompt_nodes
from abtest.flows.errors import FlowConfigError, FlowInputError, FlowProblem, InvalidInputs
from abtest.flows.stub_llm import StubLLMClient
from abtest.llm import Completion, LLMClient, LLMError
from abtest.prompts import (
    PromptNotFoundError,
    PromptRegistry,
    PromptRegistryError,
    placeholders,
)

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "DEFAULT_MAX_INPUT_CHARS",
    "REGISTRY_PREFIX",
    "ErrorKind",
    "FlowRecorder",
    "FlowRegistry",
    "FlowResult",
    "PlaceholderCheck",
    "PromptUse",
    "bindings_of",
    "check_placeholders",
    "code_template",
    "registry_bindings",
]

logger = logging.getLogger(__name__)

REGISTRY_PREFIX = "registry:"
DEFAULT_MAX_INPUT_CHARS = 100_000
"""Longest text input (and list item) a run accepts; a flow may refuse less itself."""
DEFAULT_MAX_INPUT_BYTES = 20 * 1024 * 1024
"""Largest bytes input a run accepts."""

ErrorKind = Literal["bad_input", "llm", "prompt", "internal"]


@dataclass(frozen=True)
class PromptUse:
    """One prompt template a run used.

    `version` is the node's `prompt_version` tag ("v2") or, for a registry-bound node, the
    exact registry version ("final-summary@3"); `source` is the Hamilton module that defined
    the node or `registry:<reference as configured>`.
    """

    prompt_id: str
    version: str
    sha256: str
    text: str
    source: str = ""


@dataclass
class FlowResult:
    """Outcome of one run. `error` is None on success; otherwise `error_kind` says whose fault:
    "bad_input" (inputs refused by the input model or by the flow's `FlowInputError`),
    "llm" (model call failed after retries), "prompt" (registry prompt missing or registry
    unreachable) or "internal" (a bug of the flow or the platform; logged).
    `error_reason` refines it where known: "inputs", a `FlowInputError.reason`, or an
    `LLMError.kind` ("server_error", "timeout", ...).

    `outputs` maps each of the flow's `FINAL_VARS` to its (JSON-serialisable) value.

    Token counts and cost are summed over every LLM call as the server reported them;
    `latency_ms` is the wall time of the whole run, `llm_latency_ms` the sum of the calls'
    latencies (larger than their wall time when chunks run concurrently).
    """

    experiment_id: str
    arm: str
    run_id: str
    fingerprint: str
    outputs: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, PromptUse] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    llm_latency_ms: float = 0.0
    llm_calls: int = 0
    error: str | None = None
    error_kind: ErrorKind | None = None
    error_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# -- per-run recording ---------------------------------------------------------------------------


class _RunRecord:
    """What the hook collects during one run."""

    __slots__ = ("started", "timings_ms", "prompts", "completions", "failed_node")

    def __init__(self) -> None:
        self.failed_node: str | None = None
        self.started: dict[str, float] = {}
        self.timings_ms: dict[str, float] = {}
        self.prompts: dict[str, PromptUse] = {}
        self.completions: list[Completion] = []


_CURRENT_RUN: contextvars.ContextVar[_RunRecord | None] = contextvars.ContextVar(
    "abtest_flow_run", default=None
)
_HANDLING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "abtest_flow_handling", default=False
)


class FlowRecorder(NodeExecutionHook):
    """Records per-node timings, prompts used and LLM usage into the current run's record.

    Stateless itself: the record is found through a `ContextVar` set by `FlowRegistry.run`, so
    one instance serves every driver and every concurrent run. Outside a run it does nothing.
    """

    def run_before_node_execution(self, *, node_name: str, **future_kwargs: Any) -> None:
        record = _CURRENT_RUN.get()
        if record is not None:
            record.started[node_name] = time.perf_counter()

    def run_after_node_execution(
        self,
        *,
        node_name: str,
        node_tags: dict[str, Any],
        result: Any,
        success: bool,
        **future_kwargs: Any,
    ) -> None:
        record = _CURRENT_RUN.get()
        if record is None:
            return
        started = record.started.pop(node_name, None)
        if started is not None:
            record.timings_ms[node_name] = (time.perf_counter() - started) * 1000.0
        if not success:
            record.failed_node = record.failed_node or node_name
            return
        prompt_id = node_tags.get("prompt_id")
        if prompt_id is not None and isinstance(result, str):
            record.prompts[node_name] = PromptUse(
                prompt_id=str(prompt_id),
                version=str(node_tags.get("prompt_version", "")),
                sha256=_sha256(result),
                text=result,
                source=str(node_tags.get("module", "")),
            )
        if isinstance(result, Completion):
            record.completions.append(result)
        elif isinstance(result, list) and result and isinstance(result[0], Completion):
            record.completions.extend(c for c in result if isinstance(c, Completion))


class _MuteHamiltonErrors(logging.Filter):
    """Drops Hamilton's error records (its help banner, node tracebacks) while `FlowRegistry`
    handles the outcome itself; outside runs and validation, Hamilton logs as usual."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or not _HANDLING.get()


_MUTE_FILTER = _MuteHamiltonErrors()
_HAMILTON_ERROR_LOGGERS = ("hamilton.driver", "hamilton.execution.graph_functions")


def _install_log_filter() -> None:
    for name in _HAMILTON_ERROR_LOGGERS:
        hamilton_logger = logging.getLogger(name)
        if _MUTE_FILTER not in hamilton_logger.filters:
            hamilton_logger.addFilter(_MUTE_FILTER)


# -- flows ---------------------------------------------------------------------------------------


@dataclass
class _Flow:
    experiment_id: str
    arm: str
    config: dict[str, Any]
    modules: tuple[str, ...]
    driver: driver.Driver
    contract: FlowContract
    bindings: dict[str, str]
    code_prompts: dict[str, PromptUse]
    config_json: str
    fingerprints: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict)


class FlowRegistry:
    """Every arm's Hamilton driver, built and validated once; `run` executes one per request.

    Use `FlowRegistry.from_experiments(...)`. `llm_client=None` creates an `LLMClient()` from
    `OPENAI_BASE_URL`/`OPENAI_API_KEY` at the first run (so validation needs no model
    endpoint). `prompt_registry` is needed only by arms that bind prompts to the registry.
    `max_input_chars` / `max_input_bytes` bound every text and bytes input of a run.
    """

    def __init__(
        self,
        experiments: Mapping[str, Experiment] | Sequence[Experiment],
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
        *,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        _install_log_filter()
        self._llm_client = llm_client
        self._client_lock = threading.Lock()
        self._prompt_registry = prompt_registry
        self._recorder = FlowRecorder()
        self._flows: dict[tuple[str, str], _Flow] = {}
        self._input_models: dict[str, type[BaseModel]] = {}
        items = list(experiments.values() if isinstance(experiments, Mapping) else experiments)
        problems: list[FlowProblem] = []
        token = _HANDLING.set(True)
        try:
            seen: set[str] = set()
            for experiment in items:
                if experiment.id in seen:
                    problems.append(
                        FlowProblem(experiment.id, "*", "the experiment id is given twice")
                    )
                    continue
                seen.add(experiment.id)
                problems.extend(
                    self._build_experiment(experiment, max_input_chars, max_input_bytes)
                )
        finally:
            _HANDLING.reset(token)
        if problems:
            raise FlowConfigError(problems)

    @classmethod
    def from_experiments(
        cls,
        experiments: Mapping[str, Experiment] | Sequence[Experiment],
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
        **limits: int,
    ) -> FlowRegistry:
        """Build and validate one driver per (experiment, arm); raises `FlowConfigError`."""
        return cls(experiments, llm_client=llm_client, prompt_registry=prompt_registry, **limits)

    # -- queries ----------------------------------------------------------------------------

    def keys(self) -> list[tuple[str, str]]:
        """`(experiment_id, arm)` of every flow."""
        return list(self._flows)

    def __contains__(self, key: object) -> bool:
        return key in self._flows

    def hamilton_driver(self, experiment_id: str, arm: str) -> driver.Driver:
        """The arm's Hamilton driver (for visualisation or inspection)."""
        return self._flow(experiment_id, arm).driver

    def contract(self, experiment_id: str, arm: str | None = None) -> FlowContract:
        """The flow contract of an arm (default: the control's, which every arm shares)."""
        if arm is None:
            arm = next((a for e, a in self._flows if e == experiment_id), "")
        return self._flow(experiment_id, arm).contract

    def input_model(self, experiment_id: str) -> type[BaseModel]:
        """The pydantic model every run's inputs of this experiment are validated with."""
        try:
            return self._input_models[experiment_id]
        except KeyError:
            raise KeyError(f"no flows for experiment '{experiment_id}'") from None

    def prompts(self, experiment_id: str, arm: str) -> dict[str, PromptUse]:
        """The templates the arm uses now (registry bindings resolved through the cache)."""
        flow = self._flow(experiment_id, arm)
        return {**flow.code_prompts, **self._resolve_bindings(flow)}

    def flow_fingerprint(self, experiment_id: str, arm: str) -> str:
        """sha256 over the arm's config and its prompt templates, stable across processes.

        Equals `FlowResult.fingerprint` of a run that used the same templates; moving a
        registry label to a different template changes it.
        """
        flow = self._flow(experiment_id, arm)
        return self._fingerprint(flow, self.prompts(experiment_id, arm))

    # -- running ----------------------------------------------------------------------------

    def checked_inputs(
        self, experiment_id: str, inputs: Mapping[str, Any] | BaseModel
    ) -> BaseModel:
        """`inputs` as an instance of the experiment's input model (strict types, defaults
        filled in); raises `InvalidInputs` naming every bad input. An instance is returned as
        it is: inputs are checked once however many layers they pass."""
        model = self.input_model(experiment_id)
        if isinstance(inputs, model):
            return inputs
        if not isinstance(inputs, Mapping):
            raise InvalidInputs(f"inputs must be a mapping, got {type(inputs).__name__}")
        try:
            return model.model_validate(dict(inputs), strict=True)
        except ValidationError as exc:
            raise InvalidInputs(describe_validation_error(exc)) from None

    def run(
        self, experiment_id: str, arm: str, inputs: Mapping[str, Any] | BaseModel
    ) -> FlowResult:
        """Run the arm's flow on `inputs` (the flow's `INPUTS`, a mapping or a checked
        instance of `input_model`); never raises for a failed run (see
        `FlowResult.error_kind`). Unknown experiment or arm: `KeyError`."""
        flow = self._flow(experiment_id, arm)
        record = _RunRecord()
        run_id = uuid.uuid4().hex
        outputs: dict[str, Any] = {}
        error: str | None = None
        kind: ErrorKind | None = None
        reason: str | None = None
        started = time.perf_counter()
        run_token = _CURRENT_RUN.set(record)
        quiet_token = _HANDLING.set(True)
        try:
            values = dict(self.checked_inputs(experiment_id, inputs))
            overrides = self._resolve_bindings(flow)
            record.prompts.update(overrides)
            outputs = flow.driver.execute(
                list(flow.contract.outputs),
                inputs={**values, INJECTED: self._client()} if flow.contract.uses_llm else values,
                overrides={node: use.text for node, use in overrides.items()} or None,
            )
            _check_serialisable(outputs)
        except Exception as exc:  # a failed run is a result, not an exception
            kind, error, reason = _describe_error(exc, record.failed_node)
            if kind == "internal":
                logger.exception("flow %s/%s run %s failed", experiment_id, arm, run_id)
            else:
                logger.info("flow %s/%s run %s: %s", experiment_id, arm, run_id, error)
        finally:
            _HANDLING.reset(quiet_token)
            _CURRENT_RUN.reset(run_token)
        latency_ms = (time.perf_counter() - started) * 1000.0
        calls = record.completions
        return FlowResult(
            experiment_id=experiment_id,
            arm=arm,
            run_id=run_id,
            fingerprint=self._fingerprint(flow, {**flow.code_prompts, **record.prompts}),
            outputs=dict(outputs) if error is None else {},
            prompts=record.prompts,
            timings_ms=record.timings_ms,
            prompt_tokens=sum(c.prompt_tokens for c in calls),
            completion_tokens=sum(c.completion_tokens for c in calls),
            cost_usd=sum(c.cost_usd for c in calls),
            latency_ms=latency_ms,
            llm_latency_ms=sum(c.latency_ms for c in calls),
            llm_calls=len(calls),
            error=error,
            error_kind=kind,
            error_reason=reason,
        )

    async def arun(
        self, experiment_id: str, arm: str, inputs: Mapping[str, Any] | BaseModel
    ) -> FlowResult:
        """`run` in a worker thread, so the event loop stays free while the flow's synchronous
        nodes (parsing, LLM calls) run. Hamilton's AsyncDriver would run them on the loop."""
        return await asyncio.to_thread(self.run, experiment_id, arm, inputs)

    # -- internals --------------------------------------------------------------------------

    def _flow(self, experiment_id: str, arm: str) -> _Flow:
        try:
            return self._flows[(experiment_id, arm)]
        except KeyError:
            known = sorted({e for e, _ in self._flows})
            if experiment_id not in known:
                raise KeyError(f"no flows for experiment '{experiment_id}'") from None
            raise KeyError(f"experiment '{experiment_id}' has no arm '{arm}'") from None

    def _client(self) -> LLMClient:
        if self._llm_client is None:
            with self._client_lock:
                if self._llm_client is None:
                    self._llm_client = LLMClient()
        return self._llm_client

    def _resolve_bindings(self, flow: _Flow) -> dict[str, PromptUse]:
        if not flow.bindings:
            return {}
        if self._prompt_registry is None:  # checked at load; kept for safety
            raise PromptRegistryError("this FlowRegistry has no prompt registry")
        uses = {}
        for node, ref in flow.bindings.items():
            found = self._prompt_registry.get(ref)
            uses[node] = _registry_use(found, ref)
        return uses

    @staticmethod
    def _fingerprint(flow: _Flow, prompts: Mapping[str, PromptUse]) -> str:
        key = tuple(sorted((node, use.sha256) for node, use in prompts.items()))
        cached = flow.fingerprints.get(key)
        if cached is None:
            payload = (
                '{"config":'
                + flow.config_json
                + ',"prompts":'
                + json.dumps(dict(key), sort_keys=True, separators=(",", ":"))
                + "}"
            )
            cached = hashlib.sha256(payload.encode("utf-8")).hexdigest()
            if len(flow.fingerprints) < 64:
                flow.fingerprints[key] = cached
        return cached

    def _build_experiment(
        self, experiment: Experiment, max_chars: int, max_bytes: int
    ) -> list[FlowProblem]:
        """Build every arm, check they share one interface, make the input model and dry-run
        every arm that built, so one pass reports every problem of the experiment."""
        problems: list[FlowProblem] = []
        built: list[_Flow] = []
        for arm in experiment.arms:
            flow, found = self._build(experiment, arm)
            problems.extend(found)
            if flow is not None:
                built.append(flow)
        if not built:
            return problems
        reference = built[0]  # the control, unless it failed to build
        for flow in built[1:]:
            for difference in reference.contract.differences(flow.contract):
                problems.append(
                    FlowProblem(
                        experiment.id,
                        flow.arm,
                        f"{difference}; all arms of an experiment share inputs and outputs",
                    )
                )
        model = input_model(
            _model_name(experiment.id), reference.contract, max_chars=max_chars, max_bytes=max_bytes
        )
        # the samples are the flow author's, not a request: no request size limits for them
        unlimited = input_model("Samples", reference.contract, max_chars=2**62, max_bytes=2**62)
        for flow in built:
            for message, node in self._dry_run(flow, unlimited):
                problems.append(FlowProblem(experiment.id, flow.arm, message, node))
        if not problems:
            self._input_models[experiment.id] = model
            self._flows.update({(experiment.id, flow.arm): flow for flow in built})
        return problems

    def _bind(
        self, bindings: Mapping[str, str], prompt_nodes: Sequence[str]
    ) -> tuple[dict[str, PromptUse], list[tuple[str, str]]]:
        """Resolve an arm's registry bindings at load: each must name a prompt node and exist."""
        bound: dict[str, PromptUse] = {}
        problems = []
        for name, ref in bindings.items():
            if name not in prompt_nodes:
                problems.append(
                    (
                        f"config binds '{name}' to the prompt registry, but it is not a "
                        f"prompt node (prompt nodes: {', '.join(prompt_nodes) or 'none'})",
                        name,
                    )
                )
            elif self._prompt_registry is None:
                problems.append(
                    (
                        f"'{name}' is bound to '{REGISTRY_PREFIX}{ref}' but the FlowRegistry "
                        "has no prompt_registry",
                        name,
                    )
                )
            else:
                try:
                    found = self._prompt_registry.get(ref)
                except (PromptNotFoundError, PromptRegistryError, ValueError) as exc:
                    problems.append((f"registry prompt '{ref}': {exc}", name))
                else:
                    bound[name] = _registry_use(found, ref)
        return bound, problems

    def _build(self, experiment: Experiment, arm: Arm) -> tuple[_Flow | None, list[FlowProblem]]:
        problems: list[FlowProblem] = []

        def problem(message: str, node: str | None = None) -> None:
            problems.append(FlowProblem(experiment.id, arm.name, message, node))

        module_names = tuple(experiment.modules_for(arm))
        modules: list[ModuleType] = []
        for name in module_names:
            try:
                modules.append(importlib.import_module(name))
            except Exception as exc:
                problem(f"cannot import module '{name}': {type(exc).__name__}: {exc}")
        if problems:
            return None, problems

        bindings = bindings_of(arm.config)
        config = {k: v for k, v in arm.config.items() if k not in bindings}
        try:
            dr = (
                driver.Builder()
                .with_modules(*modules)
                .with_config(config)
                .with_adapters(self._recorder)
                .allow_module_overrides()
                .build()
            )
        except Exception as exc:
            problem(f"the Hamilton driver does not build: {type(exc).__name__}: {exc}")
            return None, problems

        contract, found = read_contract(dr, modules, arm.config, bindings)
        for message, node in found:
            problem(message, node)
        prompt_nodes = contract.prompt_nodes if contract else graph_prompt_nodes(dr)
        if len(modules) > 1:
            for message, node in _override_problems(modules, config, prompt_nodes):
                problem(message, node)
        defined = _defined_node_names(modules)
        shadowed = [key for key in config if key in defined]
        for key in shadowed:
            problem(
                f"config key '{key}' would replace node '{key}' with the constant "
                f"{config[key]!r}; bind a prompt with '{REGISTRY_PREFIX}<name>@<label>' "
                "or remove the key",
                key,
            )
        for message, node in _version_problems(dr, prompt_nodes, config.get("prompt_version")):
            problem(message, node)
        bound, binding_problems = self._bind(bindings, prompt_nodes)
        for message, node in binding_problems:
            problem(message, node)
        if contract is None or shadowed:
            return None, problems
        # other problems (a config key the flow does not read, a prompt version that does not
        # match) leave the flow runnable: it is still dry-run, so one pass reports everything

        flow = _Flow(
            experiment_id=experiment.id,
            arm=arm.name,
            config=dict(arm.config),
            modules=module_names,
            driver=dr,
            contract=contract,
            bindings=bindings,
            code_prompts=dict(bound),
            config_json=json.dumps(
                arm.config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
            ),
        )
        return flow, problems

    def _dry_run(self, flow: _Flow, model: type[BaseModel]) -> list[tuple[str, str | None]]:
        """Run the whole flow on `SAMPLE_INPUTS` with the offline stub LLM: every prompt
        renders, every node runs, and the templates used give the fingerprint."""
        try:
            values = dict(model.model_validate(dict(flow.contract.sample_inputs), strict=True))
        except ValidationError as exc:
            return [
                (f"SAMPLE_INPUTS do not fit the inputs: {describe_validation_error(exc)}", None)
            ]
        record = _RunRecord()
        token = _CURRENT_RUN.set(record)
        bound = dict(flow.code_prompts)
        try:
            outputs = flow.driver.execute(
                list(flow.contract.outputs),
                inputs={**values, INJECTED: StubLLMClient()},
                overrides={node: use.text for node, use in bound.items()} or None,
            )
            _check_serialisable(outputs)
        except FlowInputError as exc:
            return [(f"the flow refuses its SAMPLE_INPUTS: {exc}", record.failed_node)]
        except Exception as exc:
            return [_dry_run_problem(flow, record.failed_node, exc)]
        finally:
            _CURRENT_RUN.reset(token)
        flow.code_prompts = {**record.prompts, **bound}
        return []


def _dry_run_problem(flow: _Flow, node: str | None, exc: Exception) -> tuple[str, str | None]:
    """The dry run's failure, blamed on the prompt when the failing node renders exactly one
    (a template with a placeholder its renderer does not fill)."""
    error = f"{type(exc).__name__}: {_hamilton_message(exc)}"
    if node is None:
        return f"dry run on SAMPLE_INPUTS failed: {error}", None
    variables = {v.name: v for v in flow.driver.list_available_variables()}
    deps = variables[node].required_dependencies | variables[node].optional_dependencies
    prompts = [name for name in flow.contract.prompt_nodes if name in deps]
    if len(prompts) == 1:
        return f"prompt does not render with SAMPLE_INPUTS (in '{node}'): {error}", prompts[0]
    return f"dry run on SAMPLE_INPUTS failed in node '{node}': {error}", node


def bindings_of(config: Mapping[str, Any]) -> dict[str, str]:
    """The prompt-registry bindings of an arm's config: node -> reference (`name@label` or
    `name@version`), from entries `node: registry:<reference>`."""
    return {
        node: value[len(REGISTRY_PREFIX) :].strip()
        for node, value in config.items()
        if isinstance(value, str) and value.startswith(REGISTRY_PREFIX)
    }


def registry_bindings(
    experiments: Iterable[Experiment], prompt_name: str
) -> list[tuple[Experiment, Arm, str]]:
    """(experiment, arm, prompt node) of every arm that binds a node to `prompt_name` in the
    prompt registry (`node: registry:<prompt_name>@<label or version>`)."""
    found = []
    for experiment in experiments:
        for arm in experiment.arms:
            for node, ref in bindings_of(arm.config).items():
                if ref.split("@", 1)[0] == prompt_name:
                    found.append((experiment, arm, node))
    return found


def code_template(experiment: Experiment, arm: Arm, node: str) -> str:
    """The template the flow's own code gives prompt node `node` in `arm`, registry bindings
    left out: what a registry prompt bound to that node replaces, and so the placeholders its
    rendering node fills. Raises `ValueError` when the node cannot be evaluated alone."""
    modules = [importlib.import_module(name) for name in experiment.modules_for(arm)]
    bindings = bindings_of(arm.config)
    config = {key: value for key, value in arm.config.items() if key not in bindings}
    dr = driver.Builder().with_modules(*modules).with_config(config).allow_module_overrides()
    try:
        template = dr.build().execute([node])[node]
    except Exception as exc:
        raise ValueError(f"node '{node}' does not evaluate alone: {exc}") from None
    if not isinstance(template, str):
        raise ValueError(f"node '{node}' is not a prompt template")
    return template


@dataclass(frozen=True)
class PlaceholderCheck:
    """A registry template checked against the prompt nodes bound to its name: `allowed` are
    the placeholders each node's code template uses (`experiment/arm/node` -> names), which
    its rendering node fills; `problems` name every placeholder a node would not fill."""

    placeholders: list[str]
    allowed: dict[str, list[str]]
    problems: list[str]


def check_placeholders(
    experiments: Iterable[Experiment], prompt_name: str, template: str
) -> PlaceholderCheck:
    """Check `template`, about to be pushed as `prompt_name`, against every prompt node an arm
    binds to that name (`str.format`-style `{name}` fields)."""
    try:
        used = placeholders(template)
    except ValueError as exc:
        return PlaceholderCheck([], {}, [f"the template cannot be parsed: {exc}"])
    allowed: dict[str, list[str]] = {}
    problems = []
    for experiment, arm, node in registry_bindings(experiments, prompt_name):
        where = f"{experiment.id}/{arm.name}/{node}"
        try:
            allowed[where] = placeholders(code_template(experiment, arm, node))
        except ValueError as exc:
            problems.append(f"{where}: cannot tell its placeholders: {exc}")
            continue
        unknown = [name for name in used if name not in allowed[where]]
        if unknown:
            fields = ", ".join("{" + name + "}" for name in unknown)
            permitted = ", ".join("{" + name + "}" for name in allowed[where]) or "none"
            problems.append(
                f"{fields} would not be filled by node '{node}' of experiment "
                f"'{experiment.id}', arm '{arm.name}' (its placeholders: {permitted})"
            )
    return PlaceholderCheck(used, allowed, problems)


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line per input: `'name': message`."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error.get("loc", ())) or "inputs"
        message = error.get("msg", "invalid")
        if error.get("type") == "missing":
            message = "required input is missing"
        elif error.get("type") == "extra_forbidden":
            message = "not an input of this flow"
        parts.append(f"input '{loc}': {message}")
    return "; ".join(parts)


def _registry_use(found: Any, ref: str) -> PromptUse:
    return PromptUse(
        prompt_id=found.name,
        version=found.ref,
        sha256=_sha256(found.template),
        text=found.template,
        source=REGISTRY_PREFIX + ref,
    )


def _model_name(experiment_id: str) -> str:
    return "".join(part.capitalize() for part in experiment_id.replace("_", "-").split("-")) + (
        "Inputs"
    )


def _check_serialisable(outputs: Mapping[str, Any]) -> None:
    """Outputs travel as JSON; a flow returning anything else is a bug of the flow."""
    for name, value in outputs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"output '{name}' is not JSON-serialisable: {exc}") from None


# -- validation helpers ---------------------------------------------------------------------------


def _override_problems(
    modules: list[ModuleType], config: Mapping[str, Any], prompt_nodes: Sequence[str]
) -> list[tuple[str, str]]:
    """Nodes a later module redefines; only prompt nodes may be replaced."""
    seen: dict[str, str] = {}
    problems = []
    for module in modules:
        graph = hamilton_graph.FunctionGraph.from_modules(module, config=dict(config))
        for node in graph.get_nodes():
            if node.user_defined:
                continue
            earlier = seen.get(node.name)
            if earlier is not None and node.name not in prompt_nodes:
                problems.append(
                    (
                        f"module '{module.__name__}' redefines node '{node.name}' of module "
                        f"'{earlier}'; a later module may replace prompt nodes only",
                        node.name,
                    )
                )
            seen[node.name] = module.__name__
    return problems


def _version_problems(
    dr: driver.Driver, prompt_nodes: Sequence[str], expected: Any
) -> list[tuple[str, str]]:
    """When the arm's config names a `prompt_version`, every prompt node that carries a
    `prompt_version` tag must carry that one (module switching must agree with the config)."""
    if expected is None:
        return []
    variables = {v.name: v for v in dr.list_available_variables()}
    problems = []
    for name in prompt_nodes:
        tags = variables[name].tags
        version = tags.get("prompt_version")
        if version is not None and str(version) != str(expected):
            problems.append(
                (
                    f"prompt node '{name}' from module '{tags.get('module')}' is prompt_version "
                    f"'{version}', but the arm's config asks for '{expected}'",
                    name,
                )
            )
    return problems


def _defined_node_names(modules: Sequence[ModuleType]) -> set[str]:
    """Names of the nodes the modules' functions define (`name__suffix` is a `@config.when`
    variant of `name`). Read from the functions, not the graph: Hamilton drops a function node
    whose name is also a config key and makes it an input fed by that value."""
    return {
        name.split("__")[0]
        for module in modules
        for name, _ in hamilton_graph_utils.find_functions(module)
    }


def _hamilton_message(exc: Exception) -> str:
    """Hamilton's "N errors encountered:" list as one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].endswith("encountered:"):
        lines = [line.removeprefix("Error: ") for line in lines[1:]]
    return "; ".join(lines)


def _describe_error(exc: Exception, node: str | None) -> tuple[ErrorKind, str, str | None]:
    """(error_kind, error message, error_reason) of a failed run."""
    if isinstance(exc, FlowInputError):
        return "bad_input", str(exc), exc.reason
    if isinstance(exc, LLMError):
        return "llm", f"LLM call failed after {exc.attempts} attempt(s): {exc}", exc.kind
    if isinstance(exc, PromptNotFoundError):
        return "prompt", f"prompt registry: {exc}", "not_found"
    if isinstance(exc, PromptRegistryError):
        return "prompt", f"prompt registry: {exc}", "unavailable"
    where = f" in node '{node}'" if node else ""
    return "internal", f"flow error{where}: {type(exc).__name__}: {exc}", None


@lru_cache(maxsize=512)
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
