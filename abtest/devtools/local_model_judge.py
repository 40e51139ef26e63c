"""The local model as a deterministic LLM judge: it scores an answer on the scale a prompt asks.

Offline evaluation sends judge prompts ("rate the reply from 1 to 5 ... end with `Score: N`")
to whatever model is configured; in demos and tests that is the local model server
(:mod:`abtest.devtools.llm_server`), so it must answer them like a judge would, in the format
asked and with a score that means something. `JudgeResponder.generate` does, for any judge
prompt of the shape described in the server's module docstring under "Judge prompts", and
returns ``None`` for every other prompt (the server then tries the support rules and the
summarizer). It knows no particular flow: it reads the rubric, the answer and the question the
answer is for from the prompt alone.

The score rewards an answer that covers the question's content words and stays within the
rubric's word limit, which is also what the demo's simulated users like, so offline judge
scores and online thumbs-up agree in direction. Deterministic: the same messages always get
the same answer, whatever the ``temperature`` (a judge's score should not be a dice roll).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from abtest.devtools.local_text import (
    content_terms,
    count_words,
    parse_instructions,
    prompt_text,
)

__all__ = [
    "DEFAULT_WORD_LIMIT",
    "JudgeResponder",
    "Judgement",
    "Scale",
    "find_scale",
    "judge_score",
]

DEFAULT_WORD_LIMIT = 120
"""Words an answer may have before it counts as very long, when the rubric sets no limit."""

RELEVANCE_WEIGHT = 0.7
"""Share of the score given by how much of the question the answer covers (the rest: brevity)."""

WITHIN_LIMIT_LOSS = 0.2
"""Brevity an answer loses by using its whole word limit: shorter is a little better, so two
answers of the same coverage but different lengths seldom tie."""

NO_QUESTION_RELEVANCE = 0.5
"""The relevance of a non-empty answer when the prompt gives no question to measure it by."""

_ANSWER_NAMES = "answer|response|reply|summary|output"
_QUESTION_NAMES = "question|message|query|request|input"
_ANSWER_BLOCK = re.compile(rf"<({_ANSWER_NAMES})>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_QUESTION_BLOCK = re.compile(rf"<({_QUESTION_NAMES})>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_ANSWER_LABEL = re.compile(
    rf"^[ \t]*(?:the\s+)?({_ANSWER_NAMES})[ \t]*:[ \t]*", re.IGNORECASE | re.MULTILINE
)
_QUESTION_LABEL = re.compile(
    rf"^[ \t]*(?:the\s+)?({_QUESTION_NAMES})[ \t]*:[ \t]*", re.IGNORECASE | re.MULTILINE
)
_SECTION_START = re.compile(r"^[ \t]*(?:<\w+>|[A-Za-z][\w '-]{0,40}:)", re.MULTILINE)
_ANY_BLOCK = re.compile(r"<(\w+)>.*?</\1>|```.*?```|\"\"\".*?\"\"\"", re.DOTALL)

_TASK = re.compile(r"\b(?:rate|rating|score|grade|evaluate|judge|assess)\b", re.IGNORECASE)
_OBJECT = re.compile(
    r"\b(?:answers?|responses?|repl(?:y|ies)|summar(?:y|ies)|outputs?)\b", re.IGNORECASE
)
_FORMAT = re.compile(r"\b(score|rating|grade)\s*[:=]", re.IGNORECASE)
_SCALE_LINE = re.compile(r"\b(?:scale|scor\w*|rat(?:e|ing)\w*|grad\w*|points?)\b", re.IGNORECASE)
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCALES = (
    re.compile(rf"\bfrom\s+{_NUMBER}\s*(?:to|-|–|—)\s*{_NUMBER}", re.IGNORECASE),
    re.compile(rf"\bbetween\s+{_NUMBER}\s+and\s+{_NUMBER}", re.IGNORECASE),
    re.compile(rf"(?<![\w.-]){_NUMBER}\s*(?:to|-|–|—)\s*{_NUMBER}(?!\w|\.\d)", re.IGNORECASE),
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Scale:
    """The range a prompt asks the score to lie in."""

    low: float
    high: float

    @property
    def integral(self) -> bool:
        return self.low.is_integer() and self.high.is_integer()


@dataclass(frozen=True)
class _Section:
    """A part of the prompt found by tag or label: what it is called and its text."""

    name: str
    text: str


@dataclass(frozen=True)
class Judgement:
    """A score with the facts behind it."""

    score: float
    words: int
    limit: int
    covered: tuple[str, ...]
    asked: int


def find_scale(instructions: str) -> Scale | None:
    """The first scale ("from A to B", "between A and B", then "A to B", "A-B") on a line of
    ``instructions`` that speaks of a scale, score, rating, grade or points; low < high."""
    lines = [line for line in instructions.splitlines() if _SCALE_LINE.search(line)]
    for pattern in _SCALES:
        for line in lines:
            for m in pattern.finditer(line):
                low, high = float(m.group(1)), float(m.group(2))
                if low < high:
                    return Scale(low, high)
    return None


def _take(text: str, block: re.Pattern[str], label: re.Pattern[str]) -> tuple[_Section | None, str]:
    """``(section, rest)``: the first tagged block, else the text after a label up to the next
    section (a tag or a ``Label:`` line) or the end, possibly empty; ``rest`` is the remainder."""
    m = block.search(text)
    if m:
        section = _Section(m.group(1).lower(), m.group(2).strip())
        return section, text[: m.start()] + "\n" + text[m.end() :]
    m = label.search(text)
    if m:
        nxt = _SECTION_START.search(text, m.end() + 1)
        end = nxt.start() if nxt else len(text)
        section = _Section(m.group(1).lower(), text[m.end() : end].strip())
        return section, text[: m.start()] + "\n" + text[end:]
    return None, text


def _question_words(question: str) -> dict[str, str]:
    """The question's content terms (stems), each with the first word it came from."""
    words: dict[str, str] = {}
    for word in _WORD.findall(question.lower()):
        for term in content_terms(word):
            words.setdefault(term, word)
    return words


