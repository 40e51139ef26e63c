"""Where an offline evaluation's results go: the per-row file, the JSON and HTML reports,
and the summary in the store that the experiment report's offline-vs-online table reads.

The per-row file is written first and the summary is computed from it by the `analysis`
package's own loader, so a notebook that loads the file sees exactly what the reports show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abtest.evaluation.cache import EvalCache
from abtest.evaluation.runner import EvalRun
from abtest.experiments import Experiment

__all__ = ["EvalOutputs", "write_outputs"]


@dataclass(frozen=True)
class EvalOutputs:
    rows_path: Path
    json_path: Path
    html_path: Path
    summary: Any


def write_outputs(
    experiment: Experiment, run: EvalRun, out_dir: Path, cache: EvalCache
) -> EvalOutputs:
    """Write `<id>-eval-rows.jsonl`, `<id>-eval.json` and `<id>-eval.html` under `out_dir`
    and store the summary for the experiment report."""
    from analysis.evaluation import load_evaluation, render_evaluation_html, summarize_evaluation

    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / f"{experiment.id}-eval-rows.jsonl"
    with rows_path.open("w", encoding="utf-8") as handle:
        for record in run.records:
            handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
    summary = summarize_evaluation(
        load_evaluation(rows_path),
        control=experiment.control.name,
        alpha=experiment.analysis.alpha,
    )
    document = summary.to_json()
    json_path = out_dir / f"{experiment.id}-eval.json"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    html_path = out_dir / f"{experiment.id}-eval.html"
    html_path.write_text(render_evaluation_html(summary), encoding="utf-8")
    cache.put_summary(document)
    return EvalOutputs(rows_path, json_path, html_path, summary)
