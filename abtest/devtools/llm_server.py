"""A local, OpenAI-compatible stand-in for a real model, for offline demos and tests.

The server speaks the subset of the OpenAI REST API the platform uses (``GET /v1/models``,
``POST /v1/chat/completions`` with and without ``stream``), so the official ``openai`` SDK talks
to it unchanged: point ``base_url`` at ``http://127.0.0.1:PORT/v1``. It is *not* a language
model. Behind it sits a deterministic `LocalModel` that genuinely reads the prompt: judge
prompts (rate an answer on a scale) get a score, as described under **Judge prompts** below;
support prompts (pick a label, reply from knowledge, rewrite a reply) get the answers described
under **Support prompts**; every other prompt gets an extractive summary:

* **Text to summarize.** The first of: blocks fenced by triple backticks or triple quotes, or
  wrapped in ``<document>``/``<text>``/``<article>``/``<context>``/``<passage>``/``<input>``/
  ``<content>``/``<transcript>``/``<source>`` tags; else whatever follows a label line such as
  ``Text:``, ``Document:``, ``Article:``, ``Passage:``, ``Context:``, ``Content:``, ``Input:``,
  ``Transcript:``, ``Source:``; else the user paragraphs that do not look like instructions
  (and the part after the colon of an instruction such as ``Summarize this: ...``).
* **Instructions** are read from everything else (system/developer messages and the rest of the
  user messages), case-insensitively; numbers may be digits or English words (``one`` ...
  ``twenty``, ``thirty`` ... ``hundred``):

  - word limits: ``in at most N words``, ``at most N words``, ``no more than N words``,
    ``not more than N words``, ``up to N words``, ``within N words``, ``maximum of N words``,
    ``max N words``, ``limit(ed) to N words``, ``N words or fewer``, ``N words or less``,
    ``N words max``, ``in N words``, ``to N words`` (``keep it to N words``), ``an N-word
    summary`` -> at most N words; ``under N words``, ``fewer than N words``, ``less than N
    words``, ``below N words`` -> at most N-1 words. Several limits -> the smallest wins.
    Words are counted like :func:`count_words` (bullet markers are not words);
  - sentence counts: ``in N sentences``, ``N sentences``, ``one sentence``, ``a single
    sentence``, ``one-sentence`` -> N sentences;
  - bullets: ``bullet points``, ``bullet point``, ``bullets``, ``bulleted``, ``bullet list``,
    ``as bullets`` -> one ``- `` line per sentence; ``N bullet points`` / ``N bullets`` /
    ``N key points`` also fixes the count; ``no bullets``, ``without bullet ...``, ``do not use
    bullet ...``, ``don't use bullet ...``, ``avoid bullet ...`` switch bullets off;
  - focus: ``focus on: X`` / ``focus on X`` / ``focusing on X``, ``the user asked: X``,
    ``emphasize X``, ``concentrate on X``, and label lines ``Question: X``, ``Query: X``,
    ``Topic: X``, ``Focus: X``. Sentences sharing words with X are strongly preferred.

* **Scoring.** Sentences are scored by the document-wide frequency of their content words
  (stop words removed, crude stemming), normalised by sqrt(length), plus 3x the fraction of
  focus terms they contain, plus a small lead-sentence bonus. The best sentences are kept in
  document order, within the word limit (a single over-long sentence is cut at the limit and
  ends with an ellipsis).
* **Model styles.** Without explicit limits ``gpt-4o-mini`` writes 2 sentences / <= 50 words,
  ``gpt-4o`` 3 sentences / <= 90 words, ``local-extractive`` (and any other served model) 3
  sentences / <= 70 words. An explicit sentence count lifts the default word cap, an explicit
  word limit lifts the default sentence count (as many best sentences as fit); explicit
  limits apply to every model.
* **Judge prompts** (`abtest.devtools.local_model_judge.JudgeResponder`, tried first, before
  the support rules and the summarizer):

  - *recognised* when the prompt (system, developer and user messages) holds an answer to
    judge: an ``<answer>``/``<response>``/``<reply>``/``<summary>``/``<output>`` block, else the
    text after an ``Answer:``/``Response:``/``Reply:``/``Summary:``/``Output:`` label up to the
    next tag or ``Label:`` line (it may be empty); and when the rest of the prompt, outside the
    answer, the question and any other tagged or fenced block, has all of: a verb (``rate``,
    ``rating``, ``score``, ``grade``, ``evaluate``, ``judge``, ``assess``; the ``Score:`` label
    of the answer format does not count); an object
    (``answer``, ``response``, ``reply``, ``summary``, ``output``, singular or plural); a scale
    on a line that mentions a scale, score, rating, grade or points: ``from A to B`` (or ``from
    A-B``), ``between A and B``, else a bare ``A to B`` or ``A-B`` (digits, decimals and minus
    signs allowed, A < B, the first found); and an answer format ``Score:`` (or ``Rating:``,
    ``Grade:``, or with ``=``). Number words are not read as scale ends. Support and
    summarization prompts ask for no score on a scale, so they are never judged;
  - the *question* is a ``<question>``/``<message>``/``<query>``/``<request>``/``<input>`` block,
    else the text after such a label; the *rubric* is everything else, and its word limit is
    read as for summaries (``at most N words`` ...);
  - *score*: relevance = the share of the question's content words (stop words removed, crude
    stemming; equal stems or a shared prefix of 4+ letters match) that the answer contains, 0.5
    without a question or when it has no content words; brevity falls linearly from 1 (no
    words) to 0.8 at the rubric's word limit (120 words without one), then to 0 at twice the
    limit; quality = 0.7 * relevance + 0.3 * brevity; score = A + quality * (B - A), rounded
    half up to an integer when A and B are integers (else to two decimals). An answer without
    words scores A;
  - *the answer* is a one-line reason (``The reply covers 2 of the 6 key words of the message
    (charged, invoice). It is 28 words long, within the 40-word limit.``), then ``Score: N``
    (spelled with the label the prompt asked for: ``Rating: N`` for ``Rating:``).
    ``temperature``, ``seed`` and the model change nothing: the same messages always get the
    same judgement.
* **Support prompts** (`abtest.devtools.local_model_support.SupportResponder`, tried before
  summarizing, in this order):

  - *pick a label*: a prompt that offers, outside its tagged or fenced blocks, ``one of:`` a
    list of labels, inline (``Answer with exactly one of: billing, refund, other.``, separated
    by commas, ``or``, ``and``, ``|``, ``/``; ``label (description)`` allowed) or as the bullet
    lines that follow (``- billing: invoices, charges``), and that asks to classify,
    categorize, label, pick, choose, select or answer/respond/reply with, gets exactly one of
    the labels, spelled as listed. The text
    classified is the customer's message (see below), else a ``<text>``/``<input>``/``<query>``/
    ``<question>``/``<request>`` block or label, else the prompt without the list. Each of its
    content words scores 2 for a label whose name it matches, 1 for a label whose description
    or built-in synonyms (``LABEL_SYNONYMS``, for billing, refund, shipping, account, technical)
    it matches; words match when their stems are equal or one is a prefix (of 4 letters or
    more) of the other. The highest total wins, ties go to the label listed first, no score at
    all to ``other`` when listed (else the first label). ``temperature`` is ignored;
  - *rewrite a reply*: a prompt asking to rewrite, rephrase, reword, revise or polish a reply
    given in ``<reply>``/``<draft>``/``<draft_reply>``/``<response>``/``<answer>`` tags (or after
    a ``Reply:``/``Draft:``/``Draft reply:``/``Response:``/``Answer:`` label) returns the reply's
    own sentences (short ones included) fitted to the instructions outside it: word limits,
    sentence counts and bullets as above, but no model defaults (without limits every sentence
    stays). Sentences sharing most words with the customer's message, if the prompt has one,
    are kept first, else the leading ones; the kept ones stay in order;
  - *reply from knowledge*: a prompt with knowledge (``<knowledge>``/``<knowledge_base>``/
    ``<kb>``/``<faq>``/``<context>``/``<article(s)>``/``<document(s)>``/``<source(s)>``/
    ``<policy>`` tags or a ``Knowledge:``/``Knowledge base:``/``FAQ:``/``Context:``/``Help
    articles:``/``Policy:`` label), a customer message and a request to reply, respond, answer
    or write back returns the knowledge sentences that share most words with the message (same
    matching as labels; ties: earlier first), in the knowledge's order, within the explicit
    limits or else the model's style;
  - the *customer message* is a ``<message>``/``<customer_message>``/``<customer>``/
    ``<ticket>``/``<email>``/``<inquiry>`` block, or the text after a ``Message:``/``Customer
    message:``/``Customer:``/``Ticket:``/``Inquiry:`` label up to the next tag or ``Label:``
    line. Summarization prompts have none of these shapes, so they are summarized;
  - *tone*: when the instructions ask for a warm, friendly, empathetic or cheerful tone or a
    greeting, a reply or rewrite starts with ``GREETING`` ("Hi there, thanks for reaching
    out!"). Its words count towards the word limit; it is left out when the text already
    greets, or when with it no whole sentence would fit but without it one would.
* **Request parameters.** ``max_tokens`` (or ``max_completion_tokens``) truncates the output to
  that many estimated tokens and sets ``finish_reason="length"``; ``stop`` cuts at the first
  stop sequence. ``temperature`` > 0 adds score noise drawn from an RNG seeded by a hash of the
  whole request (model, messages, temperature, ``seed``) and the server ``seed``: different
  temperatures may pick different sentences (labels excepted), but the same request always gets
  the same answer. ``n`` must be 1; other OpenAI parameters are accepted and ignored.
* **Usage** is honest: ``prompt_tokens`` = :func:`abtest.tokens.estimate_message_tokens`
  (content + role + 3 tokens per message + 3 reply-priming tokens), ``completion_tokens`` =
  :func:`abtest.tokens.estimate_tokens` of the output.

Fault injection (for tests): ``latency_ms`` delays every chat completion (async sleep);
``failure_rate`` fails that share of chat completions, decided by ``random.Random(seed)``,
alternating 500 and 429. The request header ``x-fail: 429|500|503|timeout`` (any status
400-599 works) forces a failure; ``timeout`` hangs (up to ``hang_seconds``, or until the client
disconnects). With ``x-fail-count: K`` only the first K requests carrying the same
``x-request-key`` header (or, without it, the same body) fail, so client retries can succeed.
Errors always use OpenAI's JSON shape ``{"error": {"message", "type", "param", "code"}}``;
malformed requests get 400, unknown models 404, never 500.

Context windows (`CONTEXT_WINDOWS`): a request whose prompt tokens plus ``max_tokens`` exceed
the model's window gets OpenAI's 400 ``context_length_exceeded``, which the SDK does not
retry. ``local-small`` has a 512-token window, so a flow that sends a whole long document to
it in one call fails on that document every time: the demo's harmful arm.

Code: this module holds the summarizer, `LocalModel` (judge rules first, then support rules,
then the summarizer) and the HTTP layer; the shared text primitives (instructions, sentences,
terms, model styles) are in :mod:`abtest.devtools.local_text`, the judge rules in
:mod:`abtest.devtools.local_model_judge`, the support rules in
:mod:`abtest.devtools.local_model_support`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from abtest.devtools.local_model_judge import JudgeResponder
from abtest.devtools.local_model_support import SupportResponder
from abtest.devtools.local_text import (
    Instructions,
    choose_sentences,
    content_terms,
    count_words,
    parse_instructions,
    request_rng,
    sentence_limits,
    split_sentences,
)
from abtest.devtools.serving import ServerHandle, serve_app_in_thread
from abtest.tokens import estimate_message_tokens, estimate_tokens, message_text

__all__ = [
    "DEFAULT_MODELS",
    "ExtractiveSummarizer",
    "Instructions",
    "LocalModel",
    "ServerHandle",
    "count_words",
    "create_app",
    "main",
    "content_terms",
    "parse_instructions",
    "serve_in_thread",
    "split_sentences",
]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "local-extractive", "local-small")

CONTEXT_WINDOWS: dict[str, int] = {"local-small": 512}
"""Tokens a model reads and writes per request; models not listed have 128,000."""
DEFAULT_CONTEXT_WINDOW = 128_000


# ---------------------------------------------------------------------------------------------
# Finding the text to summarize
# ---------------------------------------------------------------------------------------------

_DOC_TAGS = "document|text|article|context|passage|input|content|transcript|source|doc"
_BLOCKS = [
    re.compile(r"```[\w-]*\n?(.*?)```", re.DOTALL),
    re.compile(r'"""(.*?)"""', re.DOTALL),
    re.compile(rf"<({_DOC_TAGS})>(.*?)</\1>", re.DOTALL | re.IGNORECASE),
]
_DOC_LABEL = re.compile(
    r"^[ \t]*(?:the\s+)?(?:text|document|article|passage|context|content|input|transcript|source)"
    r"(?:\s+to\s+summari[sz]e)?[ \t]*:[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_END_LABEL = re.compile(
    r"^[ \t]*(?:question|query|topic|focus|instructions?|the user asked)\b[^\n]*:",
    re.IGNORECASE | re.MULTILINE,
)
_INSTRUCTION_HINT = re.compile(
    r"\b(?:summari[sz]e|summary|tl;?dr|you are|respond|reply|please|instructions?|keep it|"
    r"make sure|focus(?:ing)? on|the user asked|bullet)",
    re.IGNORECASE,
)


def _is_instruction(paragraph: str) -> bool:
    """Short paragraph that gives an order or a constraint rather than content."""
    if len(paragraph.split()) > 60:
        return False
    if _INSTRUCTION_HINT.search(paragraph):
        return True
    parsed = parse_instructions(paragraph)
    return parsed.max_words is not None or parsed.sentences is not None


def _peel_trailing_instructions(document: str) -> tuple[str, str]:
    """Move instruction paragraphs at the end of a labelled document back to the instructions."""
    paras = re.split(r"\n\s*\n", document.strip())
    trailing: list[str] = []
    while len(paras) > 1 and _is_instruction(paras[-1]):
        trailing.insert(0, paras.pop())
    return "\n\n".join(paras), "\n\n".join(trailing)


def _split_document(
    instruction_sources: Sequence[str], user_texts: Sequence[str]
) -> tuple[str, str]:
    """Return ``(document, instruction_text)`` for the request."""
    everything = "\n\n".join([*user_texts, *instruction_sources])
    blocks: list[str] = []
    rest = everything
    for pattern in _BLOCKS:
        for m in pattern.finditer(rest):
            blocks.append(m.group(m.lastindex or 1))
        rest = pattern.sub("\n", rest)
    if any(b.strip() for b in blocks):
        return "\n\n".join(blocks), rest

    for source in [*user_texts, *instruction_sources]:
        label = _DOC_LABEL.search(source)
        if label:
            tail = source[label.end() :]
            end = _END_LABEL.search(tail)
            document = tail[: end.start()] if end else tail
            remaining = everything.replace(document, "\n", 1)
            document, trailing = _peel_trailing_instructions(document)
            if document.strip():
                return document, f"{remaining}\n\n{trailing}"

    doc_parts: list[str] = []
    instr_parts: list[str] = list(instruction_sources)
    for text in user_texts:
        for para in re.split(r"\n\s*\n", text):
            if not para.strip():
                continue
            head, colon, tail = para.partition(":")
            if (
                colon
                and len(tail.split()) >= 4
                and len(head.split()) <= 30
                and _is_instruction(head)
            ):
                instr_parts.append(head)
                para = tail
            elif _is_instruction(para):
                instr_parts.append(para)
                continue
            # "Summarize this in one sentence. The council ..." -> peel instruction sentences
            sentences = split_sentences(para)
            while len(sentences) > 1 and _is_instruction(sentences[0]):
                instr_parts.append(sentences.pop(0))
            while len(sentences) > 1 and _is_instruction(sentences[-1]):
                instr_parts.append(sentences.pop())
            doc_parts.append(" ".join(sentences))
    if not doc_parts:  # nothing but instructions: summarize what we were given
        doc_parts = list(user_texts) or list(instruction_sources)
    return "\n\n".join(doc_parts), "\n\n".join(instr_parts)


# ---------------------------------------------------------------------------------------------
# The extractive summarizer and the served model
# ---------------------------------------------------------------------------------------------


class ExtractiveSummarizer:
    """Deterministic extractive "model": picks the prompt's most salient sentences."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        request_seed: int | None = None,
    ) -> str:
        instruction_sources = [
            message_text(m.get("content"))
            for m in messages
            if m.get("role") in {"system", "developer"}
        ]
        user_texts = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
        document, instruction_text = _split_document(instruction_sources, user_texts)
        instructions = parse_instructions(instruction_text)
        sentences = split_sentences(document)
        if not sentences:
            return "There is no text to summarize."

        max_words, want = sentence_limits(instructions, model, len(sentences))
        scores = self._score(sentences, instructions.focus)
        if temperature > 0:
            rng = request_rng(model, messages, temperature, request_seed, self.seed)
            scores = [s + temperature * 0.5 * rng.random() for s in scores]
        picked = choose_sentences(sentences, scores, want, max_words)
        if instructions.bullets:
            return "\n".join(f"- {s}" for s in picked)
        return " ".join(picked)

    @staticmethod
    def _score(sentences: Sequence[str], focus: str) -> list[float]:
        terms = [content_terms(s) for s in sentences]
        freq: dict[str, int] = {}
        for ts in terms:
            for t in ts:
                freq[t] = freq.get(t, 0) + 1
        top = max(freq.values(), default=1)
        focus_terms = set(content_terms(focus))
        scores = []
        for i, ts in enumerate(terms):
            unique = set(ts)
            # fsum: exact, so the score (and every tie) does not depend on set order, which
            # varies with the process's hash seed
            salience = math.fsum(freq[t] / top for t in unique) / math.sqrt(len(unique) or 1)
            overlap = len(unique & focus_terms) / len(focus_terms) if focus_terms else 0.0
            lead = 0.15 if i == 0 else 0.0
            scores.append(salience + 3.0 * overlap + lead)
        return scores


