"""The traffic-splitting service (FastAPI): assign, run flows, record exposures and outcomes.

Thin edge over the core: the router decides arms, `abtest.tracking` decides what is recorded,
`abtest.events` makes it durable. The lifespan builds everything onto `app.state` once; tiny
`get_*` dependencies hand it to the routes. Domain errors become HTTP responses in one place
(`_install_error_handlers`): bad input is always a 4xx with a JSON body naming the problem,
never a 500.

Security: bearer keys (`ABTEST_API_KEYS`, admin `ABTEST_ADMIN_KEYS`) compared in constant time;
`/health` is open. Keys, credentials and run inputs are never logged.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, get_type_hints

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from abtest.event_fields import EventError, Exposure
from abtest.events import EventLog
from abtest.experiments import ExperimentFileError
from abtest.flows import FlowConfigError, FlowInputError
from abtest.platform import Platform, platform_options
from abtest.router import UnknownExperimentError
from abtest.settings import Settings, get_settings
from abtest.telemetry import CONTENT_TYPE_LATEST, Telemetry
from abtest.tracking import (
    OutcomeRejected,
    OutcomeReport,
    attributed_outcome,
    exposure,
)

logger = logging.getLogger("abtest.api")

MAX_BATCH = 1000
UNIT_ID_MAX = 256
ASGIApp = Callable[[MutableMapping[str, Any], Callable[..., Awaitable[Any]], Any], Awaitable[None]]


class ApiError(Exception):
    """A request the service refuses, with its HTTP status and a message for the client."""

    def __init__(self, status: int, error: str, detail: Any):
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(str(detail))


# -- request and response models -------------------------------------------------------------

UnitId = Annotated[str, Field(min_length=1, max_length=UNIT_ID_MAX)]
Attributes = dict[str, str | int | float | bool]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssignIn(_In):
    unit_id: UnitId
    attributes: Attributes = Field(default_factory=dict)


class AssignOut(BaseModel):
    experiment_id: str
    unit_id: str
    arm: str
    in_experiment: bool
    reason: str
    config: dict[str, Any]
    request_id: str
    exposure_logged: bool


class RunIn(_In):
    """A run request. `inputs` must fit the experiment's input model, whose JSON schema
    `GET /v1/experiments/{id}` gives (`inputs`); bytes inputs are base64 strings."""

    unit_id: UnitId
    attributes: Attributes = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(
        description="The flow's run inputs by name (see the experiment's `inputs` schema)."
    )


class PromptOut(BaseModel):
    prompt_id: str
    version: str
    sha256: str


class RunOut(BaseModel):
    experiment_id: str
    unit_id: str
    arm: str
    in_experiment: bool
    request_id: str
    outputs: dict[str, Any]
    prompts: dict[str, PromptOut]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    error: str | None = None


class OutcomeIn(_In):
    experiment_id: str = Field(min_length=1, max_length=128)
    unit_id: UnitId
    metric: str = Field(min_length=1, max_length=128)
    value: float = Field(allow_inf_nan=False)
    request_id: str = Field(default="", max_length=128)
    event_id: str | None = Field(default=None, min_length=1, max_length=64)
    ts: int | None = Field(default=None, ge=0, le=32503680000000)


class OutcomesOut(BaseModel):
    accepted: int
    event_ids: list[str]


class ArmOut(BaseModel):
    name: str
    weight: float


class ExperimentSummary(BaseModel):
    id: str
    description: str
    status: str
    arms: list[ArmOut]
    definition_sha: str


class ErrorOut(BaseModel):
    error: str
    detail: Any


# -- dependencies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Services:
    """What a route needs, read from `app.state` at the start of the request (a reload swaps
    the platform between requests, never during one)."""

    platform: Platform
    event_log: EventLog
    telemetry: Telemetry
    redis_url: str


async def get_services(request: Request) -> Services:
    state = request.app.state
    return Services(state.platform, state.event_log, state.telemetry, state.redis_url)


ServicesDep = Annotated[Services, Depends(get_services)]


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(token: str, keys: frozenset[str]) -> bool:
    """Constant-time membership: every key is compared, whatever matches first."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode(), key.encode())
    return found


