"""The router's attributes: hash attribute, fallback attribute, no hash value, targeting
condition, and their order among the rules; checked against the growthbook package."""

from __future__ import annotations

import math

import pytest
import yaml
from growthbook import Experiment as GBExperiment
from growthbook import GrowthBook
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.experiments import ExperimentFileError, load_experiment
from abtest.router import Router, hash_value
from tests.router_support import make_experiment, unit_ids

COMPANY = {"hash_attribute": "company"}
PRO = {"tier": {"$in": ["pro", "enterprise"]}}


def test_callers_passing_only_the_unit_id_keep_their_arms() -> None:
    router = Router([make_experiment(coverage=0.8, namespace=["ns", 0.0, 0.7])])
    for unit in unit_ids(3000):
        alone = router.assign("exp", unit)
        assert router.assign("exp", unit, {}) == alone
        assert router.assign("exp", unit, {"tier": "free", "n": [1, {"a": None}]}) == alone
        assert router.assign("exp", unit, {"user_id": unit}) == alone


def test_units_of_one_company_share_its_arm() -> None:
    router = Router([make_experiment(**COMPANY)])
    for company in [f"company-{i}" for i in range(300)]:
        arms = {router.assign("exp", f"{company}/u{k}", {"company": company}) for k in range(5)}
        assert len(arms) == 1
        # the company decides, whoever the unit is; without a company the unit is out
        assert arms == {router.assign("exp", "someone-else", {"company": company})}
        assert router.assign("exp", company).reason == "no_hash_value"
    arms = {router.assign("exp", "u1", {"company": f"c{i}"}).arm for i in range(300)}
    assert arms == {"control", "v2", "v3"}


def test_fallback_attribute_when_the_hash_attribute_has_no_value() -> None:
    router = Router([make_experiment(**COMPANY, fallback_attribute="device_id")])
    for device in [f"device-{i}" for i in range(200)]:
        by_device = router.assign("exp", "u9", {"device_id": device})
        for company in (None, "", 0, False, [], {}):
            got = router.assign("exp", "u1", {"company": company, "device_id": device})
            assert got == by_device
        got = router.assign("exp", "", {"device_id": device})  # empty unit id, no company
        assert got == by_device
        both = router.assign("exp", "u1", {"company": "acme", "device_id": device})
        assert both == router.assign("exp", "u2", {"company": "acme"})


def test_no_hash_value_keeps_the_unit_out() -> None:
    router = Router([make_experiment(**COMPANY, fallback_attribute="device_id")])
    for attributes in ({"company": None}, {"company": "", "device_id": None}, {"company": 0}):
        got = router.assign("exp", "u1", attributes)
        assert (got.arm, got.arm_index, got.in_experiment, got.reason) == (
            "control",
            0,
            False,
            "no_hash_value",
        )
    assert router.assign("exp", "u1").reason == "no_hash_value"  # no company, no device
    assert router.assign("exp", "", {"tier": "pro"}).reason == "no_hash_value"
    by_unit = Router([make_experiment()])  # hashes user_id: the unit id itself
    assert by_unit.assign("exp", "").reason == "empty_unit_id"
    assert by_unit.assign("exp", "", {"tier": "pro"}).reason == "empty_unit_id"


def test_condition_keeps_non_matching_units_out_and_moves_no_one() -> None:
    plain = Router([make_experiment(**COMPANY)])
    router = Router([make_experiment(**COMPANY, condition=PRO)])
    for i, unit in enumerate(unit_ids(2000)):
        company = f"c{i % 97}"
        inside = router.assign("exp", unit, {"company": company, "tier": "pro"})
        assert inside == plain.assign("exp", unit, {"company": company})
        out = router.assign("exp", unit, {"company": company, "tier": "free"})
        assert (out.arm, out.in_experiment, out.reason) == ("control", False, "condition")
        no_tier = router.assign("exp", unit, {"company": company})
        assert no_tier.reason == "condition"  # no tier attribute: the condition fails


def test_condition_sees_the_unit_id_as_the_hash_attribute() -> None:
    router = Router([make_experiment(condition={"user_id": {"$regex": "^beta-"}})])
    assert router.assign("exp", "beta-7").reason == "hashed"
    assert router.assign("exp", "beta-7", {"tier": "pro"}).reason == "hashed"
    assert router.assign("exp", "alpha-7").reason == "condition"
    assert router.assign("exp", "alpha-7", {"user_id": "beta-7"}).reason == "hashed"


