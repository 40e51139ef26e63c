"""Targeting conditions: GrowthBook's condition language, evaluated on a unit's attributes.

A condition is a mapping from attribute paths (``"tier"``, ``"father.age"``, ``"tags.0"``) to a
value the attribute must equal (JSON equality) or to an operator object
(``{"$in": [...], "$ne": "FR"}``); ``$and``/``$or``/``$nor`` (lists of conditions) and ``$not``
(a condition) combine conditions. `eval_condition` answers whether a unit's attributes match;
`condition_problems` lists what is certainly wrong in a condition, for ``abtest validate``.

The results are those of GrowthBook's SDKs, so a unit is targeted here exactly as a GrowthBook
client would target it:

- GrowthBook's cross-SDK corpus (``tests/data/growthbook_eval_condition_0.8.0.json``, spec
  0.8.0) decides every case it covers. Where it does not, we follow GrowthBook's Python SDK
  (``growthbook.core``), which the tests compare us with on random conditions.
- One deliberate difference from that SDK, forced by the corpus: ``$lt``/``$lte``/``$gt``/``$gte``
  between values of different types compare as JavaScript's ``<`` does (a missing attribute is
  0, ``"8" > 5``, ``true > 0``; a string that is no number never orders). The newer Python SDK
  refuses to order mixed types and fails three corpus rows. Arrays and objects never order.
- A malformed condition (``$or`` that is no list, ``$not`` that is no mapping, a non-string key)
  makes the whole condition false, even under ``$not``, as in the SDK: a broken condition must
  never let units in. An operator we do not know is undecided: it fails the condition, and
  ``$not`` cannot turn it into a match either.

The evaluator is a chain of small pure functions with a dispatch table of operators. Every
function returns a `Verdict`: True, False, or None for undecided (an unknown operator), which
only counts as a match at the top when it is True. Regexes and padded version strings are
cached; there is no other state, no I/O and no randomness. Python lists and tuples are JSON
arrays; any mapping is a JSON object.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

__all__ = ["OPERATORS", "condition_problems", "eval_condition", "padded_version_string"]

#: True or False, or None when an unknown operator leaves the answer undecided.
Verdict = bool | None
Groups = Mapping[str, Any]
Handler = Callable[[Any, Any, Groups], Verdict]

_ARRAY = (list, tuple)
_NO_GROUPS: Groups = {}


class _Malformed(Exception):
    """A condition the SDK fails on as a whole (it raises there and answers False)."""


#: What makes the whole condition false: our own `_Malformed`, and what a strange attribute
#: value (a Python object with its own `==`) or deep nesting might raise.
_EVAL_ERRORS = (_Malformed, TypeError, ValueError, AttributeError, IndexError, RecursionError)


def eval_condition(
    condition: Mapping[str, Any],
    attributes: Mapping[str, Any],
    saved_groups: Mapping[str, Sequence[Any]] | None = None,
) -> bool:
    """Whether `attributes` match `condition` (GrowthBook's ``evalCondition``); never raises.

    `saved_groups` maps a saved group's id to its members, for ``$inGroup``/``$notInGroup``:
    an id missing from it is an empty group (``$notInGroup`` holds), members that are no list
    are unreadable (neither holds). The SDK's typed saved groups (``$savedGroup``, added after
    spec 0.8.0) are not supported: a reference to one never matches.
    """
    try:
        return _condition(condition, attributes, saved_groups or _NO_GROUPS) is True
    except _EVAL_ERRORS:
        return False


# --- Conditions: attribute paths and the logical keys -------------------------------------


def _condition(condition: Any, attributes: Any, groups: Groups) -> Verdict:
    """Every entry must hold; the first false one decides (later ones may be malformed)."""
    if type(condition) is not dict and not isinstance(condition, Mapping):
        raise _Malformed("a condition must be a mapping")
    result: Verdict = True
    for key, value in condition.items():
        logical = _LOGICAL.get(key)
        if logical is not None:
            verdict = logical(value, attributes, groups)
        elif type(attributes) is dict and type(key) is str and "." not in key:
            verdict = _value(value, attributes.get(key), groups)  # the usual case, inlined
        else:
            verdict = _value(value, _path(attributes, key), groups)
        if verdict is False:
            return False
        if verdict is None:
            result = None
    return result


def _listed(conditions: Any) -> Sequence[Any]:
    """The conditions of an ``$and``/``$or``/``$nor``.

    The SDK iterates whatever it gets: an empty string or mapping is an empty list, anything
    else that is not a list fails the whole condition.
    """
    if isinstance(conditions, _ARRAY):
        return conditions
    if isinstance(conditions, str | Mapping) and not conditions:
        return ()
    raise _Malformed("$and/$or/$nor must be a list of conditions")


def _or(conditions: Any, attributes: Any, groups: Groups) -> Verdict:
    """One condition must hold; an empty ``$or`` holds (GrowthBook's choice)."""
    conditions = _listed(conditions)
    if not conditions:
        return True
    result: Verdict = False
    for condition in conditions:
        verdict = _condition(condition, attributes, groups)
        if verdict is True:
            return True
        if verdict is None:
            result = None
    return result


def _nor(conditions: Any, attributes: Any, groups: Groups) -> Verdict:
    """No condition may hold, so an empty ``$nor`` fails (it negates an empty ``$or``)."""
    return _negate(_or(conditions, attributes, groups))


def _and(conditions: Any, attributes: Any, groups: Groups) -> Verdict:
    """Every condition must hold; an empty ``$and`` holds."""
    result: Verdict = True
    for condition in _listed(conditions):
        verdict = _condition(condition, attributes, groups)
        if verdict is False:
            return False
        if verdict is None:
            result = None
    return result


def _not_condition(condition: Any, attributes: Any, groups: Groups) -> Verdict:
    """``$not`` at the condition level negates a whole condition (a mapping)."""
    return _negate(_condition(condition, attributes, groups))


def _never(_value: Any, _attributes: Any, _groups: Groups) -> Verdict:
    """``$savedGroup``/``$savedGroups``: typed saved-group references, added to GrowthBook after
    spec 0.8.0. Our saved groups are plain member lists, which such a reference never matches
    in the SDK either, so they fail closed."""
    return False


def _negate(verdict: Verdict) -> Verdict:
    """Undecided stays undecided: `$not` must not turn an unknown operator into a match."""
    return None if verdict is None else not verdict


_LOGICAL: dict[Any, Callable[[Any, Any, Groups], Verdict]] = {
    "$or": _or,
    "$nor": _nor,
    "$and": _and,
    "$not": _not_condition,
    "$savedGroup": _never,
    "$savedGroups": _never,
}

#: Keys of a condition, never of an operator object: on a value they never match, and in
#: ``$elemMatch`` they make its argument a condition on each element's fields.
_CONDITION_KEYS = frozenset({"$or", "$nor", "$and", "$savedGroup"})


def _path(attributes: Any, path: Any) -> Any:
    """The value at a dotted path, None when any step is missing (JavaScript's ``getPath``).

    Like JavaScript, an array has its indices ("0", "1", not "01") and "length", and a string
    has no fields.
    """
    if type(path) is not str:
        if not isinstance(path, str):
            raise _Malformed("an attribute path must be a string")
    if "." not in path:
        return _child(attributes, path)
    current = attributes
    for segment in path.split("."):
        current = _child(current, segment)
    return current


def _child(current: Any, key: str) -> Any:
    if type(current) is dict:
        return current.get(key)
    if isinstance(current, Mapping):
        return current.get(key)
    if isinstance(current, _ARRAY):
        if key == "length":
            return len(current)
        if _is_index(key, len(current)):
            return current[int(key)]
    return None


def _is_index(key: str, length: int) -> bool:
    """A canonical array index below `length`: "0" or "12", not "012", "-0" or "1e3"."""
    return (
        len(key) <= 10
        and key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) < length
    )


