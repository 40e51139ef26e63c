"""Triage a support ticket: a flow written for the tests, outside `variants/`, using only the
public names of `abtest`. Inputs of every supported type; a `FlowInputError` for a bad
priority; a genuine bug (a division by the number of tags) for an attachment without tags."""

from typing import Any

from hamilton.function_modifiers import config, tag

from abtest import Completion, FlowInputError, LLMClient

INPUTS = ("title", "body", "priority", "threshold", "urgent", "tags", "metadata", "attachment")
FINAL_VARS = ("label", "reply", "facts")
SAMPLE_INPUTS = {
    "title": "Printer jams",
    "body": "The office printer jams on every page since the update.",
    "priority": 2,
}


def ticket(title: str, body: str, priority: int) -> str:
    """The ticket as one text; a priority outside 1..5 is the caller's mistake."""
    if not 1 <= priority <= 5:
        raise FlowInputError(f"priority must be between 1 and 5, got {priority}")
    return f"{title}\n\n{body}"


@tag(prompt_id="triage", prompt_version="v1")
@config.when(prompt_version="v1")
def triage_prompt__v1() -> str:
    """v1: pick a queue."""
    return "Answer with exactly one of: hardware, software, billing.\n\nTicket:\n{ticket}"


@tag(prompt_id="triage", prompt_version="v2")
@config.when(prompt_version="v2")
def triage_prompt__v2() -> str:
    """v2: pick a queue, tersely."""
    return (
        "Classify this ticket. Answer with one of: hardware, software, billing.\n\n"
        "{ticket}"
    )


def triage_request(triage_prompt: str, ticket: str) -> str:
    """The triage prompt with the ticket filled in."""
    return triage_prompt.replace("{ticket}", ticket)


def triage_completion(
    triage_request: str, llm_client: LLMClient, model: str = "gpt-4o-mini"
) -> Completion:
    """One LLM call."""
    return llm_client.complete([{"role": "user", "content": triage_request}], model=model)


def label(triage_completion: Completion, urgent: bool = False) -> str:
    """The queue the model picked, `urgent:` first when the caller says so."""
    words = triage_completion.text.strip().split()
    picked = words[0].strip(".,").lower() if words else "unknown"
    return f"urgent:{picked}" if urgent else picked


def reply(triage_completion: Completion) -> str:
    """The model's whole answer."""
    return triage_completion.text.strip()


def facts(
    priority: int,
    threshold: float = 0.5,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    attachment: bytes | None = None,
) -> dict[str, Any]:
    """What the flow made of the other inputs (JSON-serialisable)."""
    tags = tags or []
    size = len(attachment or b"")
    return {
        "above_threshold": priority / 5 > threshold,
        "tags": sorted(tags),
        "metadata_keys": sorted(metadata or {}),
        "attachment_bytes": size,
        "bytes_per_tag": size / len(tags) if attachment else 0,
    }