def authorize(path: str, authorization: str, settings: Settings) -> ApiError | None:
    """The refusal for a request, or None to let it through.

    `/health` is open. With no key configured at all the service is open (local
    development). `/v1/admin/*` needs an admin key; every other path any API or admin key.
    """
    if path == "/health" or not (settings.api_keys or settings.admin_keys):
        return None
    token = _bearer(authorization)
    if token is None:
        return ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <key>)")
    if path.startswith("/v1/admin/"):
        if _matches(token, settings.admin_keys):
            return None
        return ApiError(403, "forbidden", "an admin key is required")
    if _matches(token, settings.api_keys | settings.admin_keys):
        return None
    return ApiError(403, "forbidden", "this key is not valid for the API")


# -- routes -----------------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 413, 422)
}
experiments_router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=ERRORS)
outcomes_router = APIRouter(prefix="/v1", tags=["outcomes"], responses=ERRORS)
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERRORS)
service_router = APIRouter(tags=["service"])


@service_router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness: always 200 while the process serves; says whether events are spooling."""
    event_log: EventLog = request.app.state.event_log
    return {"status": "ok", "spool_depth": event_log.spool_depth}


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
    assignment = services.platform.router.assign(experiment_id, body.unit_id, body.attributes)
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


class LeanRoute(APIRoute):
    """A route documented by FastAPI like any other, served without its per-request machinery.

    For the hottest endpoint (assignment, called on every user request of every client):
    FastAPI's dependency solving and response re-validation cost about 100 us per request,
    more than assigning and logging the exposure together. This handler validates the path and
    query parameters with one pydantic model built from the endpoint's signature, passes the
    `Request` (the endpoint reads `app.state` itself) and serializes the returned model once.
    Invalid parameters raise the same `RequestValidationError` as FastAPI would. Supports only
    path and query parameters plus a `Request`, which is all the endpoint declares.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        dependant = self.dependant
        where = {f.name: "path" for f in dependant.path_params}
        where |= {f.name: "query" for f in dependant.query_params}
        hints = get_type_hints(dependant.call, include_extras=True)
        params_model = create_model(
            f"{self.name}_params", **{name: (hints[name], ...) for name in where}
        )
        request_name = dependant.request_param_name
        endpoint = dependant.call

        async def handler(request: Request) -> Response:
            raw = {
                name: (request.path_params if place == "path" else request.query_params).get(name)
                for name, place in where.items()
            }
            try:
                values = params_model.model_validate(
                    {k: v for k, v in raw.items() if v is not None}
                ).__dict__
            except ValidationError as exc:
                errors = [{**e, "loc": (where[e["loc"][0]], *e["loc"])} for e in exc.errors()]
                raise RequestValidationError(errors) from None
            result = await endpoint(**values, **{request_name: request})
            return Response(
                result.__pydantic_serializer__.to_json(result), media_type="application/json"
            )

        return handler


async def assign_get(
    experiment_id: str,
    unit_id: Annotated[str, Query(min_length=1, max_length=UNIT_ID_MAX)],
    request: Request,
) -> AssignOut:
    """The unit's arm and the arm's config; logs an exposure when the unit is in the
    experiment."""
    state = request.app.state
    services = Services(state.platform, state.event_log, state.telemetry, state.redis_url)
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


@experiments_router.get("")
async def list_experiments(services: ServicesDep) -> list[ExperimentSummary]:
    """Every loaded experiment with its arms and definition hash."""
    return [
        ExperimentSummary(
            id=e.id,
            description=e.description,
            status=e.status,
            arms=[ArmOut(name=a.name, weight=a.weight) for a in e.arms],
            definition_sha=services.platform.definition_shas[e.id],
        )
        for e in services.platform.experiments.values()
    ]


@experiments_router.get("/{experiment_id}")
async def get_experiment(experiment_id: str, services: ServicesDep) -> dict[str, Any]:
    """The full definition, as loaded (defaults filled in), its hash, the JSON schema of the
    run inputs and the names of the run outputs."""
    platform = services.platform
    experiment = platform.router.experiment(experiment_id)
    return {
        "definition": experiment.model_dump(mode="json"),
        "definition_sha": platform.definition_shas[experiment_id],
        "inputs": platform.flows.input_model(experiment_id).model_json_schema(),
        "outputs": list(platform.flows.contract(experiment_id).outputs),
    }