# --- Values: an operator object, or a value to equal ---------------------------------------


def _value(expected: Any, actual: Any, groups: Groups, insensitive: bool = False) -> Verdict:
    """An attribute's value against a condition value.

    An operator object (only ``$`` keys; an empty mapping counts and holds) applies each of
    its operators; anything else is a value the attribute must equal as JSON. `insensitive`
    (``$alli``) compares two strings of the latter kind ignoring case.
    """
    if type(expected) is dict or (type(expected) not in _PLAIN and isinstance(expected, Mapping)):
        if _is_operator_object(expected):
            # Every operator must hold; a condition key (``$or``...) never holds on a value,
            # and an unknown operator is undecided.
            result: Verdict = True
            for operator, argument in expected.items():
                handler = _HANDLERS.get(operator)
                if handler is not None:
                    verdict = handler(actual, argument, groups)
                else:
                    verdict = False if operator in _CONDITION_KEYS else None
                if verdict is False:
                    return False
                if verdict is None:
                    result = None
            return result
    if insensitive and isinstance(expected, str) and isinstance(actual, str):
        return expected.lower() == actual.lower()
    return _json_equal(expected, actual)


#: Types that are certainly no mapping, to skip the slower ``isinstance(x, Mapping)``.
_PLAIN = frozenset({str, int, float, bool, list, tuple, type(None)})


