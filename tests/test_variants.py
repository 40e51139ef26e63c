"""The summarization dataflow itself: real Hamilton drivers, real PDFs, the local model server."""

from __future__ import annotations

import re
import threading
import time

import pytest
from hamilton import driver

import variants.summarization as summarization
import variants.summarization.prompts.v1 as prompts_v1
import variants.summarization.prompts.v2 as prompts_v2
from abtest.devtools.llm_server import split_sentences
from abtest.llm import Completion
from abtest.tokens import estimate_tokens
from variants.rendering import render as _render
from variants.summarization import _chunk, _map_bounded, _units
from variants.summarization.pdfs import read_pdf_text

QUERY = "What did the pilot cost and why?"
VERSIONS = ("v1", "v2", "v3")
PROMPT_NODES = ("summarize_chunk_of_text_prompt", "summarize_text_from_summaries_prompt")
ALL_NODES = [
    "raw_text",
    "query",
    "chunked_text",
    "summarize_chunk_of_text_prompt",
    "chunk_prompts",
    "chunk_completions",
    "summarized_chunks",
    "summarize_text_from_summaries_prompt",
    "prompt_and_text_content",
    "final_completion",
    "summarized_text",
]


def _build(config, *modules):
    return (
        driver.Builder()
        .with_modules(*(modules or (summarization,)))
        .with_config(config)
        .allow_module_overrides()
        .build()
    )


@pytest.fixture(scope="module")
def runs(report_pdf, session_llm_client) -> dict[str, dict]:
    """Every node of one run per prompt version (chunk_tokens 300: several chunks)."""
    out = {}
    for version in VERSIONS:
        dr = _build({"prompt_version": version, "chunk_tokens": 300})
        out[version] = dr.execute(
            ALL_NODES,
            inputs={
                "pdf_source": report_pdf,
                "user_query": QUERY,
                "llm_client": session_llm_client,
            },
        )
    return out


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9']+", text))


# -- prompt nodes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_resolves_tagged_prompt_nodes(version):
    nodes = {v.name: v for v in _build({"prompt_version": version}).list_available_variables()}
    for name in PROMPT_NODES:
        assert not nodes[name].is_external_input
        assert nodes[name].tags["prompt_version"] == version
    assert nodes["summarize_chunk_of_text_prompt"].tags["prompt_id"] == "summarize-chunk"
    assert nodes["summarize_text_from_summaries_prompt"].tags["prompt_id"] == "final-summary"


def test_prompt_nodes_are_found_by_their_tag():
    dr = _build({"prompt_version": "v2"})
    tagged = dr.list_available_variables(tag_filter={"prompt_id": None})
    assert sorted(v.name for v in tagged) == sorted(PROMPT_NODES)


def test_an_unknown_version_leaves_the_prompt_as_a_required_input():
    """The Hamilton pitfall FlowRegistry guards against: no error until execute."""
    nodes = {v.name: v for v in _build({"prompt_version": "v9"}).list_available_variables()}
    assert nodes["summarize_chunk_of_text_prompt"].is_external_input


def test_versions_differ_and_module_sets_match_config_when(runs):
    chunk = {v: r["summarize_chunk_of_text_prompt"] for v, r in runs.items()}
    final = {v: r["summarize_text_from_summaries_prompt"] for v, r in runs.items()}
    assert len(set(chunk.values())) == 3 and len(set(final.values())) == 3
    assert chunk["v1"] == prompts_v1.CHUNK_TEMPLATE and final["v1"] == prompts_v1.FINAL_TEMPLATE
    assert chunk["v2"] == prompts_v2.CHUNK_TEMPLATE and final["v2"] == prompts_v2.FINAL_TEMPLATE


@pytest.mark.parametrize("module", [prompts_v1, prompts_v2])
def test_prompt_modules_replace_the_base_prompt_nodes(module):
    dr = _build({"prompt_version": module.PROMPT_VERSION}, summarization, module)
    nodes = {v.name: v for v in dr.list_available_variables()}
    for name in PROMPT_NODES:
        assert nodes[name].tags["module"] == module.__name__
        assert nodes[name].tags["prompt_version"] == module.PROMPT_VERSION
    out = dr.execute(list(PROMPT_NODES))
    assert out["summarize_chunk_of_text_prompt"] == module.CHUNK_TEMPLATE


def test_rendering_fills_fields_and_refuses_anything_else():
    assert _render("{a} and {b}", a="x", b="{c}") == "x and {c}"
    assert _render("literal {{braces}}", a="x") == "literal {braces}"
    for bad in ("{missing}", "{a.__class__}", "{a[0]}", "{a!r}", "{a:>10}"):
        with pytest.raises(ValueError, match="is not one of"):
            _render(bad, a="x")


