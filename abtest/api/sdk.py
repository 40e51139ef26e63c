"""The GrowthBook SDKs' side of the API: the payload they load (`GET /api/features/{key}`).

Client keys (`ABTEST_SDK_KEYS`) are public by design, as GrowthBook's are: they sit in web
pages and apps, name which payload to serve and grant nothing else, so the path is open to
the request guard and the endpoint answers CORS requests from any origin. The payload is
computed from the live platform (a reload changes it) and the arms stopped at run time (a
safe rollout's stop reaches SDKs at their next refresh); it is cacheable: a strong ETag, and
`If-None-Match` gets a 304.
"""

from __future__ import annotations

import hmac
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from abtest.api.errors import ApiError
from abtest.api.state import ServicesDep
from abtest.sdk_payload import payload_etag, sdk_payload

sdk_router = APIRouter(tags=["sdk"])

#: How long an SDK or a CDN may reuse a payload before asking again (with its ETag).
MAX_AGE_S = 5

_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag"}


def _known(key: str, keys: frozenset[str]) -> bool:
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


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
    if not _known(client_key, keys):
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