def _is_operator_object(mapping: Mapping[Any, Any]) -> bool:
    """Whether every key starts with ``$``. A non-string key met before the first non-``$``
    key fails the whole condition, as in the SDK."""
    for key in mapping:
        if type(key) is not str and not isinstance(key, str):
            raise _Malformed("a key must be a string")
        if key[:1] != "$":
            return False
    return True


# --- JSON types and equality -----------------------------------------------------------------

_TYPE_NAMES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    list: "array",
    tuple: "array",
    dict: "object",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    """The JSON type name (``$type``'s vocabulary): a bool is no number, unlike in Python."""
    name = _TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _ARRAY):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "unknown"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _strict_equal(a: Any, b: Any) -> bool:
    """JavaScript's ``===`` as GrowthBook uses it: same JSON type and equal, and never for two
    arrays or objects (compared by reference in JavaScript, and they never share one here)."""
    kind = _json_type(a)
    return kind == _json_type(b) and kind != "array" and kind != "object" and bool(a == b)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values, as GrowthBook compares their ``JSON.stringify`` output.

    Types must match all the way down (True is not 1), objects must list the same keys in the
    same JavaScript property order, and NaN or infinity inside a container is ``null``.
    """
    kind = _json_type(a)
    if kind != _json_type(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(
            _json_equal(_json_scalar(x), _json_scalar(y)) for x, y in zip(a, b, strict=True)
        )
    if kind == "object":
        return _js_key_order(a) == _js_key_order(b) and all(
            _json_equal(_json_scalar(a[key]), _json_scalar(b[key])) for key in a
        )
    return bool(a == b)


def _json_scalar(value: Any) -> Any:
    """``JSON.stringify`` writes NaN and infinities as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _js_key_order(mapping: Mapping[Any, Any]) -> list[Any]:
    """Keys in JavaScript property order: array-index keys ascending, then insertion order."""
    keys = list(mapping)
    indices = [k for k in keys if isinstance(k, str) and _is_index(k, 2**32 - 1)]
    if not indices:
        return keys
    others = [k for k in keys if not (isinstance(k, str) and _is_index(k, 2**32 - 1))]
    return sorted(indices, key=int) + others


# --- Operators -----------------------------------------------------------------------------


