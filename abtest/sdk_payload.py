"""The experiments as a GrowthBook SDK payload, so any GrowthBook SDK assigns as the API does.

The router reproduces GrowthBook's hashing bit for bit (`abtest.router`), so a GrowthBook SDK
(JavaScript, Python, Go, Swift, Kotlin...) given the same seed, hash version, ranges,
namespace, condition and hash attributes puts every unit in the same arm as
`POST /v1/experiments/{id}/assign`, client-side or at the edge. This module turns the
experiment files and the arms' runtime state into the payload the SDKs load
(`GET /api/features/{client_key}`): one feature per experiment, keyed by the experiment id,
whose value is `{"arm": <name>, "config": {...}}`:

- **running**: force rules for the experiment's `overrides` (one per arm: the units listed
  for it, by their `user_id` attribute, which is the unit id), then one experiment rule with
  the experiment's `seed`, `hashVersion`, `hashAttribute` (and `fallbackAttribute`),
  `condition`, `namespace`, `coverage`, `weights` and explicit `ranges`: the router's bucket
  ranges, where an arm stopped by a safe rollout gets an empty range, so its units fall
  outside the experiment to the feature's default, the control's config, exactly as the
  router answers `arm_stopped`;
- **draft**: no rule, the default is the control's config;
- **stopped**: no rule, the default is the winner's config (the control's without a winner).

Pure: no I/O, no clock; the same inputs give the same payload, byte for byte (its sha256 is
the ETag).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from abtest.experiments import Arm, Experiment
from abtest.router import UNIT_ATTRIBUTE, bucket_ranges

__all__ = ["feature", "payload_etag", "sdk_payload", "variation_value"]


def variation_value(arm: Arm) -> dict[str, Any]:
    """What an SDK returns for a unit of `arm`: the arm's name and its whole-flow config."""
    return {"arm": arm.name, "config": dict(arm.config)}


def _default_arm(experiment: Experiment) -> Arm:
    if experiment.status == "stopped" and experiment.winner is not None:
        return experiment.arm(experiment.winner)
    return experiment.control


def _ranges(experiment: Experiment, stopped: frozenset[str]) -> list[list[float]]:
    ranges = bucket_ranges(
        len(experiment.arms), experiment.coverage, [arm.weight for arm in experiment.arms]
    )
    return [
        [start, start] if arm.name in stopped else [start, end]
        for arm, (start, end) in zip(experiment.arms, ranges, strict=True)
    ]


def _force_rules(experiment: Experiment) -> list[dict[str, Any]]:
    """One rule per arm with overrides: its listed units get it, whatever they hash to."""
    units_by_arm: dict[str, list[str]] = {}
    for unit, arm in sorted(experiment.overrides.items()):
        units_by_arm.setdefault(arm, []).append(unit)
    return [
        {
            "id": f"{experiment.id}:override:{arm}",
            "condition": {UNIT_ATTRIBUTE: {"$in": units}},
            "force": variation_value(experiment.arm(arm)),
        }
        for arm, units in units_by_arm.items()
    ]


def _experiment_rule(experiment: Experiment, stopped: frozenset[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": f"{experiment.id}:experiment",
        "key": experiment.id,
        "name": experiment.id,
        "phase": "0",
        "seed": experiment.hash_seed,
        "hashVersion": experiment.hash_version,
        "hashAttribute": experiment.hash_attribute,
        "variations": [variation_value(arm) for arm in experiment.arms],
        "weights": [arm.weight for arm in experiment.arms],
        "coverage": experiment.coverage,
        "ranges": _ranges(experiment, stopped),
        "meta": [{"key": arm.name, "name": arm.name} for arm in experiment.arms],
    }
    if experiment.fallback_attribute:
        rule["fallbackAttribute"] = experiment.fallback_attribute
    if experiment.condition:
        rule["condition"] = experiment.condition
    if experiment.namespace is not None:
        rule["namespace"] = list(experiment.namespace)
    return rule


def feature(experiment: Experiment, stopped: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The experiment's feature definition (see the module docstring)."""
    default = variation_value(_default_arm(experiment))
    if experiment.status != "running":
        return {"defaultValue": default, "rules": []}
    rules = [*_force_rules(experiment), _experiment_rule(experiment, stopped)]
    return {"defaultValue": default, "rules": rules}


def sdk_payload(
    experiments: Mapping[str, Experiment],
    stopped: Mapping[str, frozenset[str]] | None = None,
) -> dict[str, Any]:
    """Every experiment as a feature of one GrowthBook SDK payload; `stopped` gives each
    experiment's arms stopped at run time."""
    stopped = stopped or {}
    return {
        "status": 200,
        "features": {
            experiment_id: feature(experiment, stopped.get(experiment_id, frozenset()))
            for experiment_id, experiment in sorted(experiments.items())
        },
    }


def payload_etag(payload: Mapping[str, Any]) -> str:
    """A strong ETag: the sha256 of the payload's canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return '"' + hashlib.sha256(canonical.encode("utf-8")).hexdigest() + '"'
