"""A small HTTP client for applications: assign, run and report outcomes, sync and async.

`Client` and `AsyncClient` are twins over one request builder and one response reader; only
the transport differs (httpx's sync and async clients). Timeouts and retries are set in the
constructor, as the `openai` client does:

- retried: connection errors, timeouts, 429 and 502/503/504, with exponential backoff
  (`backoff * 2**attempt`, capped at 2 s; a `Retry-After` header is honoured up to the cap).
  An outcome carries a client-made `event_id`, so a retried outcome is stored once; a retried
  assignment may log the exposure twice, which the analysis dedupes by unit. A run is retried
  only when the service never saw it (a connection that could not be opened, or 503).
- not retried: other 4xx answers, raised as `ClientError` with the service's message.

Failing open, as GrowthBook's SDKs do: when the service cannot be reached, `assign` answers
the control's config with `in_experiment=False` and reason `service_unavailable`, so the
application keeps working on the default experience and nothing is logged. The control's
config is the one the client last read from `GET /v1/experiments/{id}` (fetched once per
experiment, on first use), else the `defaults` given to the constructor, else empty. A run
cannot fail open (there are no outputs to give): it raises `ServiceUnavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "AsyncClient",
    "Assignment",
    "Client",
    "ClientError",
    "RunResult",
    "ServiceUnavailable",
]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 2.0


class ClientError(Exception):
    """The service refused the request (4xx): `status`, `error` and `detail` say why."""

    def __init__(self, status: int, error: str, detail: Any):
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class ServiceUnavailable(Exception):
    """The service could not be reached, or kept failing, after every retry."""


@dataclass(frozen=True)
class Assignment:
    """A unit's arm and its config, as `GET .../assign` answers (or the fallback)."""

    experiment_id: str
    unit_id: str
    arm: str
    in_experiment: bool
    reason: str
    config: dict[str, Any]
    request_id: str = ""


@dataclass(frozen=True)
class RunResult:
    """A run as `POST .../run` answers: the outputs by name, the arm, usage and the request
    id to attach outcomes to. `error` is set when the run failed (LLM down, a flow bug)."""

    experiment_id: str
    unit_id: str
    arm: str
    in_experiment: bool
    request_id: str
    outputs: dict[str, Any]
    prompts: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None


# -- the shared request builder and response reader ---------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    idempotent: bool = True


def _assign_call(experiment_id: str, unit_id: str, attributes: Mapping[str, Any] | None) -> _Call:
    if attributes:
        body = {"unit_id": unit_id, "attributes": dict(attributes)}
        return _Call("POST", f"/v1/experiments/{experiment_id}/assign", body=body)
    return _Call("GET", f"/v1/experiments/{experiment_id}/assign", params={"unit_id": unit_id})


def _run_call(
    experiment_id: str,
    unit_id: str,
    inputs: Mapping[str, Any],
    attributes: Mapping[str, Any] | None,
) -> _Call:
    encoded = {
        name: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        for name, value in inputs.items()
    }
    body: dict[str, Any] = {"unit_id": unit_id, "inputs": encoded}
    if attributes:
        body["attributes"] = dict(attributes)
    return _Call("POST", f"/v1/experiments/{experiment_id}/run", body=body, idempotent=False)


def _outcome_call(
    experiment_id: str,
    unit_id: str,
    metric: str,
    value: float,
    request_id: str,
    event_id: str | None,
    attributes: Mapping[str, Any] | None = None,
) -> _Call:
    body: dict[str, Any] = {
        "experiment_id": experiment_id,
        "unit_id": unit_id,
        "metric": metric,
        "value": value,
        "request_id": request_id,
        "event_id": event_id or uuid.uuid4().hex,
    }
    if attributes:
        body["attributes"] = dict(attributes)
    return _Call("POST", "/v1/outcomes", body=body)


def _read(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer, `ClientError` for a 4xx. A run that failed on the
    server side (500/502 with a run body) is returned as it is: the run was recorded."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code < 400 or (
        isinstance(body, dict) and "request_id" in body and "outputs" in body
    ):
        return body
    if isinstance(body, dict):
        raise ClientError(response.status_code, body.get("error", "error"), body.get("detail"))
    raise ClientError(response.status_code, "error", response.text[:200])


def _should_retry(call: _Call, attempt: int, retries: int, outcome: Any) -> bool:
    if attempt >= retries:
        return False
    if isinstance(outcome, httpx.ConnectError):
        return True
    if isinstance(outcome, httpx.TransportError):
        return call.idempotent
    return outcome.status_code in RETRY_STATUSES and (call.idempotent or outcome.status_code == 503)


def _delay(backoff: float, attempt: int, outcome: Any) -> float:
    delay = min(MAX_BACKOFF_S, backoff * 2**attempt)
    if isinstance(outcome, httpx.Response):
        try:
            delay = max(delay, min(MAX_BACKOFF_S, float(outcome.headers.get("retry-after", 0))))
        except ValueError:
            pass
    return delay


def _unavailable(call: _Call, outcome: Any) -> ServiceUnavailable:
    what = (
        f"{type(outcome).__name__}: {outcome}"
        if isinstance(outcome, Exception)
        else f"HTTP {outcome.status_code}"
    )
    return ServiceUnavailable(f"{call.method} {call.path}: {what}")


