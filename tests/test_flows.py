"""FlowRegistry end to end: the example experiment's arms as real Hamilton drivers, real PDFs,
the real `openai` SDK over HTTP to the local model server, and a real Redis prompt registry."""

from __future__ import annotations

import asyncio
import copy
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from abtest.devtools.llm_server import serve_in_thread
from abtest.experiments import Experiment, parse_experiment
from abtest.flows import FlowConfigError, FlowRegistry, FlowResult
from abtest.llm import LLMClient
from abtest.prompts import PromptRegistry
from abtest.tokens import estimate_message_tokens, estimate_tokens
from variants.summarization.pdfs import SAMPLE_REPORT, make_pdf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "pdf_summary.yaml"
EXPERIMENT_ID = "pdf-summary-prompts"
QUERY = "What did the pilot cost and why?"
CHUNK = "summarize_chunk_of_text_prompt"
FINAL = "summarize_text_from_summaries_prompt"
NODES = {
    "raw_text",
    "query",
    "chunked_text",
    CHUNK,
    "chunk_prompts",
    "chunk_completions",
    "summarized_chunks",
    FINAL,
    "prompt_and_text_content",
    "final_completion",
    "summarized_text",
}


def example_data() -> dict:
    """A fresh copy of the example definition, for variations."""
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def experiment_from(data: dict) -> Experiment:
    return parse_experiment(data, "test copy of pdf_summary.yaml")


def two_arm_experiment(arm_config: dict, modules: list[str] | None = None) -> Experiment:
    """The example's control plus one arm `b` with `arm_config`."""
    data = example_data()
    arm = {"name": "b", "weight": 0.5, "config": arm_config}
    if modules:
        arm["modules"] = modules
    data["arms"] = [dict(data["arms"][0], weight=0.5), arm]
    data["overrides"] = {}
    return experiment_from(data)


@pytest.fixture(scope="module")
def experiment() -> Experiment:
    return experiment_from(example_data())


@pytest.fixture(scope="module")
def flows(experiment, session_llm_client) -> FlowRegistry:
    return FlowRegistry.from_experiments({experiment.id: experiment}, llm_client=session_llm_client)


@pytest.fixture(scope="module")
def results(flows, experiment, report_pdf) -> dict[str, FlowResult]:
    return {
        arm.name: flows.run(
            EXPERIMENT_ID, arm.name, {"pdf_source": report_pdf, "user_query": QUERY}
        )
        for arm in experiment.arms
    }


# -- every arm end to end ------------------------------------------------------------------------


def test_every_arm_runs_end_to_end(results, experiment, flows):
    assert set(results) == {"control", "v2", "v2-small-chunks"}
    for arm in experiment.arms:
        result = results[arm.name]
        assert result.ok, result.error
        assert result.error_kind is None
        assert set(result.outputs) == {"summarized_text"} and result.outputs["summarized_text"]
        assert set(result.timings_ms) == NODES
        assert all(ms >= 0 for ms in result.timings_ms.values())
        assert result.latency_ms >= result.timings_ms["final_completion"]
        for node in (CHUNK, FINAL):
            assert result.prompts[node].version == arm.config["prompt_version"]
        assert result.fingerprint == flows.flow_fingerprint(EXPERIMENT_ID, arm.name)
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        assert result.cost_usd > 0
    # 800-token chunks: one chunk + the final call; 400-token chunks: two chunks + the final call
    assert [results[a].llm_calls for a in ("control", "v2", "v2-small-chunks")] == [2, 2, 3]


def test_prompt_versions_give_different_prompts_fingerprints_and_outputs(results):
    control, v2, small = results["control"], results["v2"], results["v2-small-chunks"]
    for node in (CHUNK, FINAL):
        assert control.prompts[node].sha256 != v2.prompts[node].sha256
        assert control.prompts[node].text != v2.prompts[node].text
    assert control.fingerprint != v2.fingerprint
    control_text, v2_text = control.outputs["summarized_text"], v2.outputs["summarized_text"]
    assert control_text != v2_text
    assert v2_text.startswith("- ") and not control_text.startswith("- ")
    # module switching (variants.summarization.prompts.v2) runs byte-identical v2 prompts
    # from another module
    for node in (CHUNK, FINAL):
        assert small.prompts[node].sha256 == v2.prompts[node].sha256
        assert v2.prompts[node].source == "variants.summarization"
        assert small.prompts[node].source == "variants.summarization.prompts.v2"
    assert small.fingerprint != v2.fingerprint  # the configs differ (model, chunk size)
    assert len({r.fingerprint for r in results.values()}) == 3


