"""`abtest validate` and `abtest assign` through Typer's runner."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from abtest.cli import app
from abtest.router import Router
from tests.router_support import make_experiment

EXAMPLES = Path(__file__).parents[1] / "experiments"
runner = CliRunner()


def test_validate_example_directory() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert "ok   " in result.output
    assert "pdf-summary-prompts (running; arms: control 0.34, v2 0.33" in result.output


def test_validate_reports_every_error_and_exits_1(tmp_path: Path) -> None:
    data = yaml.safe_load((EXAMPLES / "pdf_summary.yaml").read_text())
    data["coverage"] = 7
    data["arms"][0]["weight"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    good = tmp_path / "good.yaml"
    good.write_text((EXAMPLES / "pdf_summary.yaml").read_text().replace(
        "id: pdf-summary-prompts", "id: other"))
    result = runner.invoke(app, ["validate", str(bad), str(good)])
    assert result.exit_code == 1
    assert f"FAIL 2 errors in {bad}" in result.output
    assert "coverage: coverage (7.0) must be within [0, 1]" in result.output
    assert "arms[0].weight: weight (-1.0) must be finite and >= 0" in result.output
    assert f"ok   {good}: other" in result.output
    assert "Traceback" not in result.output


def test_validate_missing_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nothing.yaml")])
    assert result.exit_code == 1
    assert "cannot read the file" in result.output


def test_assign_prints_arm_reason_and_config() -> None:
    result = runner.invoke(app, ["assign", "pdf-summary-prompts", "qa-alice", "-e", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert "arm: v2\n" in result.output
    assert "reason: override" in result.output
    assert '"prompt_version": "v2"' in result.output


def test_assign_agrees_with_router(tmp_path: Path) -> None:
    experiment = make_experiment()
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(experiment.model_dump(mode="json")))
    router = Router([experiment])
    for unit in ["u1", "u2", "u3", "ü4"]:
        result = runner.invoke(app, ["assign", "exp", unit, "-e", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert f"arm: {router.assign('exp', unit).arm}\n" in result.output


def test_assign_unknown_experiment() -> None:
    result = runner.invoke(app, ["assign", "nope", "u1", "-e", str(EXAMPLES)])
    assert result.exit_code == 1
    assert "unknown experiment 'nope'" in result.output


def test_validate_builds_every_arm_flow(tmp_path: Path) -> None:
    data = yaml.safe_load((EXAMPLES / "pdf_summary.yaml").read_text())
    data["arms"][2]["config"]["prompt_version"] = "v1"  # its module holds v2 prompts
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "experiment 'pdf-summary-prompts', arm 'v2-small-chunks', node 'summarize" in (
        result.output
    )
