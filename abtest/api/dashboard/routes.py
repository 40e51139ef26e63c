"""The dashboard's routes: pages under `/ui`, the JSON they poll under `/ui/api`, the login.

Keys are checked by the request middleware (`abtest.api.security.authorize`) before a route
runs: a page without a valid key never gets here (the browser is sent to `/ui/login`), so
these routes only read and render. Pages answer errors as pages (404 for an unknown
experiment, 503 while the store is down) and the JSON as JSON, never a 500.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from abtest.api.dashboard.reading import (
    STORE_ERRORS,
    read_all,
    read_details,
    read_experiment,
)
from abtest.api.dashboard.render import html_response, page, sections
from abtest.api.dashboard.views import experiment_context, list_context, timeline_records
from abtest.api.errors import RETRY_AFTER_S, store_name
from abtest.api.security import DASHBOARD, KEY_COOKIE, any_keys, can_view
from abtest.router import UnknownExperimentError
from abtest.settings import Settings

logger = logging.getLogger("abtest.api")

POLL_MS = 3000
"""How often an open page asks for fresh numbers."""

EXPERIMENT_SECTIONS = (
    "status",
    "summary",
    "results",
    "guardrails",
    "evaluation",
    "charts",
    "traffic",
    "arms",
    "prompts",
    "audit",
)
"""The experiment page's sections, in page order; each is re-rendered when the page polls."""

LIST_SECTIONS = ("experiments",)

dashboard_router = APIRouter(prefix=DASHBOARD, tags=["dashboard"], include_in_schema=False)


def _base(request: Request) -> str:
    return request.scope.get("root_path", "") + DASHBOARD


def _chrome(request: Request, poll: str | None = None) -> dict[str, Any]:
    """What every page's frame needs: where the dashboard lives, what to poll, whether to
    offer a logout."""
    settings: Settings = request.app.state.settings
    return {
        "base": _base(request),
        "poll": poll,
        "poll_ms": POLL_MS,
        "show_logout": any_keys(settings),
    }


def _store_detail(request: Request, exc: BaseException) -> str:
    store = store_name(getattr(request.app.state, "redis_url", ""))
    return f"the event store ({store}) cannot be reached: {type(exc).__name__}: {exc}"


def _error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    html = page("error.html", title=title, detail=detail, retry=status == 503, **_chrome(request))
    response = html_response(html, status)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _store_down_json(request: Request, exc: BaseException) -> JSONResponse:
    return JSONResponse(
        {"error": "store_unavailable", "detail": _store_detail(request, exc)},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


# --- pages ----------------------------------------------------------------------------------


@dashboard_router.get("", response_class=HTMLResponse)
async def experiments_page(request: Request) -> Response:
    """Every experiment at a glance."""
    try:
        readings = await read_all(request.app.state)
    except STORE_ERRORS as exc:
        return _error_page(request, 503, "The store is unavailable", _store_detail(request, exc))
    chrome = _chrome(request, poll=f"{_base(request)}/api/experiments")
    return html_response(page("experiments.html", **list_context(readings), **chrome))


@dashboard_router.get("/experiments/{experiment_id}", response_class=HTMLResponse)
async def experiment_page(experiment_id: str, request: Request) -> Response:
    """One experiment: live results, charts, guardrails, arms, prompts and audit log."""
    try:
        context = await _experiment_context(request, experiment_id)
    except UnknownExperimentError as exc:
        return _error_page(request, 404, "No such experiment", str(exc))
    except STORE_ERRORS as exc:
        return _error_page(request, 503, "The store is unavailable", _store_detail(request, exc))
    chrome = _chrome(request, poll=f"{_base(request)}/api/experiments/{experiment_id}")
    html = page("experiment.html", sections=EXPERIMENT_SECTIONS, **context, **chrome)
    return html_response(html)


async def _experiment_context(request: Request, experiment_id: str) -> dict[str, Any]:
    state = request.app.state
    reading = await read_experiment(state, experiment_id)
    details = await read_details(state, reading.experiment)
    return {"reading": reading, "details": details, **experiment_context(reading, details)}


# --- the JSON the pages poll ------------------------------------------------------------------


@dashboard_router.get("/api/experiments")
async def experiments_json(request: Request) -> Response:
    """The list's numbers (per experiment: arms' states, units, the JSON results) and the
    list's table rendered from them."""
    try:
        readings = await read_all(request.app.state)
    except STORE_ERRORS as exc:
        return _store_down_json(request, exc)
    context = {**list_context(readings), **_chrome(request)}
    return JSONResponse(
        {
            "experiments": [
                {
                    "id": r.experiment.id,
                    "status": r.experiment.status,
                    "arms": {arm: s.as_dict() for arm, s in r.states.items()},
                    "units_per_arm": r.result.units_per_arm,
                    "results": r.results,
                }
                for r in readings
            ],
            "html": sections(LIST_SECTIONS, context),
        }
    )


@dashboard_router.get("/api/experiments/{experiment_id}")
async def experiment_json(experiment_id: str, request: Request) -> Response:
    """One experiment's numbers: `results` is exactly what `GET /v1/experiments/{id}/results`
    answers; beside it the timeline, live arm states, audit log and prompt versions, and
    `html`, the page's sections rendered from them."""
    try:
        context = await _experiment_context(request, experiment_id)
    except UnknownExperimentError as exc:
        return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)
    except STORE_ERRORS as exc:
        return _store_down_json(request, exc)
    reading, details = context["reading"], context["details"]
    return JSONResponse(
        {
            "experiment_id": experiment_id,
            "read_at": reading.read_at,
            "results": reading.results,
            "units_per_arm": reading.result.units_per_arm,
            "timeline": timeline_records(reading.result),
            "arms": {arm: s.as_dict() for arm, s in reading.states.items()},
            "audit": [entry.as_dict() for entry in details.audit],
            "prompts": {
                p.arm: {
                    "fingerprint": p.fingerprint,
                    "problem": p.problem or None,
                    "prompts": {
                        node: {"prompt_id": u.prompt_id, "version": u.version, "sha256": u.sha256}
                        for node, u in p.prompts.items()
                    },
                }
                for p in details.prompts
            },
            "html": sections(EXPERIMENT_SECTIONS, {**context, **_chrome(request)}),
        }
    )


