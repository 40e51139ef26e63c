"""Simulated customers of the support-reply flow, for the demo and the tests.

A customer sends one of `MESSAGES` (each with its true intent and the fact from
`knowledge.json` that answers it) on a plan drawn from `TIER_WEIGHTS`, reads the reply and
gives a thumbs up with `feedback_probability`:

    p = 0.10 + 0.30 * I + 0.35 * F + 0.15 * B + 0.05 * G

- ``I`` = 1 if the run's `intent` is the message's true intent, else 0;
- ``F`` = 1 if the reply contains the message's key fact (case-insensitive), else 0;
- ``B`` = brevity, ``clamp((80 - words) / 40, 0, 1)``: 1 up to 40 words, 0 from 80 words;
- ``G`` = 1 if the reply opens with a greeting ("hi", "hello", "thanks", ...), else 0.

So p lies in [0.10, 0.95]. For a message that is not one of `MESSAGES` the true intent and fact
are unknown and ``I`` and ``F`` count as 0.5 each. Through the local model server
(`abtest.devtools.llm_server`), v2 prompts classify more messages right (their labels are
described), keep the answering fact within a short limit and greet, so the v2 arm's mean p is
higher by about 0.25 (`tests/test_support_reply.py` measures it). Nothing here prints or does I/O.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FEEDBACK_METRIC",
    "MESSAGES",
    "TIER_WEIGHTS",
    "CannedMessage",
    "feedback_probability",
    "sample_inputs",
]

FEEDBACK_METRIC = "thumbs_up"
"""The outcome metric the demo records from `feedback_probability`."""

TIER_WEIGHTS: dict[str, float] = {"standard": 0.6, "pro": 0.3, "enterprise": 0.1}
"""Share of customers on each plan."""


@dataclass(frozen=True)
class CannedMessage:
    """A message a customer sends, its true intent and the fact a good reply contains."""

    text: str
    intent: str
    fact: str


_ROWS = (
    # billing
    ("I was charged twice for the same order this month.", "billing", "3 business days"),
    ("Where can I download my invoice for March?", "billing", "Settings > Billing"),
    ("Can I pay with PayPal instead of a card?", "billing", "PayPal"),
    ("How do I change the credit card you charge every month?", "billing", "payment method"),
    ("There is a strange amount on my bank statement from you.", "billing", "3 business days"),
    ("Which cards do you accept for subscriptions?", "billing", "Mastercard"),
    # refund
    ("I want a refund for the headphones I bought last week.", "refund", "30 days"),
    ("How long does it take to get my money back?", "refund", "5-7 business days"),
    ("Can I return this jacket and be reimbursed?", "refund", "30 days"),
    ("I cancelled my annual subscription, do I get anything back?", "refund", "pro rata"),
    ("Please refund my last purchase, it arrived broken.", "refund", "30 days"),
    # shipping
    ("How long does shipping take to Germany?", "shipping", "3-5 business days"),
    ("My parcel still has not arrived after two weeks.", "shipping", "free replacement"),
    ("Where can I track my package?", "shipping", "tracking link"),
    ("Is express delivery faster than standard?", "shipping", "1-2 business days"),
    ("The courier says my order was dispatched, when will it come?", "shipping", "tracking link"),
    # account
    ("I forgot my password and cannot log in.", "account", "Forgot password"),
    ("How do I delete my account?", "account", "Settings > Account"),
    ("I lost my phone with the two-factor codes, how do I sign in?", "account", "identity check"),
    ("How can I change the email address on my profile?", "account", "Settings > Account"),
    ("The password reset email expired before I clicked it.", "account", "1 hour"),
    # technical
    ("The app crashes every time I open it.", "technical", "latest version"),
    ("I get an error message when I upload a photo.", "technical", "latest version"),
    ("The website is not loading for me, is it down?", "technical", "status.example.com"),
    ("Your app freezes on the checkout screen.", "technical", "clear the cache"),
    ("Is there an outage right now?", "technical", "status.example.com"),
    # other
    ("What are your store opening hours?", "other", "Contact page"),
    ("Can I talk to a person on the chat at night?", "other", "24/7"),
    ("Do you have a shop in Lyon?", "other", "Contact page"),
    ("How quickly does your team answer emails?", "other", "one business day"),
)  # fmt: skip

MESSAGES: tuple[CannedMessage, ...] = tuple(CannedMessage(*row) for row in _ROWS)
"""The canned traffic: 30 messages, 4-6 per intent."""

_BY_TEXT = {m.text: m for m in MESSAGES}
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|dear|thanks|thank you|good (?:morning|afternoon))\b", re.IGNORECASE
)


def sample_inputs(rng: random.Random) -> dict[str, Any]:
    """One simulated customer's run inputs: a canned message and a plan."""
    message = rng.choice(MESSAGES)
    tier = rng.choices(list(TIER_WEIGHTS), weights=list(TIER_WEIGHTS.values()))[0]
    return {"message": message.text, "customer_tier": tier}


def feedback_probability(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> float:
    """Chance of a thumbs up for this reply (the formula is in the module docstring)."""
    reply = str(outputs.get("reply", ""))
    canned = _BY_TEXT.get(str(inputs.get("message", "")).strip())
    if canned is None:
        right_intent = found_fact = 0.5
    else:
        right_intent = float(outputs.get("intent") == canned.intent)
        found_fact = float(canned.fact.lower() in reply.lower())
    words = sum(1 for piece in reply.split() if any(ch.isalnum() for ch in piece))
    brevity = min(1.0, max(0.0, (80 - words) / 40))
    greeting = float(bool(_GREETING.match(reply)))
    return 0.10 + 0.30 * right_intent + 0.35 * found_fact + 0.15 * brevity + 0.05 * greeting
