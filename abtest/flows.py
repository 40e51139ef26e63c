"""Run experiment arms' prompt flows: one Hamilton driver per (experiment, arm), built at load.

`FlowRegistry.from_experiments(experiments, llm_client, prompt_registry)` builds every arm's
driver once, `driver.Builder().with_modules(*modules).with_config(config).with_adapters(hook)`,
and validates it before any request arrives; every problem of every arm is gathered into one
`FlowConfigError` naming the experiment, the arm and the node:

1. the modules import and the driver builds;
2. a module listed after the first replaces only prompt nodes (module switching, below);
3. every prompt node (a module's `PROMPT_NODES`, or any node tagged `prompt_id`) is a function
   node tagged with the `prompt_version` the arm's config asks for. Hamilton would otherwise
   turn a prompt node that no `@config.when` selects (`prompt_version: v9`) into a required
   *input* and fail only at execute time;
4. config keys do not shadow nodes (Hamilton would silently use the value instead of the node),
   except registry bindings;
5. registry bindings resolve in the prompt registry;
6. `validate_execution(FINAL_VARS)` passes with the run inputs;
7. every prompt renders: a dry run of the module's `RENDERED_PROMPTS` with its `SAMPLE_VALUES`
   (no LLM call), which also yields the template texts for the fingerprint.

`run(experiment_id, arm, inputs)` executes the arm's driver and returns a `FlowResult`; it
never raises for a failed run (bad PDF, LLM down after retries, missing registry prompt, bugs):
`error` and `error_kind` say what happened.

Module switching. An arm may list modules, e.g. `[variants.summarization, variants.prompts.v2]`.
Drivers are built with Hamilton's `allow_module_overrides()`, so the prompt nodes of a later
module replace the base module's nodes of the same name; check 2 keeps that from replacing
anything but prompts, and check 3 makes the arm's `prompt_version` agree with the tags of the
prompts actually in the graph. No change to the experiment file format is needed.

Registry binding (prompts as runtime data). A config entry whose key is a prompt node and whose
value is `"registry:<name>@<label or version>"` binds that node to the prompt registry, e.g.
`summarize_text_from_summaries_prompt: registry:final-summary@production`. The key is removed
from the config given to Hamilton; each run resolves the reference (cached by the registry,
TTL 30 s) and passes the template through `execute(overrides=...)`, and records the exact
version in `FlowResult.prompts[node].version` ("final-summary@3").

Observability. `FlowRecorder`, a `NodeExecutionHook`, times every node, records every node
tagged `prompt_id` as a `PromptUse` (with its sha256) and sums usage from every node result that
is a `Completion` or a list of them. Per-run state lives in a `ContextVar` that `run` sets:
Hamilton's default executor calls the hooks in the thread that called `execute`, so concurrent
runs of the same driver from several threads (or `asyncio.to_thread`, which copies the
context) each see only their own record, without locks. (A parallel Hamilton executor would
call hooks elsewhere; these drivers use the default one.) Node bodies log nothing; Hamilton's
own error logging is muted while a run is handled here, and `run` logs one line per failure.

Async. `arun` is `asyncio.to_thread(run, ...)`: Hamilton's `AsyncDriver` runs synchronous nodes
(pypdf, chunking, the sync SDK calls) on the event loop and would block it (DESIGN.md, Known
pitfalls), and a worker thread keeps one code path for sync and async callers.
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import hashlib
import importlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

# Hamilton loads a plugin for every data library it finds installed (matplotlib, polars,
# plotly...) unless told not to; our flows pass strings and lists, so skipping them saves
# ~40 MB and ~0.5 s per process. Set before the first `hamilton` import.
os.environ.setdefault("HAMILTON_AUTOLOAD_EXTENSIONS", "0")

from hamilton import driver  # noqa: E402
from hamilton import graph as hamilton_graph
from hamilton import graph_utils as hamilton_graph_utils
from hamilton.lifecycle import NodeExecutionHook

from abtest.experiments import Arm, Experiment
from abtest.llm import Completion, LLMClient, LLMError
from abtest.pdfs import PdfError
from abtest.prompts import PromptNotFoundError, PromptRegistry, PromptRegistryError

__all__ = [
    "REGISTRY_PREFIX",
    "RUN_INPUTS",
    "ErrorKind",
    "FlowConfigError",
    "FlowProblem",
    "FlowRecorder",
    "FlowRegistry",
    "FlowResult",
    "PromptUse",
]

logger = logging.getLogger(__name__)

REGISTRY_PREFIX = "registry:"
RUN_INPUTS = ("pdf_source", "user_query")
"""The inputs a caller gives `run`; the registry adds `llm_client`. Nothing else is accepted,
so a request can never override the arm's config (Hamilton merges config and inputs)."""

