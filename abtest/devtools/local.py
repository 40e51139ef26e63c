"""Embedded defaults, so a new user needs nothing installed or configured.

With neither `OPENAI_BASE_URL` nor `OPENAI_API_KEY` set, flows would call OpenAI without a key
and fail; instead the commands start the built-in OpenAI-compatible local model server in a
background thread and point the SDK at it. (Redis has its own embedded default in
`abtest.store`.)
"""

from __future__ import annotations

import os

from abtest.devtools.llm_server import ServerHandle, serve_in_thread
from abtest.settings import Settings


def llm_configured() -> bool:
    """Whether the environment names a model endpoint or a key for OpenAI."""
    return Settings.from_env().llm_configured


def ensure_llm_endpoint(**server_options: float) -> ServerHandle | None:
    """Start the local model server and export `OPENAI_BASE_URL` when nothing is configured.

    Returns the server's handle (stop it when done), or None when an endpoint was configured.
    Child processes (API workers) inherit the variable.
    """
    if llm_configured():
        return None
    handle = serve_in_thread(**server_options)
    os.environ["OPENAI_BASE_URL"] = handle.base_url
    return handle
