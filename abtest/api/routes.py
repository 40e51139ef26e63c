"""The routes: service (health, metrics), experiments (assign, run, results), outcomes, admin.

Thin: the router decides arms, `abtest.tracking` decides what is recorded, `abtest.events`
makes it durable, `Platform.run` runs flows. Routes are registered in order of traffic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field

from abtest.api.arm_states import apply_states
from abtest.api.errors import ERRORS, RETRY_AFTER_S, ApiError, store_name
from abtest.api.lean_route import LeanRoute
from abtest.api.models import (
    MAX_BATCH,
    UNIT_ID_MAX,
    ArmChangeIn,
    ArmChangeOut,
    ArmOut,
    AssignIn,
    AssignOut,
    AuditEntryOut,
    ExperimentSummary,
    OutcomeIn,
    OutcomesOut,
    ReadyOut,
    ReloadOut,
    RunOut,
)
from abtest.api.run_request import RUN_BODY, read_run_request
from abtest.api.state import Services, ServicesDep, reload_platform, services_of
from abtest.arm_state import Action, ArmState, ArmStateError, check_change
from abtest.event_fields import EventError, Exposure
from abtest.events import EventLog
from abtest.experiments import Experiment
from abtest.flows import FlowInputError
from abtest.router import Assignment, Router, UnknownExperimentError
from abtest.state_store import achange_state, aread_audit, aread_states
from abtest.telemetry import CONTENT_TYPE_LATEST
from abtest.tracking import (
    OutcomeRejected,
    OutcomeReport,
    attributed_outcome,
    exposure,
)

READY_TIMEOUT_S = 1.0

experiments_router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=ERRORS)
outcomes_router = APIRouter(prefix="/v1", tags=["outcomes"], responses=ERRORS)
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERRORS)
service_router = APIRouter(tags=["service"])


@service_router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness (a Kubernetes liveness probe): always 200 while the process serves; says
    whether events are spooling."""
    event_log: EventLog = request.app.state.event_log
    return {"status": "ok", "spool_depth": event_log.spool_depth}


@service_router.get("/health/ready", responses={503: {"model": ReadyOut}})
async def ready(request: Request) -> ReadyOut:
    """Readiness (a Kubernetes readiness probe): 200 when the store answers within a second,
    else 503 with `Retry-After`. Writes are still acknowledged while not ready (the spool
    holds them); reads that need the store are not."""
    state = request.app.state
    try:
        await asyncio.wait_for(state.redis.ping(), READY_TIMEOUT_S)
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError, TimeoutError) as exc:
        out = ReadyOut(
            status="not_ready",
            store=f"{store_name(state.redis_url)} unreachable: {type(exc).__name__}",
            spool_depth=state.event_log.spool_depth,
        )
        return JSONResponse(
            out.model_dump(), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
        )
    return ReadyOut(
        status="ready", store=store_name(state.redis_url), spool_depth=state.event_log.spool_depth
    )


