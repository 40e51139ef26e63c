"""Render an :class:`~analysis.analyze.ExperimentResult` as HTML, JSON or CSV.

The report reads the result dataclasses only: every number comes from the result, is
formatted here, and the Jinja2 template places strings. Plots are drawn with Matplotlib's Agg
canvas (no pyplot, no global state) and embedded as base64 PNGs, so the HTML is one
self-contained file.

:func:`build_report` is the one-call path used by ``abtest report``: load the definition,
load the events, analyse and render.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from analysis.analyze import (
    SRM_THRESHOLD,
    TABLE_COLUMNS,
    ArmMetricResult,
    ExperimentResult,
    format_number,
    format_percent,
    status_message,
)

__all__ = [
    "DIAGNOSTIC_LABELS",
    "build_report",
    "render_report",
    "render_table_html",
    "to_csv",
    "to_json",
]

Format = Literal["html", "json", "csv"]

DIAGNOSTIC_LABELS: dict[str, str] = {
    "exposures": "exposure events read",
    "exposures_other_experiment": "exposures of another experiment (ignored)",
    "exposures_after_as_of": "exposures after the as-of time (ignored)",
    "exposures_unknown_arm": "exposures naming an arm the definition lacks (ignored)",
    "units": "units exposed (analysed)",
    "units_multiple_arms": "units exposed to more than one arm (kept in their first arm)",
    "units_overridden": "QA override units (not randomised; left out)",
    "outcomes": "outcome events read",
    "outcomes_other_experiment": "outcomes of another experiment (ignored)",
    "outcomes_after_as_of": "outcomes after the as-of time (ignored)",
    "outcomes_other_metric": "outcomes of metrics this experiment does not use (ignored)",
    "outcomes_invalid_value": "outcomes whose value is not a finite number (ignored)",
    "outcomes_unexposed": "outcomes of units never exposed (ignored)",
    "outcomes_overridden": "outcomes of QA override units (ignored)",
    "outcomes_before_exposure": "outcomes before the unit's first exposure (ignored)",
    "outcomes_arm_mismatch": "outcomes whose arm field differs from the unit's first arm",
    "outcomes_used": "outcomes used",
}
"""What each diagnostic count means, as shown in the report."""

_GREEN = "#1a7f37"
_RED = "#cf222e"
_GREY = "#57606a"
_ARM_COLOURS = ("#0969da", "#bf8700", "#8250df", "#1b7c83", "#bc4c00", "#4d2d00")


# --- JSON and CSV ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-safe Python value: NaN/inf -> None, NumPy scalars -> Python scalars."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def to_json(result: ExperimentResult) -> dict[str, Any]:
    """``{"experiment_id", "srm_p_value", "table": [one dict per row]}`` with NaN as None.

    Rows carry the columns of :data:`analysis.analyze.TABLE_COLUMNS`; the dict serialises with
    ``json.dumps(..., allow_nan=False)``.
    """
    table = result.table
    rows = [
        {name: _plain(value) for name, value in zip(TABLE_COLUMNS, record, strict=True)}
        for record in table[list(TABLE_COLUMNS)].itertuples(index=False, name=None)
    ]
    return {
        "experiment_id": result.experiment_id,
        "srm_p_value": _plain(float(result.srm_p_value)),
        "table": rows,
    }


def to_csv(result: ExperimentResult) -> str:
    """The results table as CSV (NaN as an empty field)."""
    return result.table.to_csv(index=False)


# --- formatting -----------------------------------------------------------------------------


def format_p(p: float) -> str:
    """p-values with four decimals, ``"<0.0001"`` below that, ``"–"`` when undefined."""
    if not math.isfinite(p):
        return "–"
    if p < 1e-4:
        return "<0.0001"
    return f"{p:.4f}"


def _signed_number(x: float) -> str:
    return ("+" if x > 0 else "") + format_number(x) if math.isfinite(x) else "–"


def _signed_percent(x: float) -> str:
    return ("+" if x > 0 else "") + format_percent(x) if math.isfinite(x) else "–"


def _interval(low: float, high: float, fmt) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{fmt(low)}, {fmt(high)}]"


@dataclass(frozen=True)
class _Row:
    metric: str
    arm: str
    flags: tuple[str, ...]
    direction: str
    units: str
    mean: str
    diff: str
    diff_ci: str
    lift: str
    lift_ci: str
    p_value: str
    p_adjusted: str
    chance: str
    status: str
    css: str


def _row(row: ArmMetricResult) -> _Row:
    flags = tuple(
        flag
        for flag, on in (("primary", row.metric.primary), ("guardrail", row.metric.guardrail))
        if on
    )
    direction = "higher is better" if row.metric.direction == "increase" else "lower is better"
    cmp = row.comparison
    if cmp is None:
        return _Row(
            row.metric.name, row.arm, flags, direction, f"{row.units:,}",
            format_number(row.mean), "", "", "", "", "", "", "", "control", "control",
        )  # fmt: skip
    css = "better" if row.better else "worse" if row.worse else ""
    status = "" if row.status == "ok" else status_message(row.status)
    if row.significant:
        status = ("better" if row.better else "worse") + (f"; {status}" if status else "")
    return _Row(
        metric=row.metric.name,
        arm=row.arm,
        flags=flags,
        direction=direction,
        units=f"{row.units:,}",
        mean=format_number(row.mean),
        diff=_signed_number(cmp.diff),
        diff_ci=_interval(cmp.ci_low, cmp.ci_high, format_number),
        lift=_signed_percent(cmp.lift),
        lift_ci=_interval(cmp.lift_ci_low, cmp.lift_ci_high, format_percent),
        p_value=format_p(cmp.p_value),
        p_adjusted=format_p(row.p_adjusted),
        chance=format_percent(row.chance_to_beat_control),
        status=status,
        css=css,
    )


def _srm_verdict(result: ExperimentResult) -> str:
    p = result.srm_p_value
    if not math.isfinite(p):
        return "Sample ratio check: not enough units to test the traffic split."
    if result.srm_warning:
        return (
            f"Sample ratio mismatch: p = {p:.2g} < {SRM_THRESHOLD:g}. The units per arm do not "
            "match the configured weights; assignment or logging is broken, so the comparisons "
            "below may be biased."
        )
    return f"No sample ratio mismatch: p = {p:.3g} (threshold {SRM_THRESHOLD:g})."


def _traffic(result: ExperimentResult) -> list[dict[str, str]]:
    total = sum(result.units_per_arm.values())
    weight_sum = sum(arm.weight for arm in result.experiment.arms)
    rows = []
    for arm in result.experiment.arms:
        units = result.units_per_arm.get(arm.name, 0)
        rows.append(
            {
                "arm": arm.name,
                "units": f"{units:,}",
                "share": format_percent(units / total) if total else "–",
                "expected": format_percent(arm.weight / weight_sum),
            }
        )
    return rows


# --- plots --------------------------------------------------------------------------------


def _figure(width: float, height: float):
    """A Matplotlib figure on its own Agg canvas (no pyplot state, safe in threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _forest_plot(result: ExperimentResult, metric: str) -> str:
    rows = [r for r in result.rows if r.metric.name == metric and not r.is_control]
    use_lift = any(r.comparison is not None and math.isfinite(r.comparison.lift) for r in rows)
    fig = _figure(6.4, 0.55 * len(rows) + 1.3)
    ax = fig.add_subplot()
    labels = []
    for i, row in enumerate(rows):
        cmp = row.comparison
        assert cmp is not None
        labels.append(row.arm)
        if use_lift:
            point, low, high = cmp.lift * 100, cmp.lift_ci_low * 100, cmp.lift_ci_high * 100
        else:
            point, low, high = cmp.diff, cmp.ci_low, cmp.ci_high
        colour = _GREEN if row.better else _RED if row.worse else _GREY
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [i, i], color=colour, linewidth=2.5, solid_capstyle="butt")
        if math.isfinite(point):
            ax.plot([point], [i], "o", color=colour, markersize=7)
        else:
            ax.text(0, i, "  no estimate", va="center", color=_GREY, fontsize=9)
    ax.axvline(0, color="#8c959f", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    direction = rows[0].metric.direction if rows else "increase"
    hint = "higher is better" if direction == "increase" else "lower is better"
    level = f"{(1 - result.alpha) * 100:g}% CI"
    ax.set_xlabel(f"lift vs {result.control} (%), {level}" if use_lift else f"difference, {level}")
    ax.set_title(f"{metric} ({hint})", fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _timeline_plot(result: ExperimentResult) -> str | None:
    timeline = result.timeline
    if timeline.empty:
        return None
    metrics = list(dict.fromkeys(timeline["metric"]))
    fig = _figure(7.5, 2.1 * len(metrics) + 0.4)
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    treatments = list(result.arms[1:])
    for ax, metric in zip(axes, metrics, strict=True):
        part = timeline[timeline["metric"] == metric]
        for j, arm in enumerate(treatments):
            line = part[part["arm"] == arm]
            x = line["period"].dt.tz_localize(None).to_numpy()
            colour = _ARM_COLOURS[j % len(_ARM_COLOURS)]
            ax.plot(x, line["lift"].to_numpy() * 100, marker=".", color=colour, label=arm)
            ax.fill_between(
                x,
                line["lift_ci_low"].to_numpy(dtype=float) * 100,
                line["lift_ci_high"].to_numpy(dtype=float) * 100,
                color=colour,
                alpha=0.15,
                linewidth=0,
            )
        ax.axhline(0, color="#8c959f", linewidth=1, linestyle="--")
        ax.set_ylabel("lift (%)")
        ax.set_title(metric, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"cumulative, by {result.granularity} (UTC)")
    periods = timeline["period"].dt.tz_localize(None)
    if periods.nunique() == 1:  # one point: keep the axis to a period either side
        step = pd.Timedelta(
            1, unit={"minute": "min", "hour": "h", "day": "D"}.get(result.granularity, "W")
        )
        axes[-1].set_xlim(periods.iloc[0] - step, periods.iloc[0] + step)
    fig.autofmt_xdate()
    return _png(fig)


def _traffic_plot(result: ExperimentResult) -> str:
    from matplotlib.ticker import StrMethodFormatter

    arms = list(result.arms)
    units = np.array([result.units_per_arm.get(a, 0) for a in arms], dtype=float)
    weights = np.array([arm.weight for arm in result.experiment.arms], dtype=float)
    expected = units.sum() * weights / weights.sum()
    fig = _figure(5.5, 2.8)
    ax = fig.add_subplot()
    colour = _RED if result.srm_warning else "#0969da"
    ax.bar(range(len(arms)), units, color=colour, alpha=0.8, label="exposed units")
    ax.scatter(range(len(arms)), expected, marker="_", s=900, color="black", label="expected")
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylabel("units")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.legend(fontsize=8, loc="lower right")
    p = result.srm_p_value
    verdict = "no data" if not math.isfinite(p) else ("SRM!" if result.srm_warning else "no SRM")
    ax.set_title(f"Traffic per arm: {verdict} (p = {p:.3g})", fontsize=11, loc="left")
    return _png(fig)


# --- HTML -----------------------------------------------------------------------------------

_STYLE = """
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

_TABLE_TEMPLATE = """
<table class="results">
<thead><tr>
  <th class="text">metric</th><th class="text">arm</th><th>units</th><th>mean</th>
  <th>diff</th><th>lift</th><th>p-value</th><th>adjusted p</th><th>chance better</th>
  <th class="text">status</th>
</tr></thead>
<tbody>
{% for r in rows %}
<tr class="{{ r.css }}">
  <td class="text">{{ r.metric }}{% for f in r.flags %}<span class="flag {{ f }}">{{ f }}</span>
  {%- endfor %}</td>
  <td class="text">{{ r.arm }}</td>
  <td>{{ r.units }}</td>
  <td>{{ r.mean }}</td>
  <td>{{ r.diff }}<span class="ci">{{ r.diff_ci }}</span></td>
  <td>{{ r.lift }}<span class="ci">{{ r.lift_ci }}</span></td>
  <td>{{ r.p_value }}</td>
  <td>{{ r.p_adjusted }}</td>
  <td>{{ r.chance }}</td>
  <td class="text">{{ r.status }}</td>
</tr>
{% endfor %}
</tbody>
</table>
"""

_REPORT_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Experiment report: {{ experiment_id }}</title>
<style>{{ style }}</style>
</head>
<body>
<h1>Experiment report: {{ experiment_id }}</h1>
<p class="meta">{{ description }}</p>
<p class="meta">{{ settings }}</p>

<h2>Summary</h2>
<ul class="summary">
{% for sentence in summary %}<li>{{ sentence }}</li>
{% endfor %}
</ul>

<h2>Traffic</h2>
<p class="{{ 'warning' if srm_warning else 'ok' }}">{{ srm_verdict }}</p>
<table class="results">
<thead><tr><th class="text">arm</th><th>units</th><th>share</th><th>expected</th></tr></thead>
<tbody>
{% for t in traffic %}<tr><td class="text">{{ t.arm }}</td><td>{{ t.units }}</td>
<td>{{ t.share }}</td><td>{{ t.expected }}</td></tr>
{% endfor %}
</tbody>
</table>
<div class="plots"><img alt="traffic per arm" src="{{ traffic_plot }}"></div>

<h2>Results</h2>
<p class="meta">{{ table_note }}</p>
{{ table }}

<h2>Lift with confidence intervals</h2>
<div class="plots">
{% for plot in forest_plots %}<img alt="{{ plot.metric }} lift" src="{{ plot.src }}">
{% endfor %}
</div>

<h2>Cumulative lift over time</h2>
{% if timeline_plot %}<div class="plots"><img alt="cumulative lift" src="{{ timeline_plot }}">
</div>{% else %}<p>No events to plot yet.</p>{% endif %}

<h2>Diagnostics</h2>
<table class="results">
<tbody>
{% for d in diagnostics %}<tr><td class="text">{{ d.label }}</td><td>{{ d.count }}</td></tr>
{% endfor %}
</tbody>
</table>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _settings_line(result: ExperimentResult) -> str:
    settings = result.experiment.analysis
    correction = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}[settings.correction]
    mode = (
        f"sequential (always-valid) intervals tuned for {settings.tuning_n:,} units"
        if settings.sequential
        else "fixed-horizon Welch tests"
    )
    as_of = f"; events up to {result.as_of.isoformat()}" if result.as_of is not None else ""
    return (
        f"alpha {settings.alpha:g}, {correction} correction across all comparisons, {mode}{as_of}."
    )


def _table_note(result: ExperimentResult) -> str:
    level = f"{(1 - result.alpha) * 100:g}%"
    return (
        f"Differences and lifts are treatment minus {result.control}, with {level} intervals. "
        "Green rows are significantly better, red rows significantly worse (adjusted p below "
        f"{result.alpha:g}). Chance better is the probability the arm beats {result.control}."
    )


def render_table_html(result: ExperimentResult) -> str:
    """An HTML fragment: summary sentences and the results table (for notebooks)."""
    table = _ENV.from_string(_TABLE_TEMPLATE).render(rows=[_row(r) for r in result.rows])
    summary = "".join(f"<li>{escape(s)}</li>" for s in result.summary_sentences())
    return (
        f"<div><style>{_STYLE}</style>"
        f"<p><b>{escape(result.experiment_id)}</b></p>"
        f"<ul class='summary'>{summary}</ul>{table}</div>"
    )


def render_report(result: ExperimentResult) -> str:
    """One self-contained HTML page: summary, traffic and SRM, table, plots, diagnostics."""
    table = _ENV.from_string(_TABLE_TEMPLATE).render(rows=[_row(r) for r in result.rows])
    forest = [
        {"metric": m.name, "src": _forest_plot(result, m.name)}
        for m in result.experiment.metrics
        if len(result.arms) > 1
    ]
    diagnostics = [
        {"label": DIAGNOSTIC_LABELS.get(key, key), "count": f"{count:,}"}
        for key, count in result.diagnostics.items()
    ]
    return _ENV.from_string(_REPORT_TEMPLATE).render(
        experiment_id=result.experiment_id,
        description=result.experiment.description,
        settings=_settings_line(result),
        style=Markup(_STYLE),
        summary=result.summary_sentences(),
        srm_warning=result.srm_warning,
        srm_verdict=_srm_verdict(result),
        traffic=_traffic(result),
        traffic_plot=_traffic_plot(result),
        table_note=_table_note(result),
        table=Markup(table),
        forest_plots=forest,
        timeline_plot=_timeline_plot(result),
        diagnostics=diagnostics,
    )


# --- one call from the command line ----------------------------------------------------------


def _find_experiment(experiment_id: str, experiments_dir: str | Path):
    from abtest.experiments import ExperimentFileError, check_files

    results = check_files([experiments_dir])
    known: list[str] = []
    for _path, outcome in results:
        if isinstance(outcome, ExperimentFileError):
            continue
        if outcome.id == experiment_id:
            return outcome
        known.append(outcome.id)
    broken = [o for _p, o in results if isinstance(o, ExperimentFileError)]
    hint = f" (known: {', '.join(sorted(known))})" if known else ""
    if broken:
        hint += f"; {len(broken)} file(s) failed to load: " + "; ".join(str(b) for b in broken)
    raise ValueError(f"no experiment '{experiment_id}' in {experiments_dir}{hint}")


def build_report(
    experiment_id: str,
    experiments_dir: str | Path = "experiments",
    redis: Any = None,
    fmt: Format = "html",
    as_of: Any = None,
) -> str:
    """Load an experiment's definition and events, analyse them and render the report.

    Parameters
    ----------
    experiment_id : str
        The experiment's ``id``.
    experiments_dir : str or Path, default "experiments"
        Directory (or file) of definitions.
    redis : redis.Redis, str or None
        Where the events are (see :func:`analysis.load.load_events`).
    fmt : {"html", "json", "csv"}
        Output format; JSON is :func:`to_json` serialised (indented, no NaN).
    as_of : optional
        Passed to :func:`analysis.analyze.analyze`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``fmt`` is unknown or no definition has this id (the message lists known ids).
    """
    _check_format(fmt)
    experiment = _find_experiment(experiment_id, experiments_dir)
    return render(analyze_stored(experiment, redis, as_of=as_of), fmt)


def _check_format(fmt: str) -> None:
    if fmt not in ("html", "json", "csv"):
        raise ValueError(f"unknown format {fmt!r}; expected 'html', 'json' or 'csv'")


def analyze_stored(experiment: Any, redis: Any = None, as_of: Any = None) -> ExperimentResult:
    """Load an experiment's events from Redis (see :func:`analysis.load.load_events`) and
    analyse them: what the API, the demo and `build_report` share."""
    from analysis.analyze import analyze
    from analysis.load import load_events

    exposures, outcomes = load_events(experiment.id, redis)
    return analyze(experiment, exposures, outcomes, as_of=as_of)


def render(result: ExperimentResult, fmt: Format = "html") -> str:
    """The result as HTML (:func:`render_report`), JSON (:func:`to_json`, indented, no NaN)
    or CSV (:func:`to_csv`)."""
    _check_format(fmt)
    if fmt == "json":
        return json.dumps(to_json(result), indent=2, allow_nan=False)
    if fmt == "csv":
        return to_csv(result)
    return render_report(result)