def test_rendered_prompts_carry_the_document_and_the_question(runs):
    for version, run in runs.items():
        assert len(run["chunk_prompts"]) == len(run["chunked_text"]) >= 2
        for prompt, chunk in zip(run["chunk_prompts"], run["chunked_text"], strict=True):
            assert f"<document>\n{chunk}\n</document>" in prompt
            assert "{" not in prompt.replace("{{", "")
        assert run["summarized_chunks"] in run["prompt_and_text_content"]
        if version != "v1":  # v1's chunk prompt ignores the question by design
            assert QUERY.rstrip("?") in run["chunk_prompts"][0]
        assert QUERY.rstrip("?") in run["prompt_and_text_content"]


# -- chunking -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_text(report_pdf) -> str:
    return read_pdf_text(report_pdf)


@pytest.mark.parametrize("size", [60, 150, 400])
def test_chunks_fit_the_budget_and_cut_at_sentences(report_text, size):
    chunks = _chunk(report_text, size, size // 10)
    assert len(chunks) >= 2
    for chunk in chunks:
        assert estimate_tokens(chunk) <= size
        assert re.search(r"[.!?]$", chunk), chunk[-40:]  # ends at a sentence boundary
        assert not re.search(r"\[page \d+\]$", chunk)  # a marker never ends a chunk
    sentences = [s for _, s in _units(report_text)]
    joined = "\n".join(chunks)
    assert all(s in joined for s in sentences)  # nothing is lost


def test_chunks_overlap_by_whole_sentences(report_text):
    chunks = _chunk(report_text, 150, 30)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        last_sentence = re.split(r"(?<=[.!?])\s+", previous)[-1]
        if estimate_tokens(last_sentence) + 1 <= 30:
            assert current.startswith(last_sentence) or last_sentence in current[:200]
    without = _chunk(report_text, 150, 0)
    assert sum(map(estimate_tokens, chunks)) > sum(map(estimate_tokens, without))


def test_wrapped_lines_are_joined_into_sentences():
    units = _units("[page 1]\nA sentence that wraps\nonto the next line. Second one.\n- a bullet")
    assert units == [
        ("\n", "[page 1]\nA sentence that wraps onto the next line."),
        (" ", "Second one."),
        ("\n", "- a bullet"),
    ]


def test_an_overlong_sentence_is_cut_at_words():
    sentence = " ".join(f"word{i}" for i in range(300)) + "."
    chunks = _chunk(sentence, 50, 5)
    assert len(chunks) > 3
    assert all(estimate_tokens(c) <= 50 for c in chunks)
    assert " ".join(chunks).split() == sentence.split()


def test_chunk_config_is_checked():
    with pytest.raises(ValueError, match="chunk_tokens"):
        _chunk("Some text.", 8, 0)
    with pytest.raises(ValueError, match="chunk_overlap_tokens"):
        _chunk("Some text.", 100, 60)


# -- LLM calls ------------------------------------------------------------------------------------


def test_llm_nodes_return_completions_with_usage(runs):
    for run in runs.values():
        assert all(isinstance(c, Completion) for c in run["chunk_completions"])
        assert len(run["chunk_completions"]) == len(run["chunked_text"])
        final = run["final_completion"]
        assert isinstance(final, Completion) and final.prompt_tokens > 0
        assert run["summarized_text"] == final.text.strip()
        assert run["summarized_chunks"].count("\n\n") == len(run["chunk_completions"]) - 1


def test_prompt_versions_change_the_output_measurably(runs):
    outputs = {v: r["summarized_text"] for v, r in runs.items()}
    assert len(set(outputs.values())) == 3
    v1, v2, v3 = outputs["v1"], outputs["v2"], outputs["v3"]
    assert not v1.startswith("- ")
    assert all(line.startswith("- ") for line in v2.splitlines())  # bullet points
    assert _words(v2) <= 60
    assert all(_words(c.text) <= 40 for c in runs["v2"]["chunk_completions"])
    assert not v3.startswith("- ")
    assert len(split_sentences(v3)) == 3  # three sentences (as the model server counts them)
    for c in runs["v3"]["chunk_completions"]:  # one sentence per chunk
        assert len(split_sentences(c.text)) == 1
    assert "cost" in v2.lower() or "dollars" in v2.lower()  # focused on the question


def test_chunk_calls_run_concurrently_but_bounded():
    active = 0
    peak = 0
    lock = threading.Lock()

    def call(item: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return item * 10

    assert _map_bounded(call, list(range(9)), 3) == [i * 10 for i in range(9)]
    assert peak == 3
    peak = 0
    assert _map_bounded(call, [1, 2], 1) == [10, 20]
    assert peak == 1
    with pytest.raises(ValueError, match="max_concurrency"):
        _map_bounded(call, [1], 0)


def test_the_first_chunk_failure_propagates():
    def call(item: int) -> int:
        if item == 2:
            raise RuntimeError("chunk 2 failed")
        return item

    with pytest.raises(RuntimeError, match="chunk 2 failed"):
        _map_bounded(call, [1, 2, 3, 4], 2)