def test_usage_is_the_sum_of_every_call_as_the_server_reported_it(
    flows, results, report_pdf, session_llm_client
):
    """Re-execute the arm's own driver outside `run` to see each call, then compare."""
    for arm in ("control", "v2-small-chunks"):
        dr = flows.hamilton_driver(EXPERIMENT_ID, arm)
        nodes = dr.execute(
            ["chunk_prompts", "prompt_and_text_content", "chunk_completions", "final_completion"],
            inputs={
                "pdf_source": report_pdf,
                "user_query": QUERY,
                "llm_client": session_llm_client,
            },
        )
        prompts = [*nodes["chunk_prompts"], nodes["prompt_and_text_content"]]
        calls = [*nodes["chunk_completions"], nodes["final_completion"]]
        result = results[arm]
        # the server counts with abtest.tokens: 3 per message + role + content, +3 for the reply
        expected_prompt = sum(
            estimate_message_tokens([{"role": "user", "content": p}]) for p in prompts
        )
        assert result.prompt_tokens == expected_prompt == sum(c.prompt_tokens for c in calls)
        expected_completion = sum(estimate_tokens(c.text) for c in calls)
        assert result.completion_tokens == expected_completion
        assert result.llm_calls == len(calls)
        expected_cost = sum(
            session_llm_client.prices.cost(c.model, c.prompt_tokens, c.completion_tokens)
            for c in calls
        )
        assert result.cost_usd == pytest.approx(expected_cost)


def test_fingerprints_are_stable_across_processes(flows, experiment):
    code = (
        "from abtest.experiments import load_experiment\n"
        "from abtest.flows import FlowRegistry\n"
        f"e = load_experiment({str(EXAMPLE)!r})\n"
        "r = FlowRegistry.from_experiments([e])\n"
        "print(' '.join(r.flow_fingerprint(e.id, a.name) for a in e.arms))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [
        flows.flow_fingerprint(experiment.id, a) for a in experiment.arm_names
    ]


# -- load-time validation -------------------------------------------------------------------------


def test_a_typo_in_prompt_version_fails_at_load_naming_experiment_arm_and_node():
    data = example_data()
    data["arms"][1]["config"]["prompt_version"] = "v9"
    with pytest.raises(FlowConfigError) as info:
        FlowRegistry.from_experiments([experiment_from(data)])
    message = str(info.value)
    assert "experiment 'pdf-summary-prompts', arm 'v2', node 'summarize_chunk_of_text_prompt'" in (
        message
    )
    assert (
        "no implementation for this arm's config (prompt_version 'v9'; implemented: v1, v2, v3)"
        in (message)
    )
    assert {(p.arm, p.node) for p in info.value.problems} == {("v2", CHUNK), ("v2", FINAL)}


def test_a_prompt_module_must_agree_with_the_arms_prompt_version():
    data = example_data()
    data["arms"][2]["config"]["prompt_version"] = "v1"
    with pytest.raises(
        FlowConfigError, match="from module 'variants.summarization.prompts.v2' is prompt_version"
    ):
        FlowRegistry.from_experiments([experiment_from(data)])


def test_a_later_module_may_replace_prompt_nodes_only():
    exp = two_arm_experiment(
        {"prompt_version": "v2"}, modules=["variants.summarization", "variants.summarization"]
    )
    with pytest.raises(FlowConfigError) as info:
        FlowRegistry.from_experiments([exp])
    nodes = {p.node for p in info.value.problems}
    assert "raw_text" in nodes and CHUNK not in nodes
    assert "a later module may replace prompt nodes only" in str(info.value)


@pytest.mark.parametrize(
    "config, modules, needle",
    [
        ({"prompt_version": "v2", "raw_text": "hi"}, None, "config key 'raw_text' would replace"),
        ({"prompt_version": "v2", "temperature": "hot"}, None, "Expected temperature"),
        ({"prompt_version": "v2"}, ["variants.nope"], "cannot import module 'variants.nope'"),
        ({"prompt_version": "v2", "chunk_tokens": 4}, None, "chunk_tokens (4) must be >= 16"),
        ({}, None, "has no implementation for this arm's config (prompt_version None"),
        ({"prompt_version": "v2", "temprature": 0.2}, None, "did you mean 'temperature'?"),
        (
            {"prompt_version": "v2", "user_query": "x"},
            None,
            "config key 'user_query' is a run input",
        ),
    ],
)
def test_bad_arm_configs_fail_at_load(config, modules, needle):
    with pytest.raises(FlowConfigError) as info:
        FlowRegistry.from_experiments([two_arm_experiment(config, modules)])
    assert needle in str(info.value)
    assert all(p.arm == "b" for p in info.value.problems)


