"""Bearer keys: who may call what, compared in constant time."""

from __future__ import annotations

import hmac

from abtest.api.errors import ApiError
from abtest.settings import Settings

OPEN_PATHS = frozenset({"/health", "/health/ready"})
"""What a load balancer or Kubernetes probes, without a key."""


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

    The probes (`/health`, `/health/ready`) are open. With no key configured at all the
    service is open (local development). `/v1/admin/*` needs an admin key; every other path
    any API or admin key.
    """
    if path in OPEN_PATHS or not (settings.api_keys or settings.admin_keys):
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