RUN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RunIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["unit_id"],
                    "properties": {
                        "unit_id": {"type": "string", "minLength": 1, "maxLength": UNIT_ID_MAX},
                        "attributes": {"type": "string", "description": "a JSON object"},
                    },
                    "additionalProperties": {
                        "description": "one field per run input; a file for a bytes input, "
                        "JSON text for a list or dict input"
                    },
                }
            },
        },
    }
}


@lru_cache(maxsize=256)
def _run_body(inputs_model: type[BaseModel]) -> type[BaseModel]:
    """`RunIn` with `inputs` typed by one experiment's input model, so one strict JSON parse
    checks the whole body and pydantic names the bad input (`body.inputs.user_query`)."""
    return create_model(
        inputs_model.__name__.removesuffix("Inputs") + "RunIn",
        __base__=_In,
        unit_id=(UnitId, ...),
        attributes=(Attributes, Field(default_factory=dict)),
        inputs=(inputs_model, ...),
    )


async def _run_request(
    request: Request, platform: Platform, experiment_id: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(unit_id, attributes, inputs) from a JSON body or a multipart form."""
    inputs_model = platform.flows.input_model(experiment_id)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        structured = {
            spec.name for spec in platform.flows.contract(experiment_id).inputs if spec.structured
        }
        return await _form_request(request, inputs_model, structured)
    try:
        body = _run_body(inputs_model).model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", _validation_detail(exc.errors(), "body")) from None
    return body.unit_id, body.attributes, dict(body.inputs)


async def _form_request(
    request: Request, inputs_model: type[BaseModel], structured: set[str]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A multipart run: `unit_id`, optional `attributes` (JSON text), one field per input;
    list and dict inputs are JSON text, bytes inputs files. Form text is converted to the
    input's type (pydantic's lax mode: "3" is an int here, unlike in JSON)."""
    fields = inputs_model.model_fields
    form = await request.form(max_files=max(1, len(fields)), max_fields=len(fields) + 2)
    raw: dict[str, Any] = {}
    envelope: dict[str, Any] = {}
    problems = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            value = await value.read()
        if name in ("unit_id", "attributes"):
            envelope[name] = value
            continue
        if isinstance(value, str) and name in structured:
            try:
                value = json.loads(value)
            except ValueError:
                problems.append({"field": f"form.{name}", "message": "must be JSON text"})
                continue
        raw[name] = value
    if isinstance(envelope.get("attributes"), str | bytes):
        try:
            envelope["attributes"] = json.loads(envelope["attributes"])
        except ValueError:
            problems.append({"field": "form.attributes", "message": "must be a JSON object"})
    if problems:
        raise ApiError(422, "invalid_request", problems)
    try:
        body = _run_body(inputs_model).model_validate({**envelope, "inputs": raw})
    except ValidationError as exc:
        detail = [
            {**item, "field": item["field"].replace("form.inputs.", "form.")}
            for item in _validation_detail(exc.errors(), "form")
        ]
        raise ApiError(422, "invalid_request", detail) from None
    return body.unit_id, body.attributes, dict(body.inputs)


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
    automatic outcomes. Inputs that do not fit the experiment's input model, or that the flow
    refuses (`FlowInputError`), are a 422 naming the input, and nothing is recorded. An LLM
    that fails after retries is a 502, a bug of the flow a 500, each with the run's JSON body
    and request id (the failure is recorded as `error=1`)."""
    platform = services.platform
    platform.router.experiment(experiment_id)
    unit_id, attributes, inputs = await _run_request(request, platform, experiment_id)
    try:
        done = await platform.arun(experiment_id, unit_id, inputs, attributes)
    except FlowInputError as exc:
        raise ApiError(422, "bad_input", str(exc)) from None
    if done.events:
        await services.event_log.append(done.events)
        exposures = sum(1 for e in done.events if isinstance(e, Exposure))
        services.telemetry.exposures_accepted.inc(exposures)
        services.telemetry.outcomes_accepted.inc(len(done.events) - exposures)
    out = RunOut.model_validate(done.as_dict())
    result = done.result
    if result.error is not None:
        if result.error_kind == "llm":
            services.telemetry.llm_errors.labels(experiment_id, done.assignment.arm).inc()
        status = 502 if result.error_kind in ("llm", "prompt") else 500
        return JSONResponse(out.model_dump(mode="json"), status_code=status)
    return out


@outcomes_router.post("/outcomes")
async def post_outcomes(
    body: OutcomeIn | Annotated[list[OutcomeIn], Field(min_length=1, max_length=MAX_BATCH)],
    services: ServicesDep,
) -> OutcomesOut:
    """Record one outcome or a batch of up to 1,000. The arm is recomputed by the router
    (never taken from the client); a batch is all or nothing, and a resent `event_id` is
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
        assignment = services.platform.router.assign(item.experiment_id, item.unit_id)
        report = OutcomeReport(**item.model_dump())
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


class ReloadOut(BaseModel):
    reloaded: bool
    experiments: list[str]


@admin_router.post("/reload")
async def reload(request: Request) -> ReloadOut:
    """Reload experiment files; a set that fails validation is rejected with its errors and
    the previous definitions stay live."""
    platform = await asyncio.to_thread(reload_platform, request.app)
    return ReloadOut(reloaded=True, experiments=sorted(platform.experiments))


def reload_platform(app: FastAPI) -> Platform:
    """Build a new platform from the experiment files and swap it in; on failure raise
    `ApiError(422)` with every problem and keep the live one."""
    settings: Settings = app.state.settings
    telemetry: Telemetry = app.state.telemetry
    try:
        platform = load_platform(settings, app.state.prompt_registry)
    except (ExperimentFileError, FlowConfigError) as exc:
        telemetry.reloads.labels("rejected").inc()
        raise ApiError(422, "invalid_experiments", str(exc).splitlines()) from None
    app.state.platform = platform
    telemetry.reloads.labels("ok").inc()
    logger.info(
        "reloaded %d experiments from %s", len(platform.experiments), settings.experiments_dir
    )
    return platform


# -- errors -----------------------------------------------------------------------------------


def _validation_detail(errors: list[Any], prefix: str | None = None) -> list[dict[str, Any]]:
    detail = []
    for error in errors:
        if error.get("type") == "json_invalid":
            loc = error.get("loc", ())
            where = f" at character {loc[-1]}" if len(loc) > 1 else ""
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            detail.append({"field": "body", "message": f"malformed JSON{where}: {reason}"})
            continue
        loc = [str(part) for part in error.get("loc", ())]
        if prefix and (not loc or loc[0] != prefix):
            loc = [prefix, *loc]
        detail.append({"field": ".".join(loc), "message": error.get("msg", "invalid")})
    return detail


_BRANCHES = {"dict": "OutcomeIn", "list": "list[OutcomeIn]"}


def _one_branch(errors: list[Any], body: Any) -> list[Any]:
    """Errors of the union branch the body was meant for (object or batch), branch tag removed.

    Pydantic reports a body failing `OutcomeIn | list[OutcomeIn]` against both branches; a
    client who sent a list wants to hear about the list only.
    """
    branch = _BRANCHES.get(type(body).__name__)
    kept = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if len(loc) > 1 and loc[1] in _BRANCHES.values():
            if loc[1] != branch:
                continue
            error = {**error, "loc": (loc[0], *loc[2:])}
        kept.append(error)
    if not kept:
        message = "the body must be an outcome object or a list of 1 to 1000 outcome objects"
        kept = [{"loc": ("body",), "msg": message}]
    return kept


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(UnknownExperimentError)
    async def _unknown(request: Request, exc: UnknownExperimentError) -> JSONResponse:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _one_branch(list(exc.errors()), exc.body)
        return _error(422, "invalid_request", _validation_detail(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return _error(exc.status_code, names.get(exc.status_code, "http_error"), exc.detail)


# -- middleware -------------------------------------------------------------------------------


class RequestGuard:
    """Pure ASGI middleware: bearer keys (401/403), body size limits (413), per-route metrics.

    Keys are checked before anything is read (see `authorize`). A declared `Content-Length`
    over the limit is refused before reading; a chunked body is counted as it arrives and
    refused once over. Metrics use the route template (`/v1/experiments/{experiment_id}/
    assign`), never the raw path, to bound label values. Written as plain ASGI rather than
    FastAPI dependencies: it runs on every request, and dependencies cost more than the
    router itself.
    """

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings
        self.max_body = settings.max_body_bytes
        self.max_upload = settings.max_upload_bytes

    def _limit(self, path: str) -> int:
        return self.max_upload if path.endswith("/run") else self.max_body

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        limit = self._limit(scope["path"])

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        refusal = authorize(scope["path"], _header(scope, b"authorization"), self.settings)
        declared = _content_length(scope)
        if refusal is not None:
            await _send_json(send, refusal.status, refusal.error, refusal.detail)
            status["code"] = refusal.status
        elif declared is not None and declared > limit:
            await _send_json(send, 413, "too_large", f"request body over {limit} bytes")
            status["code"] = 413
        elif declared is None and scope["method"] in {"POST", "PUT", "PATCH"}:
            body = await _read_body(receive, limit)
            if body is None:
                await _send_json(send, 413, "too_large", f"request body over {limit} bytes")
                status["code"] = 413
            else:
                await self.app(scope, _replay(body), send_wrapper)
        else:
            await self.app(scope, receive, send_wrapper)
        telemetry: Telemetry | None = getattr(scope["app"].state, "telemetry", None)
        if telemetry is not None:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            telemetry.observe(
                scope["method"], template, status["code"], time.perf_counter() - started
            )


def _header(scope: MutableMapping[str, Any], wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return ""


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    try:
        return int(_header(scope, b"content-length"))
    except ValueError:
        return None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_json(send: Any, status: int, error: str, detail: str) -> None:
    import json

    payload = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# -- the app ----------------------------------------------------------------------------------


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    from abtest import store
    from abtest.prompts import PromptRegistry

    settings: Settings = app.state.settings
    url = store.redis_url(settings)
    app.state.redis_url = url
    app.state.prompt_registry = PromptRegistry(
        store.sync_client(url), cache_ttl_s=settings.prompt_cache_ttl_s
    )
    platform = app.state.platform_override or load_platform(settings, app.state.prompt_registry)
    client = store.async_client(url)
    event_log = EventLog(client, settings.spool_path, maxlen=settings.stream_maxlen)
    await event_log.start()
    app.state.platform = platform
    app.state.event_log = event_log
    app.state.telemetry.watch_event_log(event_log)
    # Everything built so far (modules, drivers, definitions) lives as long as the process:
    # moving it out of the collector's generations keeps full collections short under load.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, _reload_on_signal, app)
    except (NotImplementedError, RuntimeError, ValueError):
        pass
    try:
        yield
    finally:
        try:
            loop.remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        await event_log.close()


def load_platform(settings: Settings, prompt_registry: Any) -> Platform:
    """The experiment files' platform, configured by the settings (`platform_options`)."""
    return Platform.load(
        settings.experiments_dir, prompt_registry=prompt_registry, **platform_options(settings)
    )


def _reload_on_signal(app: FastAPI) -> None:
    try:
        reload_platform(app)
    except ApiError as exc:
        logger.error("reload rejected, previous definitions stay live: %s", exc.detail)


def _errors_are_json(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi` with every error response documented as JSON, as the error handlers send
    it, also on routes whose success is HTML (FastAPI gives their errors the route's type)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if not status.startswith("2") and "text/html" in content:
                            content["application/json"] = content.pop("text/html")
        return app.openapi_schema

    return openapi


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    """The service. `settings` default to the environment; `platform` (tests, the demo)
    replaces loading the experiment files at start-up."""
    app = FastAPI(
        title="abtest",
        summary="Prompt A/B experiments: assignment, flow runs, exposures and outcomes.",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings or get_settings()
    app.state.platform_override = platform
    app.state.telemetry = Telemetry()
    _install_error_handlers(app)
    app.openapi = _errors_are_json(app)  # type: ignore[method-assign]
    for router in (experiments_router, outcomes_router, service_router, admin_router):
        app.include_router(router)
    app.add_middleware(RequestGuard, settings=app.state.settings)
    return app
