"""Errors as the API answers them: one JSON shape, `{"error", "detail"}`, for every refusal.

Domain errors become HTTP responses in one place (`install_error_handlers`): bad input is
always a 4xx naming the problem, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from abtest.router import UnknownExperimentError

logger = logging.getLogger("abtest.api")

RETRY_AFTER_S = 5
"""What a 503 asks the client to wait, in seconds."""


class ApiError(Exception):
    """A request the service refuses, with its HTTP status and a message for the client."""

    def __init__(self, status: int, error: str, detail: Any):
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(str(detail))


class ErrorOut(BaseModel):
    error: str
    detail: Any


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 413, 422)
}


def validation_detail(errors: list[Any], prefix: str | None = None) -> list[dict[str, Any]]:
    detail = []
    for error in errors:
        if error.get("type") == "json_invalid":
            loc = error.get("loc", ())
            where = f" at character {loc[-1]}" if len(loc) > 1 else ""
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            detail.append({"field": "body", "message": f"malformed JSON{where}: {reason}"})
            continue
        loc = [str(part) for part in error.get("loc", ())]
        if prefix and (not loc or loc[0] != prefix):
            loc = [prefix, *loc]
        detail.append({"field": ".".join(loc), "message": error.get("msg", "invalid")})
    return detail


_BRANCHES = {"dict": "OutcomeIn", "list": "list[OutcomeIn]"}


def _one_branch(errors: list[Any], body: Any) -> list[Any]:
    """Errors of the union branch the body was meant for (object or batch), branch tag removed.

    Pydantic reports a body failing `OutcomeIn | list[OutcomeIn]` against both branches; a
    client who sent a list wants to hear about the list only.
    """
    branch = _BRANCHES.get(type(body).__name__)
    kept = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if len(loc) > 1 and loc[1] in _BRANCHES.values():
            if loc[1] != branch:
                continue
            error = {**error, "loc": (loc[0], *loc[2:])}
        kept.append(error)
    if not kept:
        message = "the body must be an outcome object or a list of 1 to 1000 outcome objects"
        kept = [{"loc": ("body",), "msg": message}]
    return kept


def _error(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(UnknownExperimentError)
    async def _unknown(request: Request, exc: UnknownExperimentError) -> JSONResponse:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _one_branch(list(exc.errors()), exc.body)
        return _error(422, "invalid_request", validation_detail(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return _error(exc.status_code, names.get(exc.status_code, "http_error"), exc.detail)

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(redis.exceptions.RedisClusterException)
    async def _store(request: Request, exc: Exception) -> JSONResponse:
        """A read that needs the store while it is unreachable, or while a cluster has no
        primary for a slot: the client should retry (writes never get here: they are
        acknowledged through the spool)."""
        store = store_name(getattr(request.app.state, "redis_url", ""))
        response = _error(
            503,
            "store_unavailable",
            f"the event store ({store}) cannot be reached: {type(exc).__name__}: {exc}",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        """A bug: logged with its traceback, answered as JSON like every other error."""
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", f"internal error: {type(exc).__name__}")


def store_name(url: str) -> str:
    """Where the store is, without credentials: `host:port` or the unix socket path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"embedded Redis at {parts.path}"
    where = parts.netloc.rsplit("@", 1)[-1]
    kind = "Redis Cluster" if parts.scheme.endswith("+cluster") else "Redis"
    return f"{kind} at {where}" if where else kind
