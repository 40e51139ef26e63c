"""Prompts as runtime data work everywhere: an arm bound to `registry:name@label` in
`abtest validate`, `abtest serve`, `abtest run` and `abtest demo`, and `prompts push` checks
a template's placeholders against the node it is bound to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from abtest.cli import app
from tests.api_support import EXPERIMENT, experiments_with_a_registry_arm, run_body, wait_for_health
from tests.api_support import FINAL_PROMPT as FINAL
from tests.redis_process import free_port

TEMPLATE = (
    "Answer the question from these notes on {content_type} in at most 30 words.\n"
    "Question: {query}\n\n<document>\n{summaries}\n</document>"
)
runner = CliRunner()


@pytest.fixture
def bound(tmp_path: Path, redis_client, redis_url, llm_server, monkeypatch) -> Path:
    """The example experiments with arm v2's final prompt bound to the registry, whose
    `final-summary@production` label points at version 1."""
    experiments = experiments_with_a_registry_arm(tmp_path, redis_client, TEMPLATE)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("ABTEST_HOME", str(tmp_path / "home"))
    return experiments


def test_validate_accepts_a_resolvable_binding_and_names_a_missing_label(bound: Path) -> None:
    ok = runner.invoke(app, ["validate", str(bound)])
    assert ok.exit_code == 0, ok.output
    path = bound / "pdf_summary.yaml"
    path.write_text(path.read_text().replace("final-summary@production", "final-summary@staging"))
    missing = runner.invoke(app, ["validate", str(bound)])
    assert missing.exit_code == 1
    assert "registry prompt 'final-summary@staging'" in missing.output
    assert "(labels: production)" in missing.output


@contextmanager
def _served(experiments: Path) -> Iterator[tuple[str, list[str]]]:
    """`abtest serve` on the experiments, as a subprocess: its experiment URL prefix, and its
    stderr (filled in once it has stopped)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "abtest.cli", "serve", "--port", str(port), "-e", str(experiments)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    try:
        wait_for_health(server, port)
        yield f"http://127.0.0.1:{port}/v1/experiments/{EXPERIMENT}", stderr
    finally:
        server.terminate()
        stderr.append(server.communicate(timeout=10)[1])


def test_abtest_serve_starts_and_runs_the_bound_arm(bound: Path, tmp_path: Path) -> None:
    with _served(bound) as (base, stderr):
        response = httpx.post(f"{base}/run", json=run_body("qa-alice"), timeout=30)
    assert response.status_code == 200, (response.text, stderr)
    body = response.json()
    assert body["arm"] == "v2"
    assert body["prompts"][FINAL]["version"] == "final-summary@1"
    assert len(body["outputs"]["summarized_text"].split()) <= 30


def test_abtest_run_uses_the_registry_version(bound: Path, tmp_path: Path, report_pdf) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(report_pdf)
    args = ["run", EXPERIMENT, "qa-alice", "-e", str(bound), "--json"]
    args += ["--input-file", f"pdf_source={pdf}", "-i", "user_query=What did it cost?"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["prompts"][FINAL]["version"] == "final-summary@1"


def test_abtest_demo_runs_a_bound_arm(bound: Path, tmp_path: Path) -> None:
    args = ["demo", "--users", "24", "--experiment", EXPERIMENT, "-e", str(bound)]
    result = runner.invoke(app, [*args, "--reports", str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    assert "24 runs ok, 0 failed" in result.output


def test_push_checks_placeholders_against_the_bound_node(bound: Path) -> None:
    bad = runner.invoke(
        app,
        ["prompts", "push", "final-summary", "-", "-e", str(bound)],
        input="Summarize {summaries} for {audience}",
    )
    assert bad.exit_code == 1
    assert "{audience} would not be filled by node 'summarize_text_from_summaries_prompt'" in (
        bad.output
    )
    assert "(its placeholders: {content_type}, {query}, {summaries})" in bad.output
    good = runner.invoke(
        app,
        ["prompts", "push", "final-summary", "-", "-e", str(bound)],
        input="Answer {query} from {summaries}",
    )
    assert good.exit_code == 0, good.output
    assert "new version final-summary@2 (placeholders: {query}, {summaries}; checked against " in (
        good.output
    )
    listed = runner.invoke(app, ["prompts", "list"])
    assert "final-summary@2 (latest); labels: production -> @1" in listed.output


def test_the_report_shows_which_registry_version_each_fingerprint_resolved_to(
    bound: Path, redis_client, redis_url, monkeypatch
) -> None:
    """A label moved mid-experiment: the exposures before and after carry two fingerprints,
    and the report says which registry version each stands for (and the control's, from an
    assignment without a run)."""
    from abtest.experiments import load_experiments
    from abtest.prompts import PromptRegistry
    from analysis.report import analyze_stored, render, to_json

    PromptRegistry(redis_client).push("final-summary", TEMPLATE + "\nBe brief.")
    monkeypatch.setenv("ABTEST_PROMPT_CACHE_TTL", "0")
    with _served(bound) as (base, stderr):
        arms = {}
        for i in range(60):
            body = httpx.post(f"{base}/assign", json={"unit_id": f"u{i}"}, timeout=10).json()
            arms.setdefault(body["arm"], f"u{i}")
        first = httpx.post(f"{base}/run", json=run_body(arms["v2"]), timeout=30)
        PromptRegistry(redis_client).label("final-summary", "production", 2)
        second = httpx.post(f"{base}/run", json=run_body(arms["v2"]), timeout=30)
    assert first.status_code == second.status_code == 200, stderr
    experiment = load_experiments(bound)[EXPERIMENT]
    result = analyze_stored(experiment, redis_url)
    versions = {
        fp: result.manifests[fp].prompts[FINAL]["version"] for fp in result.fingerprints["v2"]
    }
    assert sorted(versions.values()) == ["final-summary@1", "final-summary@2"]
    (control_fp,) = result.fingerprints["control"]
    assert result.manifests[control_fp].arm == "control"
    html = render(result, "html")
    assert "final-summary@1" in html and "final-summary@2" in html
    prompts = to_json(result)["fingerprint_prompts"]
    assert {prompts[fp]["prompts"][FINAL]["version"] for fp in versions} == set(versions.values())
