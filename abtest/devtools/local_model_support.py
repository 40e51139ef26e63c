"""The local model's answers to support prompts: pick a label, reply from knowledge, rewrite.

`SupportResponder.generate` answers a prompt of one of these shapes and returns ``None`` for any
other prompt, which the server (:mod:`abtest.devtools.llm_server`) then summarizes. The rules
(how a prompt is recognised, how labels are scored, which sentences a reply keeps, when a
greeting is added) are listed in the server's module docstring, under "Support prompts".
Deterministic: the same request gets the same answer; ``temperature`` > 0 adds score noise
seeded by the whole request, as for summaries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from abtest.devtools.local_text import (
    Instructions,
    choose_sentences,
    content_terms,
    count_words,
    parse_instructions,
    prompt_text,
    request_rng,
    sentence_limits,
    split_sentences,
    stem,
)

__all__ = ["GREETING", "LABEL_SYNONYMS", "SupportResponder", "label_options", "pick_label"]

LABEL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "billing": ("bill", "invoice", "charge", "payment"),
    "refund": ("reimburse", "money"),
    "shipping": ("ship", "delivery", "package", "track"),
    "account": ("login", "password"),
    "technical": ("error", "bug", "crash"),
}
"""The small built-in vocabulary of common support labels (stems; prefixes of 4+ letters match)."""

GREETING = "Hi there, thanks for reaching out!"
"""What a reply or rewrite starts with when the prompt asks for a warm or friendly tone."""


def _tagged(tags: str) -> re.Pattern[str]:
    return re.compile(rf"<({tags})>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


def _labelled(labels: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*(?:the\s+)?(?:{labels})[ \t]*:[ \t]*", re.IGNORECASE | re.MULTILINE)


_CUSTOMER_BLOCK = _tagged("message|customer_message|customer|ticket|email|inquiry|enquiry")
_CUSTOMER_LABEL = _labelled(
    r"customer(?:'s)?(?:\s+(?:message|question|request|email))?|message|ticket|inquiry|enquiry"
)
_SUBJECT_BLOCK = _tagged("text|input|query|question|request")
_SUBJECT_LABEL = _labelled(r"text|input|query|question|request")
_KNOWLEDGE_BLOCK = _tagged(
    "knowledge|knowledge_base|kb|faq|context|articles?|documents?|sources?|polic(?:y|ies)"
)
_KNOWLEDGE_LABEL = _labelled(r"knowledge(?:\s+base)?|faq|context|help\s+articles?|polic(?:y|ies)")
_DRAFT_BLOCK = _tagged("reply|draft|draft_reply|response|answer")
_DRAFT_LABEL = _labelled(r"draft(?:\s+reply)?|reply|response|answer")
_SECTION_START = re.compile(r"^[ \t]*(?:<\w+>|[A-Za-z][\w '-]{0,40}:[ \t]*$)", re.MULTILINE)

_ONE_OF = re.compile(
    r"\bone\s+of(?:\s+(?:the|these|those|following|this|list|set|allowed|possible|labels?|"
    r"categor(?:y|ies)|intents?|options?|classes|values?))*\s*:[ \t]*([^\n]*)",
    re.IGNORECASE,
)
_LABEL_TASK = re.compile(
    r"\b(?:classif\w*|categori[sz]\w*|labels?|categor(?:y|ies)|intents?|pick|choose|select|"
    r"(?:answer|respond|reply)\s+with)\b",
    re.IGNORECASE,
)
_ANY_BLOCK = re.compile(r"<(\w+)>.*?</\1>|```.*?```|\"\"\".*?\"\"\"", re.DOTALL)
_LABEL = re.compile(r"^[A-Za-z][\w-]*(?: [A-Za-z][\w-]*){0,2}$")
_BULLET_LINE = re.compile(r"^[ \t]*(?:[-*•]|\d+[.)])[ \t]+(.+)$")
_LIST_SPLIT = re.compile(r"\s*(?:[,;|/]|\bor\b|\band\b)\s*", re.IGNORECASE)
_REWRITE_TASK = re.compile(r"\b(?:rewrite|re-write|rephrase|reword|revise|polish)\b", re.I)
_REPLY_TASK = re.compile(r"\b(?:reply|respond|response|answer|write\s+back)\b", re.IGNORECASE)
_WARM = re.compile(r"\b(?:warm\w*|friendl\w*|greet\w*|empath\w*|cheerful\w*)\b", re.IGNORECASE)
_GREETED = re.compile(
    r"^\s*(?:hi|hello|hey|dear|thanks|thank you|good (?:morning|afternoon))\b", re.IGNORECASE
)


def _take(text: str, block: re.Pattern[str], label: re.Pattern[str]) -> tuple[str | None, str]:
    """``(section, rest)``: the first tagged block, else the text after a label up to the next
    section (a tag or a ``Label:`` line) or the end; ``rest`` is ``text`` without it."""
    m = block.search(text)
    if m:
        return m.group(2).strip(), text[: m.start()] + "\n" + text[m.end() :]
    m = label.search(text)
    if m:
        nxt = _SECTION_START.search(text, m.end() + 1)
        end = nxt.start() if nxt else len(text)
        section = text[m.end() : end].strip()
        if section:
            return section, text[: m.start()] + "\n" + text[end:]
    return None, text


def _label_item(item: str) -> tuple[str, str] | None:
    """``"billing: invoices, charges"``, ``"billing (invoices)"``, ``"billing"`` -> (label,
    description); ``None`` if the label is not a name of at most three words."""
    item = item.strip().strip(".")
    m = re.match(r"^(.+?)\s*(?::|\s[-–—]\s|\()\s*(.*?)\)?$", item)
    label, description = (m.group(1), m.group(2)) if m else (item, "")
    label = label.strip().strip("\"'`*“”")
    return (label, description) if _LABEL.match(label) else None


def _split_top_level(text: str) -> list[str]:
    """Split an inline label list at separators outside parentheses."""
    parts, depth, current = [], 0, []
    for piece in re.split(r"([()])", text):
        if piece == "(":
            depth += 1
        elif piece == ")":
            depth = max(0, depth - 1)
        if depth == 0 and piece not in "()":
            chunks = _LIST_SPLIT.split(piece)
            current.append(chunks[0])
            for chunk in chunks[1:]:
                parts.append("".join(current))
                current = [chunk]
        else:
            current.append(piece)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


def label_options(text: str) -> list[tuple[str, str]]:
    """The ``(label, description)`` pairs a prompt offers after ``one of:``, inline
    (``one of: billing, refund or other``) or as the bullet lines that follow; ``[]`` if none."""
    for m in _ONE_OF.finditer(text):
        inline = re.split(r"\.(?:\s|$)", m.group(1).strip(), maxsplit=1)[0].strip()
        if inline:
            items = _split_top_level(inline)
        else:
            items = []
            for line in text[m.end() :].lstrip("\n").splitlines():
                bullet = _BULLET_LINE.match(line)
                if not bullet:
                    break
                items.append(bullet.group(1))
        options = [opt for opt in map(_label_item, items) if opt is not None]
        if len(options) >= 2 and len(options) == len(items):
            return options
    return []


def _matches(a: str, b: str) -> bool:
    """Same stem, or one is a prefix (of at least 4 letters) of the other."""
    if a == b:
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 4 and long.startswith(short)


def _overlap(terms: set[str], keywords: set[str]) -> int:
    """How many of ``terms`` match some keyword."""
    return sum(1 for t in terms if any(_matches(t, k) for k in keywords))


def pick_label(message: str, options: Sequence[str | tuple[str, str]]) -> str:
    """The label whose keywords the message shares most; ties: the first listed.

    Each message word (stemmed, stop words removed) scores 2 for a label whose name it
    matches, else 1 if it matches the label's description or its entry in `LABEL_SYNONYMS`.
    No label scores: ``other`` when offered, else the first label.
    """
    pairs = [(o, "") if isinstance(o, str) else o for o in options]
    if not pairs:
        raise ValueError("no labels to pick from")
    terms = set(content_terms(message))
    best, best_score = None, 0
    for label, description in pairs:
        names = set(content_terms(label))
        keywords = set(content_terms(description))
        keywords.update(stem(w) for w in LABEL_SYNONYMS.get(label.lower(), ()))
        score = sum(
            2 if any(_matches(t, n) for n in names) else 1
            for t in terms
            if any(_matches(t, k) for k in names | keywords)
        )
        if score > best_score:
            best, best_score = label, score
    if best is not None:
        return best
    return next((label for label, _ in pairs if label.lower() == "other"), pairs[0][0])


@dataclass(frozen=True)
class _Noise:
    """Score noise for ``temperature`` > 0, drawn from an RNG seeded by the whole request."""

    model: str
    messages: Sequence[dict[str, Any]]
    temperature: float
    request_seed: int | None
    server_seed: int

    def add(self, scores: list[float]) -> list[float]:
        if self.temperature <= 0:
            return scores
        rng = request_rng(
            self.model, self.messages, self.temperature, self.request_seed, self.server_seed
        )
        return [s + self.temperature * 0.5 * rng.random() for s in scores]


class SupportResponder:
    """Deterministic answers to support prompts; ``None`` for any other prompt.

    Rules, tried in order (detailed in :mod:`abtest.devtools.llm_server`'s docstring): a list
    of labels to pick from -> one label; a reply to rewrite -> the reply fitted to the
    instructions; knowledge plus a customer message -> a reply from the knowledge's sentences
    that share most words with the message.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        request_seed: int | None = None,
    ) -> str | None:
        text = prompt_text(messages)
        customer, rest = _take(text, _CUSTOMER_BLOCK, _CUSTOMER_LABEL)
        outside_blocks = _ANY_BLOCK.sub("\n", rest)  # a document quoting "one of: ..." is no task
        options = label_options(outside_blocks)
        if options and _LABEL_TASK.search(outside_blocks):
            if customer is None:
                customer = _take(rest, _SUBJECT_BLOCK, _SUBJECT_LABEL)[0]
            if customer is None:  # the prompt's own words, without the list of labels
                customer = _ONE_OF.sub(" ", rest)
                customer = "\n".join(
                    line for line in customer.splitlines() if not _BULLET_LINE.match(line)
                )
            return pick_label(customer, options)

        noise = _Noise(model, messages, temperature, request_seed, self.seed)
        draft, rest_of_rewrite = _take(rest, _DRAFT_BLOCK, _DRAFT_LABEL)
        if draft is not None and _REWRITE_TASK.search(rest_of_rewrite):
            instructions_text = _take(rest_of_rewrite, _KNOWLEDGE_BLOCK, _KNOWLEDGE_LABEL)[1]
            return self._rewrite(draft, customer or "", instructions_text, noise)

        knowledge, instructions_text = _take(rest, _KNOWLEDGE_BLOCK, _KNOWLEDGE_LABEL)
        if knowledge and customer and _REPLY_TASK.search(instructions_text):
            return self._reply(knowledge, customer, instructions_text, model, noise)
        return None

    @staticmethod
    def _scores(sentences: Sequence[str], focus: str, noise: _Noise) -> list[float]:
        """Words of ``focus`` each sentence shares (prefix-aware), plus temperature noise."""
        focus_terms = set(content_terms(focus))
        return noise.add([float(_overlap(focus_terms, set(content_terms(s)))) for s in sentences])

    def _reply(
        self,
        knowledge: str,
        customer: str,
        instructions_text: str,
        model: str,
        noise: _Noise,
    ) -> str:
        instructions = parse_instructions(instructions_text)
        sentences = split_sentences(knowledge)
        if not sentences:
            return "I am sorry, I do not have information about that yet."
        max_words, want = sentence_limits(instructions, model, len(sentences))
        scores = self._scores(sentences, f"{customer} {instructions.focus}", noise)
        return _compose(sentences, scores, want, max_words, instructions, instructions_text)

    def _rewrite(self, draft: str, customer: str, instructions_text: str, noise: _Noise) -> str:
        instructions = parse_instructions(instructions_text)
        sentences = split_sentences(draft, keep_short=True)
        if not sentences:
            return draft.strip()
        want = instructions.sentences or len(sentences)
        scores = self._scores(sentences, f"{customer} {instructions.focus}", noise)
        return _compose(
            sentences, scores, want, instructions.max_words, instructions, instructions_text
        )


def _compose(
    sentences: Sequence[str],
    scores: Sequence[float],
    want: int,
    max_words: int | None,
    instructions: Instructions,
    instructions_text: str,
) -> str:
    """The chosen sentences (as bullets if asked), after `GREETING` when a warm tone was asked.

    The greeting counts towards the word limit; it is left out when the text already greets,
    or when with it no whole sentence would fit but without it one would.
    """
    picked = choose_sentences(sentences, scores, want, max_words)
    greeting = ""
    if _WARM.search(instructions_text) and not _GREETED.match(sentences[0]):
        if max_words is None:
            greeting = GREETING
        elif max_words > count_words(GREETING):
            warm = choose_sentences(sentences, scores, want, max_words - count_words(GREETING))
            if warm[0] in sentences or picked[0] not in sentences:
                greeting, picked = GREETING, warm
    body = "\n".join(f"- {s}" for s in picked) if instructions.bullets else " ".join(picked)
    if not greeting:
        return body
    return f"{greeting}\n{body}" if instructions.bullets else f"{greeting} {body}"
