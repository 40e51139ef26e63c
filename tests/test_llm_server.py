"""The local model server, driven by the real ``openai`` SDK and raw HTTP (no mocks)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from abtest.devtools.llm_server import count_words, serve_in_thread, split_sentences
from abtest.devtools.local_model_support import GREETING, label_options, pick_label
from abtest.tokens import estimate_tokens
from tests.llm_fixtures import stdout_per_hash_seed

ARTICLE = (
    "The city council approved a new budget for public transport on Monday. "
    "The budget adds forty electric buses and extends two tram lines to the northern suburbs. "
    "Council members argued for hours about the cost of the tram extension. "
    "Critics said the tram project would exceed its budget because of rising steel prices. "
    "Supporters replied that electric buses will cut emissions and fuel costs within five years. "
    "The mayor said ticket prices will stay the same until 2026. "
    "Construction of the tram extension starts next spring and should finish in 2027. "
    "Residents of the northern suburbs welcomed the news, saying their commute takes over an "
    "hour today."
)
SYSTEM = "You are a careful assistant that summarizes documents."


def _messages(instruction: str, text: str = ARTICLE) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{instruction}\n\nText:\n{text}"},
    ]


@pytest.fixture
def base_url(llm_server) -> str:  # noqa: F811  (the fixture imported above)
    return llm_server.base_url


@pytest.fixture
def sdk(base_url: str):
    client = openai.OpenAI(base_url=base_url, api_key="local", max_retries=0)
    yield client
    client.close()


def _ask(sdk: openai.OpenAI, instruction: str, model: str = "gpt-4o-mini", **kwargs) -> str:
    response = sdk.chat.completions.create(model=model, messages=_messages(instruction), **kwargs)
    return response.choices[0].message.content or ""


def _expected_prompt_tokens(messages: list[dict[str, str]]) -> int:
    # OpenAI's accounting: 3 tokens per message + role + content, plus 3 to prime the reply.
    return sum(3 + estimate_tokens(m["role"]) + estimate_tokens(m["content"]) for m in messages) + 3


def test_models_are_listed(sdk: openai.OpenAI) -> None:
    ids = [model.id for model in sdk.models.list()]
    assert {"gpt-4o-mini", "gpt-4o", "local-extractive"} <= set(ids)
    assert sdk.models.retrieve("gpt-4o").id == "gpt-4o"


def test_non_stream_completion_parses_with_honest_usage(sdk: openai.OpenAI) -> None:
    messages = _messages("Summarize the text.")
    response = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert response.object == "chat.completion"
    assert response.model == "gpt-4o-mini"
    assert response.id.startswith("chatcmpl-")
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    text = choice.message.content or ""
    assert text and text.split()[0] in ARTICLE
    assert response.usage is not None
    assert response.usage.prompt_tokens == _expected_prompt_tokens(messages)
    assert response.usage.completion_tokens == estimate_tokens(text)
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_stream_matches_non_stream_and_reports_usage(sdk: openai.OpenAI) -> None:
    messages = _messages("Summarize the text in 2 sentences.")
    plain = sdk.chat.completions.create(model="gpt-4o", messages=messages)
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].usage.prompt_tokens == _expected_prompt_tokens(messages)
    assert usage_chunks[0].usage.completion_tokens == estimate_tokens(text)


def test_stream_without_usage_option_sends_no_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=_messages("Summarize the text."), stream=True
        )
    )
    assert len(chunks) > 2
    assert all(chunk.usage is None for chunk in chunks)


@pytest.mark.parametrize(
    ("instruction", "limit"),
    [
        ("Summarize the text in at most 12 words.", 12),
        ("Summarize the text in 30 words or fewer.", 30),
        ("Summarize the text in under 20 words.", 19),
        ("Write a summary of no more than fifty words.", 50),
        ("Summarize in 5 words.", 5),
    ],
)
def test_word_limits_are_followed(sdk: openai.OpenAI, instruction: str, limit: int) -> None:
    text = _ask(sdk, instruction, model="gpt-4o")
    assert 1 <= count_words(text) <= limit


def test_looser_word_limit_gives_longer_summary(sdk: openai.OpenAI) -> None:
    short = _ask(sdk, "Summarize the text in at most 16 words.")
    long = _ask(sdk, "Summarize the text in at most 60 words.")
    assert count_words(short) < count_words(long) <= 60


def test_bullet_points_are_followed(sdk: openai.OpenAI) -> None:
    text = _ask(sdk, "Summarize the text as bullet points.")
    lines = text.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("- ") for line in lines)

    three = _ask(sdk, "Give me 3 bullet points, in at most 60 words.").splitlines()
    assert len(three) == 3 and all(line.startswith("- ") for line in three)

    plain = _ask(sdk, "Summarize the text without bullet points.")
    assert not plain.startswith("- ")


def test_sentence_count_is_followed(sdk: openai.OpenAI) -> None:
    assert len(split_sentences(_ask(sdk, "Summarize the text in one sentence."))) == 1
    assert len(split_sentences(_ask(sdk, "Summarize the text in 4 sentences."))) == 4


def test_different_prompts_give_different_outputs(sdk: openai.OpenAI) -> None:
    outputs = {
        _ask(sdk, "Summarize the text. Focus on: emissions and fuel costs of electric buses."),
        _ask(sdk, "Summarize the text. Focus on: construction dates of the tram extension."),
        _ask(sdk, "Summarize the text in one sentence."),
        _ask(sdk, "Summarize the text as bullet points."),
    }
    assert len(outputs) == 4


def test_focus_selects_relevant_sentences(sdk: openai.OpenAI) -> None:
    buses = _ask(sdk, "Summarize in one sentence. Focus on: emissions and fuel costs.")
    assert "emissions" in buses
    asked = _ask(sdk, "The user asked: when does construction start? Answer in one sentence.")
    assert "Construction" in asked


def test_same_request_gives_same_output(sdk: openai.OpenAI) -> None:
    for temperature in (0.0, 0.9):
        first = _ask(sdk, "Summarize the text.", temperature=temperature)
        second = _ask(sdk, "Summarize the text.", temperature=temperature)
        assert first == second


def test_bigger_model_writes_more_by_default(sdk: openai.OpenAI) -> None:
    mini = _ask(sdk, "Summarize the text.", model="gpt-4o-mini")
    big = _ask(sdk, "Summarize the text.", model="gpt-4o")
    assert count_words(mini) < count_words(big)


def test_max_tokens_truncates_with_length_finish(sdk: openai.OpenAI) -> None:
    response = sdk.chat.completions.create(
        model="gpt-4o", messages=_messages("Summarize the text."), max_tokens=6
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert 1 <= response.usage.completion_tokens <= 6


def test_unknown_model_is_openai_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="gpt-9-ultra", messages=_messages("Summarize."))
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'{"model": "gpt-4o-mini"}',
        b'{"model": "gpt-4o-mini", "messages": []}',
        b'{"model": "gpt-4o-mini", "messages": "hello"}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "hi"}]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}',
        b'{"model": "gpt-4o-mini", "temperature": 9, "messages": [{"role": "user"}]}',
        b'{"model": "gpt-4o-mini", "max_tokens": 0, "messages": [{"role": "user"}]}',
        b"\xff\xfe",
    ],
)
def test_malformed_requests_get_openai_style_4xx(base_url: str, body: bytes) -> None:
    response = httpx.post(
        f"{base_url}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_unknown_route_is_json_404(base_url: str) -> None:
    response = httpx.get(f"{base_url}/nothing-here")
    assert response.status_code == 404
    assert "error" in response.json()


def test_x_fail_header_injects_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        _ask(sdk, "Summarize.", extra_headers={"x-fail": "429"})
    with pytest.raises(openai.InternalServerError):
        _ask(sdk, "Summarize.", extra_headers={"x-fail": "500"})
    headers = {"x-fail": "503", "x-fail-count": "1", "x-request-key": "server-test-once"}
    with pytest.raises(openai.InternalServerError):
        _ask(sdk, "Summarize.", extra_headers=headers)
    assert _ask(sdk, "Summarize.", extra_headers=headers)  # second try passes


def test_failure_rate_and_latency_injection() -> None:
    payload = {"model": "local-extractive", "messages": _messages("Summarize.")}

    def statuses(seed: int) -> list[int]:
        with serve_in_thread(failure_rate=0.5, seed=seed, latency_ms=20) as server:
            url = f"{server.base_url}/chat/completions"
            with httpx.Client() as http:
                started = time.perf_counter()
                codes = [http.post(url, json=payload).status_code for _ in range(20)]
                assert time.perf_counter() - started >= 20 * 0.02
        return codes

    first = statuses(seed=7)
    assert {200, 500, 429} <= set(first)
    assert 4 <= first.count(500) + first.count(429) <= 16
    assert statuses(seed=7) == first  # seeded: the same run fails the same requests


def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    """Scores are summed exactly, so ties break the same way in every process: the demo's
    flows give the same summaries whatever PYTHONHASHSEED is."""
    script = (
        "import hashlib\n"
        "from abtest.devtools.llm_server import serve_in_thread\n"
        "from abtest.llm import LLMClient\n"
        "from abtest.platform import Platform\n"
        "from variants.summarization.corpus import DOCUMENTS\n"
        "from variants.summarization.simulation import _pdfs\n"
        "server = serve_in_thread()\n"
        "platform = Platform.load('experiments', llm_client=LLMClient(base_url=server.base_url))\n"
        "texts = []\n"
        "for document, pdf in zip(DOCUMENTS, _pdfs()):\n"
        "    for query in document.queries:\n"
        "        inputs = {'pdf_source': pdf, 'user_query': query}\n"
        "        for arm in ('control', 'v2', 'v2-small-chunks'):\n"
        "            run = platform.flows.run('pdf-summary-prompts', arm, inputs)\n"
        "            texts.append(run.outputs['summarized_text'])\n"
        "print(hashlib.sha256('|'.join(texts).encode()).hexdigest())\n"
    )
    # without exact sums, hash seeds 1 and 8 broke a tie differently
    outputs = stdout_per_hash_seed(script)
    assert len(outputs) == 1


# -- support prompts: pick a label, reply from knowledge, rewrite a reply ------------------------

LABELS = ["billing", "refund", "shipping", "account", "technical", "other"]
KB = (
    "Refunds are available within 30 days of purchase. Approved refunds reach your card within "
    "5-7 business days. Our support team answers by chat 24/7, every day of the year."
)


def _label_prompt(message: str, labels: list[str] = LABELS) -> list[dict[str, str]]:
    return [
        {
            "role": "user",
            "content": "Classify the customer's message. Answer with exactly one of: "
            f"{', '.join(labels)}.\n\n<message>\n{message}\n</message>",
        }
    ]


@pytest.mark.parametrize(
    ("message", "options", "expected"),
    [
        ("Where is my invoice?", LABELS, "billing"),  # synonym
        ("I was charged twice", LABELS, "billing"),  # "charged" ~ "charge" (prefix)
        ("Please refund me, I was charged twice", LABELS, "refund"),  # the label's name: 2 points
        ("My package is late", LABELS, "shipping"),
        ("Do you sell gift cards?", LABELS, "other"),  # nothing matches: other
        ("Do you sell gift cards?", ["billing", "refund"], "billing"),  # ... else the first
        ("billing or shipping?", ["shipping", "billing"], "shipping"),  # tie: first listed
        ("My parcel never came", LABELS, "other"),  # not in the built-in synonyms
        ("My parcel never came", [("billing", ""), ("shipping", "parcels, couriers")], "shipping"),
        ("Hello", ["Order Status", "other"], "other"),
    ],
)
def test_pick_label(message, options, expected) -> None:
    assert pick_label(message, options) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer with exactly one of: a, b or c. Nothing else.", ["a", "b", "c"]),
        ("Pick one of: spam | ham", ["spam", "ham"]),
        ("Choose one of: billing (invoices, cards), other", ["billing", "other"]),
        (
            "One of the following labels:\n- billing: invoices\n- other\nAnswer.",
            ["billing", "other"],
        ),
        ("It was one of: the best days of my life, honestly", []),  # not names
        ("Summarize this text.", []),
    ],
)
def test_label_options(text, expected) -> None:
    assert [label for label, _ in label_options(text)] == expected


def test_label_descriptions_are_read() -> None:
    options = label_options(
        "Classify into one of these labels:\n- billing: invoices, cards\n- other"
    )
    assert options == [("billing", "invoices, cards"), ("other", "")]


@pytest.mark.parametrize("temperature", [0.0, 1.3])
def test_classification_prompt_gets_exactly_one_label(sdk: openai.OpenAI, temperature) -> None:
    expected = {
        "The app crashes when I open it": "technical",
        "How do I reset my password?": "account",
        "The app crashes at login": "account",  # crash and login score 1 each: first listed
        "Hi!": "other",
    }
    for message, label in expected.items():
        response = sdk.chat.completions.create(
            model="gpt-4o", messages=_label_prompt(message), temperature=temperature
        )
        assert response.choices[0].message.content == label, message


def test_classification_with_a_message_label_and_a_system_prompt(sdk: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You label support tickets. Reply with one of: a, b."},
        {"role": "user", "content": "Ticket: nothing relevant here"},
    ]
    response = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert response.choices[0].message.content == "a"


def test_reply_is_drawn_from_the_knowledge(sdk: openai.OpenAI) -> None:
    prompt = (
        "Answer the customer's message using only the knowledge below.\n\n"
        f"<knowledge>\n{KB}\n</knowledge>\n\n<message>\nWhen does my refund reach my card?\n"
        "</message>"
    )
    text = _ask_raw(sdk, prompt, model="gpt-4o-mini")
    assert "5-7 business days" in text
    assert set(split_sentences(text)) <= set(split_sentences(KB))
    short = _ask_raw(sdk, prompt.replace("below.", "below, in at most 12 words."))
    assert 1 <= count_words(short) <= 12


def test_reply_with_labelled_sections_and_a_warm_tone(sdk: openai.OpenAI) -> None:
    prompt = (
        "Reply warmly to the customer in at most 25 words.\n\n"
        f"Knowledge:\n{KB}\n\nCustomer message:\nCan I chat with someone on Sunday?"
    )
    text = _ask_raw(sdk, prompt)
    assert text.startswith(GREETING)
    assert "24/7" in text and count_words(text) <= 25


def test_rewrite_fits_the_reply_to_the_instructions(sdk: openai.OpenAI) -> None:
    draft = "Sorry about that. " + KB
    keep = _ask_raw(
        sdk, f"Rewrite this reply in a professional tone.\n\n<reply>\n{draft}\n</reply>"
    )
    assert keep == draft  # no limits: every sentence stays, short ones included
    warm = _ask_raw(
        sdk,
        "Rewrite this reply: warm and friendly, in at most 20 words.\n\n"
        f"<message>\nHow long until the money is on my card?\n</message>\n\n"
        f"<reply>\n{draft}\n</reply>",
    )
    assert warm.startswith(GREETING) and count_words(warm) <= 20
    assert "card" in warm  # the sentence that answers the message is the one kept


def test_support_answers_are_deterministic(sdk: openai.OpenAI) -> None:
    prompt = (
        f"Reply to the message.\n\n<knowledge>\n{KB}\n</knowledge>\n\n<message>\nhi\n</message>"
    )
    for temperature in (0.0, 0.8):
        first, second = (_ask_raw(sdk, prompt, temperature=temperature) for _ in range(2))
        assert first == second


def test_a_document_quoting_a_choice_is_still_summarized(sdk: openai.OpenAI) -> None:
    document = (
        "Voters could choose one of: yes, no, or abstain. The referendum on the tram line was held "
        "on Sunday. Turnout was high in every district."
    )
    text = _ask_raw(sdk, f"Summarize this text.\n\n<document>\n{document}\n</document>")
    assert count_words(text) > 3 and set(split_sentences(text)) <= set(split_sentences(document))


def _ask_raw(sdk: openai.OpenAI, prompt: str, model: str = "gpt-4o-mini", **kwargs) -> str:
    response = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], **kwargs
    )
    return response.choices[0].message.content or ""


def test_a_request_beyond_the_context_window_is_openais_400(sdk: openai.OpenAI) -> None:
    """local-small reads 512 tokens: a short text fits, a long one is refused as OpenAI
    refuses it (the SDK raises BadRequestError, code context_length_exceeded, no retry)."""
    short = sdk.chat.completions.create(model="local-small", messages=_messages("Summarize."))
    assert short.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="local-small", messages=_messages("Summarize.", ARTICLE * 8)
        )
    assert refused.value.code == "context_length_exceeded"
    assert "maximum context length is 512 tokens" in refused.value.message
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(
            model="local-small", messages=_messages("Summarize."), max_tokens=500
        )
