"""Summarize a PDF for a user's question: a Hamilton dataflow (prompts as code).

pdf_source -> raw_text -> chunked_text -> chunk_prompts -> chunk_completions -> summarized_chunks
-> prompt_and_text_content -> final_completion -> summarized_text. The two prompt templates are
nodes of their own (`summarize_chunk_of_text_prompt`, `summarize_text_from_summaries_prompt`),
rendering them is another node, and each prompt has versions selected by the arm's config
`prompt_version` ("v1", "v2", "v3") through `@config.when`, tagged `prompt_id`/`prompt_version`.
A whole prompt set can also come from a module listed after this one
(`variants.summarization.prompts`).

Run inputs (`INPUTS`): `pdf_source` (the PDF's bytes) and `user_query` (at most
`max_query_chars` characters). Arm config, all optional but `prompt_version`: `model`
("gpt-4o-mini"), `temperature` (0.0), `chunk_tokens` (800), `chunk_overlap_tokens` (10% of
`chunk_tokens`), `content_type` ("a document"), `max_concurrency` (4 chunk calls at once),
`max_pdf_bytes`/`max_pdf_pages` (20 MB, 200 pages), `max_query_chars` (4000). An unusable PDF or
question raises `FlowInputError` (`PdfError` is one), which the platform answers with 422.

LLM nodes return `Completion`s (`chunk_completions`, `final_completion`) so a lifecycle hook can
read usage from node results; node bodies do no logging, and prompt nodes no I/O. Hamilton
type-checks config values at run time, hence `temperature: float | int` (YAML's `0` is an int).

Helpers live in submodules imported under a `_` name (`_pdfs`): Hamilton turns every public
function of a package's submodules that the package imports by name into a node.

The UPPER_CASE constants are the flow's contract with the platform (DESIGN.md, Flows: the
contract): the run inputs, the outputs, and sample inputs for the validation dry run.
"""

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hamilton.function_modifiers import config, tag

from abtest import Completion, FlowInputError, LLMClient
from abtest.tokens import estimate_tokens
from variants import rendering as _rendering
from variants.summarization import pdfs as _pdfs
from variants.summarization.prompts import v1 as _v1
from variants.summarization.prompts import v2 as _v2

INPUTS = ("pdf_source", "user_query")
"""What a request gives: the PDF and the user's question (Hamilton's example names)."""

FINAL_VARS = ("summarized_text",)
"""What a run returns."""

SAMPLE_INPUTS: dict[str, Any] = {
    "pdf_source": (Path(__file__).parent / "sample.pdf").read_bytes(),
    "user_query": "What did the pilot change for commuters?",
}
"""A one-page PDF (the first page of `pdfs.SAMPLE_REPORT`) and a question, for the dry run."""

DEFAULT_CONTENT_TYPE = "a document"
DEFAULT_MODEL = "gpt-4o-mini"

_V3_CHUNK_TEMPLATE = (
    "Summarize this part of {content_type} in one sentence. Focus on: {query}\n"
    "\n"
    "<document>\n{text}\n</document>"
)
_V3_FINAL_TEMPLATE = (
    "Summarize these notes on {content_type} in 3 sentences, without bullet points. "
    "Focus on: {query}\n"
    "\n"
    "<document>\n{summaries}\n</document>"
)


def raw_text(
    pdf_source: bytes,
    max_pdf_bytes: int = _pdfs.DEFAULT_MAX_BYTES,
    max_pdf_pages: int = _pdfs.DEFAULT_MAX_PAGES,
) -> str:
    """Text of the PDF, a `[page N]` line before each page's text (raises `PdfError`)."""
    return _pdfs.read_pdf_text(pdf_source, max_bytes=max_pdf_bytes, max_pages=max_pdf_pages)


def query(user_query: str, max_query_chars: int = 4000) -> str:
    """The user's question, refused when empty or longer than `max_query_chars`."""
    text = user_query.strip()
    if not text:
        raise FlowInputError("user_query must not be empty", reason="empty_query")
    if len(user_query) > max_query_chars:
        raise FlowInputError(
            f"user_query is too long: {len(user_query)} characters (limit {max_query_chars})",
            reason="query_too_long",
        )
    return text


