"""The app: `create_app` and its lifespan, which builds everything onto `app.state` once."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from abtest.api.arm_states import refresh_forever, refresh_once
from abtest.api.dashboard import install_dashboard
from abtest.api.errors import ApiError, install_error_handlers
from abtest.api.middleware import RequestGuard
from abtest.api.routes import admin_router, experiments_router, outcomes_router, service_router
from abtest.api.sdk import sdk_router
from abtest.api.state import load_platform, reload_platform
from abtest.events import AckPolicy, EventLog
from abtest.judging import JudgeThread, RunsLog
from abtest.platform import Platform
from abtest.settings import Settings, get_settings
from abtest.state_store import ManifestRecorder
from abtest.telemetry import Telemetry

logger = logging.getLogger("abtest.api")


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
    client = await store.connect_async(url)
    app.state.redis = client
    app.state.manifests = ManifestRecorder()
    event_log = EventLog(
        client,
        settings.spool_path,
        maxlen=settings.stream_maxlen,
        ack=AckPolicy.from_settings(settings),
    )
    await event_log.start()
    app.state.platform = platform
    app.state.event_log = event_log
    app.state.runs_log = RunsLog(
        client,
        max_len=settings.runs_max_len,
        store_inputs=settings.runs_store_inputs,
        counter=app.state.telemetry.runs_logged,
    )
    app.state.telemetry.watch_event_log(event_log)
    await refresh_once(app)
    background = [asyncio.create_task(refresh_forever(app, settings.state_refresh_s))]
    if settings.monitor == "on":
        from abtest.monitor import Monitor, monitor_forever

        monitor = Monitor(store.sync_client(url), lambda: app.state.platform.experiments)
        background.append(asyncio.create_task(monitor_forever(monitor)))
    app.state.background = background
    app.state.judge = _start_judge(app, settings, url)
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
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await _stop_judge(app)
        await app.state.runs_log.close()
        await event_log.close()
        await store.close_async_client(client)


def _start_judge(app: FastAPI, settings: Settings, url: str) -> JudgeThread | None:
    """The online judges' worker on a thread of its own, unless ABTEST_JUDGE=off or no loaded
    experiment has online judges (an experiment that gains them by a reload is judged from
    the next start, or by `abtest judge`)."""
    from abtest import store
    from abtest.judging import JudgeWorker, judged_experiments
    from abtest.llm import LLMClient

    if settings.judge == "off" or not judged_experiments(app.state.platform.experiments):
        return None
    llm_client = LLMClient(settings=settings) if settings.llm_configured else None
    worker = JudgeWorker(
        store.sync_client(url),
        lambda: app.state.platform.experiments,
        llm_client,
        settings=settings,
        prompt_registry=app.state.prompt_registry,
        verdicts=app.state.telemetry.judge_verdicts,
    )
    return JudgeThread(worker).start()


async def _stop_judge(app: FastAPI) -> None:
    """Stop the judge worker (after its current batch) and close its model client."""
    judge: JudgeThread | None = app.state.judge
    if judge is None:
        return
    if not await asyncio.to_thread(judge.stop):
        logger.warning("the judge worker did not stop in time; it ends with the process")
    elif judge.worker.llm_client is not None:
        judge.worker.llm_client.close()


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


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at `/docs` with its assets served from the installed `swagger-ui-bundle`
    package, so the page works on a machine without internet (FastAPI's default loads them
    from a CDN). ReDoc, which has no packaged assets, is not served."""
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    """The service. `settings` default to the environment; `platform` (tests, the demo)
    replaces loading the experiment files at start-up."""
    app = FastAPI(
        title="abtest",
        summary="Prompt A/B experiments: assignment, flow runs, exposures and outcomes.",
        version="0.1.0",
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _offline_docs(app)
    app.state.settings = settings or get_settings()
    app.state.platform_override = platform
    app.state.telemetry = Telemetry()
    install_error_handlers(app)
    app.openapi = _errors_are_json(app)  # type: ignore[method-assign]
    for router in (experiments_router, outcomes_router, service_router, admin_router):
        app.include_router(router)
    app.include_router(sdk_router)
    install_dashboard(app)
    app.add_middleware(RequestGuard, settings=app.state.settings)
    return app
