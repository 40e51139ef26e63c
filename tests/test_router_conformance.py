"""GrowthBook's cross-SDK cases (tests/data/growthbook_cases.json): a failing row means users
would change arms compared with every GrowthBook SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abtest.router import bucket_ranges, choose_arm, equal_weights, hash_unit, in_namespace

CASES = json.loads((Path(__file__).parent / "data" / "growthbook_cases.json").read_text())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for section in ("hash", "getBucketRange", "chooseVariation", "inNamespace", "getEqualWeights"):
        if section in metafunc.fixturenames:
            metafunc.parametrize(section, CASES[section], ids=repr)


def test_case_counts() -> None:
    sizes = {k: len(v) for k, v in CASES.items() if isinstance(v, list)}
    assert sizes == {
        "hash": 15,
        "getBucketRange": 13,
        "chooseVariation": 13,
        "inNamespace": 16,
        "getEqualWeights": 6,
    }


def test_hash(hash: list) -> None:
    seed, value, version, expected = hash
    assert hash_unit(seed, value, version) == expected


def test_bucket_range(getBucketRange: list) -> None:
    _, (n_arms, coverage, weights), expected = getBucketRange
    got = [[round(a, 8), round(b, 8)] for a, b in bucket_ranges(n_arms, coverage, weights)]
    assert got == [[round(a, 8), round(b, 8)] for a, b in expected]


def test_choose_arm(chooseVariation: list) -> None:
    _, n, ranges, expected = chooseVariation
    assert choose_arm(n, [tuple(r) for r in ranges]) == expected


def test_in_namespace(inNamespace: list) -> None:
    _, unit_id, namespace, expected = inNamespace
    assert in_namespace(unit_id, tuple(namespace)) is expected


def test_equal_weights(getEqualWeights: list) -> None:
    n, expected = getEqualWeights
    assert [round(w, 8) for w in equal_weights(n)] == [round(w, 8) for w in expected]
