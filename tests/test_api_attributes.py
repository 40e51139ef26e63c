"""Attributes through the API: an experiment hashed by `company` and targeted at paying tiers,
assigned, run and given outcomes over HTTP (real app, real Redis, the local model server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from abtest.api import create_app
from abtest.api.models import ATTRIBUTES_MAX_BYTES
from abtest.client import AsyncClient, Client
from abtest.devtools.serving import serve_app_in_thread
from abtest.experiments import load_experiment
from abtest.router import Router
from tests.api_support import (
    EXPERIMENT,
    api_client,
    experiments_copy,
    run_body,
    service_settings,
    stream,
)

CONDITION = {"tier": {"$in": ["pro", "enterprise"]}}
ASSIGN = f"/v1/experiments/{EXPERIMENT}/assign"


def targeted_experiments(directory: Path) -> Path:
    """The example experiments, with the summarizer hashed by company and targeted."""
    experiments = experiments_copy(directory)
    path = experiments / "pdf_summary.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(hash_attribute="company", condition=CONDITION)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return experiments


def router_of(experiments: Path) -> Router:
    return Router([load_experiment(experiments / "pdf_summary.yaml")])


def test_a_unit_outside_the_condition_gets_control_without_exposure(
    env, tmp_path, redis_client
) -> None:
    experiments = targeted_experiments(tmp_path)
    with api_client(tmp_path, experiments) as client:
        free = client.post(
            ASSIGN, json={"unit_id": "u-free", "attributes": {"company": "acme", "tier": "free"}}
        )
        bare = client.get(ASSIGN, params={"unit_id": "u-bare"})  # no attributes: no company
    for response, reason in ((free, "condition"), (bare, "no_hash_value")):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["arm"], body["in_experiment"], body["reason"]) == ("control", False, reason)
        assert body["exposure_logged"] is False
    assert stream(redis_client, "exposures") == []


def test_units_of_one_company_get_one_arm(env, tmp_path, redis_client) -> None:
    experiments = targeted_experiments(tmp_path)
    router = router_of(experiments)
    companies = [f"company-{i}" for i in range(12)]
    with api_client(tmp_path, experiments) as client:
        answers = {
            (company, unit): client.post(
                ASSIGN,
                json={"unit_id": unit, "attributes": {"company": company, "tier": "pro"}},
            ).json()
            for company in companies
            for unit in (f"{company}/alice", f"{company}/bob")
        }
    for company in companies:
        alice, bob = answers[(company, f"{company}/alice")], answers[(company, f"{company}/bob")]
        expected = router.assign(EXPERIMENT, "x", {"company": company, "tier": "pro"}).arm
        assert alice["arm"] == bob["arm"] == expected
        assert alice["in_experiment"] and alice["reason"] == "hashed"
    assert len({a["arm"] for a in answers.values()}) > 1
    exposures = stream(redis_client, "exposures")
    assert {e["unit_id"] for e in exposures} == {unit for _, unit in answers}


def test_run_reads_the_attributes(env, tmp_path, redis_client) -> None:
    experiments = targeted_experiments(tmp_path)
    router = router_of(experiments)
    attributes = {"company": "acme", "tier": "enterprise"}
    with api_client(tmp_path, experiments) as client:
        inside = client.post(
            f"/v1/experiments/{EXPERIMENT}/run", json={**run_body("u-1"), "attributes": attributes}
        )
        outside = client.post(f"/v1/experiments/{EXPERIMENT}/run", json=run_body("u-2"))
    assert inside.status_code == 200, inside.text
    assert inside.json()["arm"] == router.assign(EXPERIMENT, "u-1", attributes).arm
    assert inside.json()["in_experiment"] is True
    assert outside.status_code == 200 and outside.json()["in_experiment"] is False
    assert [e["unit_id"] for e in stream(redis_client, "exposures")] == ["u-1"]


def test_outcomes_are_recomputed_with_their_attributes(env, tmp_path, redis_client) -> None:
    experiments = targeted_experiments(tmp_path)
    router = router_of(experiments)
    pro = {"company": "acme", "tier": "pro"}
    outcome = {"experiment_id": EXPERIMENT, "metric": "thumbs_up", "value": 1}
    with api_client(tmp_path, experiments) as client:
        exact = client.post("/v1/outcomes", json={**outcome, "unit_id": "u1", "attributes": pro})
        # without attributes the server cannot judge: recorded, the arm is informational
        bare = client.post("/v1/outcomes", json={**outcome, "unit_id": "u2"})
        refused = client.post(
            "/v1/outcomes",
            json={**outcome, "unit_id": "u3", "attributes": {**pro, "tier": "free"}},
        )
    assert exact.status_code == 200 and bare.status_code == 200
    assert refused.status_code == 422 and "(condition)" in refused.text
    arms = {o["unit_id"]: o["arm"] for o in stream(redis_client, "outcomes")}
    assert arms == {"u1": router.assign(EXPERIMENT, "u1", pro).arm, "u2": "control"}


def _deep(levels: int) -> dict:
    value: object = "x"
    for _ in range(levels - 1):
        value = {"a": value}
    return {"a": value}


BAD_ATTRIBUTES = {
    "a list": [1, 2],
    "a string": "tier=pro",
    "11 levels": _deep(11),
    "300 levels": _deep(300),
    "over the size limit": {"note": "x" * ATTRIBUTES_MAX_BYTES},
}


@pytest.mark.parametrize("case", BAD_ATTRIBUTES)
def test_bad_attributes_are_a_422_naming_them(env, tmp_path, redis_client, case: str) -> None:
    attributes = BAD_ATTRIBUTES[case]
    with api_client(tmp_path) as client:
        responses = [
            client.post(ASSIGN, json={"unit_id": "u1", "attributes": attributes}),
            client.post(
                "/v1/outcomes",
                json={
                    "experiment_id": EXPERIMENT,
                    "unit_id": "u1",
                    "metric": "thumbs_up",
                    "value": 1,
                    "attributes": attributes,
                },
            ),
        ]
        if case != "300 levels":  # the strict JSON parser of /run stops at 200 levels first
            responses.append(
                client.post(
                    f"/v1/experiments/{EXPERIMENT}/run",
                    json={**run_body("u1"), "attributes": attributes},
                )
            )
    for response in responses:
        assert response.status_code == 422, response.text
        fields = [item["field"] for item in response.json()["detail"]]
        assert any(field.endswith("attributes") for field in fields), fields
    assert stream(redis_client, "exposures") == []


def test_bad_attributes_of_a_form_run_are_named(env, tmp_path, redis_client) -> None:
    with api_client(tmp_path) as client:
        for text in ("{not json", "[1]", json.dumps(_deep(11))):
            response = client.post(
                f"/v1/experiments/{EXPERIMENT}/run",
                data={"unit_id": "u1", "user_query": "cost?", "attributes": text},
                files={"pdf_source": ("r.pdf", b"%PDF-1.4", "application/pdf")},
            )
            assert response.status_code == 422, response.text
            fields = [item["field"] for item in response.json()["detail"]]
            assert fields == ["form.attributes"], fields


def test_clients_send_attributes(env, tmp_path, redis_client) -> None:
    experiments = targeted_experiments(tmp_path)
    router = router_of(experiments)
    pro = {"company": "acme", "tier": "pro"}
    app = create_app(service_settings(experiments_dir=experiments, home=tmp_path))
    with serve_app_in_thread(app, ready_path="/health") as handle:
        with Client(handle.root_url) as client:
            inside = client.assign(EXPERIMENT, "u1", pro)
            outside = client.assign(EXPERIMENT, "u2")
            client.outcome(EXPERIMENT, "u1", "thumbs_up", 1, attributes=pro)

        async def twin() -> tuple:
            async with AsyncClient(handle.root_url) as client:
                got = await client.assign(EXPERIMENT, "u3", pro)
                await client.outcome(EXPERIMENT, "u3", "thumbs_up", 1, attributes=pro)
                return got

        async_inside = asyncio.run(twin())
    arm = router.assign(EXPERIMENT, "u1", pro).arm
    assert (inside.arm, inside.in_experiment, inside.reason) == (arm, True, "hashed")
    assert (async_inside.arm, async_inside.reason) == (arm, "hashed")  # same company, same arm
    assert (outside.in_experiment, outside.reason) == (False, "no_hash_value")  # no company
    arms = {o["unit_id"]: o["arm"] for o in stream(redis_client, "outcomes")}
    assert arms == {"u1": arm, "u3": arm}