MAX_QUERY_CHARS = 4000
DEFAULT_FINAL_VARS = ("summarized_text",)

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
    "bad_input" (unusable PDF or inputs), "llm" (model call failed after retries), "prompt"
    (registry prompt missing or registry unreachable) or "internal" (a bug; logged).
    `error_reason` refines it where known: a `PdfError.reason` ("too_large", "corrupt",
    "encrypted", "no_text"), "inputs", or an `LLMError.kind` ("server_error", "timeout", ...).

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

    @property
    def text(self) -> str | None:
        """The summary (`outputs["summarized_text"]`), None when the run failed."""
        return self.outputs.get("summarized_text")


@dataclass(frozen=True)
class FlowProblem:
    """One reason an arm's flow is unusable."""

    experiment_id: str
    arm: str
    message: str
    node: str | None = None

    def __str__(self) -> str:
        where = f"experiment '{self.experiment_id}', arm '{self.arm}'"
        if self.node:
            where += f", node '{self.node}'"
        return f"{where}: {self.message}"


class FlowConfigError(ValueError):
    """Arms whose flows cannot run; carries every `FlowProblem` found."""

    def __init__(self, problems: Sequence[FlowProblem]):
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{count} {noun} in prompt flows:\n  " + "\n  ".join(map(str, self.problems))
        )


# -- per-run recording ---------------------------------------------------------------------------


class _RunRecord:
    """What the hook collects during one run."""

    __slots__ = ("started", "timings_ms", "prompts", "completions")

    def __init__(self) -> None:
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
    final_vars: list[str]
    bindings: dict[str, str]
    code_prompts: dict[str, PromptUse]
    config_json: str
    fingerprints: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict)


class _NoLLMClient(LLMClient):
    """Stands in for the LLM client in load-time validation when none was given (never called:
    validation executes no LLM node)."""

    def __init__(self) -> None:  # no SDK clients, no configuration needed
        pass


class _BadInput(ValueError):
    pass


