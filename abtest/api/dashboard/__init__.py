"""The live dashboard at `/ui`: experiments, live results, guardrails, prompts per arm and the
audit log, for people who read results rather than call the API (DESIGN.md, Safe rollouts and
the dashboard).

Server-rendered from the same analysis as `GET /v1/experiments/{id}/results`; a little plain
JavaScript polls `/ui/api/...` and swaps in fresh sections. Its script and style sheet are
served from this package (`static/`), so it works without internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from abtest.api.dashboard.reading import ResultCache
from abtest.api.dashboard.routes import dashboard_router

__all__ = ["install_dashboard"]

STATIC = Path(__file__).parent / "static"


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes and static files to `app`, with its cache of analyses."""
    app.state.dashboard_results = ResultCache()
    app.include_router(dashboard_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="dashboard-static")
