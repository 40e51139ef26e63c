"""The GrowthBook SDK payload (issue 13, item 3): served by the real app, loaded into the real
`growthbook` Python SDK, which must assign every unit as the API does."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest
from growthbook import GrowthBook

from abtest.experiments import load_experiments
from abtest.router import Router
from abtest.state_store import change_state
from tests.api_support import EXAMPLES, api_client

KEY = "sdk-pub-1"
ROLLOUT = "pdf-summary-rollout"
ALPHABET = "abcXYZ019-_.é漢字😀 "


def _random_id(rng: random.Random) -> str:
    """Ids as applications send them, non-ASCII and astral-plane characters included."""
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 16)))


class _Sdk:
    """One GrowthBook SDK instance on a payload; `assign` answers as `Router.assign` does:
    the arm of the feature's value, and whether an experiment rule put the unit in."""

    def __init__(self, payload: Mapping[str, Any]):
        self.gb = GrowthBook(features=payload["features"])

    def assign(self, experiment_id: str, attributes: Mapping[str, Any]) -> tuple[str, bool]:
        self.gb.set_attributes(dict(attributes))
        result = self.gb.eval_feature(experiment_id)
        experiment = result.experimentResult
        return result.value["arm"], bool(experiment is not None and experiment.inExperiment)

    def close(self) -> None:
        self.gb.destroy()


def test_the_payload_needs_a_known_client_key_and_is_cacheable(env, tmp_path) -> None:
    with api_client(tmp_path, sdk_keys=frozenset({KEY}), api_keys=frozenset({"k"})) as client:
        unknown = client.get("/api/features/nope")
        first = client.get(f"/api/features/{KEY}")  # no bearer key: the client key is enough
        again = client.get(f"/api/features/{KEY}", headers={"If-None-Match": first.headers["etag"]})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_client_key"
    assert first.status_code == 200
    assert first.headers["access-control-allow-origin"] == "*"
    assert "max-age" in first.headers["cache-control"]
    assert again.status_code == 304 and again.headers["etag"] == first.headers["etag"]
    features = first.json()["features"]
    assert set(features) == set(load_experiments(EXAMPLES))
    rule = features["pdf-summary-prompts"]["rules"][-1]
    assert (rule["seed"], rule["hashVersion"], rule["hashAttribute"]) == (
        "pdf-summary-prompts",
        2,
        "user_id",
    )
    assert [v["arm"] for v in rule["variations"]] == ["control", "v2", "v2-small-chunks"]


def test_without_client_keys_the_payload_is_not_served(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        response = client.get(f"/api/features/{KEY}")
    assert response.status_code == 404
    assert "ABTEST_SDK_KEYS" in response.json()["detail"]


def test_a_stopped_arm_changes_the_payload_and_its_etag(env, tmp_path, redis_client) -> None:
    with api_client(tmp_path, sdk_keys=frozenset({KEY}), state_refresh_s=0.1) as client:
        before = client.get(f"/api/features/{KEY}")
        change_state(redis_client, ROLLOUT, "v3-local-small", "stop", actor="admin", reason="t")
        after = before
        for _ in range(100):
            after = client.get(f"/api/features/{KEY}")
            if after.headers["etag"] != before.headers["etag"]:
                break
    assert after.headers["etag"] != before.headers["etag"]
    ranges = after.json()["features"][ROLLOUT]["rules"][-1]["ranges"]
    assert ranges[1][0] == ranges[1][1]  # an empty range: its units fall to the default


def test_the_sdk_and_the_api_agree_on_100000_units(env, tmp_path, redis_client) -> None:
    """100,000 random units (non-ASCII ids included) through the SDK loaded with the served
    payload, against the router the API uses; a sample of them through `/assign` itself. One
    arm of the rollout is stopped, so its units must fall outside the experiment in both."""
    experiments = load_experiments(EXAMPLES)
    stopped = {ROLLOUT: frozenset({"v3-local-small"})}
    change_state(redis_client, ROLLOUT, "v3-local-small", "stop", actor="admin", reason="t")
    router = Router(experiments)
    rng = random.Random(13)
    units = [_random_id(rng) for _ in range(100_000)]
    with api_client(tmp_path, sdk_keys=frozenset({KEY})) as client:
        sdk = _Sdk(client.get(f"/api/features/{KEY}").json())
        disagreements = []
        for index, unit in enumerate(units):
            experiment_id = sorted(experiments)[index % len(experiments)]
            ours = router.assign(experiment_id, unit, None, stopped.get(experiment_id, frozenset()))
            theirs = sdk.assign(experiment_id, {"user_id": unit})
            if theirs != (ours.arm, ours.in_experiment):
                disagreements.append((experiment_id, unit, theirs, ours))
            if index % 200 == 0:
                api = client.post(
                    f"/v1/experiments/{experiment_id}/assign", json={"unit_id": unit}
                ).json()
                if (api["arm"], api["in_experiment"]) != theirs:
                    disagreements.append((experiment_id, unit, theirs, api))
        sdk.close()
    assert disagreements == []


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_draft_and_stopped_experiments_give_the_default(tmp_path, status) -> None:
    from abtest.experiments import parse_experiment
    from abtest.sdk_payload import feature

    data = {
        "id": "e",
        "flow": "variants.summarization",
        "status": status,
        "winner": "b" if status == "stopped" else None,
        "arms": [
            {"name": "a", "weight": 0.5, "config": {"x": 1}},
            {"name": "b", "weight": 0.5, "config": {"x": 2}},
        ],
    }
    got = feature(parse_experiment(data))
    expected_arm = "b" if status == "stopped" else "a"
    assert got == {
        "defaultValue": {"arm": expected_arm, "config": {"x": 2 if expected_arm == "b" else 1}},
        "rules": [],
    }