def _same_word(a: str, b: str) -> bool:
    """Same stem, or one is a prefix (of at least 4 letters) of the other, as the support rules
    match words (so "charged" and "charge" are the same word)."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return a == b or (len(short) >= 4 and long.startswith(short))


def _brevity(words: int, limit: int) -> float:
    """1 for no words, 1 - `WITHIN_LIMIT_LOSS` at the limit, 0 from twice the limit on."""
    kept = 1.0 - WITHIN_LIMIT_LOSS
    if words <= limit:
        return 1.0 - WITHIN_LIMIT_LOSS * words / limit
    return max(0.0, kept * (2 * limit - words) / limit)


def judge_score(answer: str, question: str | None, rubric: str, scale: Scale) -> Judgement:
    """Score ``answer`` on ``scale`` (the formula is in the server's docstring, "Judge prompts").

    quality = 0.7 * relevance + 0.3 * brevity, where relevance is the share of the question's
    content terms the answer contains (0.5 without a question, or when the question has no
    content words) and brevity falls linearly from 1 (no words) to 0.8 at the rubric's word
    limit (else `DEFAULT_WORD_LIMIT`), then to 0 at twice the limit; score = low + quality *
    (high - low), rounded half up to an integer when both ends are integers (else to two
    decimals). An answer without words gets ``low``.
    """
    words = count_words(answer)
    limit = parse_instructions(rubric).max_words or DEFAULT_WORD_LIMIT
    asked = _question_words(question or "")
    answer_terms = set(content_terms(answer))
    covered = tuple(
        word for term, word in asked.items() if any(_same_word(term, t) for t in answer_terms)
    )
    if words == 0:
        return Judgement(scale.low, 0, limit, (), len(asked))
    relevance = len(covered) / len(asked) if asked else NO_QUESTION_RELEVANCE
    brevity = _brevity(words, limit)
    quality = RELEVANCE_WEIGHT * relevance + (1 - RELEVANCE_WEIGHT) * brevity
    raw = scale.low + quality * (scale.high - scale.low)
    score = float(math.floor(raw + 0.5)) if scale.integral else round(raw, 2)
    return Judgement(min(scale.high, max(scale.low, score)), words, limit, covered, len(asked))


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _reason(judgement: Judgement, answer_name: str, question_name: str | None) -> str:
    """One line saying what the score is based on: coverage of the question, then length."""
    if judgement.words == 0:
        return f"The {answer_name} is empty, so it answers nothing."
    if question_name is None:
        coverage = f"There is no question to check the {answer_name} against."
    elif judgement.asked == 0:
        coverage = f"The {question_name} has no key words to check the {answer_name} against."
    else:
        shown = f" ({', '.join(judgement.covered)})" if judgement.covered else ""
        coverage = (
            f"The {answer_name} covers {len(judgement.covered)} of the {judgement.asked} key "
            f"words of the {question_name}{shown}."
        )
    side = "within" if judgement.words <= judgement.limit else "over"
    return (
        f"{coverage} It is {judgement.words} words long, {side} the {judgement.limit}-word limit."
    )


class JudgeResponder:
    """Deterministic answers to judge prompts; ``None`` for any other prompt.

    A judge prompt has, outside its answer and question sections and any other tagged or
    fenced block, a request to rate, score, grade, evaluate, judge or assess an answer,
    response, reply, summary or output, a scale, and a ``Score:``-style answer format; and it
    has the answer to judge (a tagged block or a labelled section, possibly empty). Details in
    :mod:`abtest.devtools.llm_server`'s docstring, "Judge prompts".
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed  # the server's seed, as for the other responders; judging draws none

    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        request_seed: int | None = None,
    ) -> str | None:
        """A one-line reason and ``<Label>: N``, or ``None`` when this is no judge prompt.
        ``model``, ``temperature`` and ``request_seed`` do not change the answer."""
        text = prompt_text(messages)
        answer, rest = _take(text, _ANSWER_BLOCK, _ANSWER_LABEL)
        if answer is None:
            return None
        question, rest = _take(rest, _QUESTION_BLOCK, _QUESTION_LABEL)
        rubric = _ANY_BLOCK.sub("\n", rest)
        answer_format = _FORMAT.search(rubric)
        scale = find_scale(rubric)
        asks_to_judge = _TASK.search(_FORMAT.sub(" ", rubric)) and _OBJECT.search(rubric)
        if not (answer_format and scale and asks_to_judge):
            return None
        judgement = judge_score(answer.text, question.text if question else None, rubric, scale)
        label = answer_format.group(1).capitalize()
        reason = _reason(judgement, answer.name, question.name if question else None)
        return f"{reason}\n{label}: {_number(judgement.score)}"
