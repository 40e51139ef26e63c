"""`abtest.client`: the sync and async clients against a real service (uvicorn in a thread, the
test Redis, the local model server), and failing open when the service is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from abtest.api import create_app
from abtest.client import AsyncClient, Client, ClientError, ServiceUnavailable
from abtest.devtools.serving import ServerHandle, serve_app_in_thread
from tests.api_support import EXAMPLES, EXPERIMENT, service_settings, stream
from tests.redis_process import free_port

QUERY = "What did the pilot cost?"


@pytest.fixture
def service(env, tmp_path) -> Iterator[ServerHandle]:
    app = create_app(service_settings(experiments_dir=EXAMPLES, home=tmp_path))
    with serve_app_in_thread(app, ready_path="/health") as handle:
        yield handle


def test_assign_run_and_outcome(service, redis_client, report_pdf) -> None:
    with Client(service.root_url) as client:
        assignment = client.assign(EXPERIMENT, "qa-alice")
        run = client.run(EXPERIMENT, "qa-alice", {"pdf_source": report_pdf, "user_query": QUERY})
        event_id = client.outcome(EXPERIMENT, "qa-alice", "thumbs_up", 1, request_id=run.request_id)
        again = client.outcome(
            EXPERIMENT, "qa-alice", "thumbs_up", 1, request_id=run.request_id, event_id=event_id
        )
    assert (assignment.arm, assignment.in_experiment, assignment.reason) == ("v2", True, "override")
    assert assignment.config["prompt_version"] == "v2"
    assert run.arm == "v2" and run.error is None
    assert "dollars" in run.outputs["summarized_text"]
    assert again == event_id
    feedback = [o for o in stream(redis_client, "outcomes") if o["metric"] == "thumbs_up"]
    assert [(o["event_id"], o["request_id"]) for o in feedback] == [(event_id, run.request_id)]


def test_bad_input_is_a_client_error_naming_the_input(service) -> None:
    with Client(service.root_url) as client:
        with pytest.raises(ClientError) as info:
            client.run(EXPERIMENT, "u1", {"user_query": QUERY})
        with pytest.raises(ClientError, match="unknown experiment 'nope'"):
            client.assign("nope", "u1")
    assert info.value.status == 422
    assert info.value.detail[0]["field"] == "body.inputs.pdf_source"


def test_assign_fails_open_to_the_control_config_when_the_service_is_gone(env, tmp_path) -> None:
    app = create_app(service_settings(experiments_dir=EXAMPLES, home=tmp_path))
    handle = serve_app_in_thread(app, ready_path="/health")
    client = Client(handle.root_url, max_retries=1, backoff=0.01, timeout=2)
    live = client.assign(EXPERIMENT, "qa-alice")
    handle.stop()
    gone = client.assign(EXPERIMENT, "qa-alice")
    client.close()
    assert live.in_experiment and live.arm == "v2"
    assert (gone.arm, gone.in_experiment, gone.reason) == ("control", False, "service_unavailable")
    assert gone.config == {
        "prompt_version": "v1",
        "model": "gpt-4o-mini",
        "chunk_tokens": 800,
        "temperature": 0.0,
    }


def test_without_any_contact_the_defaults_are_the_fallback() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    defaults = {EXPERIMENT: {"arm": "control", "config": {"model": "gpt-4o-mini"}}}
    with Client(closed, max_retries=2, backoff=0.01, defaults=defaults) as client:
        fallback = client.assign(EXPERIMENT, "u1")
        with pytest.raises(ServiceUnavailable, match="ConnectError"):
            client.run(EXPERIMENT, "u1", {"user_query": QUERY})
        with pytest.raises(ServiceUnavailable):
            client.outcome(EXPERIMENT, "u1", "thumbs_up", 1)
    assert fallback.config == {"model": "gpt-4o-mini"} and not fallback.in_experiment


def test_the_async_twin_gives_the_same_answers(service, report_pdf) -> None:
    async def main():
        async with AsyncClient(service.root_url) as client:
            assignment = await client.assign(EXPERIMENT, "qa-bob")
            run = await client.run(
                EXPERIMENT, "qa-bob", {"pdf_source": report_pdf, "user_query": QUERY}
            )
            event_id = await client.outcome(
                EXPERIMENT, "qa-bob", "thumbs_up", 0, request_id=run.request_id
            )
        return assignment, run, event_id

    assignment, run, event_id = asyncio.run(main())
    with Client(service.root_url) as client:
        sync_run = client.run(EXPERIMENT, "qa-bob", {"pdf_source": report_pdf, "user_query": QUERY})
    assert assignment.arm == run.arm == "v2-small-chunks"
    assert run.outputs == sync_run.outputs and len(event_id) == 32


def test_async_assign_fails_open() -> None:
    async def main():
        closed = f"http://127.0.0.1:{free_port()}"
        async with AsyncClient(closed, max_retries=0) as client:
            return await client.assign(EXPERIMENT, "u1")

    fallback = asyncio.run(main())
    assert (fallback.in_experiment, fallback.reason) == (False, "service_unavailable")