@service_router.get("/metrics", response_class=Response, responses=ERRORS)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text format: requests and latency per route, events, spool depth, LLM
    errors per arm."""
    return Response(services.telemetry.render(), media_type=CONTENT_TYPE_LATEST)


async def _assign(
    experiment_id: str,
    body: AssignIn,
    services: Services,
) -> AssignOut:
    assignment = services.platform.assign(experiment_id, body.unit_id, body.attributes)
    request_id = uuid.uuid4().hex
    event = exposure(
        assignment,
        body.unit_id,
        request_id,
        services.platform.definition_shas[experiment_id],
        services.platform.fingerprint(experiment_id, assignment.arm),
    )
    if event is not None:
        await services.event_log.append([event])
        services.telemetry.exposures_accepted.inc()
        await services.record_manifest(experiment_id, event.flow_fingerprint, assignment.arm)
    arm = services.platform.experiments[experiment_id].arm(assignment.arm)
    return AssignOut(
        experiment_id=experiment_id,
        unit_id=body.unit_id,
        arm=assignment.arm,
        in_experiment=assignment.in_experiment,
        reason=assignment.reason,
        config=arm.config,
        request_id=request_id,
        exposure_logged=event is not None,
    )


async def assign_get(
    experiment_id: str,
    unit_id: Annotated[str, Query(min_length=1, max_length=UNIT_ID_MAX)],
    request: Request,
) -> AssignOut:
    """The unit's arm and the arm's config; logs an exposure when the unit is in the
    experiment."""
    state = request.app.state
    services = services_of(state)
    return await _assign(experiment_id, AssignIn(unit_id=unit_id), services)


experiments_router.add_api_route(
    "/{experiment_id}/assign", assign_get, methods=["GET"], route_class_override=LeanRoute
)


@experiments_router.post("/{experiment_id}/assign")
async def assign_post(
    experiment_id: str,
    body: AssignIn,
    services: ServicesDep,
) -> AssignOut:
    """As the GET form, with the unit in a JSON body (and attributes for targeting)."""
    return await _assign(experiment_id, body, services)


async def _arms(experiment: Experiment, services: Services) -> list[ArmOut]:
    """The arms with their runtime state, read from the store (not the refreshed copy), so
    a stop is visible here as soon as it is made."""
    states = await aread_states(services.redis, experiment.id, experiment.arm_names)
    return _arms_out(experiment, states)


def _arms_out(experiment: Experiment, states: Mapping[str, ArmState]) -> list[ArmOut]:
    return [
        ArmOut(name=arm.name, weight=arm.weight, **states[arm.name].as_dict())
        for arm in experiment.arms
    ]


@experiments_router.get("")
async def list_experiments(services: ServicesDep) -> list[ExperimentSummary]:
    """Every loaded experiment with its arms (and their runtime state) and definition hash."""
    return [
        ExperimentSummary(
            id=e.id,
            description=e.description,
            status=e.status,
            arms=await _arms(e, services),
            definition_sha=services.platform.definition_shas[e.id],
        )
        for e in services.platform.experiments.values()
    ]


@experiments_router.get("/{experiment_id}")
async def get_experiment(experiment_id: str, services: ServicesDep) -> dict[str, Any]:
    """The full definition, as loaded (defaults filled in), its hash, the JSON schema of the
    run inputs, the names of the run outputs, and each arm's runtime `state`, `reason` and
    `stopped_at` (a safe rollout or an admin may have stopped an arm; the file is never
    edited)."""
    platform = services.platform
    experiment = platform.router.experiment(experiment_id)
    return {
        "definition": experiment.model_dump(mode="json"),
        "definition_sha": platform.definition_shas[experiment_id],
        "inputs": platform.flows.input_model(experiment_id).model_json_schema(),
        "outputs": list(platform.flows.contract(experiment_id).outputs),
        "arms": [arm.model_dump() for arm in await _arms(experiment, services)],
    }


@experiments_router.get("/{experiment_id}/audit")
async def audit(
    experiment_id: str,
    services: ServicesDep,
    count: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> list[AuditEntryOut]:
    """The latest state changes of the experiment's arms (who or what, why, the statistics
    at that moment), oldest first."""
    services.platform.router.experiment(experiment_id)
    entries = await aread_audit(services.redis, experiment_id, count)
    return [AuditEntryOut.model_validate(entry.as_dict()) for entry in entries]


@experiments_router.post(
    "/{experiment_id}/run",
    openapi_extra=RUN_BODY,
    responses={
        500: {"model": RunOut, "description": "the flow failed (a bug); recorded as error=1"},
        502: {"model": RunOut, "description": "the LLM failed after retries"},
    },
)
async def run(
    experiment_id: str,
    request: Request,
    services: ServicesDep,
) -> RunOut:
    """Run the unit's arm flow on the request's inputs; records the exposure and the run's
    automatic outcomes, and keeps a sampled successful run for the experiment's online judges
    (in the background: never delaying or failing the answer). Inputs that do not fit the
    experiment's input model, or that the flow refuses (`FlowInputError`), are a 422 naming
    the input, and nothing is recorded. An LLM that fails after retries is a 502, a bug of
    the flow a 500, each with the run's JSON body and request id (the failure is recorded as
    `error=1`)."""
    platform = services.platform
    experiment = platform.router.experiment(experiment_id)
    unit_id, attributes, inputs = await read_run_request(request, platform, experiment_id)
    try:
        done = await platform.arun(experiment_id, unit_id, inputs, attributes)
    except FlowInputError as exc:
        raise ApiError(422, "bad_input", str(exc)) from None
    if done.events:
        await services.event_log.append(done.events)
        exposures = sum(1 for e in done.events if isinstance(e, Exposure))
        services.telemetry.exposures_accepted.inc(exposures)
        services.telemetry.outcomes_accepted.inc(len(done.events) - exposures)
        if exposures:
            await services.record_manifest(
                experiment_id, done.result.fingerprint, done.assignment.arm, done.result.prompts
            )
    services.runs_log.offer(experiment, done, inputs)
    out = RunOut.model_validate(done.as_dict())
    result = done.result
    if result.error is not None:
        if result.error_kind == "llm":
            services.telemetry.llm_errors.labels(experiment_id, done.assignment.arm).inc()
        status = 502 if result.error_kind in ("llm", "prompt") else 500
        return JSONResponse(out.model_dump(mode="json"), status_code=status)
    return out


def _outcome_assignment(router: Router, item: OutcomeIn) -> Assignment:
    """The router's assignment of an outcome's unit, recomputed with the attributes the
    outcome carries (the client should send those it assigned the unit with).

    An experiment whose arms depend on attributes (`hash_attribute` other than `user_id`, a
    `fallback_attribute` or a `condition`) cannot be recomputed from the unit id alone: an
    outcome without attributes is then recorded as long as the experiment runs, its `arm`
    field being the unit id's arm (the control's when that is out), for information only.
    The analysis attributes every outcome to the arm of the unit's first exposure and drops
    outcomes of units never exposed, so nothing is credited to the wrong arm (a differing
    field is counted in `outcomes_arm_mismatch`).
    """
    assignment = router.assign(item.experiment_id, item.unit_id, item.attributes)
    if (
        assignment.in_experiment
        or item.attributes is not None
        or assignment.reason in ("not_running", "stopped")
        or not router.reads_attributes(item.experiment_id)
    ):
        return assignment
    return dataclasses.replace(assignment, in_experiment=True)


@outcomes_router.post("/outcomes")
async def post_outcomes(
    body: OutcomeIn | Annotated[list[OutcomeIn], Field(min_length=1, max_length=MAX_BATCH)],
    services: ServicesDep,
) -> OutcomesOut:
    """Record one outcome or a batch of up to 1,000. The arm is recomputed by the router
    (never taken from the client), with the outcome's `attributes` when the experiment's
    assignment reads attributes; a batch is all or nothing, and a resent `event_id` is
    stored once."""
    items = body if isinstance(body, list) else [body]
    events = []
    problems = []
    for index, item in enumerate(items):
        where = f"[{index}] " if isinstance(body, list) else ""
        try:
            experiment = services.platform.router.experiment(item.experiment_id)
        except UnknownExperimentError as exc:
            if not isinstance(body, list):
                raise
            problems.append(f"{where}{exc}")
            continue
        assignment = _outcome_assignment(services.platform.router, item)
        report = OutcomeReport(**item.model_dump(exclude={"attributes"}))
        try:
            events.append(attributed_outcome(experiment, assignment, report))
        except (OutcomeRejected, EventError) as exc:
            problems.append(f"{where}{exc}")
    if problems:
        raise ApiError(422, "invalid_outcome", problems)
    await services.event_log.append(events)
    services.telemetry.outcomes_accepted.inc(len(events))
    return OutcomesOut(accepted=len(events), event_ids=[e.event_id for e in events])


@experiments_router.get("/{experiment_id}/results")
async def results(experiment_id: str, services: ServicesDep) -> dict[str, Any]:
    """The analysis of the experiment's events so far (the JSON form of `abtest report`)."""
    from analysis.report import to_json

    return to_json(await _analyze(experiment_id, services))


