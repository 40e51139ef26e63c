"""Answer a customer's support message: a Hamilton dataflow of three prompts (prompts as code).

message -> customer_message -> intent_prompt -> intent_completion -> intent -> knowledge_context
-> draft_prompt -> draft_completion -> draft_reply -> rewrite_prompt -> rewrite_completion -> reply.
The three templates are nodes of their own (`classify_intent_prompt`, `draft_reply_prompt`,
`rewrite_reply_prompt`), rendering each is another node, and each has versions selected by the
arm's config `prompt_version` ("v1", "v2") through `@config.when`, tagged
`prompt_id`/`prompt_version`:

- classify: v1 lists the bare labels; v2 describes each label with the words customers use;
- draft: v1 answers from the knowledge entries; v2 answers in at most two sentences, for the
  customer's tier;
- rewrite: v1 asks for a professional tone; v2 for a warm one in at most `max_reply_words`
  words, keeping what answers the message.

Inputs per run: `message` (1 to 2000 characters), `customer_tier` ("standard", "pro" or
"enterprise"; default "standard"), and `llm_client` (injected). Arm config: `prompt_version`
(required), `model` ("gpt-4o-mini"), `temperature` (0.0), `max_reply_words` (40, read by the v2
rewrite). The knowledge is `knowledge.json` beside this module, read once at import: the entries
of the message's intent, plus the tier's own entries (priority support for pro and enterprise).

LLM nodes return `Completion`s so the platform sums their usage. Every node copes with any model
text: an answer naming none of `INTENTS` is the intent "other". `customer_message` and `tier`
raise `FlowInputError` for input the flow cannot use.

The UPPER_CASE constants are the flow's contract with the platform: the run's inputs and
outputs, and a sample run for `abtest validate`; the platform finds the prompt nodes by their
`prompt_id` tag.
"""

import json
import re
from importlib import resources
from typing import Any

from hamilton.function_modifiers import config, tag

from abtest import Completion, FlowInputError, LLMClient
from variants import rendering as _rendering

INPUTS = ("message", "customer_tier")
"""What a request supplies."""

FINAL_VARS = ("reply", "intent")
"""What a run returns."""

SAMPLE_INPUTS: dict[str, Any] = {
    "message": "I was charged twice for my order this month, can you check my invoice?",
    "customer_tier": "pro",
}
"""A run `abtest validate` makes on every arm (with an offline stub model)."""

INTENTS = ("billing", "refund", "shipping", "account", "technical", "other")
"""The labels of `intent`, in the order the prompts list them."""

TIERS = ("standard", "pro", "enterprise")
"""Allowed values of `customer_tier`."""

MAX_MESSAGE_CHARS = 2000
DEFAULT_MODEL = "gpt-4o-mini"

_V1_CLASSIFY = (
    "Classify the customer's support message. Answer with exactly one of: "
    + ", ".join(INTENTS)
    + ".\n\n<message>\n{message}\n</message>"
)
_V2_CLASSIFY = (
    "You triage the messages sent to the support team of an online shop. Classify the "
    "customer's message into exactly one of these labels:\n"
    "- billing: invoices, charges, payments, cards, prices, subscriptions, receipts, statements\n"
    "- refund: refunds, money back, returns, cancellations, reimbursements\n"
    "- shipping: deliveries, orders, parcels, packages, tracking, couriers, dispatch, arrival\n"
    "- account: sign-in, login, passwords, email addresses, profiles, two-factor codes, "
    "deleting the account\n"
    "- technical: errors, bugs, crashes, freezes, the app or website not working, loading, "
    "syncing, slowness\n"
    "- other: anything else\n"
    "Answer with the label only.\n\n<message>\n{message}\n</message>"
)
_V1_DRAFT = (
    "You are a customer support agent. Answer the customer's message using only the knowledge "
    "below.\n\n<knowledge>\n{knowledge}\n</knowledge>\n\n<message>\n{message}\n</message>"
)
_V2_DRAFT = (
    "You are a customer support agent writing to a customer on the {tier} plan. Reply to the "
    "message in at most 2 sentences, using only the facts from the knowledge below that answer "
    "it.\n\n<knowledge>\n{knowledge}\n</knowledge>\n\n<message>\n{message}\n</message>"
)
_V1_REWRITE = (
    "Rewrite this support reply in a clear, professional tone. Keep every fact.\n\n"
    "<reply>\n{draft}\n</reply>"
)
_V2_REWRITE = (
    "Rewrite this support reply for a customer on the {tier} plan: warm and friendly, in at "
    "most {max_words} words. Keep the facts that answer the customer's message.\n\n"
    "<message>\n{message}\n</message>\n\n<reply>\n{draft}\n</reply>"
)


def customer_message(message: str) -> str:
    """The customer's message, stripped; refused when blank or too long."""
    text = message.strip()
    if not text:
        raise FlowInputError("message is empty: write the question to support", reason="empty")
    if len(text) > MAX_MESSAGE_CHARS:
        raise FlowInputError(
            f"message has {len(text)} characters, at most {MAX_MESSAGE_CHARS} are allowed",
            reason="too_large",
        )
    return text


