"""The one way the platform calls an LLM: the official ``openai`` SDK, plus retries and costs.

Everything that talks to a model (prompt flows, the demo, benchmarks) goes through
:class:`LLMClient`, so usage, latency and cost are measured identically for every variant of an
experiment, whether the endpoint is OpenAI itself or the offline stand-in in
:mod:`abtest.devtools.llm_server`.

Retries are done here, not by the SDK (the SDK clients get ``max_retries=0``): one loop decides
what is retryable (429, 408, 5xx, timeouts, connection errors), uses exponential backoff with
jitter (``backoff_base * 2**attempt``, capped at ``backoff_max``, scaled by a random factor in
[0.5, 1]; a ``Retry-After`` header raises the wait up to the cap) and turns the final failure into
an :class:`LLMError` with a ``kind``. Total attempts are ``1 + max_retries``. ``latency_ms`` of a
:class:`Completion` is the caller's wall-clock time for the whole call, retries included.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlparse

import openai

from abtest.settings import Settings
from abtest.tokens import estimate_message_tokens, estimate_tokens

__all__ = [
    "DEFAULT_PRICES",
    "Completion",
    "ErrorKind",
    "LLMClient",
    "LLMError",
    "PriceTable",
]

ErrorKind = Literal["timeout", "rate_limited", "server_error", "bad_request", "connection"]

LOCAL_API_KEY = "local"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"}

#: USD per 1M input tokens, USD per 1M output tokens.
DEFAULT_PRICES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.00),
        "local-extractive": (0.0, 0.0),
        "local-small": (0.0, 0.0),
    }
)


@dataclass(frozen=True)
class Completion:
    """One finished chat completion with what it cost (``latency_ms`` includes retries)."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    finish_reason: str
    attempts: int = 1

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMError(Exception):
    """A call that failed for good (after retries when the failure was retryable).

    ``kind`` is one of ``timeout``, ``rate_limited``, ``server_error``, ``bad_request`` (any
    non-retryable 4xx such as an unknown model, with ``status`` telling which) or
    ``connection``.
    """

    def __init__(
        self, message: str, *, kind: ErrorKind, status: int | None = None, attempts: int = 1
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: ErrorKind = kind
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class PriceTable:
    """USD per 1M input and per 1M output tokens, per model.

    Lookup is exact first, then by the longest known prefix, so dated snapshots such as
    ``gpt-4o-mini-2024-07-18`` get their family's price. Unknown models cost ``default``
    (``(0.0, 0.0)`` unless configured, e.g. with the ``"*"`` key in ``ABTEST_PRICES``).
    """

    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: DEFAULT_PRICES)
    default: tuple[float, float] = (0.0, 0.0)

    def price(self, model: str) -> tuple[float, float]:
        if model in self.prices:
            return self.prices[model]
        prefixes = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(prefixes, key=len)] if prefixes else self.default

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self.price(model)
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PriceTable:
        """The built-in prices with `ABTEST_PRICES` applied (`settings`, default: parsed
        from the environment)."""
        settings = settings or Settings.from_env()
        return cls(
            prices=MappingProxyType({**DEFAULT_PRICES, **settings.prices}),
            default=settings.default_price or (0.0, 0.0),
        )


@dataclass(frozen=True)
class _LoopClient:
    """An async SDK client, the loop it belongs to and the generator that closes it."""

    loop: asyncio.AbstractEventLoop
    client: openai.AsyncOpenAI
    guard: AsyncGenerator[None, None]


def _is_local(base_url: str) -> bool:
    return (urlparse(base_url).hostname or "") in _LOCAL_HOSTS