def chunked_text(
    raw_text: str, chunk_tokens: int = 800, chunk_overlap_tokens: int | None = None
) -> list[str]:
    """Chunks of at most about `chunk_tokens` tokens, cut at sentence or line boundaries."""
    overlap = chunk_tokens // 10 if chunk_overlap_tokens is None else chunk_overlap_tokens
    return _chunk(raw_text, chunk_tokens, overlap)


@tag(prompt_id="summarize-chunk", prompt_version="v1")
@config.when(prompt_version="v1")
def summarize_chunk_of_text_prompt__v1() -> str:
    """v1: key points with reasoning, no length limit, question not used."""
    return _v1.CHUNK_TEMPLATE


@tag(prompt_id="summarize-chunk", prompt_version="v2")
@config.when(prompt_version="v2")
def summarize_chunk_of_text_prompt__v2() -> str:
    """v2: at most 40 words of bullet points, focused on the question."""
    return _v2.CHUNK_TEMPLATE


@tag(prompt_id="summarize-chunk", prompt_version="v3")
@config.when(prompt_version="v3")
def summarize_chunk_of_text_prompt__v3() -> str:
    """v3: one sentence per chunk, focused on the question."""
    return _V3_CHUNK_TEMPLATE


def chunk_prompts(
    summarize_chunk_of_text_prompt: str,
    chunked_text: list[str],
    query: str,
    content_type: str = DEFAULT_CONTENT_TYPE,
) -> list[str]:
    """The chunk template rendered once per chunk."""
    return [
        _rendering.render(
            summarize_chunk_of_text_prompt, content_type=content_type, query=query, text=chunk
        )
        for chunk in chunked_text
    ]


def chunk_completions(
    chunk_prompts: list[str],
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
    max_concurrency: int = 4,
) -> list[Completion]:
    """One LLM call per chunk, at most `max_concurrency` at a time, in chunk order."""
    return _map_bounded(
        lambda prompt: llm_client.complete(
            [{"role": "user", "content": prompt}], model=model, temperature=float(temperature)
        ),
        chunk_prompts,
        max_concurrency,
    )


def summarized_chunks(chunk_completions: list[Completion]) -> str:
    """The chunk summaries, in document order, separated by blank lines."""
    return "\n\n".join(c.text.strip() for c in chunk_completions if c.text.strip())


@tag(prompt_id="final-summary", prompt_version="v1")
@config.when(prompt_version="v1")
def summarize_text_from_summaries_prompt__v1() -> str:
    """v1: a summary of core argument, evidence and conclusions that answers the question."""
    return _v1.FINAL_TEMPLATE


@tag(prompt_id="final-summary", prompt_version="v2")
@config.when(prompt_version="v2")
def summarize_text_from_summaries_prompt__v2() -> str:
    """v2: the answer to the question in at most 60 words of bullet points."""
    return _v2.FINAL_TEMPLATE


@tag(prompt_id="final-summary", prompt_version="v3")
@config.when(prompt_version="v3")
def summarize_text_from_summaries_prompt__v3() -> str:
    """v3: three sentences, no bullets, focused on the question."""
    return _V3_FINAL_TEMPLATE


def prompt_and_text_content(
    summarize_text_from_summaries_prompt: str,
    query: str,
    summarized_chunks: str,
    content_type: str = DEFAULT_CONTENT_TYPE,
) -> str:
    """The final template rendered with the question and the chunk summaries."""
    return _rendering.render(
        summarize_text_from_summaries_prompt,
        content_type=content_type,
        query=query,
        summaries=summarized_chunks,
    )


def final_completion(
    prompt_and_text_content: str,
    llm_client: LLMClient,
    model: str = DEFAULT_MODEL,
    temperature: float | int = 0.0,
) -> Completion:
    """The LLM call that writes the final summary."""
    return llm_client.complete(
        [{"role": "user", "content": prompt_and_text_content}],
        model=model,
        temperature=float(temperature),
    )


def summarized_text(final_completion: Completion) -> str:
    """The summary shown to the user."""
    return final_completion.text.strip()


# -- helpers (not nodes) -------------------------------------------------------------------------

