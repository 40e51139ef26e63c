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