@dashboard_router.get("/api/session")
async def session() -> dict[str, bool]:
    """200 when the request carries a key that may view (the middleware refuses it
    otherwise): the login page asks, to skip the form for a browser already logged in."""
    return {"viewer": True}


# --- login ----------------------------------------------------------------------------------


def _next_page(request: Request, wanted: str | None) -> str:
    """Where to go after logging in: a dashboard path only (never another site)."""
    base = _base(request)
    if wanted and wanted.startswith(DASHBOARD) and not wanted.startswith(("//", "/\\")):
        if "\\" not in wanted and "\n" not in wanted and "\r" not in wanted:
            return request.scope.get("root_path", "") + wanted
    return base


def _login_page(request: Request, next_path: str, error: str = "", status: int = 200) -> Response:
    settings: Settings = request.app.state.settings
    chrome = {**_chrome(request), "show_logout": False}
    html = page(
        "login.html",
        next=next_path,
        error=error,
        keys_configured=any_keys(settings),
        **chrome,
    )
    return html_response(html, status)


@dashboard_router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = DASHBOARD) -> Response:
    """The login form (open: it is how a key is given)."""
    return _login_page(request, next if next.startswith(DASHBOARD) else DASHBOARD)


@dashboard_router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = DASHBOARD,
) -> Response:
    """Check the key (constant time); a good one is kept in an HttpOnly, SameSite=Strict
    cookie scoped to the dashboard (`/ui`, which covers the JSON it polls) and the browser
    goes on to `next`; a wrong one gets the form again with 401."""
    settings: Settings = request.app.state.settings
    key = key.strip()
    if any_keys(settings) and not (key and can_view(key, settings)):
        logger.info("dashboard login refused")
        return _login_page(request, next, "That key is not valid here.", status=401)
    response = RedirectResponse(_next_page(request, next), status_code=303)
    if any_keys(settings):
        response.set_cookie(KEY_COOKIE, key, **_cookie_options(request))
    return response


@dashboard_router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the key cookie and show the login form."""
    response = RedirectResponse(f"{_base(request)}/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, **_cookie_options(request))
    return response


def _cookie_options(request: Request) -> dict[str, Any]:
    """The key cookie's scope and flags, the same when set and when deleted (a browser keeps
    a cookie whose deletion names another path): HttpOnly, SameSite=Strict, under /ui."""
    return {
        "path": _base(request),
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
    }
