"""Simulated users of the summarizer, for `abtest demo`: what they ask and what they like.

Each user uploads one of the corpus documents as a PDF (made with reportlab, a development
dependency) with one of its questions, reads the summary and gives a thumbs up or down. The
preference model is the demo's known truth, so the report's verdict can be checked against it:
users like summaries that answer their question (a larger share of the question's words
appear) and that are short. The v2 prompts ask for short, question-focused bullets, so the v2
arms should win on `thumbs_up`.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from variants.summarization.corpus import DOCUMENTS
from variants.summarization.pdfs import make_pdf

FEEDBACK_METRIC = "thumbs_up"

STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from has have how in is it its may of on or "
    "the to was were what when which who why will with".split()
)
"""Words ignored when measuring how much of a question a summary covers."""


@lru_cache(maxsize=1)
def _pdfs() -> tuple[bytes, ...]:
    return tuple(make_pdf(doc.pages, title=doc.name) for doc in DOCUMENTS)


def sample_inputs(rng: random.Random) -> dict[str, Any]:
    """One user's run inputs: a corpus PDF and one of its questions."""
    index = rng.randrange(len(DOCUMENTS))
    return {"pdf_source": _pdfs()[index], "user_query": rng.choice(DOCUMENTS[index].queries)}


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in STOPWORDS}


def feedback_probability(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> float:
    """Chance that a user gives a thumbs up: the demo's known truth.

    ``p = 1 / (1 + exp(-(-1.5 + 4 * coverage - 0.03 * (words - 40))))`` where `coverage` is
    the share of the question's content words found in the summary and `words` its length:
    an answer that covers the question and stays short pleases.
    """
    summary = outputs.get("summarized_text") or ""
    asked = _content_words(inputs["user_query"])
    coverage = len(asked & _content_words(summary)) / len(asked) if asked else 0.0
    words = len(summary.split())
    return 1.0 / (1.0 + math.exp(-(-1.5 + 4.0 * coverage - 0.03 * (words - 40))))