def _classify(exc: Exception) -> tuple[ErrorKind, int | None, bool]:
    """(kind, HTTP status, retryable) of an SDK exception."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None, True
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None, True
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return "rate_limited", status, True
        if status == 408:
            return "timeout", status, True
        if status >= 500:
            return "server_error", status, True
        return "bad_request", status, False
    return "server_error", None, False


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers[name]) / scale
        except (KeyError, TypeError, ValueError):
            continue
    return None


class LLMClient:
    """Chat completions through the ``openai`` SDK with retries, usage, latency and cost.

    The sync SDK client is built once and shared by all threads (it is thread-safe and
    pools connections). The async SDK client is built once *per event loop* and reused: an
    ``httpx`` async connection pool is bound to the loop that opened its connections, so one
    client shared by two loops (e.g. two ``asyncio.run`` calls) fails with "Event loop is
    closed". In the usual one-loop program that means exactly one async client. Each async
    client is closed on its own loop when that loop shuts down (via an async-generator guard
    that ``asyncio.run`` finalizes) or by :meth:`aclose`.

    Configuration falls back to ``settings`` (default: parsed from the environment,
    ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``ABTEST_PRICES``); with no key and a local base
    URL the key ``"local"`` is used, so :mod:`abtest.devtools.llm_server` works out of the box.
    A bad ``ABTEST_PRICES`` fails here, early, with ``PriceConfigError``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        prices: PriceTable | None = None,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        settings: Settings | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if base_url is None or api_key is None or prices is None:
            settings = settings or Settings.from_env()
        self.base_url = base_url or (settings.openai_base_url if settings else None)
        key = api_key or (settings.openai_api_key if settings else None)
        if not key:
            if self.base_url is None or not _is_local(self.base_url):
                raise ValueError(
                    "no API key: pass api_key or set OPENAI_API_KEY "
                    "(only a local OPENAI_BASE_URL works without one)"
                )
            key = LOCAL_API_KEY
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.prices = prices if prices is not None else PriceTable.from_settings(settings)
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0
        )
        self._api_key = key
        self._aclients: dict[int, _LoopClient] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()

    # -- public API ------------------------------------------------------------------------

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Completion:
        """One chat completion, retried on transient failures; raises :class:`LLMError`."""
        request = self._request(messages, model, temperature, max_tokens, extra_headers)
        started = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.chat.completions.create(**request)
            except openai.OpenAIError as exc:
                time.sleep(self._failure_delay(exc, attempt))
                continue
            return self._completion(response, messages, model, started, attempt + 1)
        raise AssertionError("unreachable")  # _failure_delay raises on the last attempt

    async def acomplete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Completion:
        """Async twin of :meth:`complete` (same retries, same errors)."""
        request = self._request(messages, model, temperature, max_tokens, extra_headers)
        client = await self._async_client()
        started = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.chat.completions.create(**request)
            except openai.OpenAIError as exc:
                await asyncio.sleep(self._failure_delay(exc, attempt))
                continue
            return self._completion(response, messages, model, started, attempt + 1)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release the sync client's connections.

        Async connections can only be closed on their own loop: that happens when the loop
        shuts down, or earlier with :meth:`aclose`.
        """
        self._client.close()

    async def aclose(self) -> None:
        """Release the sync client and the current loop's async client."""
        self._client.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(id(loop))
        if entry is not None and entry.loop is loop:
            await entry.guard.aclose()  # closes the client and forgets it

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals -------------------------------------------------------------------------

    async def _async_client(self) -> openai.AsyncOpenAI:
        """The running loop's async SDK client, built on first use in that loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(id(loop))
            if entry is not None and entry.loop is loop:
                return entry.client
            for key, stale in list(self._aclients.items()):
                if stale.loop.is_closed():  # loop closed without finalizing async generators
                    del self._aclients[key]
            client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=0
            )
            entry = _LoopClient(loop, client, self._close_with_loop(id(loop), client))
            self._aclients[id(loop)] = entry
        # Start the guard generator: the loop now tracks it and finalizes it when it shuts
        # down (``asyncio.run`` calls ``shutdown_asyncgens``), closing the client on its loop.
        await anext(entry.guard)
        return client

    async def _close_with_loop(
        self, loop_id: int, client: openai.AsyncOpenAI
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._aclients.get(loop_id)
                if entry is not None and entry.client is client:
                    del self._aclients[loop_id]
            await client.close()

    @staticmethod
    def _request(
        messages: list[dict[str, Any]],
        model: str,
        temperature: float,
        max_tokens: int | None,
        extra_headers: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
        }
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        if extra_headers:
            request["extra_headers"] = dict(extra_headers)
        return request

    def _failure_delay(self, exc: openai.OpenAIError, attempt: int) -> float:
        """Seconds to wait before the next attempt, or raise :class:`LLMError` if none."""
        kind, status, retryable = _classify(exc)
        if not retryable or attempt >= self.max_retries:
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise LLMError(detail, kind=kind, status=status, attempts=attempt + 1) from exc
        with self._lock:
            jitter = 0.5 + 0.5 * self._rng.random()
        delay = min(self.backoff_max, self.backoff_base * 2**attempt) * jitter
        hinted = _retry_after(exc)
        if hinted is not None:
            delay = min(self.backoff_max, max(delay, hinted))
        return delay

    def _completion(
        self,
        response: Any,
        messages: list[dict[str, Any]],
        model: str,
        started: float,
        attempts: int,
    ) -> Completion:
        latency_ms = (time.perf_counter() - started) * 1000.0
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice is not None else None) or ""
        usage = response.usage
        if usage is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:  # endpoint without usage reporting: fall back to the offline estimate
            prompt_tokens = estimate_message_tokens(messages)
            completion_tokens = estimate_tokens(text)
        served_model = response.model or model
        return Completion(
            text=text,
            model=served_model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.prices.cost(served_model, prompt_tokens, completion_tokens),
            latency_ms=latency_ms,
            finish_reason=(choice.finish_reason if choice is not None else None) or "stop",
            attempts=attempts,
        )