def tier(customer_tier: str = "standard") -> str:
    """The customer's plan, one of `TIERS` (case and surrounding spaces ignored)."""
    value = customer_tier.strip().lower()
    if value not in TIERS:
        raise FlowInputError(
            f"customer_tier {customer_tier!r} is not one of {', '.join(TIERS)}",
            reason="unknown_tier",
        )
    return value


@tag(prompt_id="classify-intent", prompt_version="v1")
@config.when(prompt_version="v1")
def classify_intent_prompt__v1() -> str:
    """v1: the bare list of labels."""
    return _V1_CLASSIFY


@tag(prompt_id="classify-intent", prompt_version="v2")
@config.when(prompt_version="v2")
def classify_intent_prompt__v2() -> str:
    """v2: every label described by the words customers use for it."""
    return _V2_CLASSIFY


def intent_prompt(classify_intent_prompt: str, customer_message: str) -> str:
    """The classification template rendered with the message."""
    return _rendering.render(classify_intent_prompt, message=customer_message)


def intent_completion(
    intent_prompt: str,
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
) -> Completion:
    """The LLM call that labels the message."""
    return _complete(llm_client, intent_prompt, model, temperature)


def intent(intent_completion: Completion) -> str:
    """The label the model answered (the first of `INTENTS` it names), else "other"."""
    return _parse_intent(intent_completion.text)


def knowledge_context(intent: str, tier: str) -> str:
    """The knowledge entries for the intent and the tier, one paragraph each."""
    return "\n\n".join(
        entry["text"]
        for entry in _KNOWLEDGE
        if entry["intent"] in (intent, "any") and tier in entry.get("tiers", TIERS)
    )


@tag(prompt_id="draft-reply", prompt_version="v1")
@config.when(prompt_version="v1")
def draft_reply_prompt__v1() -> str:
    """v1: answer from the knowledge, no length limit."""
    return _V1_DRAFT


@tag(prompt_id="draft-reply", prompt_version="v2")
@config.when(prompt_version="v2")
def draft_reply_prompt__v2() -> str:
    """v2: at most two sentences of the facts that answer the message, for the tier."""
    return _V2_DRAFT


def draft_prompt(
    draft_reply_prompt: str, customer_message: str, knowledge_context: str, tier: str
) -> str:
    """The draft template rendered with the message, the knowledge and the tier."""
    return _rendering.render(
        draft_reply_prompt, message=customer_message, knowledge=knowledge_context, tier=tier
    )


def draft_completion(
    draft_prompt: str,
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
) -> Completion:
    """The LLM call that drafts the reply."""
    return _complete(llm_client, draft_prompt, model, temperature)


def draft_reply(draft_completion: Completion) -> str:
    """The drafted reply's text."""
    return draft_completion.text.strip()


@tag(prompt_id="rewrite-reply", prompt_version="v1")
@config.when(prompt_version="v1")
def rewrite_reply_prompt__v1() -> str:
    """v1: a clear, professional tone, every fact kept."""
    return _V1_REWRITE


@tag(prompt_id="rewrite-reply", prompt_version="v2")
@config.when(prompt_version="v2")
def rewrite_reply_prompt__v2() -> str:
    """v2: warm and friendly, at most `max_reply_words` words, the facts that answer kept."""
    return _V2_REWRITE


def rewrite_prompt(
    rewrite_reply_prompt: str,
    draft_reply: str,
    customer_message: str,
    tier: str,
    max_reply_words: int = 40,
) -> str:
    """The rewrite template rendered with the draft, the message, the tier and the word limit."""
    if max_reply_words < 5:
        raise ValueError(f"max_reply_words ({max_reply_words}) must be >= 5")
    return _rendering.render(
        rewrite_reply_prompt,
        draft=draft_reply,
        message=customer_message,
        tier=tier,
        max_words=max_reply_words,
    )


def rewrite_completion(
    rewrite_prompt: str,
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
) -> Completion:
    """The LLM call that rewrites the draft."""
    return _complete(llm_client, rewrite_prompt, model, temperature)


def reply(rewrite_completion: Completion) -> str:
    """The reply shown to the customer."""
    return rewrite_completion.text.strip()


# -- helpers (not nodes) -------------------------------------------------------------------------

_LABEL_WORD = re.compile(r"\b(" + "|".join(INTENTS) + r")\b", re.IGNORECASE)


def _complete(
    llm_client: LLMClient, prompt: str, model: str, temperature: float | int
) -> Completion:
    return llm_client.complete(
        [{"role": "user", "content": prompt}], model=model, temperature=float(temperature)
    )


def _parse_intent(text: str) -> str:
    """The first label named in `text` (any case), else "other"."""
    m = _LABEL_WORD.search(text)
    return m.group(1).lower() if m else "other"


def _load_knowledge() -> list[dict[str, Any]]:
    """The entries of `knowledge.json` (`id`, `intent`, `text`, optional `tiers`)."""
    raw = resources.files(__name__).joinpath("knowledge.json").read_text(encoding="utf-8")
    return list(json.loads(raw)["entries"])


_KNOWLEDGE = _load_knowledge()
