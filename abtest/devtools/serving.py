"""Run an ASGI app under uvicorn in a background thread (tests, the demo, local defaults).

The socket is bound here before the thread starts, so `port=0` picks a free port with no race
between choosing and binding, and the call returns only once the app answers HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import httpx
import uvicorn


class ServerHandle:
    """A server running in a daemon thread; `root_url` is its `http://host:port`."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int):
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/v1"

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit and wait for the thread (idempotent)."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerHandle(root_url={self.root_url!r})"


def serve_app_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready_path: str = "/",
    lifespan: Literal["on", "off", "auto"] = "on",
    startup_timeout: float = 10.0,
    name: str = "abtest-server",
) -> ServerHandle:
    """Serve `app` in a daemon thread; return once `GET ready_path` answers 200."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    url_host = f"[{host}]" if ":" in host else host
    handle = ServerHandle(server, thread, url_host, sock.getsockname()[1])
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"{name} exited during startup")
        if server.started:
            try:
                if httpx.get(handle.root_url + ready_path, timeout=1.0).status_code == 200:
                    return handle
            except httpx.HTTPError:
                pass
        time.sleep(0.02)
    handle.stop()
    raise RuntimeError(f"{name} did not start within {startup_timeout}s")