_T = TypeVar("_T")
_R = TypeVar("_R")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ENDS_LINE = re.compile(r"[.!?:;][\"')\]]*$")
_STARTS_LINE = re.compile(r"^(?:[-*\u2022]\s|\d+[.)]\s|\[page \d+\])")
_PAGE_MARKER = re.compile(r"^\[page \d+\]$")


def _units(text: str) -> list[tuple[str, str]]:
    """(separator, unit) pairs, a unit being a sentence; separators restore the text.

    Lines wrapped mid-sentence are joined first (a line continues unless it ends a sentence or
    the next line is a page marker or a list item); a `[page N]` marker stays with the unit
    after it, so a chunk never ends with a marker.
    """
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            lines.append("")
        elif (
            lines
            and lines[-1]
            and not _ENDS_LINE.search(lines[-1])
            and not _PAGE_MARKER.match(lines[-1])
            and not _STARTS_LINE.match(line)
        ):
            lines[-1] += " " + line
        else:
            lines.append(line)
    units: list[tuple[str, str]] = []
    marker = ""
    for line in lines:
        if not line:
            continue
        if _PAGE_MARKER.match(line):
            marker += line + "\n"
            continue
        for i, sentence in enumerate(s.strip() for s in _BOUNDARY.split(line) if s.strip()):
            units.append((" " if i else "\n", marker + sentence))
            marker = ""
    if marker:
        units.append(("\n", marker.strip()))
    return units


def _split_long(unit: str, limit: int) -> list[str]:
    """A unit longer than `limit` tokens cut at word boundaries (the only mid-sentence cut)."""
    pieces, words, used = [], [], 0
    for word in unit.split():
        cost = estimate_tokens(" " + word)
        if words and used + cost > limit:
            pieces.append(" ".join(words))
            words, used = [], 0
        words.append(word)
        used += cost
    if words:
        pieces.append(" ".join(words))
    return pieces


def _chunk(text: str, chunk_tokens: int, overlap_tokens: int) -> list[str]:
    """Greedy packing of sentence/line units; each chunk repeats up to `overlap_tokens` of the
    previous chunk's last units, so a point cut at a boundary keeps its context."""
    if chunk_tokens < 16:
        raise ValueError(f"chunk_tokens ({chunk_tokens}) must be >= 16")
    if not 0 <= overlap_tokens < chunk_tokens // 2:
        raise ValueError(
            f"chunk_overlap_tokens ({overlap_tokens}) must be >= 0 and < chunk_tokens / 2"
        )
    units: list[tuple[str, str, int]] = []
    for sep, unit in _units(text):
        cost = estimate_tokens(unit) + 1
        if cost <= chunk_tokens:
            units.append((sep, unit, cost))
        else:
            units.extend(
                (" ", piece, estimate_tokens(piece) + 1)
                for piece in _split_long(unit, chunk_tokens - 1)
            )
    chunks: list[str] = []
    current: list[tuple[str, str, int]] = []
    used = 0
    fresh = False  # does `current` hold a unit not yet emitted?
    for item in units:
        if current and used + item[2] > chunk_tokens:
            if fresh:
                chunks.append(_join(current))
            carried: list[tuple[str, str, int]] = []
            budget = min(overlap_tokens, chunk_tokens - item[2])
            for prev in reversed(current):
                if prev[2] > budget:
                    break
                carried.insert(0, prev)
                budget -= prev[2]
            current, used, fresh = carried, sum(u[2] for u in carried), False
        current.append(item)
        used += item[2]
        fresh = True
    if fresh:
        chunks.append(_join(current))
    return chunks


def _join(units: list[tuple[str, str, int]]) -> str:
    return "".join(sep + unit for sep, unit, _ in units).strip()


def _map_bounded(fn: Callable[[_T], _R], items: list[_T], max_concurrency: int) -> list[_R]:
    """`[fn(x) for x in items]` with at most `max_concurrency` calls at once; the first error
    cancels the calls not yet started and is raised."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency ({max_concurrency}) must be >= 1")
    if len(items) <= 1 or max_concurrency == 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(max_concurrency, len(items)))
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
