"""Targeting conditions (`abtest.targeting`).

GrowthBook's cross-SDK `evalCondition` rows (tests/data/growthbook_eval_condition_0.8.0.json):
a failing row means a unit would be targeted differently than by every GrowthBook SDK. Where
the corpus is silent, random conditions must give what GrowthBook's Python SDK gives.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.targeting import OPERATORS, condition_problems, eval_condition, padded_version_string

try:
    from growthbook import core as sdk
except ImportError:  # the SDK is a dev dependency; only the comparisons need it
    sdk = None

requires_sdk = pytest.mark.skipif(sdk is None, reason="GrowthBook's Python SDK is not installed")

DATA = json.loads(
    (Path(__file__).parent / "data" / "growthbook_eval_condition_0.8.0.json").read_text()
)
ROWS: list[list[Any]] = DATA["evalCondition"]

#: The corpus rows GrowthBook's current Python SDK fails: it refuses to order values of mixed
#: types, where the corpus (JavaScript) converts them to numbers. We follow the corpus.
JS_ORDERING_ROWS = {
    "missing attribute with comparison operators",
    "comparing numbers and strings",
    "comparing numbers and strings - v2",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "row" in metafunc.fixturenames:
        metafunc.parametrize("row", ROWS, ids=[row[0] for row in ROWS])


def test_row_count() -> None:
    assert (DATA["specVersion"], len(ROWS)) == ("0.8.0", 248)


def test_eval_condition(row: list[Any]) -> None:
    _, condition, attributes, expected, *saved_groups = row
    assert eval_condition(condition, attributes, *saved_groups) is expected


@requires_sdk
def test_the_sdk_fails_only_the_mixed_type_ordering_rows() -> None:
    """Why we do not simply copy the SDK: it differs from the corpus on these rows only."""
    failing = {
        name
        for name, condition, attributes, expected, *groups in ROWS
        if sdk.evalCondition(attributes, condition, *groups) is not expected
    }
    assert failing == JS_ORDERING_ROWS


# --- Mixed-type ordering: JavaScript's `<`, as the corpus needs -----------------------------

#: [attribute, operator, argument, what JavaScript's operator gives] (checked with node).
JS_ORDERING = [
    [5, "$gt", "abc", False],
    [5, "$lte", "abc", False],
    [True, "$gt", 0, True],
    [True, "$gte", False, True],
    [False, "$lt", True, True],
    [None, "$lte", None, True],
    [None, "$lt", None, False],
    [None, "$gt", -10, True],
    [5, "$lt", " 12 ", True],
    [15, "$gt", "0x10", False],
    [15, "$lt", "0x10", True],
    [1, "$gt", "", True],
    ["a", "$gt", None, False],
    ["a", "$lte", None, False],
    ["1", "$gte", None, True],
    [1001, "$gt", "1e3", True],
    [1e300, "$lt", "Infinity", True],
    [1e300, "$lt", "inf", False],
    [5, "$lt", "1_000", False],
    [1, "$lt", "+.5e1", True],
    [1, "$lt", "5.", True],
    [2, "$gt", "\u00a02\u00a0", False],
    [3, "$gt", "\x1c2", False],
    [8, "$lt", "10", True],
    ["8", "$gt", 5, True],
    ["a", "$lt", "b", True],
    ["\U0001f600", "$lt", "\uff01", True],  # UTF-16 code units: a surrogate < U+FF01
]


@pytest.mark.parametrize("case", JS_ORDERING, ids=repr)
def test_mixed_types_order_as_in_javascript(case: list[Any]) -> None:
    actual, operator, argument, expected = case
    assert eval_condition({"a": {operator: argument}}, {"a": actual}) is expected


def test_a_missing_attribute_orders_as_null() -> None:
    assert eval_condition({"a": {"$lte": None, "$gt": -1}}, {}) is True


@pytest.mark.parametrize("actual", [[5], {"a": 5}, [], {}])
def test_arrays_and_objects_never_order(actual: Any) -> None:
    """JavaScript would compare `[5] > 0` as "5" > 0; no SDK in Python does, nor do we."""
    for operator in ("$lt", "$lte", "$gt", "$gte"):
        assert eval_condition({"a": {operator: 0}}, {"a": actual}) is False
        assert eval_condition({"a": {operator: "5"}}, {"a": actual}) is False


# --- Corners the corpus leaves open, decided as GrowthBook's Python SDK does ----------------


@pytest.mark.parametrize(
    "condition",
    [
        {"$or": 5},
        {"$or": "ab"},
        {"$or": {"a": 1}},
        {"$and": [1]},
        {"$not": 5},
        {"$not": [{"a": 1}]},
        {"$not": {"$or": 5}},
        {"a": {"$elemMatch": 5}},
        {1: 2},
        {"a": {"$in": [1], 2: 3}},
    ],
    ids=repr,
)
def test_a_malformed_condition_is_false_even_under_not(condition: Any) -> None:
    attributes = {"a": [1, 2], "b": 1}
    assert eval_condition(condition, attributes) is False
    assert eval_condition({"$not": condition}, attributes) is False


def test_malformed_parts_after_a_failing_entry_are_never_reached() -> None:
    assert eval_condition({"$or": [{"b": 1}, 5]}, {"b": 1}) is True
    assert eval_condition({"b": 2, "$or": 5}, {"b": 1}) is False


@pytest.mark.parametrize(
    "condition, expected",
    [
        ({"$or": []}, True),
        ({"$or": {}}, True),
        ({"$and": ""}, True),
        ({"$nor": []}, False),
        ({"a": {}}, True),
        ({"a": {"$elemMatch": {}}}, True),
    ],
    ids=repr,
)
def test_empty_lists_and_objects(condition: dict[str, Any], expected: bool) -> None:
    assert eval_condition(condition, {"a": [1]}) is expected


def test_an_unknown_operator_fails_even_under_not() -> None:
    assert eval_condition({"name": {"$regx": "h"}}, {"name": "h"}) is False
    assert eval_condition({"$not": {"name": {"$regx": "h"}}}, {"name": "h"}) is False
    assert eval_condition({"name": {"$not": {"$regx": "h"}}}, {"name": "h"}) is False
    assert eval_condition({"$or": [{"name": {"$regx": "h"}}, {"name": "h"}]}, {"name": "h"})


def test_a_condition_key_on_a_value_never_holds() -> None:
    assert eval_condition({"a": {"$or": [{"a": 1}]}}, {"a": 1}) is False
    assert eval_condition({"$not": {"a": {"$or": [{"a": 1}]}}}, {"a": 1}) is True


def test_typed_saved_group_references_fail_closed() -> None:
    groups = {"g": [1]}
    assert eval_condition({"$savedGroup": {"id": "g"}}, {"id": 1}, groups) is False
    assert eval_condition({"$savedGroups": ["g"]}, {"id": 1}, groups) is False


@pytest.mark.parametrize(
    "condition, attributes, expected",
    [
        ({"a.length": 2}, {"a": [5, 6]}, True),
        ({"a.1": 6}, {"a": [5, 6]}, True),
        ({"a.01": 6}, {"a": [5, 6]}, False),
        ({"a.length": 3}, {"a": "abc"}, False),
        ({"a.b.c": None}, {"a": {"b": 1}}, True),
        ({"tags": {"$in": [1]}}, {"tags": [True]}, False),
        ({"n": {"$in": [True]}}, {"n": 1}, False),
        ({"n": {"$in": [1]}}, {"n": 1.0}, True),
        ({"o": {"$in": [{"a": 1}]}}, {"o": {"a": 1}}, False),
        ({"o": {"$eq": [1]}}, {"o": [1]}, False),
        ({"o": [1, True]}, {"o": [1, 1]}, False),
        ({"o": {"b": 1, "a": 2}}, {"o": {"a": 2, "b": 1}}, False),
        ({"o": {"1": 1, "0": 2}}, {"o": {"0": 2, "1": 1}}, True),
        ({"v": {"$vgt": "1.0.0"}}, {}, False),
        ({"v": {"$vne": "1.0.0"}}, {}, True),
        ({"v": {"$vgt": 1.5}}, {"v": 2}, True),
        ({"s": {"$regex": "a"}}, {"s": 5}, False),
        ({"s": {"$notRegex": "a"}}, {}, True),
        ({"s": {"$notRegexi": "A"}}, {"s": "bab"}, False),
        ({"s": {"$exists": 0}}, {"s": None}, True),
        ({"s": {"$exists": []}}, {}, True),
        ({"s": {"$type": "number"}}, {"s": True}, False),
        ({"s": {"$alli": ["A", {"$gt": 3}]}}, {"s": ["a", 4]}, True),
        ({"a": {"$elemMatch": {"$gt": 0}}}, {"a": [None, 0, 1]}, True),
    ],
    ids=repr,
)
def test_corners(condition: dict[str, Any], attributes: dict[str, Any], expected: bool) -> None:
    assert eval_condition(condition, attributes) is expected


@pytest.mark.parametrize(
    "groups, expected",
    [
        ({"g": [1, "2"]}, (True, False)),
        ({"g": (1, "2")}, (True, False)),
        ({"g": []}, (False, True)),
        ({}, (False, True)),
        (None, (False, True)),
        ({"g": None}, (False, False)),
        ({"g": "123"}, (False, False)),
    ],
    ids=repr,
)
def test_saved_groups(groups: dict[str, Any] | None, expected: tuple[bool, bool]) -> None:
    attributes = {"id": 1}
    got = tuple(
        eval_condition({"id": {op: "g"}}, attributes, groups) for op in ("$inGroup", "$notInGroup")
    )
    assert got == expected


# --- Random conditions: the same answers as GrowthBook's Python SDK -------------------------
#
# Attributes have a schema, as real ones do: `n` is always a number, `s` a string, and so on.
# Ordering operators ($lt...) only compare a path with arguments of its own type (or where one
# side is an array or object): on mixed primitive types the corpus makes us differ from this
# SDK on purpose (tested above). Everything else, malformed conditions included, is random.

NUMBERS = st.one_of(st.integers(-3, 12), st.sampled_from([0.0, 1.0, 2.5, -1.5, 1e21, 1.5e-7]))
STRINGS = st.one_of(
    st.sampled_from(
        ["", "a", "A", "ab", "B", "pro", "PRO", "1.2.3", "v1.2.3", "1.10.0", "1.2.3-beta"]
        + ["10", "9", " 8 ", "\u00e9", "\U0001f600", "\uff01"]
    ),
    st.text(alphabet="aAb19.-v+ \u00e9\U0001f600", max_size=6),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0", "1"]), inner, max_size=2)
    ),
    max_leaves=6,
)
ATTRIBUTES = st.fixed_dictionaries(
    {
        "n": NUMBERS,
        "s": STRINGS,
        "nums": st.lists(NUMBERS, max_size=4),
        "tags": st.lists(STRINGS, max_size=4),
        "obj": st.fixed_dictionaries({"n": NUMBERS, "s": STRINGS}, optional={"x": JSON}),
        "objs": st.lists(
            st.none() | st.fixed_dictionaries({"n": NUMBERS, "s": STRINGS}), max_size=3
        ),
    },
    optional={"x": JSON, "flag": st.booleans()},
)
GROUPS = st.fixed_dictionaries(
    {"g1": st.lists(SCALARS, max_size=4), "g2": st.just([])},
    optional={"g3": st.sampled_from([None, "abc"])},
)

#: Path -> kind of value, per schema: the attributes, an element of `objs`, any other element.
SCHEMAS: dict[str, dict[str, str]] = {
    "attributes": {
        "n": "number",
        "obj.n": "number",
        "nums.length": "number",
        "s": "string",
        "obj.s": "string",
        "nums": "number[]",
        "tags": "string[]",
        "objs": "object[]",
        "obj": "object",
        "x": "any",
        "obj.x": "any",
        "flag": "any",
        "missing": "any",
        "tags.0": "any",
        "n.a": "any",
        "$groups": "any",
    },
    "objs": {"n": "number", "s": "string", "zz": "any"},
    "element": {"a": "any", "length": "any", "0": "any"},
}
ELEMENT_KIND = {"number[]": "number", "string[]": "string", "object[]": "object"}
ORDERING_ARGUMENTS = {
    "number": NUMBERS | st.lists(NUMBERS, max_size=2),
    "string": STRINGS | st.lists(STRINGS, max_size=2),
    "object": JSON,
    "number[]": JSON,
    "string[]": JSON,
    "object[]": JSON,
}
PATTERNS = st.sampled_from(["^a", "a$", "(", "[a-z]+", "A", "^v?1\\.", "\u00e9", "", "[", 5, None])
PLAIN_ARGUMENTS = {
    "$eq": JSON,
    "$ne": JSON,
    "$in": st.lists(SCALARS, max_size=4) | JSON,
    "$nin": st.lists(SCALARS, max_size=4) | JSON,
    "$ini": st.lists(SCALARS, max_size=4) | SCALARS,
    "$nini": st.lists(SCALARS, max_size=4) | SCALARS,
    **{op: STRINGS | NUMBERS | st.none() for op in ("$veq", "$vne", "$vlt", "$vlte", "$vgt")},
    "$vgte": STRINGS | NUMBERS | st.booleans(),
    "$exists": st.booleans() | st.sampled_from([0, 1, "", "x", None, []]),
    "$type": st.sampled_from(["string", "number", "boolean", "null", "array", "object", 5]),
    **{op: PATTERNS for op in ("$regex", "$regexi", "$notRegex", "$notRegexi")},
    "$inGroup": st.sampled_from(["g1", "g2", "g3", "nope", 3, None]),
    "$notInGroup": st.sampled_from(["g1", "g2", "g3", "nope", 3, None]),
    "$regx": JSON,
    "$or": JSON,
    "$savedGroup": JSON,
}


@cache
def value_conditions(kind: str, depth: int) -> st.SearchStrategy[Any]:
    """A condition value for a value of `kind`: a value to equal, or an operator object."""
    operator_objects = st.lists(operators(kind, depth), min_size=0, max_size=2).map(dict)
    literals = JSON | (NUMBERS if kind == "number" else STRINGS if kind == "string" else JSON)
    return literals | operator_objects


@cache
def operators(kind: str, depth: int) -> st.SearchStrategy[tuple[str, Any]]:
    arguments = dict(PLAIN_ARGUMENTS)
    if kind in ORDERING_ARGUMENTS:
        arguments.update({op: ORDERING_ARGUMENTS[kind] for op in ("$lt", "$lte", "$gt", "$gte")})
    if depth > 0:
        element = ELEMENT_KIND.get(kind, "any")
        fields = "objs" if kind == "object[]" else "element"
        arguments["$not"] = value_conditions(kind, depth - 1)
        arguments["$size"] = value_conditions("number", depth - 1)
        arguments["$elemMatch"] = (
            value_conditions(element, depth - 1) | conditions(fields, depth - 1) | SCALARS
        )
        arguments["$all"] = st.lists(value_conditions(element, depth - 1), max_size=3) | SCALARS
        arguments["$alli"] = st.lists(value_conditions(element, depth - 1), max_size=3)
    return st.one_of(
        [st.tuples(st.just(op), argument) for op, argument in sorted(arguments.items())]
    )


@cache
def conditions(schema: str, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    paths = SCHEMAS[schema]
    entry = st.sampled_from(sorted(paths)).flatmap(
        lambda path: st.tuples(st.just(path), value_conditions(paths[path], depth))
    )
    entries = st.lists(entry, max_size=3).map(dict)
    if depth == 0:
        return entries
    inner = conditions(schema, depth - 1)
    malformed = st.sampled_from([{}, "", "ab", 5, {"a": 1}, None, [5]])
    logical = st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"$nor": xs}, st.lists(inner, max_size=2)),
        st.builds(lambda x: {"$not": x}, inner),
        st.builds(lambda x: {"$or": x}, malformed),
        st.builds(lambda x: {"$not": x}, malformed),
        st.builds(lambda xs: {"$and": xs}, st.lists(inner | SCALARS, max_size=2)),
        st.builds(lambda x: {"$savedGroup": x}, JSON),
    )
    return st.one_of(
        entries,
        logical,
        st.tuples(entries, logical).map(lambda pair: {**pair[0], **pair[1]}),
        st.tuples(logical, entries).map(lambda pair: {**pair[0], **pair[1]}),
    )


@requires_sdk
@settings(max_examples=600, deadline=None, derandomize=True)
@given(condition=conditions("attributes", 2), attributes=ATTRIBUTES, groups=GROUPS)
def test_random_conditions_agree_with_the_sdk(
    condition: dict[str, Any], attributes: dict[str, Any], groups: dict[str, Any]
) -> None:
    expected = sdk.evalCondition(attributes, condition, groups)
    assert eval_condition(condition, attributes, groups) is expected


@requires_sdk
@settings(max_examples=300, deadline=None, derandomize=True)
@given(version=STRINGS | st.text(max_size=12) | st.floats(allow_nan=False) | st.integers())
def test_padded_version_string_is_the_sdks(version: Any) -> None:
    assert padded_version_string(version) == sdk.paddedVersionString(version)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(condition=JSON, attributes=JSON)
def test_anything_evaluates_without_raising(condition: Any, attributes: Any) -> None:
    assert eval_condition(condition, attributes) in (True, False)
    assert all(isinstance(p, str) for p in condition_problems(condition))


def test_operators() -> None:
    expected = {"$and", "$or", "$nor", "$not", "$eq", "$ne", "$lt", "$lte", "$gt", "$gte"}
    expected |= {"$veq", "$vne", "$vlt", "$vlte", "$vgt", "$vgte", "$in", "$nin", "$ini"}
    expected |= {"$nini", "$all", "$alli", "$elemMatch", "$size", "$exists", "$type"}
    expected |= {"$regex", "$regexi", "$notRegex", "$notRegexi", "$inGroup", "$notInGroup"}
    assert OPERATORS == expected


# --- condition_problems ----------------------------------------------------------------------


def _regex_error(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        return str(error)
    raise AssertionError(f"{pattern!r} compiles")


@pytest.mark.parametrize(
    "condition, problems",
    [
        ({"tier": {"$inn": ["pro"]}}, ["tier.$inn: unknown operator '$inn' (did you mean '$in'?)"]),
        ({"a": {"$zzzzzz": 1}}, ["a.$zzzzzz: unknown operator '$zzzzzz'"]),
        (
            {"$or": [{"a": 1}, {"b.c": {"$gt": 1, "$gtt": 2}}]},
            ["$or[1].b.c.$gtt: unknown operator '$gtt' (did you mean '$gt'?)"],
        ),
        ({"$or": {"a": 1}}, ["$or: must be a list of conditions"]),
        ({"$and": "a"}, ["$and: must be a list of conditions"]),
        ({"$nor": None}, ["$nor: must be a list of conditions"]),
        ({"$and": [{"a": 1}, 5]}, ["$and[1]: must be a condition (a mapping), not number"]),
        ({"$not": [{"a": 1}]}, ["$not: must be a condition (a mapping), not array"]),
        (
            {"$not": {"$not": {"a": {"$nope": 1}}}},
            ["$not.$not.a.$nope: unknown operator '$nope' (did you mean '$ne'?)"],
        ),
        ({"name": {"$regex": "("}}, [f"name.$regex: does not compile: {_regex_error('(')}"]),
        (
            {"name": {"$notRegexi": "[a"}},
            [f"name.$notRegexi: does not compile: {_regex_error('[a')}"],
        ),
        (
            {"name": {"$regexi": 5}},
            ["name.$regexi: does not compile: a pattern must be a string, not number"],
        ),
        (
            {"tags": {"$elemMatch": {"$regex": "("}}},
            [f"tags.$elemMatch.$regex: does not compile: {_regex_error('(')}"],
        ),
        (
            {"hobbies": {"$elemMatch": {"name": {"$rgex": "^p"}}}},
            ["hobbies.$elemMatch.name.$rgex: unknown operator '$rgex' (did you mean '$regex'?)"],
        ),
        (
            {"hobbies": {"$elemMatch": {"$or": [{"a": {"$inn": [1]}}]}}},
            ["hobbies.$elemMatch.$or[0].a.$inn: unknown operator '$inn' (did you mean '$in'?)"],
        ),
        (
            {"tags": {"$all": ["a", {"$regex": "("}]}},
            [f"tags.$all[1].$regex: does not compile: {_regex_error('(')}"],
        ),
        (
            {"tags": {"$size": {"$gtee": 2}}},
            ["tags.$size.$gtee: unknown operator '$gtee' (did you mean '$gte'?)"],
        ),
        (
            {"a": {"$not": {"$inn": [1]}}},
            ["a.$not.$inn: unknown operator '$inn' (did you mean '$in'?)"],
        ),
        (
            {"a": {"$or": [{"a": 1}]}},
            [
                "a.$or: '$or' combines conditions and is never true on a value; put it at the "
                "condition's level"
            ],
        ),
        ({1: "x"}, [": key 1 must be a string"]),
        ({"a": {"$in": [1], 2: 3}}, ["a: key 2 must be a string"]),
        ([{"a": 1}], [": must be a mapping of attributes to conditions, not array"]),
        (
            {"a": {"$inn": 1}, "$or": [{"b": {"$ninn": 1}}]},
            [
                "a.$inn: unknown operator '$inn' (did you mean '$in'?)",
                "$or[0].b.$ninn: unknown operator '$ninn' (did you mean '$nin'?)",
            ],
        ),
    ],
    ids=repr,
)
def test_condition_problems(condition: Any, problems: list[str]) -> None:
    assert condition_problems(condition) == problems


@pytest.mark.parametrize(
    "condition",
    [
        {},
        {"tier": {"$in": ["pro", "enterprise"]}, "country": {"$ne": "FR"}},
        {
            "app_version": {"$vgte": "2.3.0"},
            "$or": [{"beta": True}, {"email": {"$regexi": "@x\\.io$"}}],
        },
        {"num": {"$in": 1}},  # never true, but GrowthBook evaluates it: not our call
        {"$groups": {"$elemMatch": {"$eq": "a"}}},  # "$groups" is an attribute
        {"o": {"a": 1, "$weird": 2}},  # an object to equal, not operators
        {"tags": {"$all": 5}, "x": {"$inGroup": 7}, "y": {"$type": "date"}, "z": {"$size": "3"}},
        {"hobbies": {"$elemMatch": {"name": {"$regex": "^ping"}}}},
        {"$not": {"$nor": []}},
    ],
    ids=repr,
)
def test_valid_conditions_have_no_problems(condition: dict[str, Any]) -> None:
    assert condition_problems(condition) == []


def test_the_corpus_has_problems_only_where_it_means_to() -> None:
    """Every row the SDKs evaluate is a valid condition, except the deliberate unknown operator
    and the deliberately broken regex (both evaluate to false, as intended)."""
    found = {row[0]: condition_problems(row[1]) for row in ROWS}
    flagged = {name: problems for name, problems in found.items() if problems}
    regex = f"name.$regex: does not compile: {_regex_error('/???***[)')}"
    assert flagged == {
        "unknown operator - pass": [
            "name.$regx: unknown operator '$regx' (did you mean '$regex'?)"
        ],
        "$regex invalid - pass": [regex],
        "$regex invalid - fail": [regex],
    }


def test_nested_too_deeply() -> None:
    condition: dict[str, Any] = {"a": 1}
    for _ in range(5000):
        condition = {"$not": condition}
    assert condition_problems(condition) == [": nested too deeply to evaluate"]
    assert eval_condition(condition, {"a": 1}) is False
