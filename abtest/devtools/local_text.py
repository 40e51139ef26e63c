"""Text primitives of the local model server (:mod:`abtest.devtools.llm_server`).

Reading instructions (word limits, sentence counts, bullets, focus), splitting sentences,
content terms (stop words removed, crude stemming), counting words, the models' default
lengths, and choosing the best sentences within limits. Pure functions without I/O, shared by
the extractive summarizer and the support-prompt rules (:mod:`abtest.devtools.local_model_support`).
The behaviour they implement is documented, rule by rule, in the server's module docstring.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from abtest.tokens import message_text

__all__ = [
    "DEFAULT_STYLE",
    "MODEL_STYLES",
    "Instructions",
    "ModelStyle",
    "choose_sentences",
    "content_terms",
    "count_words",
    "parse_instructions",
    "request_rng",
    "sentence_limits",
    "split_sentences",
    "stem",
    "truncate_words",
]


@dataclass(frozen=True)
class ModelStyle:
    """How much a model writes when the prompt sets no limit."""

    sentences: int
    max_words: int


MODEL_STYLES: dict[str, ModelStyle] = {
    "gpt-4o-mini": ModelStyle(sentences=2, max_words=50),
    "gpt-4o": ModelStyle(sentences=3, max_words=90),
    "local-extractive": ModelStyle(sentences=3, max_words=70),
}
DEFAULT_STYLE = MODEL_STYLES["local-extractive"]
"""The style of every other served model."""

# ---------------------------------------------------------------------------------------------
# Instruction parsing
# ---------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "hundred": 100, "a hundred": 100, "one hundred": 100, "a single": 1,
    "single": 1,
}  # fmt: skip
# Longest alternatives first so "one hundred" wins over "one".
_NUM = r"(\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + ")"

_WORD_LIMITS: list[tuple[re.Pattern[str], int]] = [
    (
        re.compile(
            rf"\b(?:at most|no more than|not more than|up to|within|maximum of|max(?:imum)?"
            rf"|limit(?:ed)? to|no longer than)\s+{_NUM}\s+words?\b"
        ),
        0,
    ),
    (re.compile(rf"\b{_NUM}\s+words?\s+(?:or\s+(?:fewer|less)|max(?:imum)?)\b"), 0),
    (re.compile(rf"\b(?:under|fewer than|less than|below)\s+{_NUM}\s+words?\b"), -1),
    (re.compile(rf"\b(?:in|to)\s+{_NUM}\s+words?\b"), 0),
    (re.compile(rf"\b{_NUM}[- ]word\b(?!s)"), 0),
]
_SENTENCES = re.compile(rf"\b{_NUM}[\s-]+sentences?\b")
_BULLETS = re.compile(r"\bbullet(?:s|ed|\s+points?|\s+list)?\b")
_NO_BULLETS = re.compile(
    r"\b(?:no|without|avoid(?:ing)?|(?:do not|don't|never)\s+use)\s+(?:any\s+)?bullet"
)
_BULLET_COUNT = re.compile(rf"\b{_NUM}\s+(?:bullet(?:\s+points?|s)?|key\s+points|points)\b")
_FOCUS = [
    re.compile(r"\bfocus(?:ing|ed)?\s+(?:on|upon)\s*:?\s*([^\n.!?;]+)"),
    re.compile(r"\bthe user asked\s*:?\s*[\"'“]?([^\n\"”]+)"),
    re.compile(r"\b(?:emphasi[sz]e|concentrate on)\s*:?\s*([^\n.!?;]+)"),
    re.compile(r"^\s*(?:question|query|topic|focus)\s*:\s*(.+)$", re.MULTILINE),
]


def prompt_text(messages: Sequence[dict[str, Any]]) -> str:
    """The system, developer and user messages' text, in order: the whole prompt the
    support and judge rules read (the summarizer splits instructions from the document)."""
    return "\n\n".join(
        message_text(m.get("content"))
        for m in messages
        if m.get("role") in {"system", "developer", "user"}
    )


def _number(text: str) -> int:
    text = text.strip().lower()
    return int(text) if text.isdigit() else _NUMBER_WORDS.get(text, 1)


@dataclass(frozen=True)
class Instructions:
    """What the prompt asked for (``None`` = not specified)."""

    max_words: int | None = None
    sentences: int | None = None
    bullets: bool = False
    focus: str = ""


def parse_instructions(text: str) -> Instructions:
    """Read word limits, sentence counts, bullet requests and a focus from instruction text."""
    low = text.lower()
    limits = [
        max(1, _number(m.group(1)) + delta)
        for pattern, delta in _WORD_LIMITS
        for m in pattern.finditer(low)
    ]
    sentences = [_number(m.group(1)) for m in _SENTENCES.finditer(low)]
    bullets = bool(_BULLETS.search(low)) and not _NO_BULLETS.search(low)
    if bullets:
        sentences += [_number(m.group(1)) for m in _BULLET_COUNT.finditer(low)]
    focus = " ".join(m.group(1).strip() for pattern in _FOCUS for m in pattern.finditer(low))
    return Instructions(
        max_words=min(limits) if limits else None,
        sentences=max(1, min(sentences)) if sentences else None,
        bullets=bullets,
        focus=focus,
    )


# ---------------------------------------------------------------------------------------------
# Sentences and scoring
# ---------------------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd",
    "co", "no", "fig", "approx", "u.s", "u.k", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec",
}  # fmt: skip
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]”’]*(?=\s+[\"'(\[“‘]?[A-Z0-9])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|#+)\s+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    s t can't don't it's i'm we're they're let's may might must shall one new said says""".split()
)