def test_all_problems_are_reported_at_once():
    data = example_data()
    data["arms"][0]["config"]["prompt_version"] = "v7"
    data["arms"][1]["config"]["temperature"] = "hot"
    with pytest.raises(FlowConfigError) as info:
        FlowRegistry.from_experiments([experiment_from(data)])
    assert {p.arm for p in info.value.problems} == {"control", "v2"}
    assert str(info.value).startswith("3 problems in prompt flows:"), str(info.value)


# -- bad input and failures: a FlowResult, never an exception -------------------------------------


@pytest.fixture(scope="module")
def bad_pdfs(report_pdf) -> dict[str, bytes]:
    return {
        "corrupt": report_pdf[: len(report_pdf) // 3],
        "not a pdf": b"GIF89a this is an image",
        "encrypted": make_pdf(SAMPLE_REPORT, password="s3cret"),
        "no text": make_pdf(["", "", ""]),
    }


@pytest.mark.parametrize(
    "case, needle, reason",
    [
        ("corrupt", "the PDF is corrupt", "corrupt"),
        ("not a pdf", "not a PDF", "corrupt"),
        ("encrypted", "encrypted (password-protected)", "encrypted"),
        ("no text", "no extractable text", "no_text"),
    ],
)
def test_bad_pdfs_give_a_bad_input_result(flows, bad_pdfs, case, needle, reason, caplog):
    with caplog.at_level(logging.INFO):
        result = flows.run(EXPERIMENT_ID, "v2", {"pdf_source": bad_pdfs[case], "user_query": QUERY})
    assert not result.ok
    assert (result.error_kind, result.error_reason) == ("bad_input", reason)
    assert needle in result.error
    assert result.outputs == {} and result.llm_calls == 0 and result.prompt_tokens == 0
    assert "raw_text" in result.timings_ms
    # Hamilton's help banner and traceback are not logged for a handled bad input
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_pdf_limits_are_arm_config_not_request_input(report_pdf, session_llm_client):
    limited = FlowRegistry.from_experiments(
        [two_arm_experiment({"prompt_version": "v2", "max_pdf_pages": 3, "max_pdf_bytes": 9000})],
        llm_client=session_llm_client,
    )
    result = limited.run(EXPERIMENT_ID, "b", {"pdf_source": report_pdf, "user_query": QUERY})
    assert (result.error_kind, result.error_reason) == ("bad_input", "too_large")
    assert "the PDF is too large" in result.error or "too many pages: 4 (limit 3)" in result.error
    # a caller cannot raise the limit: it is not an input of the flow
    raised = limited.run(
        EXPERIMENT_ID,
        "b",
        {"pdf_source": report_pdf, "user_query": QUERY, "max_pdf_pages": 100},
    )
    assert raised.error_kind == "bad_input"
    assert "input 'max_pdf_pages': not an input of this flow" in raised.error


@pytest.mark.parametrize(
    "inputs, needle",
    [
        ({"user_query": QUERY}, "input 'pdf_source': required input is missing"),
        (
            {"pdf_source": b"%PDF", "user_query": QUERY, "model": "gpt-4o"},
            "input 'model': not an input of this flow",
        ),
        ({"pdf_source": b"%PDF", "user_query": "  "}, "user_query must not be empty"),
        (
            {"pdf_source": 42, "user_query": QUERY},
            "input 'pdf_source': Input should be a valid bytes",
        ),
        ({"pdf_source": b"%PDF", "user_query": "q" * 4001}, "user_query is too long: 4001"),
    ],
)
def test_bad_inputs_give_a_bad_input_result(flows, inputs, needle):
    result = flows.run(EXPERIMENT_ID, "control", inputs)
    assert result.error_kind == "bad_input"
    assert needle in result.error


BUGGY_FLOW = """
INPUTS = ("text",)
FINAL_VARS = ("ratio",)
SAMPLE_INPUTS = {"text": "ab"}


def ratio(text: str) -> float:
    return len(text) / (len(text) - 2 if text != "ab" else 1)
"""


def test_a_flow_bug_is_an_internal_error_and_logged(tmp_path, monkeypatch, caplog):
    (tmp_path / "buggy_flow.py").write_text(BUGGY_FLOW, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = {
        "id": "buggy",
        "flow": "buggy_flow",
        "arms": [
            {"name": "control", "weight": 0.5, "config": {}},
            {"name": "b", "weight": 0.5, "config": {}},
        ],
        "metrics": [{"name": "error", "kind": "proportion"}],
    }
    registry = FlowRegistry.from_experiments([parse_experiment(data, "buggy.yaml")])
    with caplog.at_level(logging.INFO):
        result = registry.run("buggy", "control", {"text": "xy"})
    assert (result.error_kind, result.error_reason) == ("internal", None)
    assert result.error == "flow error in node 'ratio': ZeroDivisionError: division by zero"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in logged] == ["abtest.flows.registry"]  # ours, with the traceback
    assert logged[0].exc_info is not None


def test_duplicate_experiment_ids_are_rejected(experiment):
    with pytest.raises(FlowConfigError, match="given twice"):
        FlowRegistry.from_experiments([experiment, experiment])


def test_unknown_experiment_or_arm_is_a_key_error(flows):
    with pytest.raises(KeyError, match="has no arm 'v3'"):
        flows.run(EXPERIMENT_ID, "v3", {})
    with pytest.raises(KeyError, match="no flows for experiment 'nope'"):
        flows.flow_fingerprint("nope", "control")


def test_llm_failure_after_retries_gives_an_llm_error_result(experiment, report_pdf):
    with serve_in_thread(failure_rate=1.0) as failing:
        broken = LLMClient(base_url=failing.base_url, max_retries=2, backoff_base=0.001)
        registry = FlowRegistry.from_experiments([experiment], llm_client=broken)
        result = registry.run(EXPERIMENT_ID, "v2", {"pdf_source": report_pdf, "user_query": QUERY})
        broken.close()
    assert result.error_kind == "llm"
    assert result.error_reason in {"server_error", "rate_limited"}
    assert "LLM call failed after 3 attempt(s)" in result.error
    assert "server_error" in result.error or "rate_limited" in result.error
    assert result.outputs == {} and result.prompt_tokens == 0
    assert result.prompts[CHUNK].version == "v2"  # what was about to be used is still recorded


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_runs_of_the_same_drivers_do_not_mix(experiment, report_pdf):
    """8 runs at once from threads (3 arms, 4 questions) equal the same runs done one by one."""
    queries = [
        "What did the pilot cost and why?",
        "How did ridership change?",
        "What happened to punctuality?",
        "What does the report recommend?",
    ]
    jobs = [(experiment.arms[i % 3].name, queries[i % 4]) for i in range(8)]
    with serve_in_thread(latency_ms=20) as slow, LLMClient(base_url=slow.base_url) as slow_client:
        registry = FlowRegistry.from_experiments([experiment], llm_client=slow_client)

        def run(job):
            arm, query = job
            return registry.run(EXPERIMENT_ID, arm, {"pdf_source": report_pdf, "user_query": query})

        expected = [run(job) for job in jobs]
        barrier = threading.Barrier(len(jobs))
        got: list[FlowResult | None] = [None] * len(jobs)

        def worker(i: int) -> None:
            barrier.wait()
            got[i] = run(jobs[i])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len({r.run_id for r in got}) == len(jobs)
    assert (
        len({r.outputs["summarized_text"] for r in got}) > 3
    )  # the questions really lead to different answers
    for want, have in zip(expected, got, strict=True):
        assert have.ok, have.error
        assert (have.arm, have.outputs["summarized_text"], have.fingerprint) == (
            want.arm,
            want.outputs["summarized_text"],
            want.fingerprint,
        )
        assert (have.prompt_tokens, have.completion_tokens, have.llm_calls) == (
            want.prompt_tokens,
            want.completion_tokens,
            want.llm_calls,
        )
        assert {n: u.sha256 for n, u in have.prompts.items()} == {
            n: u.sha256 for n, u in want.prompts.items()
        }
        assert set(have.timings_ms) == NODES
        assert have.llm_latency_ms >= 20 * have.llm_calls  # only this run's calls were summed


def test_arun_runs_flows_in_worker_threads(flows, report_pdf, results):
    async def main():
        inputs = {"pdf_source": report_pdf, "user_query": QUERY}
        return await asyncio.gather(
            *(
                flows.arun(EXPERIMENT_ID, arm, inputs)
                for arm in ("control", "v2", "v2-small-chunks")
            )
        )

    got = asyncio.run(main())
    assert [r.outputs["summarized_text"] for r in got] == [
        results[a].outputs["summarized_text"] for a in ("control", "v2", "v2-small-chunks")
    ]


# -- prompt registry bindings ---------------------------------------------------------------------

REGISTRY_FINAL_1 = (
    "Summarize these notes on {content_type} in one sentence. Focus on: {query}\n\n"
    "<document>\n{summaries}\n</document>"
)
REGISTRY_FINAL_2 = (
    "Summarize these notes on {content_type} in 2 sentences. Focus on: {query}\n\n"
    "<document>\n{summaries}\n</document>"
)


def bound_experiment(ref: str = "final-summary@production") -> Experiment:
    return two_arm_experiment({"prompt_version": "v2", FINAL: f"registry:{ref}"})


def test_a_registry_bound_arm_records_the_exact_version(
    redis_client, session_llm_client, report_pdf
):
    prompts = PromptRegistry(redis_client, cache_ttl_s=0)
    assert prompts.push("final-summary", REGISTRY_FINAL_1) == 1
    prompts.label("final-summary", "production", 1)
    registry = FlowRegistry.from_experiments(
        [bound_experiment()], llm_client=session_llm_client, prompt_registry=prompts
    )
    inputs = {"pdf_source": report_pdf, "user_query": QUERY}
    first = registry.run(EXPERIMENT_ID, "b", inputs)
    assert first.ok, first.error
    use = first.prompts[FINAL]
    assert (use.prompt_id, use.version, use.text) == (
        "final-summary",
        "final-summary@1",
        REGISTRY_FINAL_1,
    )
    assert use.source == "registry:final-summary@production"
    assert first.prompts[CHUNK].version == "v2"  # the other prompt still comes from code
    assert first.fingerprint == registry.flow_fingerprint(EXPERIMENT_ID, "b")

    prompts.push("final-summary", REGISTRY_FINAL_2)
    prompts.label("final-summary", "production", 2)  # a rollout: no redeploy, no rebuild
    second = registry.run(EXPERIMENT_ID, "b", inputs)
    assert second.prompts[FINAL].version == "final-summary@2"
    assert second.fingerprint != first.fingerprint
    assert second.fingerprint == registry.flow_fingerprint(EXPERIMENT_ID, "b")
    assert second.outputs["summarized_text"] != first.outputs["summarized_text"]

    redis_client.flushdb()  # the prompt disappears: a clear result, not an exception
    gone = registry.run(EXPERIMENT_ID, "b", inputs)
    assert (gone.error_kind, gone.error_reason) == ("prompt", "not_found")
    assert "no prompt named 'final-summary'" in gone.error


def test_registry_bindings_are_validated_at_load(redis_client):
    prompts = PromptRegistry(redis_client, cache_ttl_s=0)
    with pytest.raises(FlowConfigError, match="has no prompt_registry"):
        FlowRegistry.from_experiments([bound_experiment()])
    with pytest.raises(FlowConfigError, match="no prompt named 'final-summary'"):
        FlowRegistry.from_experiments([bound_experiment()], prompt_registry=prompts)
    prompts.push("final-summary", "Summarize {summaries} for {audience}")
    with pytest.raises(FlowConfigError) as info:
        FlowRegistry.from_experiments(
            [bound_experiment("final-summary@1")], prompt_registry=prompts
        )
    assert "does not render" in str(info.value) and "{audience}" in str(info.value)
    assert info.value.problems[0].node == FINAL
    with pytest.raises(FlowConfigError, match="not a prompt node"):
        FlowRegistry.from_experiments(
            [two_arm_experiment({"prompt_version": "v2", "chunked_text": "registry:x"})],
            prompt_registry=prompts,
        )


def test_the_example_definition_is_used_unchanged(experiment):
    """No `prompt_module` flag or other change to the example file is needed."""
    original = example_data()
    assert copy.deepcopy(original)["arms"][2]["modules"] == [
        "variants.summarization",
        "variants.summarization.prompts.v2",
    ]
    assert experiment.modules_for(experiment.arm("v2-small-chunks")) == (
        "variants.summarization",
        "variants.summarization.prompts.v2",
    )