def _eq(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    if type(actual) is str and type(expected) is str:
        return actual == expected
    return _strict_equal(actual, expected)


def _ne(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    if type(actual) is str and type(expected) is str:
        return actual != expected
    return not _strict_equal(actual, expected)


_JS_WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_JS_RADIX = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_RADIX = {"x": 16, "o": 8, "b": 2}


def _js_number(value: Any) -> float:
    """JavaScript's ``Number(value)`` for a primitive: null is 0, a bool 0 or 1, a string its
    number literal (blank is 0, anything else NaN). Python's `float` is not that: it accepts
    "inf", "nan", "1_000" and non-ASCII digits."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        text = value.strip(_JS_WHITESPACE)
        if not text:
            return 0.0
        if _JS_DECIMAL.fullmatch(text):
            return float(text.replace("Infinity", "inf"))
        if _JS_RADIX.fullmatch(text):
            return _as_float(int(text[2:], _RADIX[text[1].lower()]))
        return math.nan
    return _as_float(value)


def _as_float(number: int | float) -> float:
    """A double, as JavaScript has only doubles: an int too large is an infinity."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _order(actual: Any, expected: Any) -> int | None:
    """The sign of `actual` - `expected` as JavaScript's ``<`` orders them, or None if they do
    not order (NaN, an array or object, a Python object).

    Two strings compare by UTF-16 code units, two numbers as numbers; mixed primitive types
    convert to numbers (see the module docstring: the corpus needs this).
    """
    if isinstance(actual, str) and isinstance(expected, str):
        if actual.isascii() and expected.isascii():
            return (actual > expected) - (actual < expected)
        left = actual.encode("utf-16-be", "surrogatepass")
        right = expected.encode("utf-16-be", "surrogatepass")
        return (left > right) - (left < right)
    if _is_number(actual) and _is_number(expected):
        if actual != actual or expected != expected:  # NaN
            return None
        return (actual > expected) - (actual < expected)
    if not (_is_primitive(actual) and _is_primitive(expected)):
        return None
    left_number, right_number = _js_number(actual), _js_number(expected)
    if math.isnan(left_number) or math.isnan(right_number):
        return None
    return (left_number > right_number) - (left_number < right_number)


def _is_primitive(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def _lt(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    sign = _order(actual, expected)
    return sign is not None and sign < 0


def _lte(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    sign = _order(actual, expected)
    return sign is not None and sign <= 0


def _gt(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    sign = _order(actual, expected)
    return sign is not None and sign > 0


def _gte(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    sign = _order(actual, expected)
    return sign is not None and sign >= 0


def _versions(actual: Any, expected: Any) -> tuple[str, str] | None:
    """Both padded version strings, or None unless both are strings or both numbers (a
    missing version never compares, as in the SDK)."""
    if type(actual) is str and type(expected) is str:  # the usual case: no number to write
        return _padded(actual or "0"), _padded(expected or "0")
    if (isinstance(actual, str) and isinstance(expected, str)) or (
        _is_number(actual) and _is_number(expected)
    ):
        return padded_version_string(actual), padded_version_string(expected)
    return None


def _veq(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    pair = _versions(actual, expected)
    return pair is not None and pair[0] == pair[1]


def _vne(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    """The negation of ``$veq``, so it holds for values that are no comparable version."""
    pair = _versions(actual, expected)
    return pair is None or pair[0] != pair[1]


def _vlt(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    pair = _versions(actual, expected)
    return pair is not None and pair[0] < pair[1]


def _vlte(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    pair = _versions(actual, expected)
    return pair is not None and pair[0] <= pair[1]


def _vgt(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    pair = _versions(actual, expected)
    return pair is not None and pair[0] > pair[1]


def _vgte(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    pair = _versions(actual, expected)
    return pair is not None and pair[0] >= pair[1]


def padded_version_string(version: Any) -> str:
    """GrowthBook's ``paddedVersionString``: a version made comparable as a plain string.

    "v1.2.3-rc.1+build" -> ``"    1-    2-    3-rc-    1"``: the leading "v" and the build
    are dropped, numeric parts are padded to 5 characters ("9" < "10" then), and a release
    gets a final "~", the largest ASCII character, so that 1.0.0 > 1.0.0-beta. A number is
    first written as JavaScript writes it; anything else that is not a string is "0".
    """
    if _is_number(version):
        version = _js_number_string(version)
    if not version or not isinstance(version, str):
        version = "0"
    return _padded(version)


_VERSION_STRIP = re.compile(r"(^v|\+.*$)")
_VERSION_SPLIT = re.compile(r"[-.]")


@lru_cache(maxsize=1024)
def _padded(version: str) -> str:
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", version))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if part.isdigit() else part for part in parts)


def _js_number_string(number: int | float) -> str:
    """JavaScript's ``String(number)``: shortest round-trip digits, no ".0", exponent form
    outside 1e-7 < |x| < 1e21 ("1e+21", "1.5e-7")."""
    x = _as_float(number)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), len(digits) + int(exponent)  # x = 0.<digits> * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if n > 0 else '-'}{abs(n - 1)}"


def _contains(values: Sequence[Any], item: Any) -> bool:
    """JavaScript's ``values.includes(item)`` with GrowthBook's strict types: 1 is not True,
    and an array or object is never included (JavaScript compares them by reference)."""
    if type(item) is str or item is None:
        return item in values
    return any(_strict_equal(item, value) for value in values)


def _is_in(values: Sequence[Any], actual: Any) -> bool:
    """``$in``: the value is among `values`; an array attribute needs one element among them."""
    if isinstance(actual, _ARRAY):
        return any(_contains(values, item) for item in actual)
    return _contains(values, actual)


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _is_in_insensitive(values: Sequence[Any], actual: Any) -> bool:
    """``$ini``: as ``$in``, ignoring the case of strings."""
    folded = [_fold(value) for value in values]
    if isinstance(actual, _ARRAY):
        return any(_strict_equal(_fold(item), value) for item in actual for value in folded)
    item = _fold(actual)
    return any(_strict_equal(item, value) for value in folded)


def _in(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    """A non-list argument never matches, for ``$nin`` as well (the corpus says so)."""
    if type(expected) is not list and not isinstance(expected, tuple):
        return False
    if type(actual) is str:  # the usual case: only a string equals a string
        return actual in expected
    return _is_in(expected, actual)


def _nin(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    if type(expected) is not list and not isinstance(expected, tuple):
        return False
    if type(actual) is str:
        return actual not in expected
    return not _is_in(expected, actual)


def _ini(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    return isinstance(expected, _ARRAY) and _is_in_insensitive(expected, actual)


def _nini(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    return isinstance(expected, _ARRAY) and not _is_in_insensitive(expected, actual)


def _group_members(name: Any, groups: Groups) -> Sequence[Any] | None:
    """The members of a saved group: none for an unknown id (so ``$notInGroup`` holds), None
    when the id is no string or the group is not a list (neither operator holds then: the SDK
    fails closed on a group it cannot read)."""
    if not isinstance(name, str):
        return None
    members = groups.get(name, ())
    return members if isinstance(members, _ARRAY) else None


def _in_group(actual: Any, expected: Any, groups: Groups) -> Verdict:
    members = _group_members(expected, groups)
    return members is not None and _is_in(members, actual)


def _not_in_group(actual: Any, expected: Any, groups: Groups) -> Verdict:
    members = _group_members(expected, groups)
    return members is not None and not _is_in(members, actual)


@lru_cache(maxsize=256)
def _regex(pattern: str, flags: int) -> re.Pattern[str] | None:
    """The compiled pattern, None if it does not compile (Python's syntax, as in the SDK)."""
    try:
        return re.compile(pattern, flags)
    except (re.error, ValueError, OverflowError, RecursionError):
        return None


def _search(pattern: Any, actual: Any, flags: int) -> bool | None:
    """Whether the pattern finds a match in the string, None if either is unusable."""
    if not isinstance(pattern, str) or not isinstance(actual, str):
        return None
    compiled = _regex(pattern, flags)
    return None if compiled is None else compiled.search(actual) is not None


def _regex_match(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    return _search(expected, actual, 0) is True


def _regexi_match(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    return _search(expected, actual, re.IGNORECASE) is True


def _not_regex(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    """A value that cannot be searched (missing, not a string) does not match, so it holds."""
    return _search(expected, actual, 0) is not True


def _not_regexi(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    return _search(expected, actual, re.IGNORECASE) is not True


def _elem_match(actual: Any, expected: Any, groups: Groups) -> Verdict:
    """One element (null elements skipped) must match: an operator object tests the element
    itself, anything else (a condition, possibly only ``$or``/``$and``...) its fields."""
    if not isinstance(actual, _ARRAY):
        return False
    on_value = (
        isinstance(expected, Mapping)
        and _is_operator_object(expected)
        and not any(key in _CONDITION_KEYS for key in expected)
    )
    result: Verdict = False
    for item in actual:
        if item is None:
            continue
        if on_value:
            verdict = _value(expected, item, groups)
        else:
            verdict = _condition(expected, item, groups)
        if verdict is True:
            return True
        if verdict is None:
            result = None
    return result


def _size(actual: Any, expected: Any, groups: Groups) -> Verdict:
    """The array's length matches `expected`, itself a value or an operator object."""
    if not isinstance(actual, _ARRAY):
        return False
    return _value(expected, len(actual), groups)


def _contains_all(actual: Any, expected: Any, groups: Groups, insensitive: bool) -> Verdict:
    """Each condition value in `expected` matches at least one element of the array."""
    if not isinstance(expected, _ARRAY) or not isinstance(actual, _ARRAY):
        return False
    result: Verdict = True
    for wanted in expected:
        found: Verdict = False
        for item in actual:
            verdict = _value(wanted, item, groups, insensitive)
            if verdict is True:
                found = True
                break
            if verdict is None:
                found = None
        if found is False:
            return False
        if found is None:
            result = None
    return result


def _all(actual: Any, expected: Any, groups: Groups) -> Verdict:
    return _contains_all(actual, expected, groups, insensitive=False)


def _alli(actual: Any, expected: Any, groups: Groups) -> Verdict:
    return _contains_all(actual, expected, groups, insensitive=True)


def _exists(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    """A missing attribute and a null one are the same here (JavaScript's ``!= null``)."""
    return (actual is not None) if expected else (actual is None)


def _type(actual: Any, expected: Any, _groups: Groups) -> Verdict:
    return _json_type(actual) == expected


def _not_value(actual: Any, expected: Any, groups: Groups) -> Verdict:
    """``$not`` on a value negates a condition value (an operator object or a value)."""
    return _negate(_value(expected, actual, groups))


_HANDLERS: dict[str, Handler] = {
    "$eq": _eq,
    "$ne": _ne,
    "$lt": _lt,
    "$lte": _lte,
    "$gt": _gt,
    "$gte": _gte,
    "$veq": _veq,
    "$vne": _vne,
    "$vlt": _vlt,
    "$vlte": _vlte,
    "$vgt": _vgt,
    "$vgte": _vgte,
    "$in": _in,
    "$nin": _nin,
    "$ini": _ini,
    "$nini": _nini,
    "$inGroup": _in_group,
    "$notInGroup": _not_in_group,
    "$regex": _regex_match,
    "$regexi": _regexi_match,
    "$notRegex": _not_regex,
    "$notRegexi": _not_regexi,
    "$elemMatch": _elem_match,
    "$size": _size,
    "$all": _all,
    "$alli": _alli,
    "$exists": _exists,
    "$type": _type,
    "$not": _not_value,
}

#: The operators this module knows: those on a value, and those combining conditions.
OPERATORS: frozenset[str] = frozenset(_HANDLERS) | {"$and", "$or", "$nor"}

_REGEX_OPERATORS = {
    "$regex": 0,
    "$regexi": re.IGNORECASE,
    "$notRegex": 0,
    "$notRegexi": re.IGNORECASE,
}


# --- Static checks -------------------------------------------------------------------------


def condition_problems(condition: Any) -> list[str]:
    """What is certainly wrong in a condition, each as ``"<path>: <message>"``.

    The path starts at the condition's top level (dots between keys, ``[i]`` for list items;
    empty for the condition itself). Flagged: unknown operators (with the closest known one),
    regexes that do not compile in Python, ``$and``/``$or``/``$nor`` that are no list of
    conditions, a ``$not`` that is no condition, ``$and``/``$or``/``$nor`` used as an operator
    on a value (never true there), and non-string keys. Oddities GrowthBook evaluates without
    error, such as ``$in`` with a non-list (never true), are left alone: the SDKs agree on
    what they mean.
    """
    problems: list[str] = []
    try:
        _check_condition(condition, "", problems)
    except RecursionError:
        problems.append(": nested too deeply to evaluate")
    return problems


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_condition(condition: Any, path: str, problems: list[str]) -> None:
    if not isinstance(condition, Mapping):
        what = "a mapping of attributes to conditions" if not path else "a condition (a mapping)"
        problems.append(f"{path}: must be {what}, not {_json_type(condition)}")
        return
    for key, value in condition.items():
        if not isinstance(key, str):
            problems.append(f"{path}: key {key!r} must be a string")
            continue
        here = _key_path(path, key)
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, _ARRAY):
                problems.append(f"{here}: must be a list of conditions")
                continue
            for index, item in enumerate(value):
                _check_condition(item, f"{here}[{index}]", problems)
        elif key == "$not":
            _check_condition(value, here, problems)
        else:  # an attribute path, even when it starts with "$" (like "$groups" in the corpus)
            _check_value(value, here, problems)


def _check_value(value: Any, path: str, problems: list[str]) -> None:
    """A condition value: only an operator object can hold mistakes."""
    if not isinstance(value, Mapping):
        return
    bad_keys = [key for key in value if not isinstance(key, str)]
    if bad_keys:
        problems.extend(f"{path}: key {key!r} must be a string" for key in bad_keys)
        return
    if not _is_operator_object(value):
        return  # an object the attribute must equal
    for operator, argument in value.items():
        _check_operator(operator, argument, _key_path(path, operator), problems)


def _check_operator(operator: str, argument: Any, path: str, problems: list[str]) -> None:
    if operator in ("$and", "$or", "$nor"):
        problems.append(
            f"{path}: '{operator}' combines conditions and is never true on a value; "
            "put it at the condition's level"
        )
    elif operator not in _HANDLERS:
        problems.append(f"{path}: unknown operator '{operator}'{_did_you_mean(operator)}")
    elif operator in _REGEX_OPERATORS:
        problem = _regex_problem(argument, _REGEX_OPERATORS[operator])
        if problem:
            problems.append(f"{path}: {problem}")
    elif operator in ("$not", "$size"):
        _check_value(argument, path, problems)
    elif operator in ("$all", "$alli") and isinstance(argument, _ARRAY):
        for index, item in enumerate(argument):
            _check_value(item, f"{path}[{index}]", problems)
    elif operator == "$elemMatch" and isinstance(argument, Mapping):
        keys_are_strings = all(isinstance(key, str) for key in argument)
        if (
            keys_are_strings
            and _is_operator_object(argument)
            and not any(k in _CONDITION_KEYS for k in argument)
        ):
            _check_value(argument, path, problems)
        else:
            _check_condition(argument, path, problems)


def _did_you_mean(operator: str) -> str:
    close = difflib.get_close_matches(operator, sorted(OPERATORS), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _regex_problem(pattern: Any, flags: int) -> str | None:
    if not isinstance(pattern, str):
        return f"does not compile: a pattern must be a string, not {_json_type(pattern)}"
    try:
        re.compile(pattern, flags)
    except (re.error, ValueError, OverflowError, RecursionError) as error:
        return f"does not compile: {error}"
    return None