class FlowRegistry:
    """Every arm's Hamilton driver, built and validated once; `run` executes one per request.

    Use `FlowRegistry.from_experiments(...)`. `llm_client=None` creates an `LLMClient()` from
    `OPENAI_BASE_URL`/`OPENAI_API_KEY` at the first run (so validation needs no model
    endpoint). `prompt_registry` is needed only by arms that bind prompts to the registry.
    """

    def __init__(
        self,
        experiments: Mapping[str, Experiment] | Sequence[Experiment],
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
    ) -> None:
        _install_log_filter()
        self._llm_client = llm_client
        self._client_lock = threading.Lock()
        self._prompt_registry = prompt_registry
        self._recorder = FlowRecorder()
        self._flows: dict[tuple[str, str], _Flow] = {}
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
                for arm in experiment.arms:
                    flow, found = self._build(experiment, arm)
                    problems.extend(found)
                    if flow is not None:
                        self._flows[(experiment.id, arm.name)] = flow
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
    ) -> FlowRegistry:
        """Build and validate one driver per (experiment, arm); raises `FlowConfigError`."""
        return cls(experiments, llm_client=llm_client, prompt_registry=prompt_registry)

    # -- queries ----------------------------------------------------------------------------

    def keys(self) -> list[tuple[str, str]]:
        """`(experiment_id, arm)` of every flow."""
        return list(self._flows)

    def __contains__(self, key: object) -> bool:
        return key in self._flows

    def hamilton_driver(self, experiment_id: str, arm: str) -> driver.Driver:
        """The arm's Hamilton driver (for visualisation or inspection)."""
        return self._flow(experiment_id, arm).driver

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

    def run(self, experiment_id: str, arm: str, inputs: Mapping[str, Any]) -> FlowResult:
        """Run the arm's flow on `inputs` (`pdf_source`, `user_query`); never raises for a
        failed run (see `FlowResult.error_kind`). Unknown experiment or arm: `KeyError`."""
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
            _check_inputs(inputs)
            overrides = self._resolve_bindings(flow)
            record.prompts.update(overrides)
            outputs = flow.driver.execute(
                flow.final_vars,
                inputs={**inputs, "llm_client": self._client()},
                overrides={node: use.text for node, use in overrides.items()} or None,
            )
        except Exception as exc:  # a failed run is a result, not an exception
            kind, error, reason = _describe_error(exc)
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

    async def arun(self, experiment_id: str, arm: str, inputs: Mapping[str, Any]) -> FlowResult:
        """`run` in a worker thread, so the event loop stays free while the flow's synchronous
        nodes (PDF parsing, LLM calls) run. Hamilton's AsyncDriver would run them on the loop."""
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
            uses[node] = PromptUse(
                prompt_id=found.name,
                version=found.ref,
                sha256=_sha256(found.template),
                text=found.template,
                source=REGISTRY_PREFIX + ref,
            )
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
                    bound[name] = PromptUse(
                        found.name,
                        found.ref,
                        _sha256(found.template),
                        found.template,
                        REGISTRY_PREFIX + ref,
                    )
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

        bindings = {
            key: value[len(REGISTRY_PREFIX) :].strip()
            for key, value in arm.config.items()
            if isinstance(value, str) and value.startswith(REGISTRY_PREFIX)
        }
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

        nodes = {n.name: n for n in dr.list_available_variables()}
        functions = {name for name, n in nodes.items() if not n.is_external_input}
        prompt_nodes = _unique(
            [name for m in modules for name in getattr(m, "PROMPT_NODES", ())]
            + [name for name, n in nodes.items() if "prompt_id" in n.tags]
        )
        final_vars = list(_contract(modules, "FINAL_VARS", DEFAULT_FINAL_VARS))

        if len(modules) > 1:
            for message, node in _override_problems(modules, config, prompt_nodes):
                problem(message, node)
        defined = _defined_node_names(modules)
        for key in config:
            if key in defined:
                problem(
                    f"config key '{key}' would replace node '{key}' with the constant "
                    f"{config[key]!r}; bind a prompt with '{REGISTRY_PREFIX}<name>@<label>' "
                    "or remove the key",
                    key,
                )

        for message, node in _prompt_problems(
            nodes, prompt_nodes, bindings, config.get("prompt_version"), modules
        ):
            problem(message, node)
        bound, binding_problems = self._bind(bindings, prompt_nodes)
        for message, node in binding_problems:
            problem(message, node)
        if problems:
            return None, problems

        overrides = {name: use.text for name, use in bound.items()}
        client = self._llm_client if self._llm_client is not None else _NoLLMClient()
        run_inputs = {"pdf_source": b"%PDF-", "user_query": "sample question", "llm_client": client}
        try:
            dr.validate_execution(final_vars, inputs=run_inputs, overrides=overrides or None)
        except Exception as exc:
            problem(f"cannot execute {', '.join(final_vars)}: {_hamilton_message(exc)}")
            return None, problems

        code_prompts, render_problems = _dry_run(dr, modules, functions, prompt_nodes, bound)
        for message, node in render_problems:
            problem(message, node)
        if problems:
            return None, problems

        flow = _Flow(
            experiment_id=experiment.id,
            arm=arm.name,
            config=dict(arm.config),
            modules=module_names,
            driver=dr,
            final_vars=final_vars,
            bindings=bindings,
            code_prompts=code_prompts,
            config_json=json.dumps(
                arm.config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
            ),
        )
        return flow, problems


# -- validation helpers ---------------------------------------------------------------------------


def _dry_run(
    dr: driver.Driver,
    modules: list[ModuleType],
    functions: set[str],
    prompt_nodes: list[str],
    bound: Mapping[str, PromptUse],
) -> tuple[dict[str, PromptUse], list[tuple[str, str | None]]]:
    """Render every prompt with the modules' sample values; returns the code templates used."""
    problems: list[tuple[str, str | None]] = []
    samples: Mapping[str, Any] = _contract(modules, "SAMPLE_VALUES", {})
    rendered = list(_contract(modules, "RENDERED_PROMPTS", ()))
    overrides = {k: v for k, v in samples.items() if k in functions}
    overrides.update({name: use.text for name, use in bound.items()})
    inputs = {k: v for k, v in samples.items() if k not in functions}
    templates = [name for name in prompt_nodes if name not in bound]
    code_prompts: dict[str, PromptUse] = {}
    try:
        values = dr.execute(templates, inputs=inputs, overrides=overrides) if templates else {}
    except Exception as exc:
        return code_prompts, [(f"prompt templates do not evaluate: {exc}", None)]
    variables = {n.name: n for n in dr.list_available_variables()}
    for name in templates:
        tags = variables[name].tags
        code_prompts[name] = PromptUse(
            prompt_id=str(tags.get("prompt_id", name)),
            version=str(tags.get("prompt_version", "")),
            sha256=_sha256(values[name]),
            text=values[name],
            source=str(tags.get("module", "")),
        )
    for name in rendered:
        try:
            dr.execute([name], inputs=inputs, overrides=overrides)
        except Exception as exc:
            uses = [d for d in variables[name].required_dependencies if d in prompt_nodes]
            node = uses[0] if len(uses) == 1 else name
            problems.append(
                (f"prompt does not render with sample inputs (in '{name}'): {exc}", node)
            )
    return code_prompts, problems


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


