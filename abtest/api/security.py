"""Keys: who may call what, compared in constant time.

Three kinds of key (`abtest.settings`): API keys (ingest and read), admin keys (also
`/v1/admin/*`) and viewer keys (read-only: the dashboard and GET requests on experiments).
Scripts send a key as `Authorization: Bearer <key>`; the dashboard's browser sends it in the
`abtest_key` cookie that the login form sets (HttpOnly, SameSite=Strict, Path=/ui), which is
honoured on `/ui` paths only, so a page elsewhere cannot borrow it.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from starlette.requests import cookie_parser

from abtest.api.errors import ApiError
from abtest.settings import Settings

OPEN_PATHS = frozenset({"/health", "/health/ready", "/ui/login", "/ui/logout"})
"""What a load balancer or Kubernetes probes, and the dashboard's login and logout, without
a key."""

OPEN_PREFIXES = ("/ui/static/", "/api/features/")
"""The dashboard's script and style sheet (nothing secret, and the login page needs them),
and the GrowthBook SDK payload, whose client key is in its path (`abtest.api.sdk`)."""

DASHBOARD = "/ui"
DASHBOARD_API = "/ui/api/"
"""The dashboard's JSON (what its pages poll): refused with JSON, never redirected."""

KEY_COOKIE = "abtest_key"
"""The cookie the login form sets and the dashboard's requests carry."""

READ_METHODS = frozenset({"GET", "HEAD"})


class LoginRequired(ApiError):
    """A dashboard page asked for without a valid key: the browser goes to the login form,
    which sends it back to `next` once a key is accepted."""

    def __init__(self, next_path: str):
        super().__init__(303, "login_required", "log in with a key to see the dashboard")
        self.location = f"{DASHBOARD}/login?next={quote(next_path, safe='/')}"


def any_keys(settings: Settings) -> bool:
    """Whether any key is configured; with none the service is open (local development)."""
    return bool(settings.api_keys or settings.admin_keys or settings.viewer_keys)


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def matches_key(token: str, keys: frozenset[str]) -> bool:
    """Constant-time membership: every key is compared, whatever matches first."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode(), key.encode())
    return found


def cookie_key(cookie: str) -> str | None:
    """The key in a `Cookie` header's `abtest_key`, or None."""
    return cookie_parser(cookie).get(KEY_COOKIE) or None


def can_view(key: str, settings: Settings) -> bool:
    """Whether `key` may see the dashboard: any viewer, API or admin key."""
    return matches_key(key, settings.viewer_keys | settings.api_keys | settings.admin_keys)


def is_open(path: str) -> bool:
    """Paths answered without a key, whatever is configured."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _is_dashboard(path: str) -> bool:
    return path == DASHBOARD or path.startswith(DASHBOARD + "/")


def _viewer_may_read(path: str) -> bool:
    """The `/v1` reads a viewer key allows: the experiments and their results. Not `assign`,
    whose GET form logs an exposure: a read-only key must not write events."""
    experiments = "/v1/experiments"
    if path != experiments and not path.startswith(experiments + "/"):
        return False
    return not path.endswith("/assign")


def authorize(
    path: str, method: str, authorization: str, cookie: str, settings: Settings
) -> ApiError | None:
    """The refusal for a request, or None to let it through.

    The probes, the dashboard's login and its static files are open. With no key configured
    at all the service is open. `/v1/admin/*` needs an admin key; a viewer key may only GET
    the dashboard and `/v1/experiments*` (not `assign`, which logs an exposure); every other
    path needs an API or admin key. A dashboard page without a valid key answers with
    `LoginRequired` (a redirect to the login form); its JSON with 401 or 403.
    """
    if is_open(path) or not any_keys(settings):
        return None
    if _is_dashboard(path):
        return _authorize_dashboard(path, method, authorization, cookie, settings)
    token = _bearer(authorization)
    if token is None:
        return ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <key>)")
    if path.startswith("/v1/admin/"):
        if matches_key(token, settings.admin_keys):
            return None
        return ApiError(403, "forbidden", "an admin key is required")
    if matches_key(token, settings.api_keys | settings.admin_keys):
        return None
    if matches_key(token, settings.viewer_keys):
        if method in READ_METHODS and _viewer_may_read(path):
            return None
        return ApiError(
            403, "forbidden", "a viewer key is read-only: GET /ui and /v1/experiments only"
        )
    return ApiError(403, "forbidden", "this key is not valid for the API")


def _authorize_dashboard(
    path: str, method: str, authorization: str, cookie: str, settings: Settings
) -> ApiError | None:
    token = _bearer(authorization) or cookie_key(cookie)
    if token is not None and matches_key(token, settings.api_keys | settings.admin_keys):
        return None
    if token is not None and matches_key(token, settings.viewer_keys):
        if method in READ_METHODS:
            return None
        return ApiError(403, "forbidden", "a viewer key is read-only")
    if not path.startswith(DASHBOARD_API):
        return LoginRequired(path)
    if token is None:
        return ApiError(401, "unauthorized", "log in at /ui/login (or send a bearer key)")
    return ApiError(403, "forbidden", "this key is not valid for the dashboard")
