"""An offline LLM client for the validation dry run: every prompt renders and every node runs
before anything is deployed, with no network and no cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from abtest.llm import Completion, LLMClient
from abtest.tokens import estimate_message_tokens, estimate_tokens, message_text

STUB_MODEL_NOTE = "offline stub"


class StubLLMClient(LLMClient):
    """Answers every call with a short, deterministic echo of the last message.

    Flows must cope with any model text (models do not always follow instructions), so a flow
    that fails on this answer would fail on a real model some day too.
    """

    def __init__(self) -> None:  # no SDK client, no endpoint, no key
        pass

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Completion:
        last = message_text(messages[-1].get("content")) if messages else ""
        text = f"({STUB_MODEL_NOTE}) " + " ".join(last.split()[:24])
        return Completion(
            text=text,
            model=model,
            prompt_tokens=estimate_message_tokens(messages),
            completion_tokens=estimate_tokens(text),
            cost_usd=0.0,
            latency_ms=0.0,
            finish_reason="stop",
        )

    async def acomplete(self, messages: list[dict[str, Any]], **options: Any) -> Completion:
        return self.complete(messages, **options)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
