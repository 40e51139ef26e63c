"""The flow contract, read from a built Hamilton driver: what a request may give and gets back.

A flow is any module (or modules) of Hamilton functions. The platform keeps no list of its
own; from the module constants and the graph the driver built it derives:

| what | where from |
|---|---|
| run inputs | the names in `INPUTS`; type and default from the graph's external input nodes |
| outputs | `FINAL_VARS` (node names) |
| prompts | nodes tagged `prompt_id` (`list_available_variables(tag_filter=...)`) |
| configuration | every other external input, and every key a `@config.*` decorator reads |
| sample inputs | `SAMPLE_INPUTS`, for the dry run `abtest validate` does |

An input is optional when every node that reads it declares a default (Hamilton's optional
dependency), and its default is that value. Everything that is not a run input is set by the
arm's config or its default, never by a request: a caller cannot pick the model or raise a
limit, since the request model built here forbids extra fields.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, Any

from hamilton import driver
from hamilton import graph_utils as hamilton_graph_utils
from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = [
    "INJECTED",
    "SUPPORTED_TYPES",
    "FlowContract",
    "InputSpec",
    "config_keys_read",
    "did_you_mean",
    "input_model",
    "prompt_nodes",
    "read_contract",
]

INJECTED = "llm_client"
"""The one input the platform supplies itself."""

SUPPORTED_TYPES: tuple[Any, ...] = (str, int, float, bool, bytes, list[str], dict[str, Any])
"""Input types a request can carry (JSON, with bytes as base64, or multipart form fields)."""

MAX_LIST_ITEMS = 1000

Problem = tuple[str, str | None]
"""(message, node) of one thing wrong with a flow."""


@dataclass(frozen=True)
class InputSpec:
    """One run input: its name, type, and default when it is optional."""

    name: str
    type: Any
    required: bool
    default: Any = None

    @property
    def type_name(self) -> str:
        return _type_name(self.type)

    @property
    def structured(self) -> bool:
        """A list or dict input: JSON text in a form field or on the command line."""
        return typing.get_origin(_strip_optional(self.type)) in (list, dict)

    @property
    def binary(self) -> bool:
        """A bytes input: a file upload in a form, `--input-file` on the command line."""
        return _strip_optional(self.type) is bytes


@dataclass(frozen=True)
class FlowContract:
    """What one arm's flow takes and returns, read from its graph."""

    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    prompt_nodes: tuple[str, ...]
    config_keys: frozenset[str]
    sample_inputs: Mapping[str, Any]
    uses_llm: bool = True

    def differences(self, other: FlowContract) -> list[str]:
        """How `other` (another arm) differs from this contract in what all arms of one
        experiment must share (inputs: name, type, optional; outputs), one sentence each."""
        found = []
        mine = {s.name: s for s in self.inputs}
        theirs = {s.name: s for s in other.inputs}
        for name in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(name), theirs.get(name)
            if a is None:
                found.append(f"input '{name}' is not an input of the control arm")
            elif b is None:
                found.append(f"input '{name}' of the control arm is missing")
            elif a.type_name != b.type_name:
                found.append(
                    f"input '{name}' is {b.type_name}, but {a.type_name} in the control arm"
                )
            elif a.required != b.required:
                state = "required" if b.required else "optional"
                found.append(f"input '{name}' is {state}, unlike in the control arm")
        if self.outputs != other.outputs:
            found.append(
                f"outputs are {', '.join(other.outputs)}, but {', '.join(self.outputs)} "
                "in the control arm"
            )
        return found


