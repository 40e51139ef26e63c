"""Analysis: Redis Streams -> DataFrames -> statistics -> reports.

It imports only the bottom layer of ``abtest`` (``abtest.experiments``, ``abtest.event_fields``;
``tests/test_layers.py`` checks it), so a notebook can use it without the service: whoever
calls it passes the Redis client or URL to read.

The public entry points are importable from here, lazily, so that ``import analysis.stats``
stays free of pandas, Matplotlib and Redis:

* :func:`load_events`, :func:`load_events_parquet` (``analysis.load``)
* :func:`analyze`, :class:`ExperimentResult` (``analysis.analyze``)
* :func:`render_report`, :func:`to_json`, :func:`to_csv`, :func:`build_report`
  (``analysis.report``)
* :func:`load_evaluation`, :func:`summarize_evaluation`, :class:`EvaluationSummary`,
  :func:`render_evaluation_html`, :func:`offline_vs_online` (``analysis.evaluation``: the
  offline evaluation's per-row file, its summary and report)
* :func:`paired_ttest`, :func:`bootstrap_ci` (``analysis.paired``)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_events": "analysis.load",
    "load_events_parquet": "analysis.load",
    "analyze": "analysis.analyze",
    "analyze_columnar": "analysis.columnar",
    "ExperimentResult": "analysis.analyze",
    "render_report": "analysis.report",
    "to_json": "analysis.report",
    "to_csv": "analysis.report",
    "build_report": "analysis.report",
    "load_evaluation": "analysis.evaluation",
    "summarize_evaluation": "analysis.evaluation",
    "EvaluationSummary": "analysis.evaluation",
    "render_evaluation_html": "analysis.evaluation",
    "offline_vs_online": "analysis.evaluation",
    "paired_ttest": "analysis.paired",
    "bootstrap_ci": "analysis.paired",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