class _Base:
    """What the twins share: configuration, the fallback configs, and building the request.

    `defaults` maps an experiment id to `{"arm": ..., "config": {...}}`: what `assign` answers
    when the service is unreachable before the client could read the experiment. `transport`
    is httpx's (for tests or proxies).
    """

    _http_class: Any = httpx.Client

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.2,
        defaults: Mapping[str, Mapping[str, Any]] | None = None,
        transport: Any = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self._controls: dict[str, tuple[str, dict[str, Any]]] = {
            experiment_id: (str(d.get("arm", "control")), dict(d.get("config", {})))
            for experiment_id, d in (defaults or {}).items()
        }
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = self._http_class(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def _remember(self, experiment_id: str, definition: Any) -> None:
        arms = (definition or {}).get("definition", {}).get("arms") or []
        if arms:
            self._controls[experiment_id] = (arms[0]["name"], dict(arms[0].get("config", {})))

    def _fallback(self, experiment_id: str, unit_id: str) -> Assignment:
        arm, config = self._controls.get(experiment_id, ("control", {}))
        return Assignment(experiment_id, unit_id, arm, False, "service_unavailable", dict(config))


def _assignment(body: Mapping[str, Any]) -> Assignment:
    return Assignment(
        experiment_id=body["experiment_id"],
        unit_id=body["unit_id"],
        arm=body["arm"],
        in_experiment=body["in_experiment"],
        reason=body["reason"],
        config=body["config"],
        request_id=body.get("request_id", ""),
    )


def _run_result(body: Mapping[str, Any]) -> RunResult:
    return RunResult(
        **{name: body[name] for name in RunResult.__dataclass_fields__ if name in body}
    )


# -- the twins ------------------------------------------------------------------------------------


class Client(_Base):
    """Synchronous client (arguments: see `_Base`). Use as a context manager, or call
    `close()`."""

    _http_class = httpx.Client

    def assign(
        self, experiment_id: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """The unit's arm and config (the service logs the exposure); fails open.
        `attributes` (a JSON object) feed the experiment's hash attribute and condition."""
        try:
            if experiment_id not in self._controls:
                self._remember(
                    experiment_id, self._send(_Call("GET", f"/v1/experiments/{experiment_id}"))
                )
            return _assignment(self._send(_assign_call(experiment_id, unit_id, attributes)))
        except ServiceUnavailable:
            return self._fallback(experiment_id, unit_id)

    def run(
        self,
        experiment_id: str,
        unit_id: str,
        inputs: Mapping[str, Any],
        attributes: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run the unit's arm on `inputs` (bytes are sent base64)."""
        return _run_result(self._send(_run_call(experiment_id, unit_id, inputs, attributes)))

    def outcome(
        self,
        experiment_id: str,
        unit_id: str,
        metric: str,
        value: float,
        *,
        request_id: str = "",
        event_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Record one outcome; returns its event id (stored once, however often retried).
        `attributes`: those the unit was assigned with, for experiments whose arms depend on
        them (the service recomputes the arm)."""
        call = _outcome_call(
            experiment_id, unit_id, metric, value, request_id, event_id, attributes
        )
        return self._send(call)["event_ids"][0]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                outcome: Any = self._http.request(
                    call.method, call.path, params=call.params, json=call.body
                )
            except httpx.TransportError as exc:
                outcome = exc
            if not _should_retry(call, attempt, self.max_retries, outcome):
                break
            time.sleep(_delay(self.backoff, attempt, outcome))
            attempt += 1
        if isinstance(outcome, Exception) or outcome.status_code in RETRY_STATUSES:
            raise _unavailable(call, outcome)
        return _read(outcome)


class AsyncClient(_Base):
    """Asynchronous twin of `Client` (same arguments, same answers, awaitable methods)."""

    _http_class = httpx.AsyncClient

    async def assign(
        self, experiment_id: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """The unit's arm and config (the service logs the exposure); fails open.
        `attributes` (a JSON object) feed the experiment's hash attribute and condition."""
        try:
            if experiment_id not in self._controls:
                definition = await self._send(_Call("GET", f"/v1/experiments/{experiment_id}"))
                self._remember(experiment_id, definition)
            return _assignment(await self._send(_assign_call(experiment_id, unit_id, attributes)))
        except ServiceUnavailable:
            return self._fallback(experiment_id, unit_id)

    async def run(
        self,
        experiment_id: str,
        unit_id: str,
        inputs: Mapping[str, Any],
        attributes: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run the unit's arm on `inputs` (bytes are sent base64)."""
        call = _run_call(experiment_id, unit_id, inputs, attributes)
        return _run_result(await self._send(call))

    async def outcome(
        self,
        experiment_id: str,
        unit_id: str,
        metric: str,
        value: float,
        *,
        request_id: str = "",
        event_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Record one outcome; returns its event id (stored once, however often retried).
        `attributes`: those the unit was assigned with, for experiments whose arms depend on
        them (the service recomputes the arm)."""
        call = _outcome_call(
            experiment_id, unit_id, metric, value, request_id, event_id, attributes
        )
        return (await self._send(call))["event_ids"][0]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                outcome: Any = await self._http.request(
                    call.method, call.path, params=call.params, json=call.body
                )
            except httpx.TransportError as exc:
                outcome = exc
            if not _should_retry(call, attempt, self.max_retries, outcome):
                break
            await asyncio.sleep(_delay(self.backoff, attempt, outcome))
            attempt += 1
        if isinstance(outcome, Exception) or outcome.status_code in RETRY_STATUSES:
            raise _unavailable(call, outcome)
        return _read(outcome)