def read_contract(
    dr: driver.Driver,
    modules: Sequence[ModuleType],
    config: Mapping[str, Any],
    bound_prompts: Iterable[str] = (),
) -> tuple[FlowContract | None, list[Problem]]:
    """The contract of a built driver and every problem found.

    The contract is None when the flow cannot run at all (bad `INPUTS` or `FINAL_VARS`, an
    input nothing provides, no `SAMPLE_INPUTS`); config keys the flow does not read are
    problems too, but the flow can still be dry-run, so one pass finds the rest. `config` is
    the arm's config; `bound_prompts` are the prompt nodes the arm binds to the prompt
    registry (config keys that are allowed to name a node).
    """
    problems: list[Problem] = []
    variables = {v.name: v for v in dr.list_available_variables()}
    read = {
        dep
        for v in variables.values()
        if not v.is_external_input
        for dep in (*v.required_dependencies, *v.optional_dependencies)
    }
    # Hamilton lists every config key as an external input; only those a node reads count
    external = {name for name, v in variables.items() if v.is_external_input and name in read}
    prompts = prompt_nodes(dr)
    names = _names(modules, "INPUTS", problems)
    outputs = _names(modules, "FINAL_VARS", problems)
    if names is None or outputs is None:
        return None, problems

    inputs = []
    for name in names:
        spec, problem = _input_spec(name, variables, external)
        if problem is not None:
            problems.append(problem)
        elif spec is not None:
            inputs.append(spec)
    for name in outputs:
        if name not in variables or name in external:
            close = did_you_mean(name, [n for n in variables if n not in external])
            problems.append(
                (f"FINAL_VARS names '{name}', which is not a node of the flow{close}", None)
            )
    problems.extend(_unset_inputs(variables, external, set(names), config, modules))
    samples = _contract_constant(modules, "SAMPLE_INPUTS")
    if samples is None:
        problems.append(
            ("the flow defines no SAMPLE_INPUTS (run inputs for the validation dry run)", None)
        )
    elif not isinstance(samples, Mapping):
        problems.append((f"SAMPLE_INPUTS must be a dict, got {type(samples).__name__}", None))
    fatal = bool(problems)  # the flow cannot run: no contract, no dry run

    read_keys = config_keys_read(modules)
    configurable = (external - set(names) - {INJECTED}) | read_keys
    bound = set(bound_prompts)
    for key in config:
        if key in bound or key.startswith("hamilton."):
            continue
        if key in names:
            problems.append(
                (f"config key '{key}' is a run input: each request sets it, not the arm", key)
            )
        elif key not in configurable:
            close = did_you_mean(key, sorted(configurable))
            known = ", ".join(sorted(configurable)) or "none"
            problems.append(
                (
                    f"config key '{key}' is not read by the flow{close} (the flow reads: {known})",
                    key,
                )
            )
    if fatal:
        return None, problems
    contract = FlowContract(
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        prompt_nodes=prompts,
        config_keys=frozenset(configurable),
        sample_inputs=dict(samples or {}),
        uses_llm=INJECTED in external,
    )
    return contract, problems


def input_model(
    name: str, contract: FlowContract, *, max_chars: int, max_bytes: int
) -> type[BaseModel]:
    """A pydantic model of the run inputs: unknown names are refused, each value is checked
    against its type and size, and pydantic's errors name the input.

    JSON carries bytes as base64 (`val_json_bytes="base64"`).
    """
    fields: dict[str, Any] = {}
    for spec in contract.inputs:
        annotation = _sized(spec.type, max_chars, max_bytes)
        fields[spec.name] = (annotation, ... if spec.required else spec.default)
    return create_model(
        name,
        __config__=ConfigDict(
            extra="forbid", val_json_bytes="base64", ser_json_bytes="base64", frozen=True
        ),
        **fields,
    )


def prompt_nodes(dr: driver.Driver) -> tuple[str, ...]:
    """The prompt nodes of a graph: every function node tagged `prompt_id`."""
    return tuple(
        v.name
        for v in dr.list_available_variables(tag_filter={"prompt_id": None})
        if not v.is_external_input
    )


def config_keys_read(modules: Sequence[ModuleType]) -> set[str]:
    """Config keys read by the modules' function decorators (`@config.when(prompt_version=...)`
    reads `prompt_version`): Hamilton resolves them at build time, so no node shows them."""
    keys: set[str] = set()
    for module in modules:
        for _, fn in hamilton_graph_utils.find_functions(module):
            for decorators in vars(fn).values():
                if not isinstance(decorators, list):
                    continue
                for decorator in decorators:
                    required = getattr(decorator, "required_config", None)
                    optional = getattr(decorator, "optional_config", None)
                    if callable(required):
                        keys.update(required() or ())
                    if callable(optional):
                        keys.update(optional() or {})
    return {key for key in keys if not key.startswith("hamilton.")}


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# -- helpers -----------------------------------------------------------------------------------


def _contract_constant(modules: Sequence[ModuleType], name: str) -> Any:
    """A contract constant of the first module that defines it (a later module of an arm
    overrides prompts only, so the base flow's constants hold)."""
    for module in modules:
        if hasattr(module, name):
            return getattr(module, name)
    return None