@experiments_router.get("/{experiment_id}/report", response_class=HTMLResponse)
async def report(experiment_id: str, services: ServicesDep) -> HTMLResponse:
    """The HTML report of the experiment's events so far."""
    from analysis.report import render_report

    result = await _analyze(experiment_id, services)
    return HTMLResponse(await asyncio.to_thread(render_report, result))


async def _analyze(experiment_id: str, services: Services) -> Any:
    """Read the streams and analyse them in a worker thread (pandas work off the loop)."""
    from abtest import store
    from analysis.report import analyze_stored

    experiment = services.platform.router.experiment(experiment_id)
    client = store.sync_client(services.redis_url)
    return await asyncio.to_thread(analyze_stored, experiment, client)


async def _change_arm(
    experiment_id: str, arm: str, action: Action, body: ArmChangeIn | None, services: Services
) -> ArmChangeOut:
    experiment = services.platform.router.experiment(experiment_id)
    try:
        check_change(experiment.arm_names, arm, action)
    except KeyError as exc:
        raise ApiError(
            404, "unknown_arm", f"experiment '{experiment_id}' has {exc.args[0]}"
        ) from None
    except ArmStateError as exc:
        raise ApiError(409, "invalid_change", str(exc)) from None
    reason = (body.reason if body is not None else "") or f"{action} by an admin"
    entry = await achange_state(
        services.redis, experiment_id, arm, action, actor="admin", reason=reason
    )
    states = await aread_states(services.redis, experiment_id, experiment.arm_names)
    apply_states(services.platform, services.telemetry, experiment_id, states)
    arms = {a.name: a for a in _arms_out(experiment, states)}
    return ArmChangeOut(
        experiment_id=experiment_id,
        arm=arms[arm],
        changed=entry is not None,
        audit=None if entry is None else AuditEntryOut.model_validate(entry.as_dict()),
    )


@admin_router.post("/experiments/{experiment_id}/arms/{arm}/stop")
async def stop_arm(
    experiment_id: str, arm: str, services: ServicesDep, body: ArmChangeIn | None = None
) -> ArmChangeOut:
    """Stop a treatment arm: its units get the control's config, outside the experiment
    (reason `arm_stopped`), on every replica within `ABTEST_STATE_REFRESH_S`. Recorded in the
    audit log; the control cannot be stopped (409)."""
    return await _change_arm(experiment_id, arm, "stop", body, services)


@admin_router.post("/experiments/{experiment_id}/arms/{arm}/resume")
async def resume_arm(
    experiment_id: str, arm: str, services: ServicesDep, body: ArmChangeIn | None = None
) -> ArmChangeOut:
    """Resume a stopped arm: its units are assigned to it again. Recorded in the audit log."""
    return await _change_arm(experiment_id, arm, "resume", body, services)


@admin_router.post("/reload")
async def reload(request: Request) -> ReloadOut:
    """Reload experiment files; a set that fails validation is rejected with its errors and
    the previous definitions stay live."""
    platform = await asyncio.to_thread(reload_platform, request.app)
    return ReloadOut(reloaded=True, experiments=sorted(platform.experiments))
