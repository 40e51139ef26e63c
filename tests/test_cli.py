"""The `abtest` commands beyond validate/assign, through Typer's runner on real components."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from abtest.cli import app
from abtest.experiments import load_experiment
from abtest.router import Router
from tests.api_support import EXAMPLES, EXPERIMENT, experiments_copy
from variants.summarization.pdfs import SAMPLE_REPORT, make_pdf

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client, llm_server, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("ABTEST_HOME", str(tmp_path / "home"))


def test_run_prints_arm_prompts_and_summary(env, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    make_pdf(SAMPLE_REPORT, pdf)
    result = runner.invoke(
        app,
        [
            "run",
            EXPERIMENT,
            "qa-bob",
            "--input-file",
            f"pdf_source={pdf}",
            "--input",
            "user_query=What did it cost?",
            "-e",
            str(EXAMPLES),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "arm: v2-small-chunks (override)" in result.output
    assert "prompt: summarize_chunk_of_text_prompt = summarize-chunk v2" in result.output
    assert "summarized_text:" in result.output and "dollars" in result.output


def test_run_json_prints_the_run_as_the_api_answers_it(env, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    make_pdf(SAMPLE_REPORT, pdf)
    args = ["run", EXPERIMENT, "qa-bob", "--input-file", f"pdf_source={pdf}", "--json"]
    result = runner.invoke(app, [*args, "-i", "user_query=What did it cost?", "-e", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["arm"] == "v2-small-chunks" and "dollars" in body["outputs"]["summarized_text"]
    assert body["error"] is None and body["prompt_tokens"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "give the run inputs with --input/--input-file: pdf_source (bytes), user_query (str)"),
        (["-i", "user_query=q"], "input 'pdf_source': required input is missing"),
        (["-i", "user_query"], "--input 'user_query': expected NAME=VALUE"),
        (["-i", "user_query=q", "-i", "model=gpt-4o"], "input 'model': not an input of this flow"),
        (["-i", "user_query=q", "--input-file", "pdf_source=/no/such.pdf"], "no such file"),
    ],
)
def test_run_with_bad_inputs_fails_naming_the_input(env, args, needle) -> None:
    result = runner.invoke(app, ["run", EXPERIMENT, "u1", *args, "-e", str(EXAMPLES)])
    assert result.exit_code == 1, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_run_with_a_corrupt_pdf_fails_cleanly(env, tmp_path: Path) -> None:
    pdf = tmp_path / "bad.pdf"
    pdf.write_bytes(b"%PDF-1.4 garbage")
    result = runner.invoke(
        app,
        ["run", EXPERIMENT, "u1", "--input-file", f"pdf_source={pdf}", "-i", "user_query=q"]
        + ["-e", str(EXAMPLES)],
    )
    assert result.exit_code == 1
    assert "the PDF is corrupt" in result.output
    assert "Traceback" not in result.output


def test_run_with_a_typo_in_the_arm_config_names_experiment_arm_and_node(env, tmp_path) -> None:
    experiments = experiments_copy(tmp_path)
    path = experiments / "pdf_summary.yaml"
    data = yaml.safe_load(path.read_text())
    data["arms"][1]["config"]["prompt_version"] = "v9"
    path.write_text(yaml.safe_dump(data))
    pdf = tmp_path / "report.pdf"
    make_pdf(SAMPLE_REPORT, pdf)
    result = runner.invoke(
        app,
        ["run", EXPERIMENT, "u1", "--input-file", f"pdf_source={pdf}", "-i", "user_query=q"]
        + ["-e", str(experiments)],
    )
    assert result.exit_code == 1
    assert EXPERIMENT in result.output and "v2" in result.output and "v9" in result.output


def test_prompts_push_label_show_list_history(env) -> None:
    def call(*args: str) -> str:
        result = runner.invoke(app, ["prompts", *args], input="Summarize: {text}")
        assert result.exit_code == 0, result.output
        return result.output

    assert "new version final-summary@1" in call("push", "final-summary", "-")
    assert "unchanged, latest is final-summary@1" in call("push", "final-summary", "-")
    assert "final-summary@production -> final-summary@1" in call(
        "label", "final-summary", "production", "1"
    )
    shown = call("show", "final-summary@production")
    assert "# final-summary@1 [production]" in shown and "Summarize: {text}" in shown
    assert "final-summary@1 (latest); labels: production -> @1" in call("list")
    assert "final-summary@1 [production] sha256" in call("history", "final-summary")
    missing = runner.invoke(app, ["prompts", "show", "nothing@3"])
    assert missing.exit_code == 1 and "error:" in missing.output


def test_report_and_export_after_outcomes(env, tmp_path: Path, redis_client) -> None:
    from abtest.event_fields import Exposure, Outcome
    from abtest.events import SyncEventLog

    router = Router([load_experiment(EXAMPLES / "pdf_summary.yaml")])
    events = []
    for i in range(300):
        unit = f"u{i}"
        arm = router.assign(EXPERIMENT, unit).arm
        events.append(Exposure(EXPERIMENT, unit, arm, f"r{i}", "0" * 64, "0" * 64))
        events.append(Outcome(EXPERIMENT, unit, arm, "thumbs_up", float(i % 3 == 0)))
    with SyncEventLog(redis_client, tmp_path / "spool.jsonl") as log:
        log.append(events)

    as_json = runner.invoke(app, ["report", EXPERIMENT, "--format", "json", "-e", str(EXAMPLES)])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.output)
    assert payload["experiment_id"] == EXPERIMENT
    units = {r["arm"]: r["units"] for r in payload["table"] if r["metric"] == "thumbs_up"}
    assert sum(units.values()) == 300

    html = tmp_path / "out" / "report.html"
    as_html = runner.invoke(app, ["report", EXPERIMENT, "--out", str(html), "-e", str(EXAMPLES)])
    assert as_html.exit_code == 0 and html.read_text().startswith("<!DOCTYPE html>")

    unknown = runner.invoke(app, ["report", "nope", "-e", str(EXAMPLES)])
    assert unknown.exit_code == 1 and "no experiment 'nope'" in unknown.output

    parquet = tmp_path / "archive.parquet"
    exported = runner.invoke(app, ["export", EXPERIMENT, "--out", str(parquet)])
    assert exported.exit_code == 0 and "wrote 600 events" in exported.output
    frame = pd.read_parquet(parquet)
    assert frame["kind"].value_counts().to_dict() == {"exposure": 300, "outcome": 300}


def test_serve_refuses_invalid_experiments(env, tmp_path: Path) -> None:
    experiments = experiments_copy(tmp_path)
    (experiments / "pdf_summary.yaml").write_text("id: x\narms: [\n")
    result = runner.invoke(app, ["serve", "-e", str(experiments)])
    assert result.exit_code == 1
    assert "malformed YAML at line" in result.output


def test_demo_end_to_end_small(env, tmp_path: Path) -> None:
    """Every example experiment, each with its own simulated users; a second run starts
    afresh."""
    reports = tmp_path / "reports"
    args = ["demo", "--users", "90", "--reports", str(reports), "-e", str(EXAMPLES)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    html = (reports / f"{EXPERIMENT}.html").read_text()
    for arm in ("control", "v2", "v2-small-chunks"):
        assert arm in html
    support = load_experiment(EXAMPLES / "support_reply.yaml")
    support_html = (reports / f"{support.id}.html").read_text()
    for arm in support.arm_names:
        assert arm in support_html
    assert second.output.count("90 runs ok, 0 failed") == 2
    assert second.output.count("true thumbs_up rate") == 3  # and the safe-rollout example
    assert (reports / "pdf-summary-rollout.html").exists()
    sections = second.output.split("\n== ")[1:]
    names = [section.split(" ==")[0] for section in sections]
    assert names == [
        f"{EXPERIMENT}: offline evaluation",
        EXPERIMENT,
        "pdf-summary-rollout",
        f"{support.id}: offline evaluation",
        support.id,
    ]
    # the offline evaluations ran first, on every row, and the online reports compare them
    for experiment_id in (EXPERIMENT, support.id):
        assert (reports / f"{experiment_id}-eval.html").exists()
    assert second.output.count("offline vs online (absolute difference") == 2
    assert "Offline vs online" in support_html
    for section in sections[1:3] + sections[4:]:
        table_units = [
            int(line.split()[2])
            for line in section.splitlines()
            if line.strip().startswith("thumbs_up ")
        ]
        assert sum(table_units) == 90


def test_run_applies_the_configured_input_limit(env, monkeypatch) -> None:
    monkeypatch.setenv("ABTEST_MAX_INPUT_CHARS", "10")
    args = ["run", "support-reply-prompts", "u1", "-i", "message=longer than ten characters"]
    result = runner.invoke(app, [*args, "-e", str(EXAMPLES)])
    assert result.exit_code == 1
    assert "input 'message': String should have at most 10 characters" in result.output


def test_status_shows_stopped_arms_and_the_audit(env, redis_client) -> None:
    from abtest.state_store import change_state

    change_state(
        redis_client, EXPERIMENT, "v2", "stop", actor="monitor", reason="error +4.0 pp > margin"
    )
    result = runner.invoke(app, ["status", EXPERIMENT])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{EXPERIMENT} (running)"
    assert any(line.split()[:2] == ["control", "weight"] and "active" in line for line in lines)
    v2 = next(line for line in lines if line.split()[0] == "v2")
    assert "stopped since" in v2 and "by monitor: error +4.0 pp > margin" in v2
    assert any("audit" in line and "stop v2 by monitor" in line for line in lines)
    unknown = runner.invoke(app, ["status", "nope"])
    assert unknown.exit_code == 1 and "unknown experiment 'nope'" in unknown.output
