"""notebooks/experiment_analysis.ipynb runs top to bottom against the test Redis, from any
working directory, through the runner `make notebook` uses."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from abtest.devtools.notebook import execute, main

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "experiment_analysis.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.timeout(240)
def test_notebook_executes_from_any_working_directory(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    nb = execute(NOTEBOOK, elsewhere, timeout=180)  # raises on the first failing cell

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert " exposures, " in text and "SRM p-value:" in text
    assert "thumbs_up" in text  # the summary sentence names the primary metric
    html = "".join(
        o["data"].get("text/html", "")
        for o in outputs
        if o.output_type in {"display_data", "execute_result"}
    )
    assert "data:image/png;base64," in html and "v2-small-chunks" in html


def test_the_runner_names_a_missing_notebook(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ipynb"), str(tmp_path / "out.ipynb")]) == 1
    assert "nope.ipynb: no such notebook" in capsys.readouterr().err


@pytest.mark.timeout(240)
def test_make_notebook_on_the_embedded_store_leaves_nothing_running(tmp_path):
    """The runner shuts its kernel down gracefully, so the embedded Redis the notebook started
    stops with it (an orphaned kernel would exit without running exit handlers)."""
    import os
    import subprocess
    import sys

    import psutil

    home = tmp_path / "home"
    env = {**os.environ, "ABTEST_HOME": str(home), "MPLBACKEND": "Agg"}
    env.pop("REDIS_URL", None)
    out = tmp_path / "executed.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "abtest.devtools.notebook", str(NOTEBOOK), str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (home / "redis.db").exists()  # the notebook did use the embedded store
    left = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.info["name"] == "redis-server" and process.cwd() == str(home):
                if process.status() != psutil.STATUS_ZOMBIE:
                    left.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert not left, f"redis-server still running for {home}: {left}"
    executed = nbformat.read(out, as_version=4)
    assert all(c.outputs for c in executed.cells if c.cell_type == "code")