def test_rules_in_order_with_attributes() -> None:
    experiment = make_experiment(
        **COMPANY,
        condition=PRO,
        overrides={"qa": "v3"},
        namespace=["ns", 0.0, 0.5],
        coverage=0.5,
    )
    router = Router([experiment])
    # override before the hash value and the condition
    forced = router.assign("exp", "qa", {"company": None, "tier": "free"})
    assert (forced.arm, forced.in_experiment, forced.reason) == ("v3", True, "override")
    # hash value before the condition; namespace before the condition
    assert router.assign("exp", "u1", {"company": None, "tier": "free"}).reason == "no_hash_value"
    reasons = {
        router.assign("exp", "u", {"company": f"c{i}", "tier": "free"}).reason for i in range(500)
    }
    assert reasons == {"not_in_namespace", "condition"}
    reasons = {
        router.assign("exp", "u", {"company": f"c{i}", "tier": "pro"}).reason for i in range(500)
    }
    assert reasons == {"not_in_namespace", "not_in_coverage", "hashed"}
    # not running first
    draft = Router([experiment.model_copy(update={"status": "draft"})])
    assert draft.assign("exp", "u1", {"company": None}).reason == "not_running"


def test_arm_stopped_still_applies_with_attributes() -> None:
    router = Router([make_experiment(**COMPANY, condition=PRO)])
    units = [(f"u{i}", {"company": f"c{i}", "tier": "pro"}) for i in range(300)]
    in_v2 = [(u, a) for u, a in units if router.assign("exp", u, a).arm == "v2"]
    assert in_v2
    for unit, attributes in in_v2:
        got = router.assign("exp", unit, attributes, frozenset({"v2"}))
        assert (got.arm, got.in_experiment, got.reason) == ("control", False, "arm_stopped")


def test_assign_many_applies_the_condition_as_assign_does_without_attributes() -> None:
    experiment = make_experiment(condition={"user_id": {"$regex": "^user-00[0-4]"}})
    router = Router([experiment])
    ids = unit_ids(5000)
    many = router.assign_many("exp", ids)
    one = [a.arm_index if a.in_experiment else -1 for a in (router.assign("exp", u) for u in ids)]
    assert many.tolist() == one
    assert 0 < (many >= 0).sum() < len(ids)


def _gb_run(experiment, attributes: dict) -> tuple[bool, int]:
    gb = GBExperiment(
        key=experiment.id,
        variations=list(range(len(experiment.arms))),
        weights=[arm.weight for arm in experiment.arms],
        coverage=experiment.coverage,
        namespace=experiment.namespace,
        hashAttribute=experiment.hash_attribute,
        hashVersion=experiment.hash_version,
        seed=experiment.hash_seed,
        condition=experiment.condition,
    )
    result = GrowthBook(attributes=attributes).run(gb)
    return result.inExperiment, result.variationId if result.inExperiment else 0


def test_agrees_with_growthbook_on_attributes_and_conditions() -> None:
    experiment = make_experiment(**COMPANY, condition=PRO, coverage=0.9, namespace=["ns", 0.1, 0.9])
    router = Router([experiment])
    tiers = ["pro", "free", "enterprise", None]
    companies = [f"c{i}" for i in range(400)] + [7, 12.5, 1e21, -3, 0, "", None, True]
    mismatches = []
    for i, company in enumerate(companies):
        attributes = {"company": company, "tier": tiers[i % len(tiers)]}
        got = router.assign("exp", "unit", attributes)
        if (got.in_experiment, got.arm_index) != _gb_run(experiment, attributes):
            mismatches.append(attributes)
    assert mismatches == []


values = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_hash_value_as_growthbook_writes_it(value) -> None:
    experiment = make_experiment(hash_attribute="x", hash_version=1)
    router = Router([experiment])
    got = router.assign("exp", "", {"x": value})
    assert (got.in_experiment, got.arm_index) == _gb_run(experiment, {"x": value})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (123456789012345680000.0, "123456789012345680000"),
        (2**60, "1152921504606847000"),
        (-2.5, "-2.5"),
        ("abc", "abc"),
        (0, None),
        (math.inf, None),
        (True, None),
        ("", None),
        ([1], None),
    ],
)
def test_hash_value_examples(value, text) -> None:
    assert hash_value(value) == text


def test_a_malformed_condition_names_the_file_and_the_path(tmp_path) -> None:
    data = make_experiment().model_dump(mode="json")
    data["condition"] = {"$or": {"tier": "pro"}, "plan": {"$regex": "("}, "seats": {"$gtt": 3}}
    path = tmp_path / "targeted.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    problems = info.value.problems
    assert problems == [
        "condition.$or: must be a list of conditions",
        problems[1],
        "condition.seats.$gtt: unknown operator '$gtt' (did you mean '$gt'?)",
    ]
    assert problems[1].startswith("condition.plan.$regex: does not compile")
    with pytest.raises(ExperimentFileError, match=r"condition: Input should be a valid dict"):
        make_experiment(condition=["tier"])
    with pytest.raises(ExperimentFileError, match=r"fallback_attribute: String should have"):
        make_experiment(fallback_attribute="")


def test_condition_and_fallback_are_optional_and_validated_files_still_load() -> None:
    experiment = make_experiment()
    assert (experiment.condition, experiment.fallback_attribute) == (None, None)
    targeted = make_experiment(condition=PRO, fallback_attribute="device_id")
    assert targeted.condition == PRO and targeted.definition_sha != experiment.definition_sha
