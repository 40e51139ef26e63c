"""Deterministic assignment of units to arms, compatible with GrowthBook's SDK hashing.

A chain of tiny pure functions, one step each (as in GrowthBook's `core.py`):
`hash_unit(seed, value, version)` -> `bucket_ranges(n_arms, coverage, weights)` ->
`choose_arm(n, ranges)`. No clock, no I/O, no randomness: the same unit gets the same arm here,
in every API replica and in any GrowthBook SDK. `Router` composes them and precomputes the
ranges of each experiment once.

The router trusts its input: `abtest.experiments` rejects bad weights, coverage, namespaces and
conditions before a definition reaches it. `bucket_ranges` still keeps GrowthBook's fallbacks so
that it reproduces the cross-SDK conformance rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fnv_hash_fast import fnv1a_32 as _fnv1a_32_bytes

from abtest.experiments import Experiment
from abtest.targeting import eval_condition

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF

Reason = Literal[
    "not_running",
    "stopped",
    "override",
    "empty_unit_id",
    "no_hash_value",
    "not_in_namespace",
    "condition",
    "not_in_coverage",
    "hashed",
    "arm_stopped",
]


class UnknownExperimentError(KeyError):
    """The experiment id is not among the loaded definitions."""

    def __init__(self, experiment_id: str):
        self.experiment_id = experiment_id
        super().__init__(f"unknown experiment '{experiment_id}'")

    def __str__(self) -> str:
        return str(self.args[0])


def _utf16_code_units(s: str) -> bytes:
    return s.encode("utf-16-le", "surrogatepass")


def fnv1a32(s: str) -> int:
    """FNV-1a 32-bit over the string's UTF-16 code units, as JavaScript's `charCodeAt` sees them.

    For ASCII (the usual unit id) the code units are the bytes, hashed in C by `fnv-hash-fast`.
    Characters beyond U+FFFF hash as their two surrogates, exactly like the JS SDK.
    """
    if s.isascii():
        return _fnv1a_32_bytes(s.encode("ascii"))
    data = _utf16_code_units(s)
    h = FNV_OFFSET
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | (data[i + 1] << 8))) * FNV_PRIME) & _MASK32
    return h


def hash_unit(seed: str, value: str, version: int = 2) -> float | None:
    """Map a unit to [0, 1): GrowthBook's hash, versions 1 and 2.

    v2: ``(fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000``;
    v1: ``(fnv1a32(value + seed) % 1000) / 1000``; any other version gives None.
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def _js_number(x: float) -> str:
    """A finite, non-zero number as JavaScript's `String()` writes it (ECMAScript
    Number::toString): the shortest round-trip digits (Python's `repr` has the same), laid out
    in fixed notation for decimal exponents -6..21, else as `1.5e+21` or `1e-7`."""
    if x < 0:
        return "-" + _js_number(-x)
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    significant = (whole + fraction).lstrip("0")
    digits = significant.rstrip("0")
    k = len(digits)
    n = len(significant) + int(exponent or 0) - len(fraction)  # x = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{head}e{sign}{abs(e)}"


UNIT_ATTRIBUTE = "user_id"
"""The attribute the unit id is: `attributes` without it get `{"user_id": unit_id}`, so an
experiment hashing `user_id` (the default `hash_attribute`) needs no attributes, while one
hashing another attribute (`company`) needs that attribute (or its `fallback_attribute`)."""


def unit_attributes(unit_id: str, attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The attributes a condition sees: the given ones, with the unit id as `user_id` unless
    they name a `user_id` themselves."""
    if attributes and UNIT_ATTRIBUTE in attributes:
        return attributes
    return {**(attributes or {}), UNIT_ATTRIBUTE: unit_id}


def hash_value(value: Any) -> str | None:
    """The text GrowthBook hashes for an attribute value, or None if it cannot identify a unit.

    As the SDK's `isHashable`: a non-empty string as it is; a finite, non-zero number as
    JavaScript's `String()` writes it (`1.0` -> "1"); anything else (None, "", 0, booleans,
    lists, objects) is no value.
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    if x == 0 or not math.isfinite(x):
        return None
    return _js_number(x)


def equal_weights(n_arms: int) -> list[float]:
    """`n_arms` equal weights (empty for fewer than one arm)."""
    return [1.0 / n_arms] * n_arms if n_arms >= 1 else []


def _usable_weights(n_arms: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None or len(weights) != n_arms:
        return equal_weights(n_arms)
    if any(not math.isfinite(w) or w < 0 for w in weights):
        return equal_weights(n_arms)
    if not 0.99 <= sum(weights) <= 1.01:
        return equal_weights(n_arms)
    return list(weights)


def bucket_ranges(
    n_arms: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """Lay the arms' ranges end to end on [0, 1), each shrunk to `coverage` of its weight.

    Each range is ``[start, start + coverage * weight)`` where `start` is the running sum of the
    earlier weights, so an arm's start never moves: raising coverage only adds units.
    Coverage is clamped to [0, 1]; weights that are missing, of the wrong length, negative, not
    finite or not summing to 1 within 0.99..1.01 fall back to equal weights (GrowthBook's rule).
    """
    coverage = min(max(coverage, 0.0), 1.0)
    ranges = []
    start = 0.0
    for weight in _usable_weights(n_arms, weights):
        ranges.append((start, start + coverage * weight))
        start += weight
    return ranges


def choose_arm(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the range with ``start <= n < end``, else -1 (outside coverage)."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def in_namespace(value: str, namespace: tuple[str, float, float]) -> bool:
    """Whether a unit is in the namespace's slice: ``start <= hash_unit("__" + name, v, 1) < end``
    where `v` is the unit's hash value (its id, unless the experiment hashes another attribute).

    Experiments sharing a namespace with disjoint slices never share a unit.
    """
    name, start, end = namespace
    n = hash_unit("__" + name, value, 1)
    return n is not None and start <= n < end


@dataclass(frozen=True, slots=True)
class Assignment:
    """The arm a unit gets and the rule that decided it.

    `in_experiment` is False when the unit only receives the control's (or winner's) config
    without taking part; no exposure may be logged for it.
    """

    experiment_id: str
    arm: str
    arm_index: int
    in_experiment: bool
    reason: Reason


@dataclass(frozen=True, slots=True)
class _Plan:
    """What `assign` needs of one experiment, with every possible answer built in advance."""

    experiment: Experiment
    running: bool
    hash_attribute: str
    fallback_attribute: str | None
    condition: Mapping[str, Any] | None
    seed: str
    version: int
    namespace: tuple[str, float, float] | None
    ranges: tuple[tuple[float, float], ...]
    hashed: tuple[Assignment, ...]
    forced: Mapping[str, Assignment]
    outside: Mapping[Reason, Assignment]


def _plan(experiment: Experiment) -> _Plan:
    names = experiment.arm_names
    eid = experiment.id
    fallback = names.index(experiment.winner) if experiment.winner else 0
    outside: dict[Reason, Assignment] = {
        reason: Assignment(eid, names[0], 0, False, reason)
        for reason in (
            "not_running",
            "empty_unit_id",
            "no_hash_value",
            "not_in_namespace",
            "condition",
            "not_in_coverage",
            "arm_stopped",
        )
    }
    outside["stopped"] = Assignment(eid, names[fallback], fallback, False, "stopped")
    return _Plan(
        experiment=experiment,
        running=experiment.status == "running",
        hash_attribute=experiment.hash_attribute,
        fallback_attribute=experiment.fallback_attribute,
        condition=experiment.condition or None,
        seed=experiment.hash_seed,
        version=experiment.hash_version,
        namespace=experiment.namespace,
        ranges=tuple(
            bucket_ranges(len(names), experiment.coverage, [a.weight for a in experiment.arms])
        ),
        hashed=tuple(Assignment(eid, name, i, True, "hashed") for i, name in enumerate(names)),
        forced={
            unit: Assignment(eid, arm, names.index(arm), True, "override")
            for unit, arm in experiment.overrides.items()
        },
        outside=outside,
    )


class Router:
    """Assigns units to arms for a set of experiments; stateless apart from precomputed plans.

    Rules, in the order of GrowthBook's `run` (its conformance rows in
    tests/data/growthbook_run_0.8.0.json decide the edge cases):

    1. experiment not running: draft, the control's config; stopped, the declared `winner`
       (else control); never in the experiment (`not_running`, `stopped`). GrowthBook checks
       its forced variations before this; here a draft or stopped file wins over `overrides`.
    2. `overrides`: the unit id forced into an arm (`override`).
    3. hash value: `attributes[hash_attribute]`, where the unit id is the `user_id`
       attribute (`UNIT_ATTRIBUTE`) unless the attributes name one, so an experiment hashing
       the default `user_id` needs only the unit id, as before attributes existed; a missing
       value, or one that cannot identify a unit (None, "", 0, a boolean, a list:
       `hash_value`), gives way to the `fallback_attribute`; with neither, not in the
       experiment: `empty_unit_id` when the empty value was the unit id itself, else
       `no_hash_value` (e.g. `hash_attribute: company` and no `company` attribute).
    4. namespace, on the hash value (`not_in_namespace`).
    5. `condition` on the attributes, with the unit id as `user_id` unless they name one
       (`condition`).
    6. coverage and weights by the hash value (`hashed`, else `not_in_coverage`); a unit
       hashed into an arm stopped at run time gets the control's config (`arm_stopped`).

    Every rule but `override` and `hashed` leaves the unit outside the experiment
    (`in_experiment` False, no exposure), with the control's config except for `stopped`.
    """

    def __init__(self, experiments: Mapping[str, Experiment] | Sequence[Experiment]):
        items = experiments.values() if isinstance(experiments, Mapping) else experiments
        self._plans = {e.id: _plan(e) for e in items}

    @property
    def experiments(self) -> dict[str, Experiment]:
        return {key: plan.experiment for key, plan in self._plans.items()}

    def experiment(self, experiment_id: str) -> Experiment:
        return self._get(experiment_id).experiment

    def _get(self, experiment_id: str) -> _Plan:
        try:
            return self._plans[experiment_id]
        except KeyError:
            raise UnknownExperimentError(experiment_id) from None

    def assign(
        self,
        experiment_id: str,
        unit_id: str,
        attributes: Mapping[str, Any] | None = None,
        stopped_arms: frozenset[str] | set[str] = frozenset(),
    ) -> Assignment:
        """The arm of `unit_id`, whose `attributes` (JSON values) the hash attribute, the
        fallback attribute and the condition read (rules: see the class).

        `stopped_arms` are arms a safe rollout stopped (runtime state the caller reads from
        the store): a unit hashed into one gets the control's config, outside the experiment,
        reason `arm_stopped`; overrides still apply (they are deliberate). Answers are
        prebuilt per experiment, so a call allocates nothing but the hash (and, for an
        experiment with a condition, the attributes it reads when they lack the hash
        attribute).
        """
        plan = self._get(experiment_id)
        if not plan.running:
            status = plan.experiment.status
            return plan.outside["stopped" if status == "stopped" else "not_running"]
        forced = plan.forced.get(unit_id)
        if forced is not None:
            return forced
        if attributes and plan.hash_attribute in attributes:
            value = hash_value(attributes[plan.hash_attribute])
        else:
            value = unit_id if plan.hash_attribute == UNIT_ATTRIBUTE else None
        if not value and plan.fallback_attribute is not None:
            if attributes and plan.fallback_attribute in attributes:
                value = hash_value(attributes[plan.fallback_attribute])
            elif plan.fallback_attribute == UNIT_ATTRIBUTE:
                value = unit_id
        if not value:
            own = plan.hash_attribute == UNIT_ATTRIBUTE and not (
                attributes and UNIT_ATTRIBUTE in attributes
            )
            return plan.outside["empty_unit_id" if own else "no_hash_value"]
        if plan.namespace is not None and not in_namespace(value, plan.namespace):
            return plan.outside["not_in_namespace"]
        if plan.condition is not None and not eval_condition(
            plan.condition, unit_attributes(unit_id, attributes)
        ):
            return plan.outside["condition"]
        n = hash_unit(plan.seed, value, plan.version)
        for index, (start, end) in enumerate(plan.ranges):
            if start <= n < end:
                hashed = plan.hashed[index]
                if stopped_arms and hashed.arm in stopped_arms:
                    return plan.outside["arm_stopped"]
                return hashed
        return plan.outside["not_in_coverage"]

    def reads_attributes(self, experiment_id: str) -> bool:
        """Whether the experiment's assignment may depend on more than the unit id: it has a
        condition or a fallback attribute, or hashes an attribute other than the default
        `user_id` (which the unit id stands for). Such an arm cannot be recomputed from the
        unit id alone (see `POST /v1/outcomes`)."""
        plan = self._get(experiment_id)
        return (
            plan.condition is not None
            or plan.fallback_attribute is not None
            or plan.hash_attribute != Experiment.model_fields["hash_attribute"].default
        )

    def assign_many(self, experiment_id: str, unit_ids: Sequence[str]) -> np.ndarray:
        """Arm indices for many units at once (numpy), -1 where a unit is not in the experiment.

        Gives the same arms as `assign(experiment_id, unit)` without attributes (overrides
        included), for simulations and A/A tests: the unit id is the `user_id` attribute, the
        hash value when the experiment hashes `user_id` (else no unit has a hash value), and a
        condition sees only `{"user_id": unit_id}` (evaluated unit by unit). Stopped arms
        are not applied. Units outside the experiment get -1 rather than the control's index
        so that callers can tell participants from bystanders; `assign` reports the same
        through `in_experiment`.
        """
        plan = self._get(experiment_id)
        ids = list(unit_ids)
        result = np.full(len(ids), -1, dtype=np.int64)
        if not plan.running or not ids:
            return result
        buffer, starts, lengths = _code_units(ids)
        n = _hash_many(plan.seed, buffer, starts, lengths, plan.version)
        for k, (start, end) in enumerate(plan.ranges):
            result[(n >= start) & (n < end)] = k
        if plan.namespace is not None:
            name, ns_start, ns_end = plan.namespace
            ns = _hash_many("__" + name, buffer, starts, lengths, 1)
            result[~((ns >= ns_start) & (ns < ns_end))] = -1
        result[lengths == 0] = -1
        if UNIT_ATTRIBUTE not in (plan.hash_attribute, plan.fallback_attribute):
            result[:] = -1
        if plan.condition is not None:
            condition = plan.condition
            matches = np.fromiter(
                (eval_condition(condition, {UNIT_ATTRIBUTE: unit}) for unit in ids), bool, len(ids)
            )
            result[~matches] = -1
        if plan.forced:
            for row, unit in enumerate(ids):
                forced = plan.forced.get(unit)
                if forced is not None:
                    result[row] = forced.arm_index
        return result


def _code_units(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ids' UTF-16 code units in one flat buffer, with each id's start and length.

    One `encode` of the joined ids is far cheaper than a numpy string array; surrogate pairs
    come out as two code units, exactly what `fnv1a32` hashes.
    """
    buffer = np.frombuffer(_utf16_code_units("".join(ids)), dtype=np.uint16).astype(np.uint32)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    if lengths.sum() != len(buffer):
        lengths = np.fromiter(
            (len(_utf16_code_units(unit)) // 2 for unit in ids), dtype=np.int64, count=len(ids)
        )
    starts = np.cumsum(lengths) - lengths
    return buffer, starts, lengths


def _fnv_state(seed_state: int, text: str) -> int:
    data = _utf16_code_units(text)
    h = seed_state
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | (data[i + 1] << 8))) * FNV_PRIME) & _MASK32
    return h


def _fnv_ids(
    state: np.ndarray, buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Continue each row's FNV-1a state over its id's code units (one numpy pass per column)."""
    prime = np.uint32(FNV_PRIME)
    shortest = int(lengths.min())
    last = len(buffer) - 1
    for column in range(int(lengths.max())):
        codes = buffer[np.minimum(starts + column, last)]
        if column < shortest:
            state = (state ^ codes) * prime
        else:
            state = np.where(lengths > column, (state ^ codes) * prime, state)
    return state


def _fnv_text(state: np.ndarray, text: str) -> np.ndarray:
    """Continue every row's FNV-1a state over the same text."""
    prime = np.uint32(FNV_PRIME)
    data = _utf16_code_units(text)
    for i in range(0, len(data), 2):
        state = (state ^ np.uint32(data[i] | (data[i + 1] << 8))) * prime
    return state


def _fnv_of_decimal(values: np.ndarray) -> np.ndarray:
    """FNV-1a of each uint32 written in decimal (what `str(fnv1a32(...))` hashes).

    Digits are read most significant first with a constant divisor per position; leading
    zeros are skipped (position p counts once the value reaches 10**(9 - p); the units digit
    always counts).
    """
    prime = np.uint32(FNV_PRIME)
    state = np.full(len(values), FNV_OFFSET, dtype=np.uint32)
    for position in range(10):
        divisor = np.uint32(10 ** (9 - position))
        digit = (values // divisor) % np.uint32(10) + np.uint32(48)
        updated = (state ^ digit) * prime
        state = updated if position == 9 else np.where(values >= divisor, updated, state)
    return state


def _hash_many(
    seed: str, buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, version: int
) -> np.ndarray:
    """Vectorised `hash_unit` for many ids (flat code units from `_code_units`)."""
    rows = len(lengths)
    with np.errstate(over="ignore"):
        if version == 2:
            start = np.full(rows, _fnv_state(FNV_OFFSET, seed), dtype=np.uint32)
            inner = _fnv_ids(start, buffer, starts, lengths)
            return (_fnv_of_decimal(inner) % np.uint32(10000)).astype(np.float64) / 10000
        state = _fnv_ids(np.full(rows, FNV_OFFSET, np.uint32), buffer, starts, lengths)
        return (_fnv_text(state, seed) % np.uint32(1000)).astype(np.float64) / 1000
