"""The results table as HTML: one row per (metric, arm), green when better, red when worse.

Two places show it: a result's notebook repr (``ExperimentResult._repr_html_``) and the report
page (:mod:`analysis.report`). It renders rows already formatted as text (:class:`TableRow`,
built by :func:`analysis.analyze.table_row`) and imports nothing from this package, so both can
use it and imports keep one direction: ``analyze -> table_html <- report`` (``analyze`` never
imports ``report``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
from markupsafe import escape

__all__ = ["STYLE", "TableRow", "render_table", "render_table_html"]


@dataclass(frozen=True)
class TableRow:
    """One row of the table as it reads: every number formatted, ``css`` the row's class
    (``"better"``, ``"worse"``, ``"control"`` or empty)."""

    metric: str
    arm: str
    flags: tuple[str, ...]
    direction: str
    units: str
    mean: str
    mean_ci: str
    effect: str
    interval: str
    judged_by: str
    p_value: str
    p_adjusted: str
    chance: str
    risk: str
    status: str
    css: str


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #1f2328; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
.meta { color: #57606a; }
.summary li { margin: 0.3em 0; }
.warning { background: #fff1f0; border: 1px solid #cf222e; padding: 0.6em 1em; }
.ok { background: #f0fff4; border: 1px solid #1a7f37; padding: 0.6em 1em; }
table.results { border-collapse: collapse; font-size: 0.9em; }
table.results th, table.results td { border-bottom: 1px solid #d0d7de; padding: 0.3em 0.6em;
       text-align: right; vertical-align: top; }
table.results th { background: #f6f8fa; }
table.results td.text, table.results th.text { text-align: left; }
tr.better td { background: #dafbe1; } tr.worse td { background: #ffebe9; }
tr.control td { color: #57606a; }
.ci { color: #57606a; font-size: 0.85em; display: block; }
.flag { font-size: 0.75em; border-radius: 0.8em; padding: 0.05em 0.5em; margin-left: 0.3em;
        border: 1px solid #8c959f; }
.flag.primary { border-color: #0969da; color: #0969da; }
.flag.guardrail { border-color: #bf8700; color: #9a6700; }
.plots img { max-width: 100%; margin: 0.4em 0.6em 0.4em 0; }
"""
"""CSS of the table and of the report page around it (one style sheet, so both look alike)."""

_TABLE_TEMPLATE = """
<table class="results">
<thead><tr>
  <th class="text">metric</th><th class="text">arm</th><th>units</th><th>mean</th>
  <th>effect<span class="ci">interval</span></th><th class="text">judged by</th>
  {%- if bayesian %}<th>chance to win</th><th>risk</th>
  {%- else %}<th>p-value</th><th>adjusted p</th>{% endif %}
  <th class="text">status</th>
</tr></thead>
<tbody>
{% for r in rows %}
<tr class="{{ r.css }}">
  <td class="text">{{ r.metric }}{% for f in r.flags %}<span class="flag {{ f }}">{{ f }}</span>
  {%- endfor %}</td>
  <td class="text">{{ r.arm }}</td>
  <td>{{ r.units }}</td>
  <td>{{ r.mean }}<span class="ci">{{ r.mean_ci }}</span></td>
  <td>{{ r.effect }}<span class="ci">{{ r.interval }}</span></td>
  <td class="text">{{ r.judged_by }}</td>
  {%- if bayesian %}<td>{{ r.chance }}</td><td>{{ r.risk }}</td>
  {%- else %}<td>{{ r.p_value }}</td><td>{{ r.p_adjusted }}</td>{% endif %}
  <td class="text">{{ r.status }}</td>
</tr>
{% endfor %}
</tbody>
</table>
"""

_TABLE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    _TABLE_TEMPLATE
)


def render_table(rows: Sequence[TableRow], bayesian: bool = False) -> str:
    """The ``<table>`` element; style it with :data:`STYLE`. The Bayesian engine's rows show
    the chance to win and the risk where the frequentist rows show p-values."""
    return _TABLE.render(rows=rows, bayesian=bayesian)


def render_table_html(
    title: str, summary: Sequence[str], rows: Sequence[TableRow], bayesian: bool = False
) -> str:
    """A self-styled HTML fragment for notebooks: the title, the summary sentences, the table."""
    items = "".join(f"<li>{escape(s)}</li>" for s in summary)
    return (
        f"<div><style>{STYLE}</style>"
        f"<p><b>{escape(title)}</b></p>"
        f"<ul class='summary'>{items}</ul>{render_table(rows, bayesian)}</div>"
    )
