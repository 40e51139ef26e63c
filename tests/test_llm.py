"""LLMClient over the real ``openai`` SDK and real HTTP against the local model server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from abtest.llm import Completion, LLMClient, LLMError, PriceTable
from abtest.settings import PriceConfigError
from abtest.tokens import estimate_message_tokens, estimate_tokens

MESSAGES = [
    {"role": "system", "content": "You summarize product reviews for a busy shopper."},
    {
        "role": "user",
        "content": (
            "Summarize the review in at most 30 words.\n\nReview:\n"
            "The headphones arrived quickly and the packaging was excellent. "
            "Sound quality is rich, with deep bass and clear vocals. "
            "Battery life easily lasts three long flights. "
            "The ear cushions get warm after an hour, which is a minor complaint. "
            "For the price, these headphones are a great choice."
        ),
    },
]


def _key() -> str:
    return uuid.uuid4().hex


def _fail_first(times: int, status: str = "500") -> dict[str, str]:
    """Headers making the server fail the first ``times`` attempts of this one request."""
    return {"x-fail": status, "x-fail-count": str(times), "x-request-key": _key()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_complete_returns_text_usage_and_cost(llm_client: LLMClient) -> None:
    result = llm_client.complete(MESSAGES, model="gpt-4o-mini")
    assert isinstance(result, Completion)
    assert result.text and result.model == "gpt-4o-mini" and result.finish_reason == "stop"
    assert result.prompt_tokens == estimate_message_tokens(MESSAGES)
    assert result.completion_tokens == estimate_tokens(result.text)
    expected = (result.prompt_tokens * 0.15 + result.completion_tokens * 0.60) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert result.cost_usd > 0
    assert result.latency_ms > 0 and result.attempts == 1


def test_acomplete_matches_complete(llm_client: LLMClient) -> None:
    sync = llm_client.complete(MESSAGES, model="gpt-4o")
    first = asyncio.run(llm_client.acomplete(MESSAGES, model="gpt-4o"))
    second = asyncio.run(llm_client.acomplete(MESSAGES, model="gpt-4o"))  # a new event loop
    for result in (first, second):
        assert (result.text, result.prompt_tokens, result.completion_tokens) == (
            sync.text,
            sync.prompt_tokens,
            sync.completion_tokens,
        )
        expected = (result.prompt_tokens * 2.50 + result.completion_tokens * 10.00) / 1e6
        assert result.cost_usd == pytest.approx(expected)


def test_local_model_is_free_and_max_tokens_is_passed(llm_client: LLMClient) -> None:
    result = llm_client.complete(MESSAGES, model="local-extractive", max_tokens=4)
    assert result.cost_usd == 0.0
    assert result.finish_reason == "length" and result.completion_tokens <= 4


def test_concurrent_async_and_threaded_calls(llm_client: LLMClient) -> None:
    async def many() -> list[Completion]:
        calls = [llm_client.acomplete(MESSAGES, model="gpt-4o-mini") for _ in range(16)]
        return await asyncio.gather(*calls)

    async_results = asyncio.run(many())
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [
            pool.submit(llm_client.complete, MESSAGES, model="gpt-4o-mini") for _ in range(16)
        ]
        thread_results = [f.result() for f in futures]
    assert len({r.text for r in async_results + thread_results}) == 1


@pytest.mark.parametrize("status", ["500", "429", "503"])
def test_transient_failures_are_retried(llm_client: LLMClient, status: str) -> None:
    headers = _fail_first(2, status)
    result = llm_client.complete(MESSAGES, model="gpt-4o-mini", extra_headers=headers)
    assert result.attempts == 3 and result.text


def test_async_retries(llm_client: LLMClient) -> None:
    call = llm_client.acomplete(MESSAGES, model="gpt-4o-mini", extra_headers=_fail_first(3))
    result = asyncio.run(call)
    assert result.attempts == 4  # 1 + max_retries


def test_persistent_server_error_raises_after_retries(llm_client: LLMClient) -> None:
    with pytest.raises(LLMError) as info:
        llm_client.complete(MESSAGES, model="gpt-4o-mini", extra_headers={"x-fail": "500"})
    assert info.value.kind == "server_error"
    assert info.value.status == 500
    assert info.value.attempts == 1 + llm_client.max_retries


def test_persistent_rate_limit_is_reported_as_such(llm_server) -> None:
    client = LLMClient(base_url=llm_server.base_url, max_retries=1, backoff_base=0.001)
    with pytest.raises(LLMError) as info:
        asyncio.run(
            client.acomplete(MESSAGES, model="gpt-4o-mini", extra_headers={"x-fail": "429"})
        )
    assert (info.value.kind, info.value.status, info.value.attempts) == ("rate_limited", 429, 2)


def test_client_errors_are_not_retried(llm_client: LLMClient) -> None:
    with pytest.raises(LLMError) as info:
        llm_client.complete(MESSAGES, model="no-such-model")
    assert (info.value.kind, info.value.status, info.value.attempts) == ("bad_request", 404, 1)


def test_timeout_raises_timeout_error(llm_server) -> None:
    client = LLMClient(base_url=llm_server.base_url, timeout=0.3, max_retries=1, backoff_base=0.001)
    started = time.perf_counter()
    with pytest.raises(LLMError) as info:
        client.complete(MESSAGES, model="gpt-4o-mini", extra_headers={"x-fail": "timeout"})
    assert info.value.kind == "timeout" and info.value.attempts == 2
    assert time.perf_counter() - started < 3.0
    with pytest.raises(LLMError) as async_info:
        asyncio.run(
            client.acomplete(MESSAGES, model="gpt-4o-mini", extra_headers={"x-fail": "timeout"})
        )
    assert async_info.value.kind == "timeout"
    client.close()


def test_connection_refused_is_a_connection_error() -> None:
    client = LLMClient(
        base_url=f"http://127.0.0.1:{_free_port()}/v1", max_retries=1, backoff_base=0.001
    )
    with pytest.raises(LLMError) as info:
        client.complete(MESSAGES, model="gpt-4o-mini")
    assert info.value.kind == "connection" and info.value.attempts == 2


def test_environment_configuration(llm_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ABTEST_PRICES", raising=False)
    with LLMClient() as client:  # local base URL: works without an API key
        assert client.complete(MESSAGES, model="gpt-4o-mini").text
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        LLMClient()


def test_prices_from_env_inline_and_file(
    llm_server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ABTEST_PRICES", json.dumps({"gpt-4o-mini": [1000.0, 2000.0]}))
    client = LLMClient(base_url=llm_server.base_url)
    result = client.complete(MESSAGES, model="gpt-4o-mini")
    expected = (result.prompt_tokens * 1000 + result.completion_tokens * 2000) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert client.prices.price("gpt-4o") == (2.50, 10.00)  # untouched defaults remain

    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps({"*": {"input": 1, "output": 3}}))
    monkeypatch.setenv("ABTEST_PRICES", str(price_file))
    table = PriceTable.from_settings()
    assert table.price("some-new-model") == (1.0, 3.0)
    assert table.cost("some-new-model", 1_000_000, 1_000_000) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["gpt-4o", 1, 2]', "must be a JSON object"),
        ('{"gpt-4o": [1]}', "gpt-4o"),
        ('{"gpt-4o": [-1, 2]}', "non-negative"),
        ('{"gpt-4o": "cheap"}', "gpt-4o"),
        ("/no/such/prices.json", "cannot read"),
    ],
)
def test_bad_price_env_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("ABTEST_PRICES", value)
    with pytest.raises(PriceConfigError, match="ABTEST_PRICES") as info:
        LLMClient(base_url="http://127.0.0.1:9/v1")
    assert message in str(info.value)


def test_a_bad_price_setting_stops_every_command_at_start_up(monkeypatch) -> None:
    from typer.testing import CliRunner

    from abtest.cli import app

    monkeypatch.setenv("ABTEST_PRICES", '{"gpt-4o": "cheap"}')
    result = CliRunner().invoke(app, ["assign", "pdf-summary-prompts", "u1"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ABTEST_PRICES: price of 'gpt-4o' in inline JSON")
    assert "Traceback" not in result.output


def test_price_table_lookup() -> None:
    table = PriceTable()
    assert table.price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # dated snapshot -> family
    assert table.price("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert table.price("unknown-model") == (0.0, 0.0)
    assert table.cost("gpt-4o", 2_000_000, 1_000_000) == pytest.approx(15.0)
