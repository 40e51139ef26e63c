"""The API end to end over HTTP (TestClient runs the real app and lifespan) with a real Redis
and the local model server through the openai SDK."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from abtest.event_fields import EXPOSURE_FIELDS, OUTCOME_FIELDS
from abtest.experiments import load_experiment
from abtest.router import Router
from tests.api_support import (
    EXAMPLES,
    EXPERIMENT,
    api_client,
    experiments_copy,
    run_body,
    sample_pdf_b64,
    stream,
)

pytestmark = pytest.mark.both_stores

ROUTER = Router([load_experiment(EXAMPLES / "pdf_summary.yaml")])


def test_assign_logs_one_exposure_with_the_schema_fields(env, tmp_path, redis_client) -> None:
    with api_client(tmp_path) as client:
        got = client.get(f"/v1/experiments/{EXPERIMENT}/assign", params={"unit_id": "u-1"})
        posted = client.post(f"/v1/experiments/{EXPERIMENT}/assign", json={"unit_id": "u-2"})
    assert got.status_code == 200 and posted.status_code == 200
    for response, unit in ((got, "u-1"), (posted, "u-2")):
        body = response.json()
        assert body["arm"] == ROUTER.assign(EXPERIMENT, unit).arm
        assert body["in_experiment"] is True and body["exposure_logged"] is True
        assert body["config"]["prompt_version"] in {"v1", "v2"}
    exposures = stream(redis_client, "exposures")
    assert [e["unit_id"] for e in exposures] == ["u-1", "u-2"]
    assert set(exposures[0]) == set(EXPOSURE_FIELDS)
    assert exposures[0]["request_id"] == got.json()["request_id"]
    assert len(exposures[0]["definition_sha"]) == 64
    assert len(exposures[0]["flow_fingerprint"]) == 64


def test_units_outside_the_experiment_are_never_exposed(env, tmp_path, redis_client) -> None:
    experiments = experiments_copy(tmp_path)
    path = experiments / "pdf_summary.yaml"
    path.write_text(path.read_text().replace("coverage: 1.0", "coverage: 0.2"))
    with api_client(tmp_path, experiments) as client:
        answers = [
            client.get(f"/v1/experiments/{EXPERIMENT}/assign", params={"unit_id": f"u{i}"}).json()
            for i in range(60)
        ]
    outside = [a for a in answers if not a["in_experiment"]]
    assert outside and all(a["arm"] == "control" and not a["exposure_logged"] for a in outside)
    assert {a["reason"] for a in outside} == {"not_in_coverage"}
    exposed = {e["unit_id"] for e in stream(redis_client, "exposures")}
    assert exposed == {a["unit_id"] for a in answers if a["in_experiment"]}


def test_outcomes_single_and_batch_with_the_router_arm(env, tmp_path, redis_client) -> None:
    batch = [
        {"experiment_id": EXPERIMENT, "unit_id": f"u{i}", "metric": "thumbs_up", "value": i % 2}
        for i in range(1000)
    ]
    with api_client(tmp_path) as client:
        one = client.post(
            "/v1/outcomes",
            json={"experiment_id": EXPERIMENT, "unit_id": "u1", "metric": "cost_usd", "value": 2.5},
        )
        many = client.post("/v1/outcomes", json=batch)
    assert one.status_code == 200 and one.json()["accepted"] == 1
    assert many.status_code == 200 and many.json()["accepted"] == 1000
    outcomes = stream(redis_client, "outcomes")
    assert len(outcomes) == 1001
    assert set(outcomes[0]) == set(OUTCOME_FIELDS)
    for event in outcomes:
        assert event["arm"] == ROUTER.assign(EXPERIMENT, event["unit_id"]).arm
    assert float(outcomes[0]["value"]) == 2.5


def test_client_cannot_choose_the_arm(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        response = client.post(
            "/v1/outcomes",
            json={
                "experiment_id": EXPERIMENT,
                "unit_id": "u1",
                "metric": "thumbs_up",
                "value": 1,
                "arm": "v2",
            },
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body.arm"


def test_resent_event_id_is_stored_once(env, tmp_path, redis_client) -> None:
    event = {
        "experiment_id": EXPERIMENT,
        "unit_id": "u1",
        "metric": "thumbs_up",
        "value": 1,
        "event_id": "a" * 32,
    }
    with api_client(tmp_path) as client:
        assert client.post("/v1/outcomes", json=event).status_code == 200
        assert client.post("/v1/outcomes", json=[event, event]).status_code == 200
    assert len(stream(redis_client, "outcomes")) == 1


BAD_OUTCOMES = {
    "NaN value": (b'{"experiment_id":"%s","unit_id":"u","metric":"thumbs_up","value":NaN}', 422),
    "Infinity value": (
        b'{"experiment_id":"%s","unit_id":"u","metric":"thumbs_up","value":Infinity}',
        422,
    ),
    "string value": (b'{"experiment_id":"%s","unit_id":"u","metric":"thumbs_up","value":"x"}', 422),
    "malformed JSON": (b'{"experiment_id":"%s", "unit_id": ', 422),
    "unknown metric": (b'{"experiment_id":"%s","unit_id":"u","metric":"thumbsup","value":1}', 422),
    "empty batch": (b"[]", 422),
    "not an object": (b'"%s"', 422),
    "unknown experiment": (b'{"experiment_id":"nope","unit_id":"u","metric":"m","value":1}', 404),
    "unit id too long": (
        b'{"experiment_id":"%s","unit_id":"' + b"x" * 257 + b'","metric":"thumbs_up","value":1}',
        422,
    ),
}


@pytest.mark.parametrize("case", BAD_OUTCOMES)
def test_bad_outcomes_get_a_clear_4xx(env, tmp_path, redis_client, case: str) -> None:
    raw, status = BAD_OUTCOMES[case]
    body = raw.replace(b"%s", EXPERIMENT.encode())
    with api_client(tmp_path) as client:
        response = client.post(
            "/v1/outcomes", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] and payload["detail"]
    assert stream(redis_client, "outcomes") == []


def test_a_batch_is_all_or_nothing_and_names_the_bad_item(env, tmp_path, redis_client) -> None:
    good = {"experiment_id": EXPERIMENT, "unit_id": "u1", "metric": "thumbs_up", "value": 1}
    bad = {**good, "metric": "thumb_up"}
    with api_client(tmp_path) as client:
        response = client.post("/v1/outcomes", json=[good, bad])
        too_many = client.post("/v1/outcomes", json=[good] * 1001)
    assert response.status_code == 422
    assert response.json()["detail"][0].startswith("[1] metric 'thumb_up'")
    assert too_many.status_code == 422
    assert "at most 1000" in json.dumps(too_many.json())
    assert stream(redis_client, "outcomes") == []


def test_oversized_body_is_413(env, tmp_path) -> None:
    with api_client(tmp_path, max_body_bytes=2000) as client:
        big = [
            {"experiment_id": EXPERIMENT, "unit_id": "u", "metric": "thumbs_up", "value": 1}
        ] * 50
        response = client.post("/v1/outcomes", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_unknown_experiment_is_404_everywhere(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        for method, path in [
            ("GET", "/v1/experiments/nope"),
            ("GET", "/v1/experiments/nope/assign?unit_id=u"),
            ("POST", "/v1/experiments/nope/run"),
            ("GET", "/v1/experiments/nope/results"),
        ]:
            response = client.request(method, path, json={"unit_id": "u"})
            assert response.status_code == 404, (path, response.text)
            assert response.json() == {"error": "not_found", "detail": "unknown experiment 'nope'"}


def test_run_json_records_exposure_and_automatic_outcomes(env, tmp_path, redis_client) -> None:
    with api_client(tmp_path) as client:
        response = client.post(
            f"/v1/experiments/{EXPERIMENT}/run",
            json=run_body("u-7"),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["arm"] == ROUTER.assign(EXPERIMENT, "u-7").arm
    assert set(body["outputs"]) == {"summarized_text"} and body["outputs"]["summarized_text"]
    assert body["error"] is None
    assert body["prompt_tokens"] > 0 and body["completion_tokens"] > 0
    assert set(body["prompts"]) == {
        "summarize_chunk_of_text_prompt",
        "summarize_text_from_summaries_prompt",
    }
    exposures = stream(redis_client, "exposures")
    outcomes = stream(redis_client, "outcomes")
    assert len(exposures) == 1 and exposures[0]["request_id"] == body["request_id"]
    by_metric = {o["metric"]: float(o["value"]) for o in outcomes}
    assert by_metric == {
        "latency_ms": pytest.approx(body["latency_ms"]),
        "prompt_tokens": body["prompt_tokens"],
        "completion_tokens": body["completion_tokens"],
        "cost_usd": pytest.approx(body["cost_usd"]),
        "error": 0.0,
        "responses": 1.0,
    }
    assert {o["request_id"] for o in outcomes} == {body["request_id"]}


def test_run_with_a_pdf_upload(env, tmp_path, redis_client) -> None:
    pdf = base64.b64decode(sample_pdf_b64())
    with api_client(tmp_path) as client:
        response = client.post(
            f"/v1/experiments/{EXPERIMENT}/run",
            data={"unit_id": "qa-alice", "user_query": "Which routes were free?"},
            files={"pdf_source": ("report.pdf", pdf, "application/pdf")},
        )
    assert response.status_code == 200, response.text
    assert response.json()["arm"] == "v2"
    assert len(stream(redis_client, "exposures")) == 1


@pytest.mark.parametrize(
    ("pdf", "fragment"),
    [
        (base64.b64encode(b"%PDF-1.4 this is not a pdf").decode(), "the PDF is corrupt"),
        ("!!!not base64!!!", "body.inputs.pdf_source"),
    ],
)
def test_run_with_a_bad_pdf_is_422_and_records_nothing(
    env, tmp_path, redis_client, pdf: str, fragment: str
) -> None:
    with api_client(tmp_path) as client:
        response = client.post(
            f"/v1/experiments/{EXPERIMENT}/run",
            json=run_body("u1", "q", pdf),
        )
    assert response.status_code == 422
    assert fragment in json.dumps(response.json())
    assert stream(redis_client, "exposures") == [] and stream(redis_client, "outcomes") == []


def test_llm_failure_is_502_and_recorded_as_error(
    monkeypatch, redis_url, redis_client, tmp_path
) -> None:
    from abtest.devtools.llm_server import serve_in_thread

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("ABTEST_API_KEYS", raising=False)
    with serve_in_thread(failure_rate=1.0) as failing:
        monkeypatch.setenv("OPENAI_BASE_URL", failing.base_url)
        from abtest.llm import LLMClient
        from abtest.platform import Platform

        platform = Platform.load(
            EXAMPLES, llm_client=LLMClient(base_url=failing.base_url, backoff_base=0.001)
        )
        from fastapi.testclient import TestClient

        from abtest.api import create_app
        from tests.api_support import service_settings

        app = create_app(
            service_settings(experiments_dir=EXAMPLES, home=tmp_path), platform=platform
        )
        with TestClient(app) as client:
            response = client.post(
                f"/v1/experiments/{EXPERIMENT}/run",
                json=run_body("u1", "q"),
            )
            metrics = client.get("/metrics").text
    assert response.status_code == 502
    assert "LLM call failed" in response.json()["error"]
    errors = [o for o in stream(redis_client, "outcomes") if o["metric"] == "error"]
    assert [float(o["value"]) for o in errors] == [1.0]
    arm = ROUTER.assign(EXPERIMENT, "u1").arm
    assert f'abtest_llm_errors_total{{arm="{arm}",experiment="{EXPERIMENT}"}} 1.0' in metrics


def test_api_keys(env, monkeypatch, tmp_path) -> None:
    keys = {"api_keys": frozenset({"k-user"}), "admin_keys": frozenset({"k-admin"})}
    with api_client(tmp_path, **keys) as client:
        assert client.get("/health").status_code == 200
        missing = client.get("/v1/experiments")
        wrong = client.get("/v1/experiments", headers={"Authorization": "Bearer nope"})
        right = client.get("/v1/experiments", headers={"Authorization": "Bearer k-user"})
        admin_by_user = client.post("/v1/admin/reload", headers={"Authorization": "Bearer k-user"})
        admin = client.post("/v1/admin/reload", headers={"Authorization": "Bearer k-admin"})
        metrics = client.get("/metrics")
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert wrong.status_code == 403
    assert right.status_code == 200 and EXPERIMENT in [e["id"] for e in right.json()]
    assert admin_by_user.status_code == 403
    assert admin.status_code == 200 and EXPERIMENT in admin.json()["experiments"]
    assert metrics.status_code == 401


def test_reload_rejects_a_bad_file_and_keeps_the_live_definitions(env, tmp_path) -> None:
    experiments = experiments_copy(tmp_path)
    path = experiments / "pdf_summary.yaml"
    with api_client(tmp_path, experiments) as client:
        data = yaml.safe_load(path.read_text())
        data["arms"][1]["config"]["prompt_version"] = "v9"
        path.write_text(yaml.safe_dump(data))
        rejected = client.post("/v1/admin/reload")
        still = client.get(f"/v1/experiments/{EXPERIMENT}").json()
        data["arms"][1]["config"]["prompt_version"] = "v3"
        path.write_text(yaml.safe_dump(data))
        accepted = client.post("/v1/admin/reload")
        after = client.get(f"/v1/experiments/{EXPERIMENT}").json()
    assert rejected.status_code == 422
    text = json.dumps(rejected.json())
    assert EXPERIMENT in text and "v2" in text and "v9" in text
    assert still["definition"]["arms"][1]["config"]["prompt_version"] == "v2"
    assert accepted.status_code == 200
    assert after["definition"]["arms"][1]["config"]["prompt_version"] == "v3"
    assert after["definition_sha"] != still["definition_sha"]


def test_metrics_count_requests_per_route(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        for i in range(3):
            client.get(f"/v1/experiments/{EXPERIMENT}/assign", params={"unit_id": f"u{i}"})
        text = client.get("/metrics").text
    line = (
        'abtest_http_requests_total{method="GET",route="/v1/experiments/{experiment_id}/assign",'
        'status="200"} 3.0'
    )
    assert line in text
    assert 'abtest_events_accepted_total{kind="exposure"} 3.0' in text
    assert "abtest_spool_depth 0.0" in text
    assert "abtest_events_written 3.0" in text
    batches = float(text.split("\nabtest_event_batches_written ")[1].split()[0])
    assert 1 <= batches <= 3


def test_openapi_and_docs(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert "/v1/outcomes" in schema["paths"]
    assert "multipart/form-data" in json.dumps(
        schema["paths"]["/v1/experiments/{experiment_id}/run"]
    )
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_listing_and_definition(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        listing = client.get("/v1/experiments").json()
        one = client.get(f"/v1/experiments/{EXPERIMENT}").json()
    assert [a["name"] for a in listing[0]["arms"]] == ["control", "v2", "v2-small-chunks"]
    assert one["definition"]["id"] == EXPERIMENT
    assert one["definition_sha"] == listing[0]["definition_sha"]
    assert one["outputs"] == ["summarized_text"]
    inputs = one["inputs"]
    assert sorted(inputs["properties"]) == ["pdf_source", "user_query"]
    assert inputs["required"] == ["pdf_source", "user_query"]
    assert inputs["additionalProperties"] is False


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ({"user_query": "q"}, "body.inputs.pdf_source", "Field required"),
        (
            {"pdf_source": "JVBERg==", "user_query": "q", "model": "gpt-4o"},
            "body.inputs.model",
            "Extra inputs are not permitted",
        ),
        (
            {"pdf_source": "JVBERg==", "user_query": 42},
            "body.inputs.user_query",
            "Input should be a valid string",
        ),
        (
            {"pdf_source": "JVBERg==", "user_query": "q" * 100_001},
            "body.inputs.user_query",
            "at most 100000 characters",
        ),
    ],
)
def test_run_inputs_that_do_not_fit_are_422_naming_the_input(
    env, tmp_path, redis_client, inputs, field, message
) -> None:
    with api_client(tmp_path, max_upload_bytes=1_000_000) as client:
        response = client.post(
            f"/v1/experiments/{EXPERIMENT}/run", json={"unit_id": "u1", "inputs": inputs}
        )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["field"] == field and message in d["message"] for d in detail), detail
    assert stream(redis_client, "exposures") == [] and stream(redis_client, "outcomes") == []


def test_a_flow_refusing_its_input_is_422_with_its_message(env, tmp_path, redis_client) -> None:
    with api_client(tmp_path) as client:
        response = client.post(f"/v1/experiments/{EXPERIMENT}/run", json=run_body("u1", "   "))
    assert response.status_code == 422
    assert response.json() == {"error": "bad_input", "detail": "user_query must not be empty"}
    assert stream(redis_client, "exposures") == [] and stream(redis_client, "outcomes") == []


def test_unit_id_limits_on_assign(env, tmp_path) -> None:
    with api_client(tmp_path) as client:
        long = client.get(f"/v1/experiments/{EXPERIMENT}/assign", params={"unit_id": "x" * 257})
        empty = client.post(f"/v1/experiments/{EXPERIMENT}/assign", json={"unit_id": ""})
        missing = client.get(f"/v1/experiments/{EXPERIMENT}/assign")
    for response in (long, empty, missing):
        assert response.status_code == 422
        assert "unit_id" in json.dumps(response.json())


def test_nothing_secret_in_logs(env, tmp_path, caplog) -> None:
    caplog.set_level("DEBUG")
    keys = {"api_keys": frozenset({"secret-key-123"})}
    with api_client(Path(tmp_path), **keys) as client:
        client.post(
            f"/v1/experiments/{EXPERIMENT}/run",
            headers={"Authorization": "Bearer secret-key-123"},
            json=run_body("u1", "q"),
        )
    assert "secret-key-123" not in caplog.text
    assert "Route 12" not in caplog.text


POSTS = [
    f"/v1/experiments/{EXPERIMENT}/assign",
    f"/v1/experiments/{EXPERIMENT}/run",
    "/v1/outcomes",
]
GETS = [
    "/v1/experiments",
    f"/v1/experiments/{EXPERIMENT}",
    f"/v1/experiments/{EXPERIMENT}/assign?unit_id=u1",
    f"/v1/experiments/{EXPERIMENT}/results",
    f"/v1/experiments/{EXPERIMENT}/report",
    "/metrics",
]


@pytest.mark.parametrize("path", POSTS)
def test_every_post_rejects_malformed_json_and_wrong_types(env, tmp_path, path: str) -> None:
    with api_client(tmp_path) as client:
        malformed = client.post(
            path, content=b'{"unit_id": ', headers={"content-type": "application/json"}
        )
        wrong_types = client.post(path, json={"unit_id": 42, "user_query": [], "value": "x"})
    for response in (malformed, wrong_types):
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "invalid_request" and body["detail"]


@pytest.mark.parametrize("path", POSTS)
def test_every_post_refuses_an_oversized_body(env, tmp_path, path: str) -> None:
    limits = {"max_body_bytes": 1000, "max_upload_bytes": 1000}
    with api_client(tmp_path, **limits) as client:
        response = client.post(
            path, content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json() == {"error": "too_large", "detail": "request body over 1000 bytes"}


@pytest.mark.parametrize(
    ("method", "path"), [("GET", p) for p in GETS] + [("POST", p) for p in POSTS]
)
def test_every_route_but_health_needs_a_valid_key(env, tmp_path, method: str, path: str) -> None:
    with api_client(tmp_path, api_keys=frozenset({"k"})) as client:
        missing = client.request(method, path, json={})
        wrong = client.request(method, path, json={}, headers={"Authorization": "Bearer x"})
        right = client.request(method, path, json={}, headers={"Authorization": "Bearer k"})
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert right.status_code in {200, 422}


def test_the_support_flow_runs_through_the_api(env, tmp_path, redis_client) -> None:
    path = "/v1/experiments/support-reply-prompts/run"
    with api_client(tmp_path) as client:
        done = client.post(
            path,
            json={"unit_id": "qa-alice", "inputs": {"message": "Where is my parcel? It is late."}},
        )
        refused = client.post(
            path, json={"unit_id": "u1", "inputs": {"message": "hi", "customer_tier": "gold"}}
        )
        described = client.get("/v1/experiments/support-reply-prompts").json()
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["arm"] == "v2" and body["outputs"]["intent"] == "shipping"
    assert body["outputs"]["reply"] and len(body["prompts"]) == 3
    assert refused.status_code == 422 and "customer_tier 'gold'" in refused.json()["detail"]
    assert described["outputs"] == ["reply", "intent"]
    assert described["inputs"]["required"] == ["message"]
    assert described["inputs"]["properties"]["customer_tier"]["default"] == "standard"
    exposures = stream(redis_client, "exposures", "support-reply-prompts")
    assert [e["unit_id"] for e in exposures] == ["qa-alice"]