class LocalModel:
    """The served model: `JudgeResponder` for judge prompts, `SupportResponder` for support
    prompts, else `ExtractiveSummarizer`."""

    def __init__(self, seed: int = 0) -> None:
        self.judge = JudgeResponder(seed=seed)
        self.support = SupportResponder(seed=seed)
        self.summarizer = ExtractiveSummarizer(seed=seed)

    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        temperature: float = 0.0,
        request_seed: int | None = None,
    ) -> str:
        kwargs = {"model": model, "temperature": temperature, "request_seed": request_seed}
        for responder in (self.judge, self.support):
            answer = responder.generate(messages, **kwargs)
            if answer is not None:
                return answer
        return self.summarizer.generate(messages, **kwargs)


def _apply_stop(text: str, stop: str | list[str] | None) -> str:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def _truncate_tokens(text: str, max_tokens: int) -> str:
    """Longest whitespace-aligned prefix of ``text`` costing at most ``max_tokens`` tokens."""
    pieces = re.findall(r"\s*\S+", text)
    lo, hi = 0, len(pieces)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_tokens("".join(pieces[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return "".join(pieces[:lo]).strip()


# ---------------------------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[_Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None


def _error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _injected_error(status: int) -> JSONResponse:
    if status == 429:
        return _error(
            429,
            "Rate limit reached (injected by the local model server).",
            type_="requests",
            code="rate_limit_exceeded",
        )
    if status >= 500:
        return _error(
            status,
            "The server had an error while processing your request (injected).",
            type_="server_error",
        )
    return _error(status, f"Injected error {status}.", code="injected_error")


@dataclass
class _FaultState:
    failure_rate: float
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    random_failures: int = 0
    keyed_failures: dict[str, int] = field(default_factory=dict)

    def random_failure(self) -> int | None:
        with self.lock:
            if self.failure_rate <= 0 or self.rng.random() >= self.failure_rate:
                return None
            self.random_failures += 1
            return 500 if self.random_failures % 2 == 1 else 429

    def keyed_failure_allowed(self, key: str, limit: int) -> bool:
        with self.lock:
            seen = self.keyed_failures.get(key, 0)
            if seen >= limit:
                return False
            self.keyed_failures[key] = seen + 1
            return True


def create_app(
    *,
    latency_ms: float = 0.0,
    failure_rate: float = 0.0,
    seed: int = 0,
    models: list[str] | None = None,
    hang_seconds: float = 30.0,
) -> FastAPI:
    """Build the OpenAI-compatible app (see the module docstring for the behaviour)."""
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate}")
    served = list(models) if models else list(DEFAULT_MODELS)
    local_model = LocalModel(seed=seed)
    faults = _FaultState(failure_rate=failure_rate, rng=random.Random(seed))
    created = int(time.time())
    app = FastAPI(title="abtest local model server", version="1.0")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"Invalid request: {exc.errors()[:1]}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return _error(exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"Internal error: {type(exc).__name__}", type_="server_error")

    def _model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "abtest-local"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(m) for m in served]}

    @app.get("/v1/models/{model_id}", response_model=None)
    async def get_model(model_id: str) -> dict[str, Any] | JSONResponse:
        if model_id not in served:
            return _model_not_found(model_id)
        return _model_card(model_id)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "We could not parse the JSON body of your request.")
        try:
            req = _ChatRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            return _error(400, f"Invalid value for '{param}': {first.get('msg')}", param=param)
        if req.model not in served:
            return _model_not_found(req.model)

        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        failure = await _injected_failure(request, raw)
        if failure is not None:
            return failure

        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        limit = req.max_completion_tokens or req.max_tokens
        overflow = _context_overflow(req.model, estimate_message_tokens(messages), limit)
        if overflow is not None:
            return overflow
        text = local_model.generate(
            messages, model=req.model, temperature=req.temperature or 0.0, request_seed=req.seed
        )
        finish_reason = "stop"
        text = _apply_stop(text, req.stop)
        if limit is not None and estimate_tokens(text) > limit:
            text, finish_reason = _truncate_tokens(text, limit), "length"
        usage = {
            "prompt_tokens": estimate_message_tokens(messages),
            "completion_tokens": estimate_tokens(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": "fp_abtest_local",
        }
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _stream(base, text, finish_reason, usage if include_usage else None),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            }
        )

    async def _injected_failure(request: Request, raw: bytes) -> JSONResponse | None:
        forced = request.headers.get("x-fail", "").strip().lower()
        if forced:
            count = request.headers.get("x-fail-count")
            key = request.headers.get("x-request-key") or hashlib.sha256(raw).hexdigest()
            applies = True
            if count is not None and count.strip().isdigit():
                applies = faults.keyed_failure_allowed(f"{forced}:{key}", int(count))
            if applies:
                if forced == "timeout":
                    deadline = time.monotonic() + hang_seconds
                    while time.monotonic() < deadline and not await request.is_disconnected():
                        await asyncio.sleep(0.05)
                    return _injected_error(504)
                if forced.isdigit() and 400 <= int(forced) <= 599:
                    return _injected_error(int(forced))
        status = faults.random_failure()
        return _injected_error(status) if status is not None else None

    return app


