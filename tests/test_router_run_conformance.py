"""GrowthBook's cross-SDK `run` rows (tests/data/growthbook_run_0.8.0.json): each row's
experiment translated into an experiment file, assigned by our router. A failing row means a
unit would get another arm (or another in/out answer) here than in every GrowthBook SDK.

Rows using what the platform has no equivalent for are skipped, each for a reason listed in
`SKIPPED`; `test_skip_table_is_exactly_what_the_translator_cannot_handle` keeps the table
honest, so nothing is skipped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from abtest.experiments import Experiment, parse_experiment
from abtest.router import Router, bucket_ranges

DATA = json.loads((Path(__file__).parent / "data" / "growthbook_run_0.8.0.json").read_text())
ROWS = {row[0]: row for row in DATA["run"]}

SKIPPED = {
    "single variation": "variations (fewer than two arms)",
    "negative forced variation": "force",
    "high forced variation": "force",
    "globally disabled": "context.enabled",
    "querystring force": "context.url",
    "querystring force with inactive": "context.url",
    "coverage take precendence over forced": "force",
    "Skips experiments in QA mode": "context.qaMode",
    "Works in QA mode if forced in context": "context.qaMode",
    "Works in QA mode if forced in experiment": "context.qaMode, force",
    "Filtered, included": "filters",
    "Filtered, excluded": "filters",
    "Filtered, ignore namespace": "filters",
    "Ranges, ignore coverage and weights": "ranges (not laid out from weights and coverage)",
    "Ranges, partial coverage": "ranges (not laid out from weights and coverage)",
    "Prerequisite condition passes": "context.features, parentConditions",
    "Prerequisite condition fails": "context.features, parentConditions",
    "SavedGroups correctly pulled from context for experiment": "context.savedGroups",
}
"""Row name -> the GrowthBook fields the platform has no equivalent for."""

# What each supported GrowthBook field becomes; every other field makes a row unsupported.
_EXPERIMENT_FIELDS = {
    "key", "variations", "weights", "coverage", "namespace", "hashAttribute", "seed",
    "hashVersion", "condition", "active", "ranges",
}  # fmt: skip
_CONTEXT_FIELDS = {"attributes", "forcedVariations"}


class Unsupported(Exception):
    """A row uses GrowthBook fields the platform has no equivalent for (named in the message)."""


def unit_of(context: dict[str, Any], hash_attribute: str) -> str:
    """The unit id of a context: its hash attribute when that is a non-empty string, else ""
    (so the unit id never stands in for a hash attribute GrowthBook would find missing)."""
    value = context.get("attributes", {}).get(hash_attribute)
    return value if isinstance(value, str) else ""


def _weights_and_coverage(gb: dict[str, Any]) -> tuple[list[float] | None, float]:
    """GrowthBook's explicit `ranges` as weights and coverage, when they are laid out the way
    `bucket_ranges` lays them (else Unsupported); otherwise its `weights` and `coverage`."""
    ranges = gb.get("ranges")
    if ranges is None:
        return gb.get("weights"), gb.get("coverage", 1.0)
    starts = [start for start, _ in ranges]
    weights = [b - a for a, b in zip(starts, [*starts[1:], 1.0], strict=True)]
    coverage = (ranges[0][1] - ranges[0][0]) / weights[0] if weights[0] > 0 else 0.0
    laid = bucket_ranges(len(ranges), coverage, weights)
    if starts[0] != 0 or any(
        abs(a - x) > 1e-9 or abs(b - y) > 1e-9 for (a, b), (x, y) in zip(laid, ranges, strict=True)
    ):
        raise Unsupported("ranges (not laid out from weights and coverage)")
    return weights, coverage


def translate(row: list[Any]) -> tuple[Experiment, str, dict[str, Any] | None, int]:
    """(experiment, unit id, attributes, expected arm index) of a `run` row; Unsupported
    names every field it cannot translate."""
    _, context, gb, expected_value, _, _ = row
    unsupported = [f"context.{key}" for key in context if key not in _CONTEXT_FIELDS]
    unsupported += [key for key in gb if key not in _EXPERIMENT_FIELDS]
    if len(gb["variations"]) < 2:
        unsupported.insert(0, "variations (fewer than two arms)")
    if unsupported:
        raise Unsupported(", ".join(unsupported))
    hash_attribute = gb.get("hashAttribute", "id")
    unit_id = unit_of(context, hash_attribute)
    names = [f"v{i}" for i in range(len(gb["variations"]))]
    weights, coverage = _weights_and_coverage(gb)
    weights = weights or [1 / len(names)] * len(names)
    data: dict[str, Any] = {
        "id": gb["key"],
        "flow": "variants.summarization",
        "status": "running" if gb.get("active", True) else "draft",
        "hash_attribute": hash_attribute,
        "hash_version": gb.get("hashVersion", 1),  # GrowthBook's `run` defaults to version 1
        "seed": gb.get("seed", gb["key"]),
        "coverage": coverage,
        "arms": [
            {"name": name, "weight": w, "config": v if isinstance(v, dict) else {"value": v}}
            for name, w, v in zip(names, weights, gb["variations"], strict=True)
        ],
    }
    if "namespace" in gb:
        data["namespace"] = gb["namespace"]
    if "condition" in gb:
        data["condition"] = gb["condition"]
    forced = context.get("forcedVariations", {})
    if gb["key"] in forced:
        if not unit_id:
            raise Unsupported("context.forcedVariations (no unit id to force)")
        data["overrides"] = {unit_id: names[forced[gb["key"]]]}
    attributes = context.get("attributes")
    return parse_experiment(data), unit_id, attributes, gb["variations"].index(expected_value)


def _unsupported_reason(row: list[Any]) -> str | None:
    try:
        translate(row)
    except Unsupported as exc:
        return str(exc)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run_row" in metafunc.fixturenames:
        rows = [row for name, row in ROWS.items() if name not in SKIPPED]
        metafunc.parametrize("run_row", rows, ids=[row[0] for row in rows])


def test_row_count() -> None:
    assert (DATA["specVersion"], len(DATA["run"]), len(ROWS)) == ("0.8.0", 73, 73)


def test_skip_table_is_exactly_what_the_translator_cannot_handle() -> None:
    reasons = {name: _unsupported_reason(row) for name, row in ROWS.items()}
    assert {name: r for name, r in reasons.items() if r is not None} == SKIPPED


def test_run_row(run_row: list[Any]) -> None:
    experiment, unit_id, attributes, expected_index = translate(run_row)
    got = Router([experiment]).assign(experiment.id, unit_id, attributes)
    assert (got.arm_index, got.in_experiment, got.reason == "hashed") == (
        expected_index,
        run_row[4],
        run_row[5],
    )
