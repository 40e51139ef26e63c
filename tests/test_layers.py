"""Imports point down the layers (DESIGN.md, Layout; the list is also in `abtest/__init__.py`).

Every ``.py`` under ``abtest/`` and ``analysis/`` is parsed with `ast`. Every import counts: at
module level, inside functions (lazy imports still run, just later), under ``if TYPE_CHECKING:``
(a type named in an annotation is still a dependency) and ``importlib.import_module("...")``
with a literal name. Names built at run time (the lazy tables of the package facades) are not
seen; those facades are checked to import nothing at module level instead.

A module may import its own layer and the layers below it, never one above. A new module gets a
layer by being added to `LAYERS` (a package's entry covers its submodules): the test fails for a
module without one, so every module's place is a decision someone wrote down.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("abtest", "analysis")

SCHEMA, CORE, RUNTIME, EDGES, DEVTOOLS = 1, 2, 3, 4, 5
LAYER_NAMES = {
    SCHEMA: "schema",
    CORE: "core",
    RUNTIME: "runtime",
    EDGES: "edges",
    DEVTOOLS: "devtools",
}

LAYERS: dict[str, int] = {
    # What an experiment file, an event and the configuration are: plain data, no I/O.
    "abtest.experiments": SCHEMA,
    "abtest.event_fields": SCHEMA,
    "abtest.settings": SCHEMA,
    "abtest.fingerprints": SCHEMA,
    "abtest.arm_state": SCHEMA,
    # Pure rules and statistics over that data.
    "abtest.router": CORE,
    "abtest.targeting": SCHEMA,
    "abtest.sdk_payload": CORE,
    "abtest.tracking": CORE,
    "analysis": CORE,
    # Running flows: Hamilton drivers, the LLM client, the prompt registry.
    "abtest.flows": RUNTIME,
    "abtest.llm": RUNTIME,
    "abtest.tokens": RUNTIME,
    "abtest.prompts": RUNTIME,
    "abtest.platform": RUNTIME,
    # Offline evaluation: datasets, evaluators and judges run flows; its cache and runner use
    # the store.
    "abtest.evaluation": RUNTIME,
    "abtest.evaluation.cache": EDGES,
    "abtest.evaluation.runner": EDGES,
    "abtest.evaluation.outputs": EDGES,
    # I/O and entry points: the event log, the store, the service, the command line.
    "abtest.events": EDGES,
    "abtest.store": EDGES,
    "abtest.state_store": EDGES,
    "abtest.api": EDGES,
    "abtest.client": EDGES,
    "abtest.cli": EDGES,
    "abtest.telemetry": EDGES,
    "abtest.monitor": EDGES,
    "abtest.judging": EDGES,
    # Local model server and demo: on the side, never on the serving path.
    "abtest.devtools": DEVTOOLS,
}

#: The `abtest` package itself: the facade a flow author imports `Completion`, `LLMClient` and
#: `FlowInputError` from (runtime names). Unlike the entries of `LAYERS` it covers no submodule.
FACADE = "abtest"
FACADE_LAYER = RUNTIME

#: The one import that may point up: the CLI is the composition root and starts the local model
#: server (devtools) when no LLM endpoint is configured. Only `abtest.cli`, only `abtest.devtools`
#: modules, and only inside a command function, so importing the CLI never loads devtools.
UPWARD_EXCEPTIONS: tuple[tuple[str, str], ...] = (("abtest.cli", "abtest.devtools"),)


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    path: Path
    line: int
    lazy: bool  # inside a function: runs when the function is called
    type_only: bool  # under `if TYPE_CHECKING:`: never runs

    def __str__(self) -> str:
        how = " (lazy)" if self.lazy else " (type only)" if self.type_only else ""
        return (
            f"{self.path.relative_to(ROOT)}:{self.line}: {self.source} [{_describe(self.source)}] "
            f"imports {self.target} [{_describe(self.target)}]{how}"
        )


def _module_files() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = (path, is_package)
    return modules


MODULES = _module_files()


def layer_of(module: str) -> int | None:
    if module == FACADE:
        return FACADE_LAYER
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def _describe(module: str) -> str:
    layer = layer_of(module)
    return "no layer" if layer is None else f"{layer} {LAYER_NAMES[layer]}"


def _is_ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _literal_import(node: ast.Call) -> str | None:
    """The module of ``importlib.import_module("x")`` / ``__import__("x")``, if literal."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _imports_of(source: str, text: str, path: Path, is_package: bool) -> list[Import]:
    """The imports of our own modules in one module's source text."""
    found: list[Import] = []
    package = source if is_package else source.rpartition(".")[0]

    def add(target: str, node: ast.stmt | ast.expr, lazy: bool, type_only: bool) -> None:
        if _is_ours(target):
            found.append(Import(source, target, path, node.lineno, lazy, type_only))

    def visit(node: ast.AST, lazy: bool, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, lazy, type_only)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from this module's package
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            targets = {f"{base}.{alias.name}" for alias in node.names}
            for target in sorted({t if t in MODULES else base for t in targets}):
                add(target, node, lazy, type_only)
        elif isinstance(node, ast.Call) and (target := _literal_import(node)):
            add(target, node, lazy, type_only)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, lazy, True)
            for child in node.orelse:
                visit(child, lazy, type_only)
            return
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_only)

    visit(ast.parse(text, str(path)), False, False)
    return found