def _context_overflow(model: str, prompt_tokens: int, limit: int | None) -> JSONResponse | None:
    """OpenAI's answer to a request larger than the model's context window, or None."""
    window = CONTEXT_WINDOWS.get(model, DEFAULT_CONTEXT_WINDOW)
    needed = prompt_tokens + (limit or 0)
    if needed <= window:
        return None
    asked = f" ({prompt_tokens} in the messages, {limit} in the completion)" if limit else ""
    return _error(
        400,
        f"This model's maximum context length is {window} tokens. However, you requested "
        f"{needed} tokens{asked}. Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )


def _model_not_found(model: str) -> JSONResponse:
    return _error(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


async def _stream(
    base: dict[str, Any], text: str, finish_reason: str, usage: dict[str, int] | None
) -> AsyncIterator[str]:
    """Server-sent events in the shape of OpenAI's ``chat.completion.chunk`` stream."""

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        body: dict[str, Any] = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            body["usage"] = None
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in re.findall(r"\s*\S+", text):
        yield chunk({"content": piece}, None)
    yield chunk({}, finish_reason)
    if usage is not None:
        final = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------------
# Running the server
# ---------------------------------------------------------------------------------------------


def serve_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10.0, **app_kwargs: Any
) -> ServerHandle:
    """Start the local model server in a daemon thread; return once it answers HTTP.

    ``port=0`` picks a free port; ``handle.base_url`` is what the OpenAI SDK needs.
    ``app_kwargs`` go to :func:`create_app`.
    """
    return serve_app_in_thread(
        create_app(**app_kwargs),
        host,
        port,
        ready_path="/v1/models",
        lifespan="off",
        startup_timeout=startup_timeout,
        name="abtest-llm-server",
    )


def main(
    host: str = "127.0.0.1",
    port: int = 8000,
    latency_ms: float = 0.0,
    failure_rate: float = 0.0,
    seed: int = 0,
) -> None:
    """Run the server in the foreground (``abtest llm-server``)."""
    app = create_app(latency_ms=latency_ms, failure_rate=failure_rate, seed=seed)
    print(f"local model server (offline stand-in) on http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