def stem(word: str) -> str:
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_terms(text: str) -> list[str]:
    """Stemmed, lower-cased words of ``text`` without stop words."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


_PAGE_MARKER = re.compile(r"^[ \t]*\[page \d+\][ \t]*$", re.MULTILINE)


def split_sentences(document: str, *, keep_short: bool = False) -> list[str]:
    """Split text into sentences; list items and headings become their own units.

    Wrapped lines (as in PDF text) are joined, re-attaching words hyphenated at a line end.
    Page markers (`[page 3]` lines, as `variants.summarization.pdfs` writes them) end a paragraph
    and are not content, so they never end up inside a summary. Sentences of fewer than 4 words
    are dropped when longer ones exist, unless ``keep_short`` (a reply to rewrite keeps "Sorry
    about that.").
    """
    units: list[str] = []
    document = _PAGE_MARKER.sub("\n\n", document)
    for para in re.split(r"\n\s*\n", document):
        current = ""
        standalone = False  # the current unit is a heading: never continue it
        for raw in para.splitlines():
            line = raw.strip()
            if not line:
                continue
            marker = _LIST_MARKER.match(line)
            if marker or not current or standalone:
                if current:
                    units.append(current)
                current = line[marker.end() :].strip() if marker else line
                standalone = line.startswith("#")
            elif current.endswith("-") and line[:1].islower():
                current = current[:-1] + line
            else:
                current = f"{current} {line}"
        if current:
            units.append(current)
    sentences: list[str] = []
    for unit in units:
        start = 0
        for m in _SENTENCE_END.finditer(unit):
            candidate = unit[start : m.end()]
            words = candidate.rstrip("\"')]”’.!?").split()
            last = words[-1].lower() if words else ""
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
            sentences.append(candidate.strip())
            start = m.end()
        sentences.append(unit[start:].strip())
    sentences = [s for s in sentences if s]
    substantial = [s for s in sentences if len(s.split()) >= 4]
    return sentences if keep_short else (substantial or sentences)


def count_words(text: str) -> int:
    """Words as a reader counts them: whitespace-separated pieces containing a letter or digit.

    Bullet markers (``-``) are not words. This is the unit of the prompt's word limits.
    """
    return sum(1 for piece in text.split() if any(ch.isalnum() for ch in piece))


def truncate_words(sentence: str, limit: int) -> str:
    words = sentence.split()
    if len(words) <= limit:
        return sentence
    return " ".join(words[:limit]).rstrip(",;:.!?-") + "…"


def sentence_limits(
    instructions: Instructions, model: str, available: int
) -> tuple[int | None, int]:
    """(word cap, sentence count) from explicit limits, else from the model's style."""
    if instructions.max_words is not None:
        return instructions.max_words, instructions.sentences or available
    if instructions.sentences is not None:
        return None, instructions.sentences
    style = MODEL_STYLES.get(model, DEFAULT_STYLE)
    return style.max_words, style.sentences


def request_rng(
    model: str,
    messages: Sequence[dict[str, Any]],
    temperature: float,
    request_seed: int | None,
    server_seed: int,
) -> random.Random:
    """An RNG seeded by a hash of the whole request: same request, same noise."""
    digest = hashlib.sha256(
        json.dumps(
            [model, list(messages), temperature, request_seed, server_seed],
            sort_keys=True,
            default=str,
        ).encode()
    ).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def choose_sentences(
    sentences: Sequence[str], scores: Sequence[float], want: int, max_words: int | None
) -> list[str]:
    """The best-scoring sentences (ties: earlier first) that fit, in their original order.

    A sentence that would overflow ``max_words`` is skipped for a shorter one; when even the
    best sentence is too long it is cut at the limit and ends with an ellipsis.
    """
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    used = 0
    for i in ranked:
        if len(chosen) >= want:
            break
        n = count_words(sentences[i])
        if max_words is None or used + n <= max_words:
            chosen.append(i)
            used += n
    if not chosen:
        return [truncate_words(sentences[ranked[0]], max_words or 1)]
    return [sentences[i] for i in sorted(chosen)]
