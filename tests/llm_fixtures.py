"""Reusable fixtures for the local OpenAI-compatible model server
(:mod:`abtest.devtools.llm_server`).

Register with ``pytest_plugins = ["tests.llm_fixtures"]`` or import the fixtures by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from abtest.devtools.llm_server import ServerHandle, serve_in_thread
from abtest.llm import LLMClient


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ServerHandle]:
    """One real uvicorn server on a free port for the whole session (``.base_url`` ends in /v1)."""
    with serve_in_thread() as handle:
        yield handle


@pytest.fixture
def llm_client(llm_server: ServerHandle) -> Iterator[LLMClient]:
    """An :class:`LLMClient` on the session server with millisecond backoff (fast retry tests)."""
    client = LLMClient(base_url=llm_server.base_url, api_key="local", backoff_base=0.005)
    yield client
    client.close()


@pytest.fixture(scope="session")
def session_llm_client(llm_server: ServerHandle) -> Iterator[LLMClient]:
    """One :class:`LLMClient` on the session server, shared by the flow tests."""
    with LLMClient(base_url=llm_server.base_url) as client:
        yield client


def stdout_per_hash_seed(script: str, seeds: tuple[str, ...] = ("1", "8")) -> set[str]:
    """What `script` prints in a fresh interpreter under each `PYTHONHASHSEED` (from the
    repository root): one element when its output does not depend on set or dict order."""
    root = Path(__file__).resolve().parents[1]
    return {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in seeds
    }
