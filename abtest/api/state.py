"""The service's live state on `app.state`, handed to routes, and the platform it serves.

A reload builds a new platform beside the live one and swaps a single reference: requests in
flight finish on the definitions they started with, and a file set that fails validation
never replaces what is live.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from abtest.api.errors import ApiError
from abtest.events import EventLog
from abtest.experiments import ExperimentFileError
from abtest.fingerprints import PromptRecord
from abtest.flows import FlowConfigError
from abtest.judging.runs_log import RunsLog
from abtest.platform import Platform, platform_options
from abtest.settings import Settings
from abtest.state_store import ManifestRecorder
from abtest.telemetry import Telemetry

logger = logging.getLogger("abtest.api")


@dataclass(frozen=True, slots=True)
class Services:
    """What a route needs, read from `app.state` at the start of the request (a reload swaps
    the platform between requests, never during one)."""

    platform: Platform
    event_log: EventLog
    telemetry: Telemetry
    redis_url: str
    redis: Any
    manifests: ManifestRecorder
    runs_log: RunsLog

    async def record_manifest(
        self,
        experiment_id: str,
        fingerprint: str,
        arm: str,
        prompts: Mapping[str, PromptRecord] | None = None,
    ) -> None:
        """Write the fingerprint's prompts once (see `abtest.fingerprints`): a run's own
        templates, or for an assignment the ones the arm resolves to now, from which its
        fingerprint was just computed."""
        if prompts is None:
            prompts = self.platform.flows.prompts(experiment_id, arm)
        await self.manifests.record(self.redis, experiment_id, fingerprint, arm, prompts)


def services_of(state: Any) -> Services:
    """The services on an app's `state` (routes that cannot take the dependency use it)."""
    return Services(
        state.platform,
        state.event_log,
        state.telemetry,
        state.redis_url,
        state.redis,
        state.manifests,
        state.runs_log,
    )


async def get_services(request: Request) -> Services:
    return services_of(request.app.state)


ServicesDep = Annotated[Services, Depends(get_services)]


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


def load_platform(settings: Settings, prompt_registry: Any) -> Platform:
    """The experiment files' platform, configured by the settings (`platform_options`)."""
    return Platform.load(
        settings.experiments_dir, prompt_registry=prompt_registry, **platform_options(settings)
    )
