"""The GrowthBook SDKs' side of the API: the payload they load (`GET /api/features/{key}`)
and the exposures their tracking callbacks report (`POST /v1/exposures`).

Client keys (`ABTEST_SDK_KEYS`) are public by design, as GrowthBook's are: they sit in web
pages and apps, name which payload to serve and grant nothing else, so the path is open to
the request guard and the endpoint answers CORS requests from any origin. The payload is
computed from the live platform (a reload changes it) and the arms stopped at run time (a
safe rollout's stop reaches SDKs at their next refresh); it is cacheable: a strong ETag, and
`If-None-Match` gets a 304.

A reported exposure is checked, never trusted: the server recomputes the unit's arm from the
unit and its attributes and refuses a mismatch (422, counted in
`abtest_client_exposure_mismatches_total`), so a stale payload or a tampered client cannot
put units into the analysis under the wrong arm. Stored exposures carry their `source`
(`sdk` by default) and are idempotent by `event_id`.
"""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from abtest.api.errors import ERRORS, ApiError
from abtest.api.models import Attributes, StrictIn, UnitId
from abtest.api.security import matches_key
from abtest.api.state import ServicesDep
from abtest.sdk_payload import payload_etag, sdk_payload
from abtest.tracking import client_arm_mismatch, exposure

sdk_router = APIRouter(tags=["sdk"], responses=ERRORS)


class ClientExposureIn(StrictIn):
    """What a GrowthBook SDK's tracking callback sees: the experiment (its `key`), the unit
    and its attributes, and the arm it chose (the variation value's `arm`)."""

    experiment_id: str = Field(min_length=1, max_length=128)
    unit_id: UnitId
    arm: str = Field(min_length=1, max_length=128)
    attributes: Attributes = Field(default_factory=dict)
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="makes a resent report idempotent (default: a new uuid)",
    )
    source: str = Field(default="sdk", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class ClientExposureOut(BaseModel):
    experiment_id: str
    unit_id: str
    arm: str
    event_id: str
    source: str

#: How long an SDK or a CDN may reuse a payload before asking again (with its ETag).
MAX_AGE_S = 5

_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag"}


@sdk_router.get(
    "/api/features/{client_key}",
    responses={304: {"description": "not modified (If-None-Match matched the ETag)"}},
)
async def features(client_key: str, request: Request, services: ServicesDep) -> Response:
    """The GrowthBook SDK payload of every experiment (see `abtest.sdk_payload`): load it
    into any GrowthBook SDK and it assigns units exactly as `/assign` does."""
    keys = request.app.state.settings.sdk_keys
    if not keys:
        detail = "no SDK client keys are configured (ABTEST_SDK_KEYS)"
        raise ApiError(404, "unknown_client_key", detail)
    if not matches_key(client_key, keys):
        raise ApiError(404, "unknown_client_key", "unknown SDK client key")
    platform = services.platform
    stopped = {eid: platform.stopped_arms(eid) for eid in platform.experiments}
    payload = sdk_payload(platform.experiments, stopped)
    etag = payload_etag(payload)
    headers = {**_CORS, "ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE_S}"}
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return Response(body, media_type="application/json", headers=headers)


def _etags(header: str) -> set[str]:
    """The entity tags of an `If-None-Match` header (weak ones compare as strong here)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


@sdk_router.post("/v1/exposures")
async def client_exposure(body: ClientExposureIn, services: ServicesDep) -> ClientExposureOut:
    """Record an exposure a client saw (e.g. a GrowthBook SDK's tracking callback): the
    server recomputes the arm from the unit and attributes and refuses a mismatch (422)."""
    platform = services.platform
    experiment_id = body.experiment_id
    platform.router.experiment(experiment_id)
    assignment = platform.assign(experiment_id, body.unit_id, body.attributes)
    problem = client_arm_mismatch(assignment, body.arm)
    if problem is not None:
        services.telemetry.client_exposure_mismatches.labels(experiment_id).inc()
        raise ApiError(422, "arm_mismatch", f"{experiment_id}: {problem}")
    event_id = body.event_id or uuid.uuid4().hex
    fingerprint = platform.fingerprint(experiment_id, assignment.arm)
    event = exposure(
        assignment,
        body.unit_id,
        f"{body.source}:{event_id}",
        platform.definition_shas[experiment_id],
        fingerprint,
        source=body.source,
        event_id=event_id,
    )
    assert event is not None  # in the experiment: checked above
    await services.event_log.append([event])
    services.telemetry.exposures_accepted.inc()
    await services.record_manifest(experiment_id, fingerprint, assignment.arm)
    return ClientExposureOut(
        experiment_id=experiment_id,
        unit_id=body.unit_id,
        arm=assignment.arm,
        event_id=event_id,
        source=body.source,
    )
