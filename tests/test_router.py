"""Router behaviour: rules, agreement with the growthbook package, statistical properties."""

from __future__ import annotations

import numpy as np
import pytest
from growthbook import Experiment as GBExperiment
from growthbook import GrowthBook
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from abtest.router import Router, UnknownExperimentError, fnv1a32, hash_unit
from tests.router_support import make_experiment, unit_ids

SHAPES = {
    "three arms": {},
    "uneven, reduced coverage": {
        "coverage": 0.6,
        "arms": [
            {"name": "a", "weight": 0.2},
            {"name": "b", "weight": 0.8},
        ],
    },
    "namespace, four arms": {
        "seed": "another-seed",
        "coverage": 0.9,
        "namespace": ["summarizer", 0.2, 0.7],
        "arms": [{"name": f"arm{i}", "weight": 0.25} for i in range(4)],
    },
    "hash version 1": {"hash_version": 1, "coverage": 0.75},
}


@pytest.mark.parametrize("shape", SHAPES)
def test_assign_agrees_with_growthbook_run(shape: str) -> None:
    experiment = make_experiment(**SHAPES[shape])
    router = Router([experiment])
    gb_experiment = GBExperiment(
        key=experiment.id,
        variations=list(range(len(experiment.arms))),
        weights=[arm.weight for arm in experiment.arms],
        coverage=experiment.coverage,
        namespace=experiment.namespace,
        hashAttribute="user_id",
        hashVersion=experiment.hash_version,
        seed=experiment.hash_seed,
    )
    growthbook = GrowthBook(attributes={})
    ids = unit_ids(100_000)
    mismatches = []
    for unit in ids:
        growthbook.set_attributes({"user_id": unit})
        expected = growthbook.run(gb_experiment)
        got = router.assign(experiment.id, unit)
        want = (expected.inExperiment, expected.variationId if expected.inExperiment else 0)
        if (got.in_experiment, got.arm_index) != want:
            mismatches.append(unit)
    assert mismatches == []
    many = router.assign_many(experiment.id, ids)
    assert (many >= 0).sum() > 10_000


def test_fnv1a32_hashes_utf16_code_units() -> None:
    # "😀" is U+1F600: JavaScript's charCodeAt sees the surrogates 0xD83D and 0xDE00.
    h = 0x811C9DC5
    for unit in (0xD83D, 0xDE00):
        h = ((h ^ unit) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a32("😀") == h
    assert fnv1a32("a") == 0xE40C292C  # the FNV-1a 32 test vector for "a"
    assert fnv1a32("é") != fnv1a32("é".encode().decode("latin-1"))


def test_rules_in_order() -> None:
    experiment = make_experiment(
        overrides={"qa-alice": "v3"}, coverage=0.5, namespace=["ns", 0.0, 0.5]
    )
    router = Router([experiment])
    forced = router.assign("exp", "qa-alice")
    assert (forced.arm, forced.in_experiment, forced.reason) == ("v3", True, "override")
    reasons = {router.assign("exp", u).reason for u in unit_ids(2000)}
    assert reasons == {"hashed", "not_in_namespace", "not_in_coverage"}
    for unit in unit_ids(2000):
        a = router.assign("exp", unit)
        if not a.in_experiment:
            assert (a.arm, a.arm_index) == ("control", 0)
    empty = router.assign("exp", "")
    assert (empty.in_experiment, empty.reason) == (False, "empty_unit_id")


def test_draft_and_stopped_experiments_keep_everyone_out() -> None:
    draft = Router([make_experiment(status="draft", overrides={"qa": "v2"})])
    for unit in ["qa", "u1", "u2"]:
        a = draft.assign("exp", unit)
        assert (a.arm, a.in_experiment, a.reason) == ("control", False, "not_running")
    stopped = Router([make_experiment(status="stopped", winner="v2")])
    a = stopped.assign("exp", "u1")
    assert (a.arm, a.arm_index, a.in_experiment, a.reason) == ("v2", 1, False, "stopped")
    no_winner = Router([make_experiment(status="stopped")])
    assert no_winner.assign("exp", "u1").arm == "control"
    assert (draft.assign_many("exp", ["u1", "u2"]) == -1).all()


def test_unknown_experiment_is_a_named_error() -> None:
    with pytest.raises(UnknownExperimentError, match="unknown experiment 'nope'"):
        Router([make_experiment()]).assign("nope", "u1")


def test_arm_frequencies_match_weights() -> None:
    experiment = make_experiment(
        arms=[
            {"name": "a", "weight": 0.5},
            {"name": "b", "weight": 0.3},
            {"name": "c", "weight": 0.2},
        ]
    )
    counts = np.bincount(Router([experiment]).assign_many("exp", unit_ids(100_000)), minlength=3)
    expected = np.array([0.5, 0.3, 0.2]) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 0.001


weights_strategy = st.lists(
    st.integers(min_value=1, max_value=20), min_size=2, max_size=5
).map(lambda raw: [w / sum(raw) for w in raw])


# derandomized: a chi-square test at p > 0.001 over many random draws would fail now and then
@settings(max_examples=25, deadline=None, derandomize=True)
@given(weights=weights_strategy, seed=st.text(min_size=0, max_size=12))
def test_frequencies_match_any_weights(weights: list[float], seed: str) -> None:
    arms = [{"name": f"arm{i}", "weight": w} for i, w in enumerate(weights)]
    arms[-1]["weight"] = 1.0 - sum(w for w in weights[:-1])
    router = Router([make_experiment(arms=arms, seed=seed)])
    counts = np.bincount(router.assign_many("exp", unit_ids(100_000)), minlength=len(arms))
    expected = np.array([a["weight"] for a in arms]) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 0.001


@settings(max_examples=40, deadline=None)
@given(
    low=st.floats(min_value=0.0, max_value=1.0),
    high=st.floats(min_value=0.0, max_value=1.0),
    seed=st.text(max_size=8),
)
def test_raising_coverage_never_moves_a_unit_already_in(low: float, high: float, seed: str) -> None:
    low, high = min(low, high), max(low, high)
    ids = unit_ids(3000)
    before = Router([make_experiment(coverage=low, seed=seed)]).assign_many("exp", ids)
    after = Router([make_experiment(coverage=high, seed=seed)]).assign_many("exp", ids)
    was_in = before >= 0
    assert (after[was_in] == before[was_in]).all()
    assert (after >= 0).sum() >= was_in.sum()


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.text(max_size=20), max_size=40),
    coverage=st.floats(min_value=0.0, max_value=1.0),
    version=st.sampled_from([1, 2]),
    namespace=st.sampled_from([None, ["ns", 0.1, 0.8]]),
)
def test_assign_many_equals_assign(
    ids: list[str], coverage: float, version: int, namespace: list | None
) -> None:
    experiment = make_experiment(
        coverage=coverage, hash_version=version, namespace=namespace, overrides={"qa": "v2"}
    )
    router = Router([experiment])
    ids = ids + ["qa", "trailing-nul\x00", "\x00", "😀"]
    many = router.assign_many("exp", ids)
    one_by_one = [
        a.arm_index if a.in_experiment else -1
        for a in (router.assign("exp", unit) for unit in ids)
    ]
    assert many.tolist() == one_by_one


@given(seed=st.text(max_size=10), value=st.text(max_size=10))
def test_hash_unit_in_unit_interval(seed: str, value: str) -> None:
    for version in (1, 2):
        n = hash_unit(seed, value, version)
        assert n is not None and 0.0 <= n < 1.0
    assert hash_unit(seed, value, 3) is None
