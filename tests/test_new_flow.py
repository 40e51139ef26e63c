"""Any Hamilton flow is an experiment: a flow written into a temporary directory (not
`variants/`), with inputs of every supported type and a `FlowInputError`, runs through
`abtest validate`, the CLI, the API and the client, against the local model server, with no
change to platform code."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from abtest.api import create_app
from abtest.cli import app
from abtest.client import Client
from abtest.devtools.serving import serve_app_in_thread
from abtest.event_fields import stream_key
from tests.api_support import service_settings

ROOT = Path(__file__).parents[1]
FLOW_SOURCE = (Path(__file__).parent / "flows" / "ticket_flow.py").read_text(encoding="utf-8")
EXPERIMENT_ID = "ticket-triage"
DEFINITION = {
    "id": EXPERIMENT_ID,
    "description": "a flow the platform has never seen",
    "status": "running",
    "flow": "ticket_flow",
    "arms": [
        {"name": "control", "weight": 0.5, "config": {"prompt_version": "v1"}},
        {"name": "terse", "weight": 0.5, "config": {"prompt_version": "v2", "model": "gpt-4o"}},
    ],
    "overrides": {"qa-control": "control", "qa-terse": "terse"},
    "metrics": [{"name": "thumbs_up", "kind": "proportion", "primary": True}],
}
TICKET = {
    "title": "Printer jams",
    "body": "The office printer hardware jams on every page.",
    "priority": 4,
    "threshold": 0.5,
    "urgent": True,
    "tags": ["printer", "office"],
    "metadata": {"floor": 3, "vip": False},
}
runner = CliRunner()


@pytest.fixture
def flow_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The flow module and its experiment file in a temporary directory on the path."""
    (tmp_path / "ticket_flow.py").write_text(FLOW_SOURCE, encoding="utf-8")
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "ticket.yaml").write_text(yaml.safe_dump(DEFINITION), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ticket_flow", None)
    return tmp_path


def outcomes(redis_client, kind: str = "outcomes") -> list[dict[str, str]]:
    return [fields for _, fields in redis_client.xrange(stream_key(EXPERIMENT_ID, kind))]


# -- validate ------------------------------------------------------------------------------------


def test_validate_in_a_fresh_process(flow_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(flow_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "abtest.cli", "validate", str(flow_dir / "experiments")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok   ") and EXPERIMENT_ID in done.stdout
    assert (
        "inputs: title, body, priority, threshold?, urgent?, tags?, metadata?, attachment?; "
        "outputs: label, reply, facts)"
    ) in done.stdout


def _validate(flow_dir: Path, change) -> str:
    data = json.loads(json.dumps(DEFINITION))
    change(data)
    path = flow_dir / "experiments" / "ticket.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_validate_reports_a_config_typo_with_a_did_you_mean(flow_dir: Path) -> None:
    output = _validate(flow_dir, lambda d: d["arms"][1]["config"].update(modle="gpt-4o"))
    assert "arm 'terse', node 'modle': config key 'modle' is not read by the flow; " in output
    assert "did you mean 'model'?" in output


def test_validate_names_the_arm_and_the_input_that_differ(flow_dir: Path) -> None:
    (flow_dir / "ticket_flow_b.py").write_text(
        FLOW_SOURCE.replace('"attachment")', '"attachment", "language")').replace(
            "def ticket(title: str, body: str, priority: int) -> str:",
            "def ticket(title: str, body: str, priority: int, language: str) -> str:",
        ),
        encoding="utf-8",
    )
    output = _validate(flow_dir, lambda d: d["arms"][1].update(modules=["ticket_flow_b"]))
    assert "arm 'terse': input 'language' is not an input of the control arm" in output


def test_validate_lists_every_problem_of_a_file_in_one_pass(flow_dir: Path) -> None:
    def many(data: dict) -> None:
        data["arms"][0]["config"]["prompt_version"] = "v3"
        data["arms"][1]["config"]["temprature"] = 0.2
        data["arms"][1]["config"]["model"] = 4
        data["coverage"] = 2

    output = _validate(flow_dir, many)
    assert "4 errors in" in output
    assert "coverage (2.0) must be within [0, 1]" in output
    assert "arm 'control', node 'triage_prompt'" in output and "implemented: v1, v2" in output
    assert "arm 'terse', node 'temprature': config key 'temprature' is not read" in output
    assert "arm 'terse': dry run on SAMPLE_INPUTS failed" in output and "Expected model" in output


def test_validate_reports_an_input_that_is_not_an_external_input(flow_dir: Path) -> None:
    source = FLOW_SOURCE.replace('INPUTS = ("title",', 'INPUTS = ("titel", "ticket", "title",')
    (flow_dir / "ticket_flow.py").write_text(source, encoding="utf-8")
    output = _validate(flow_dir, lambda d: None)
    assert "INPUTS names 'titel', which no node of the flow reads; did you mean 'title'?" in output
    assert "INPUTS names 'ticket', which is a node computed by the flow" in output


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_run_with_every_input_type(flow_dir: Path, llm_server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    attachment = flow_dir / "log.bin"
    attachment.write_bytes(b"\x00\x01\x02\x03")
    args = ["run", EXPERIMENT_ID, "qa-terse", "-e", str(flow_dir / "experiments"), "--json"]
    for name in ("title", "body", "priority", "threshold"):
        args += ["-i", f"{name}={TICKET[name]}"]
    args += ["-i", "urgent=true", "-i", 'tags=["printer", "office"]', "-i", 'metadata={"floor": 3}']
    args += ["--input-file", f"attachment={attachment}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["arm"] == "terse" and body["error"] is None
    assert body["outputs"]["label"] == "urgent:hardware"
    assert body["outputs"]["facts"] == {
        "above_threshold": True,
        "tags": ["office", "printer"],
        "metadata_keys": ["floor"],
        "attachment_bytes": 4,
        "bytes_per_tag": 2.0,
    }
    assert body["prompts"]["triage_prompt"]["version"] == "v2"


def test_cli_run_refused_by_the_flow(flow_dir: Path, llm_server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    args = ["run", EXPERIMENT_ID, "u1", "-e", str(flow_dir / "experiments")]
    result = runner.invoke(app, [*args, "-i", "title=t", "-i", "body=b", "-i", "priority=9"])
    assert result.exit_code == 1
    assert "error: priority must be between 1 and 5, got 9" in result.output
    wrong = runner.invoke(app, [*args, "-i", "title=t", "-i", "body=b", "-i", "priority=high"])
    assert wrong.exit_code == 1 and "input 'priority': Input should be a valid integer" in (
        wrong.output
    )


# -- the API -------------------------------------------------------------------------------------


@pytest.fixture
def api(flow_dir: Path, env) -> Iterator[TestClient]:
    settings = service_settings(experiments_dir=flow_dir / "experiments", home=flow_dir / "home")
    with TestClient(create_app(settings)) as client:
        yield client


def test_api_describes_the_inputs_and_outputs(api: TestClient) -> None:
    one = api.get(f"/v1/experiments/{EXPERIMENT_ID}").json()
    assert one["outputs"] == ["label", "reply", "facts"]
    schema = one["inputs"]
    assert schema["required"] == ["title", "body", "priority"]
    props = schema["properties"]
    assert props["priority"]["type"] == "integer" and props["urgent"]["default"] is False
    assert props["threshold"]["default"] == 0.5
    assert "model" not in props and "llm_client" not in props


def test_api_run_json_and_multipart(api: TestClient, redis_client) -> None:
    path = f"/v1/experiments/{EXPERIMENT_ID}/run"
    inputs = {**TICKET, "attachment": base64.b64encode(b"abcdef").decode()}
    as_json = api.post(path, json={"unit_id": "qa-control", "inputs": inputs})
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert body["arm"] == "control" and body["outputs"]["label"] == "urgent:hardware"
    assert body["outputs"]["facts"]["bytes_per_tag"] == 3.0
    form = {
        "unit_id": "qa-terse",
        "title": "Invoice wrong",
        "body": "The billing invoice charged us twice.",
        "priority": "2",
        "urgent": "false",
        "tags": '["billing"]',
    }
    multipart = api.post(path, data=form, files={"attachment": ("a.bin", b"xy")})
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["outputs"]["label"] == "billing"
    assert multipart.json()["outputs"]["facts"]["attachment_bytes"] == 2
    exposures = outcomes(redis_client, "exposures")
    assert [e["unit_id"] for e in exposures] == ["qa-control", "qa-terse"]


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"title": "t", "body": "b"}, "body.inputs.priority"),
        ({**TICKET, "colour": "red"}, "body.inputs.colour"),
        ({**TICKET, "priority": "4"}, "body.inputs.priority"),
        ({**TICKET, "tags": "printer"}, "body.inputs.tags"),
        ({**TICKET, "urgent": 1}, "body.inputs.urgent"),
        ({**TICKET, "attachment": "%%%"}, "body.inputs.attachment"),
    ],
)
def test_api_bad_inputs_are_422_naming_the_input(api, redis_client, inputs, field) -> None:
    response = api.post(
        f"/v1/experiments/{EXPERIMENT_ID}/run", json={"unit_id": "u", "inputs": inputs}
    )
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["detail"]]
    assert outcomes(redis_client, "exposures") == [] and outcomes(redis_client) == []


def test_api_flow_input_error_is_422_and_records_nothing(api, redis_client) -> None:
    response = api.post(
        f"/v1/experiments/{EXPERIMENT_ID}/run",
        json={"unit_id": "u", "inputs": {**TICKET, "priority": 0}},
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "bad_input",
        "detail": "priority must be between 1 and 5, got 0",
    }
    assert outcomes(redis_client, "exposures") == [] and outcomes(redis_client) == []


def test_api_flow_bug_is_a_json_error_recorded_as_error(api, redis_client) -> None:
    inputs = {**TICKET, "tags": [], "attachment": base64.b64encode(b"abc").decode()}
    response = api.post(
        f"/v1/experiments/{EXPERIMENT_ID}/run", json={"unit_id": "u", "inputs": inputs}
    )
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "flow error in node 'facts': ZeroDivisionError: division by zero"
    assert body["outputs"] == {} and body["request_id"]
    errors = [o for o in outcomes(redis_client) if o["metric"] == "error"]
    assert [(o["value"], o["request_id"]) for o in errors] == [("1.0", body["request_id"])]


# -- the client ----------------------------------------------------------------------------------


def test_client_runs_the_new_flow(flow_dir: Path, env, redis_client) -> None:
    settings = service_settings(experiments_dir=flow_dir / "experiments", home=flow_dir / "home")
    with serve_app_in_thread(create_app(settings), ready_path="/health") as service:
        with Client(service.root_url) as client:
            assignment = client.assign(EXPERIMENT_ID, "qa-terse")
            run = client.run(EXPERIMENT_ID, "qa-terse", {**TICKET, "attachment": b"\x00" * 10})
            client.outcome(EXPERIMENT_ID, "qa-terse", "thumbs_up", 1, request_id=run.request_id)
    assert assignment.config == {"prompt_version": "v2", "model": "gpt-4o"}
    assert run.arm == "terse" and run.outputs["facts"]["bytes_per_tag"] == 5.0
    assert run.outputs["label"] == "urgent:hardware"
    metrics = {o["metric"] for o in outcomes(redis_client)}
    assert {"thumbs_up", "latency_ms", "cost_usd", "error", "responses"} <= metrics


def test_api_run_as_a_url_encoded_form(api: TestClient) -> None:
    path = f"/v1/experiments/{EXPERIMENT_ID}/run"
    form = {
        "unit_id": "qa-control",
        "title": "Printer",
        "body": "The hardware jams.",
        "priority": "3",
    }
    done = api.post(path, data=form)
    unknown = api.post(path, data={**form, "colour": "red"})
    missing = api.post(path, data={"title": "Printer", "body": "jams", "priority": "3"})
    assert done.status_code == 200, done.text
    assert done.json()["outputs"]["label"] == "hardware"
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == [
        {"field": "form.colour", "message": "Extra inputs are not permitted"}
    ]
    assert missing.status_code == 422
    assert missing.json()["detail"] == [{"field": "form.unit_id", "message": "Field required"}]