IMPORTS = [
    imp
    for name, (path, is_package) in MODULES.items()
    for imp in _imports_of(name, path.read_text(encoding="utf-8"), path, is_package)
]


def _allowed_upward(imp: Import) -> bool:
    return imp.lazy and any(
        imp.source == source and (imp.target == target or imp.target.startswith(target + "."))
        for source, target in UPWARD_EXCEPTIONS
    )


def test_every_module_has_a_layer():
    missing = sorted(name for name in MODULES if layer_of(name) is None)
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def test_the_scanner_sees_every_kind_of_import():
    """Guards the scanner itself, on a made-up module `abtest.flows.example`."""
    text = """
import abtest.router
from typing import TYPE_CHECKING
from abtest import store
from . import registry
from ..events import EventLog

if TYPE_CHECKING:
    from abtest.flows import FlowResult

def command():
    from abtest.devtools.local import ensure_llm_endpoint
    importlib.import_module("analysis.report")
"""
    path = ROOT / "abtest" / "flows" / "example.py"
    found = {
        (i.target, i.lazy, i.type_only): i.line
        for i in _imports_of("abtest.flows.example", text, path, is_package=False)
    }
    assert found == {
        ("abtest.router", False, False): 2,
        ("abtest.store", False, False): 4,
        ("abtest.flows.registry", False, False): 5,
        ("abtest.events", False, False): 6,
        ("abtest.flows", False, True): 9,
        ("abtest.devtools.local", True, False): 12,
        ("analysis.report", True, False): 13,
    }


def test_imports_point_down():
    upward = [
        imp
        for imp in IMPORTS
        if (layer_of(imp.target) or 0) > (layer_of(imp.source) or 0) and not _allowed_upward(imp)
    ]
    assert not upward, "imports pointing up a layer:\n" + "\n".join(map(str, upward))


def test_analysis_uses_only_the_bottom_layer_of_abtest():
    """So that a notebook can analyse events without the service, its store or its runtime."""
    wrong = [
        imp
        for imp in IMPORTS
        if imp.source.split(".")[0] == "analysis"
        and imp.target.split(".")[0] == "abtest"
        and (imp.target == FACADE or layer_of(imp.target) != SCHEMA)
    ]
    assert not wrong, "analysis may import only layer 1 of abtest:\n" + "\n".join(map(str, wrong))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_roots_import_nothing_when_loaded(package):
    """A package's __init__ runs on every import of one of its modules: importing
    `abtest.experiments` must not load the flow runtime through `abtest/__init__.py`."""
    eager = [imp for imp in IMPORTS if imp.source == package and not imp.lazy and not imp.type_only]
    assert not eager, "\n".join(map(str, eager))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles():
    """Within a layer too, dependencies run one way: a module and the modules it imports
    (lazily or for types included) can be read in order, e.g. `analysis.analyze` never imports
    `analysis.report`, which renders its results."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