def _names(
    modules: Sequence[ModuleType], constant: str, problems: list[Problem]
) -> tuple[str, ...] | None:
    value = _contract_constant(modules, constant)
    what = "run inputs" if constant == "INPUTS" else "output nodes"
    if value is None:
        problems.append((f"the flow defines no {constant} (the names of its {what})", None))
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        problems.append((f"{constant} must be a tuple of node names, got {value!r}", None))
        return None
    return tuple(value)


def _input_spec(
    name: str, variables: Mapping[str, Any], external: set[str]
) -> tuple[InputSpec | None, Problem | None]:
    if name == INJECTED:
        return None, (f"INPUTS names '{INJECTED}', which the platform injects", name)
    if name not in variables:
        close = did_you_mean(name, external - {INJECTED})
        return None, (f"INPUTS names '{name}', which no node of the flow reads{close}", name)
    if name not in external:
        return None, (
            f"INPUTS names '{name}', which is a node computed by the flow, not an external input",
            name,
        )
    node_type = variables[name].type
    if not _supported(node_type):
        supported = ", ".join(_type_name(t) for t in SUPPORTED_TYPES)
        return None, (
            f"input '{name}' has type {_type_name(node_type)}, which a request cannot carry "
            f"(supported: {supported})",
            name,
        )
    readers = [v for v in variables.values() if name in v.required_dependencies]
    if readers:
        return InputSpec(name, node_type, required=True), None
    defaults = [
        v.optional_dependencies_default_values[name]
        for v in sorted(variables.values(), key=lambda v: v.name)
        if name in v.optional_dependencies
    ]
    return InputSpec(
        name, node_type, required=False, default=defaults[0] if defaults else None
    ), None


def _unset_inputs(
    variables: Mapping[str, Any],
    external: set[str],
    inputs: set[str],
    config: Mapping[str, Any],
    modules: Sequence[ModuleType],
) -> list[Problem]:
    """External inputs some node requires that neither a request, the arm's config, a default
    nor the platform provides. A `@config.when` node whose condition no arm value meets
    becomes such an input (Hamilton builds anyway and fails only at execute time)."""
    problems: list[Problem] = []
    for name in sorted(external - inputs - {INJECTED} - set(config)):
        readers = sorted(v.name for v in variables.values() if name in v.required_dependencies)
        if not readers:
            continue
        variants = _variant_versions(modules, name)
        if variants:
            asked = config.get("prompt_version")
            problems.append(
                (
                    f"node '{name}' has no implementation for this arm's config "
                    f"(prompt_version {asked!r}; implemented: {', '.join(variants)})"
                    + did_you_mean(str(asked), variants),
                    name,
                )
            )
        else:
            problems.append(
                (
                    f"'{name}' (read by {', '.join(readers)}) is neither a run input (INPUTS), "
                    "set by the arm's config, given a default, nor a node of the flow",
                    name,
                )
            )
    return problems


def _variant_versions(modules: Sequence[ModuleType], name: str) -> list[str]:
    """`prompt_version` tags of the `name__suffix` functions that implement node `name`."""
    found: list[str] = []
    for module in modules:
        for fn_name, fn in hamilton_graph_utils.find_functions(module):
            if fn_name.split("__")[0] != name or "__" not in fn_name:
                continue
            for decorator in vars(fn).get("decorate_nodes", ()):
                version = getattr(decorator, "tags", {}).get("prompt_version")
                if version is not None and version not in found:
                    found.append(str(version))
    return found


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _supported(tp: Any) -> bool:
    return _strip_optional(tp) in SUPPORTED_TYPES


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _sized(tp: Any, max_chars: int, max_bytes: int) -> Any:
    """`tp` with the platform's size limits, so an oversized value is refused by name."""
    base = _strip_optional(tp)
    optional = base is not tp
    if base is str:
        sized: Any = Annotated[str, Field(max_length=max_chars)]
    elif base is bytes:
        sized = Annotated[bytes, Field(max_length=max_bytes)]
    elif base == list[str]:
        item = Annotated[str, Field(max_length=max_chars)]
        sized = Annotated[list[item], Field(max_length=MAX_LIST_ITEMS)]  # type: ignore[valid-type]
    else:
        sized = base
    return sized | None if optional else sized
