"""The pure ASGI middleware every request goes through: keys, body limits, metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from abtest.api.security import LoginRequired, authorize
from abtest.settings import Settings
from abtest.telemetry import Telemetry

ASGIApp = Callable[[MutableMapping[str, Any], Callable[..., Awaitable[Any]], Any], Awaitable[None]]


class RequestGuard:
    """Pure ASGI middleware: bearer keys (401/403), body size limits (413), per-route metrics.

    Keys are checked before anything is read (see `authorize`). A declared `Content-Length`
    over the limit is refused before reading; a chunked body is counted as it arrives and
    refused once over. Metrics use the route template (`/v1/experiments/{experiment_id}/
    assign`), never the raw path, to bound label values. Written as plain ASGI rather than
    FastAPI dependencies: it runs on every request, and dependencies cost more than the
    router itself.
    """

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings
        self.max_body = settings.max_body_bytes
        self.max_upload = settings.max_upload_bytes

    def _limit(self, path: str) -> int:
        return self.max_upload if path.endswith("/run") else self.max_body

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        limit = self._limit(scope["path"])

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        refusal = authorize(
            scope["path"],
            scope["method"],
            _header(scope, b"authorization"),
            _header(scope, b"cookie"),
            self.settings,
        )
        declared = _content_length(scope)
        if refusal is not None:
            where = refusal.location if isinstance(refusal, LoginRequired) else None
            await _send_json(send, refusal.status, refusal.error, refusal.detail, where)
            status["code"] = refusal.status
        elif declared is not None and declared > limit:
            await _send_json(send, 413, "too_large", f"request body over {limit} bytes")
            status["code"] = 413
        elif declared is None and scope["method"] in {"POST", "PUT", "PATCH"}:
            body = await _read_body(receive, limit)
            if body is None:
                await _send_json(send, 413, "too_large", f"request body over {limit} bytes")
                status["code"] = 413
            else:
                await self.app(scope, _replay(body), send_wrapper)
        else:
            await self.app(scope, receive, send_wrapper)
        telemetry: Telemetry | None = getattr(scope["app"].state, "telemetry", None)
        if telemetry is not None:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            telemetry.observe(
                scope["method"], template, status["code"], time.perf_counter() - started
            )


def _header(scope: MutableMapping[str, Any], wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return ""


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    try:
        return int(_header(scope, b"content-length"))
    except ValueError:
        return None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_json(
    send: Any, status: int, error: str, detail: str, location: str | None = None
) -> None:
    """The refusal as JSON; with `location`, a redirect there (a dashboard page's login)."""
    payload = json.dumps({"error": error, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if location is not None:
        headers.append((b"location", location.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
