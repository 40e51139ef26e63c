"""The GrowthBook SDK payload (issue 13, item 3): served by the real app, loaded into the real
`growthbook` Python SDK, which must assign every unit as the API does."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from growthbook import GrowthBook

from abtest.experiments import load_experiments
from abtest.router import Router
from abtest.state_store import change_state
from tests.api_support import EXAMPLES, api_client, experiments_copy

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


def _targeted(directory: Path) -> Path:
    """The examples, with the summarizer randomised by company (the unit id as a fallback)
    and targeted at paying tiers outside France, and the support flow hashed by user."""
    experiments = experiments_copy(directory)
    path = experiments / "pdf_summary.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(
        hash_attribute="company",
        condition={"tier": {"$in": ["pro", "enterprise"]}, "country": {"$ne": "FR"}},
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return experiments


def _random_attributes(rng: random.Random, unit: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"user_id": unit}
    if rng.random() < 0.9:
        attributes["company"] = rng.choice([_random_id(rng), "acme", "", None, 7, 0])
    if rng.random() < 0.9:
        attributes["tier"] = rng.choice(["free", "pro", "enterprise", "PRO", None])
    if rng.random() < 0.8:
        attributes["country"] = rng.choice(["FR", "DE", "US", "日本"])
    return attributes


def test_the_sdk_and_the_api_agree_on_100000_units(env, tmp_path, redis_client) -> None:
    """100,000 random units with random attributes (non-ASCII and astral-plane ids, units
    without a company or with unusable ones, units the condition excludes) through the SDK
    loaded with the served payload, against the router the API uses; a sample of them through
    `/assign` itself. One arm of the rollout is stopped, so its units must fall outside the
    experiment in both."""
    directory = _targeted(tmp_path)
    experiments = load_experiments(directory)
    ids = sorted(experiments)
    stopped = {ROLLOUT: frozenset({"v3-local-small"})}
    change_state(redis_client, ROLLOUT, "v3-local-small", "stop", actor="admin", reason="t")
    router = Router(experiments)
    rng = random.Random(13)
    disagreements = []
    reasons: Counter[str] = Counter()
    with api_client(tmp_path, directory, sdk_keys=frozenset({KEY})) as client:
        sdk = _Sdk(client.get(f"/api/features/{KEY}").json())
        for index in range(100_000):
            unit = _random_id(rng)
            attributes = _random_attributes(rng, unit)
            experiment_id = ids[index % len(ids)]
            ours = router.assign(
                experiment_id, unit, attributes, stopped.get(experiment_id, frozenset())
            )
            reasons[ours.reason] += 1
            theirs = sdk.assign(experiment_id, attributes)
            if theirs != (ours.arm, ours.in_experiment):
                disagreements.append((experiment_id, unit, attributes, theirs, ours))
            if index % 250 == 0:
                api = client.post(
                    f"/v1/experiments/{experiment_id}/assign",
                    json={"unit_id": unit, "attributes": attributes},
                ).json()
                if (api["arm"], api["in_experiment"]) != theirs:
                    disagreements.append((experiment_id, unit, attributes, theirs, api))
        sdk.close()
    assert disagreements == []
    for reason in ("hashed", "condition", "no_hash_value", "arm_stopped"):
        assert reasons[reason] > 1000, reasons


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


def test_exposures_reported_by_an_sdk_are_checked_and_stored(env, tmp_path, redis_client) -> None:
    """The SDK's tracking callback posts what it saw; the server recomputes the arm, stores
    the exposure with its source once per event id, and refuses (and counts) a mismatch."""
    from tests.api_support import EXPERIMENT, stream

    with api_client(tmp_path, sdk_keys=frozenset({KEY})) as client:
        reports: list[dict[str, Any]] = []

        def viewed(experiment: Any, result: Any, **_: Any) -> None:
            reports.append(
                {
                    "experiment_id": experiment.key,
                    "unit_id": result.hashValue,
                    "arm": result.value["arm"],
                    "attributes": {"user_id": result.hashValue},
                    "event_id": f"sdk-{experiment.key}-{result.hashValue}",
                }
            )

        payload = client.get(f"/api/features/{KEY}").json()
        gb = GrowthBook(features=payload["features"], on_experiment_viewed=viewed)
        for i in range(60):
            gb.set_attributes({"user_id": f"user-{i}"})
            gb.eval_feature(EXPERIMENT)
        gb.destroy()
        accepted = [client.post("/v1/exposures", json=report) for report in reports]
        resent = client.post("/v1/exposures", json=reports[0])
        wrong_arm = {**reports[1], "arm": "v2" if reports[1]["arm"] != "v2" else "control"}
        refused = client.post("/v1/exposures", json={**wrong_arm, "event_id": "x-1"})
        unknown = client.post("/v1/exposures", json={**reports[0], "experiment_id": "nope"})
        bad = client.post("/v1/exposures", json={**reports[0], "attributes": [1, 2]})
        metrics = client.get("/metrics").text
    assert len(reports) == 60 and all(r.status_code == 200 for r in accepted)
    assert resent.status_code == 200
    stored = stream(redis_client, "exposures")
    assert len(stored) == 60  # the resent report was stored once
    assert {(e["unit_id"], e["arm"]) for e in stored} == {
        (r["unit_id"], r["arm"]) for r in reports
    }
    assert {e["source"] for e in stored} == {"sdk"}
    assert stored[0]["request_id"] == f"sdk:{reports[0]['event_id']}"
    assert refused.status_code == 422 and refused.json()["error"] == "arm_mismatch"
    assert f"but the client reported '{wrong_arm['arm']}'" in refused.json()["detail"]
    expected = f'abtest_client_exposure_mismatches_total{{experiment="{EXPERIMENT}"}} 1.0'
    assert expected in metrics
    assert unknown.status_code == 404
    assert bad.status_code == 422 and "attributes" in bad.text