def _prompt_problems(
    nodes: Mapping[str, Any],
    prompt_nodes: Sequence[str],
    bindings: Mapping[str, str],
    expected: Any,
    modules: Sequence[ModuleType],
) -> list[tuple[str, str]]:
    """Every prompt node not bound to the registry must be a function node tagged with
    `prompt_id` and the `prompt_version` the arm asks for."""
    known = _unique(v for m in modules for v in getattr(m, "PROMPT_VERSIONS", ()))
    problems = []
    for name in prompt_nodes:
        if name in bindings:
            continue
        found = nodes.get(name)
        if found is None or found.is_external_input:
            problems.append((_missing_prompt(name, expected, known), name))
            continue
        tags = found.tags
        if "prompt_id" not in tags or "prompt_version" not in tags:
            problems.append(
                (f"prompt node '{name}' needs @tag(prompt_id=..., prompt_version=...)", name)
            )
        elif expected is not None and str(tags["prompt_version"]) != str(expected):
            problems.append(
                (
                    f"prompt node '{name}' from module '{tags.get('module')}' is prompt_version "
                    f"'{tags['prompt_version']}', but the arm's config asks for '{expected}'",
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


def _missing_prompt(name: str, expected: Any, known: Sequence[str]) -> str:
    if expected is None:
        return f"prompt node '{name}' has no implementation (the arm sets no prompt_version)"
    message = f"prompt node '{name}' has no implementation for prompt_version '{expected}'"
    if known:
        message += f" (implemented: {', '.join(known)})"
        close = difflib.get_close_matches(str(expected), list(known), n=1, cutoff=0.6)
        if close:
            message += f"; did you mean '{close[0]}'?"
    return message


def _hamilton_message(exc: Exception) -> str:
    """Hamilton's "N errors encountered:" list as one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].endswith("encountered:"):
        lines = [line.removeprefix("Error: ") for line in lines[1:]]
    return "; ".join(lines)


def _contract(modules: Sequence[ModuleType], name: str, default: Any) -> Any:
    """A flow-contract constant (`FINAL_VARS`, `SAMPLE_VALUES`, ...) of the first module
    that defines it."""
    for module in modules:
        if hasattr(module, name):
            return getattr(module, name)
    return default


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _check_inputs(inputs: Mapping[str, Any]) -> None:
    if not isinstance(inputs, Mapping):
        raise _BadInput(f"inputs must be a mapping, got {type(inputs).__name__}")
    missing = [k for k in RUN_INPUTS if k not in inputs]
    unknown = sorted(set(inputs) - set(RUN_INPUTS))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        raise _BadInput(f"bad inputs ({'; '.join(parts)}); expected {', '.join(RUN_INPUTS)}")
    query = inputs["user_query"]
    if not isinstance(query, str) or not query.strip():
        raise _BadInput("user_query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise _BadInput(
            f"user_query is too long: {len(query)} characters (limit {MAX_QUERY_CHARS})"
        )
    source = inputs["pdf_source"]
    if not (
        isinstance(source, str | Path | bytes | bytearray | memoryview)
        or callable(getattr(source, "read", None))
    ):
        raise _BadInput(
            f"pdf_source must be a path, bytes or a binary file object, got {type(source).__name__}"
        )


def _describe_error(exc: Exception) -> tuple[ErrorKind, str, str | None]:
    """(error_kind, error message, error_reason) of a failed run."""
    if isinstance(exc, _BadInput):
        return "bad_input", str(exc), "inputs"
    if isinstance(exc, PdfError):
        return "bad_input", f"unusable PDF ({exc.reason}): {exc}", exc.reason
    if isinstance(exc, LLMError):
        return "llm", f"LLM call failed after {exc.attempts} attempt(s): {exc}", exc.kind
    if isinstance(exc, PromptNotFoundError):
        return "prompt", f"prompt registry: {exc}", "not_found"
    if isinstance(exc, PromptRegistryError):
        return "prompt", f"prompt registry: {exc}", "unavailable"
    return "internal", f"internal error: {type(exc).__name__}: {exc}", None


@lru_cache(maxsize=512)
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
