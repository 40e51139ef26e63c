"""Helpers for the API tests: an app on the test Redis and the local model server."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from fastapi.testclient import TestClient

from abtest.api import create_app
from abtest.event_fields import stream_key
from abtest.settings import Settings
from variants.summarization.pdfs import SAMPLE_REPORT, make_pdf

EXAMPLES = Path(__file__).parents[1] / "experiments"
EXPERIMENT = "pdf-summary-prompts"
FINAL_PROMPT = "summarize_text_from_summaries_prompt"


def experiments_copy(directory: Path) -> Path:
    """A private copy of the example experiments (tests may rewrite it), with the evaluation
    datasets beside it, where their relative paths point."""
    target = directory / "experiments"
    shutil.copytree(EXAMPLES, target)
    datasets = directory / "datasets"
    if not datasets.exists():
        shutil.copytree(EXAMPLES.parent / "datasets", datasets)
    return target


def service_settings(**overrides: Any) -> Settings:
    """The environment's settings (the test Redis, the local model server) with `overrides`."""
    return dataclasses.replace(Settings.from_env(), **overrides)


@contextmanager
def api_client(home: Path, experiments: Path = EXAMPLES, **settings: Any) -> Iterator[TestClient]:
    """A TestClient on a fresh app (lifespan run), spooling under `home`."""
    app = create_app(service_settings(experiments_dir=experiments, home=home, **settings))
    with TestClient(app) as client:
        yield client


def sample_pdf_b64() -> str:
    return base64.b64encode(make_pdf(SAMPLE_REPORT)).decode()


def run_body(unit_id: str, query: str = "What did the pilot cost?", pdf: str | None = None) -> dict:
    """A JSON run request of the summarizer experiment (the PDF base64-encoded)."""
    return {
        "unit_id": unit_id,
        "inputs": {"pdf_source": pdf or sample_pdf_b64(), "user_query": query},
    }


def stream(client: redis.Redis, kind: str, experiment: str = EXPERIMENT) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream_key(experiment, kind))]


def experiments_with_a_registry_arm(directory: Path, client: redis.Redis, *templates: str) -> Path:
    """A copy of the example experiments whose arm v2 binds its final prompt to
    `registry:final-summary@production`; `templates` are pushed as versions 1, 2... and the
    label points at version 1."""
    from abtest.prompts import PromptRegistry

    experiments = experiments_copy(directory)
    path = experiments / "pdf_summary.yaml"
    data = yaml.safe_load(path.read_text())
    data["arms"][1]["config"][FINAL_PROMPT] = "registry:final-summary@production"
    path.write_text(yaml.safe_dump(data))
    registry = PromptRegistry(client)
    for template in templates:
        registry.push("final-summary", template)
    registry.label("final-summary", "production", 1)
    return experiments


def wait_for_health(server: subprocess.Popen, port: int) -> None:
    """Wait until `abtest serve` (the process `server`) answers `/health` on `port`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "abtest serve exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("abtest serve did not become healthy")
