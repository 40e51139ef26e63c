"""Render an :class:`~analysis.analyze.ExperimentResult` as HTML, JSON or CSV.

The report reads the result dataclasses only: every number comes from the result and is
formatted before the Jinja2 template places it. The results table is the one a notebook shows
for a result (:mod:`analysis.table_html`), so the two never disagree. Plots are drawn with
Matplotlib's Agg canvas (no pyplot, no global state) and embedded as base64 PNGs, so the HTML
is one self-contained file.

:func:`build_report` is the one-call path used by ``abtest report``: load the definition,
load the events, analyse and render.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from abtest.experiments import Experiment, ExperimentFileError, check_files
from analysis.analyze import (
    SRM_THRESHOLD,
    TABLE_COLUMNS,
    ExperimentResult,
    analyze,
    table_row,
)
from analysis.evaluation import (
    JUDGE_METRIC_PREFIX,
    offline_vs_online,
    read_judge_stats,
    read_summary,
)
from analysis.formatting import format_number, format_p, format_percent
from analysis.load import load_arm_states, load_events, load_manifests
from analysis.rollout import with_arm_states
from analysis.table_html import STYLE, render_table

__all__ = [
    "DIAGNOSTIC_LABELS",
    "analyze_stored",
    "build_report",
    "render",
    "render_report",
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
    "offline_summary_ignored": (
        "offline evaluation summary in the store that is unreadable or of another control (ignored)"
    ),
}
"""What each diagnostic count means, as shown in the report."""

_LOG = logging.getLogger(__name__)

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
    ``json.dumps(..., allow_nan=False)``. With an offline evaluation (``result.offline``) it
    also has ``"offline_vs_online"``: the records of
    :func:`analysis.evaluation.offline_vs_online` (an empty list when no evaluator has an
    online metric). With online judges' verdicts it has ``"judge_verdicts"`` (arm ->
    evaluator -> counts per status).
    """
    data = _online_json(result)
    if result.judge_verdicts:
        data["judge_verdicts"] = result.judge_verdicts
    if result.offline is not None:
        data["offline_vs_online"] = [
            {name: _plain(value) for name, value in record.items()}
            for record in offline_vs_online(result.offline, result).to_dict(orient="records")
        ]
    return data


def _online_json(result: ExperimentResult) -> dict[str, Any]:
    table = result.table
    rows = [
        {name: _plain(value) for name, value in zip(TABLE_COLUMNS, record, strict=True)}
        for record in table[list(TABLE_COLUMNS)].itertuples(index=False, name=None)
    ]
    settings = result.experiment.analysis
    return {
        "experiment_id": result.experiment_id,
        "definition_sha": result.experiment.definition_sha,
        "analysis": {
            "engine": settings.engine,
            "method": settings.method,
            "alpha": settings.alpha,
            "correction": "none" if settings.engine == "bayesian" else settings.correction,
        },
        "first_exposure": _time(result.first_exposure),
        "last_exposure": _time(result.last_exposure),
        "flow_fingerprints": result.fingerprints,
        "fingerprint_prompts": {
            fp: {
                "arm": m.arm,
                "prompts": {
                    node: {k: use[k] for k in ("prompt_id", "version", "sha256") if k in use}
                    for node, use in m.prompts.items()
                },
            }
            for fp, m in sorted(result.manifests.items())
        },
        "as_of": _time(result.as_of),
        "srm_p_value": _plain(float(result.srm_p_value)),
        "srm_until": _time(result.srm_until),
        "table": rows,
        "guardrails": [dataclasses.asdict(g) for g in result.guardrails],
        "decisions": [dataclasses.asdict(d) for d in result.decisions],
        "pairwise": None
        if result.pairwise is None
        else [
            {name: _plain(value) for name, value in record.items()}
            for record in result.pairwise.to_dict(orient="records")
        ],
        "progress": None
        if result.progress is None
        else {k: _plain(v) for k, v in dataclasses.asdict(result.progress).items()},
        "arm_states": {arm: state.as_dict() for arm, state in result.arm_states.items()},
        "audit": [entry.as_dict() for entry in result.audit],
        "drift": [d.as_dict() for d in result.drift],
        "by_fingerprint": None
        if result.by_fingerprint is None
        else [
            {name: _plain(value) for name, value in record.items()}
            for record in result.by_fingerprint.assign(
                first_seen=result.by_fingerprint["first_seen"].map(pd.Timestamp.isoformat)
            ).to_dict(orient="records")
        ],
    }


def _time(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.isoformat()


def to_csv(result: ExperimentResult) -> str:
    """The results table as CSV (NaN as an empty field)."""
    return result.table.to_csv(index=False)


# --- formatting -----------------------------------------------------------------------------


def _srm_verdict(result: ExperimentResult) -> str:
    verdict = _srm_sentence(result)
    if result.srm_until is None:
        return verdict
    until = result.srm_until.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"{verdict} Checked on the units that entered before the first arm was stopped "
        f"({until}): since then a stopped arm takes no units, by design."
    )


def _srm_sentence(result: ExperimentResult) -> str:
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
    """Each arm's verdict: its estimate and the interval the table shows, on the metric's own
    scale (one scale per metric, so an arm at +2,000% cannot squash another at +10%: each
    metric has its own plot)."""
    rows = [r for r in result.rows if r.metric.name == metric and not r.is_control]
    use_lift = any(r.verdict is not None and r.verdict.estimand == "relative" for r in rows)
    fig = _figure(6.4, 0.55 * len(rows) + 1.3)
    ax = fig.add_subplot()
    labels = []
    for i, row in enumerate(rows):
        verdict = row.verdict
        assert verdict is not None
        labels.append(row.arm)
        scale = 100 if verdict.estimand == "relative" else 1
        point, low, high = (v * scale for v in (verdict.effect, verdict.ci_low, verdict.ci_high))
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
    kind = "credible intervals" if result.experiment.analysis.engine == "bayesian" else "CIs"
    level = f"{kind} as in the table"
    label = f"lift vs {result.control} (%), {level}" if use_lift else f"difference, {level}"
    points = [
        abs(v.effect) * (100 if v.estimand == "relative" else 1)
        for v in (r.verdict for r in rows)
        if v is not None and math.isfinite(v.effect) and v.effect != 0
    ]
    if _spread_out(points):
        ax.set_xscale("symlog", linthresh=min(points))
        label += "; symmetric log scale: the arms' effects differ by more than 10x"
    ax.set_xlabel(label)
    ax.set_title(f"{metric} ({hint})", fontsize=11, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _spread_out(magnitudes: list[float]) -> bool:
    """Whether effects on one axis differ so much (more than 10x) that a linear axis would
    squash the small ones to a dot next to the large one (+10% next to +2,000%)."""
    return len(magnitudes) > 1 and max(magnitudes) > 10 * min(magnitudes)


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
            scale = np.where(line["estimand"] == "relative", 100.0, 1.0)
            ax.plot(x, line["effect"].to_numpy() * scale, marker=".", color=colour, label=arm)
            ax.fill_between(
                x,
                line["ci_low"].to_numpy(dtype=float) * scale,
                line["ci_high"].to_numpy(dtype=float) * scale,
                color=colour,
                alpha=0.15,
                linewidth=0,
            )
        ax.axhline(0, color="#8c959f", linewidth=1, linestyle="--")
        relative = (part["estimand"] == "relative").all()
        ax.set_ylabel("lift (%)" if relative else "difference")
        last = part.groupby("arm")["effect"].last().abs() * (100 if relative else 1)
        finals = [float(v) for v in last if math.isfinite(v) and v != 0]
        title = metric
        if _spread_out(finals):
            ax.set_yscale("symlog", linthresh=min(finals))
            title += " (symmetric log scale: the arms differ by more than 10x)"
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"cumulative, by {result.granularity} (UTC)")
    periods = timeline["period"].dt.tz_localize(None)
    if periods.nunique() == 1:  # one point: keep the axis to a period either side
        units = {"second": "s", "minute": "min", "hour": "h", "day": "D"}
        step = pd.Timedelta(1, unit=units.get(result.granularity, "W"))
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
<p class="meta">{{ context }}</p>

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

<h2>Arms</h2>
<table class="results">
<thead><tr><th class="text">arm</th><th>weight</th><th class="text">config</th>
<th class="text">modules</th>
<th class="text">flow fingerprints seen (exposures): prompt versions</th></tr></thead>
<tbody>
{% for a in arms %}<tr><td class="text">{{ a.name }}</td><td>{{ a.weight }}</td>
<td class="text"><code>{{ a.config }}</code></td><td class="text">{{ a.modules }}</td>
<td class="text">{% for f in a.fingerprints %}<code>{{ f.fp }}</code> ({{ f.count }})
{%- if f.prompts %}: {{ f.prompts }}{% endif %}<br>{% else %}–{% endfor %}</td></tr>
{% endfor %}
</tbody>
</table>

<h2>Results</h2>
<p class="meta">{{ table_note }}</p>
{{ table }}

{% if rollout %}
<h2>Safe rollout</h2>
<ul class="summary">
{% for line in rollout %}<li>{{ line }}</li>
{% endfor %}
</ul>
{% endif %}

{% if drift %}
<h2>Prompt drift</h2>
<p class="warning">An arm's prompts changed while the experiment ran, so its results are also
shown once per flow fingerprint (each against the whole control) instead of pooled:</p>
<ul class="summary">
{% for line in drift %}<li>{{ line }}</li>
{% endfor %}
</ul>
<table class="results">
<thead><tr><th class="text">metric</th><th class="text">arm</th><th class="text">fingerprint</th>
<th class="text">prompts</th><th class="text">since</th><th>units</th>
<th>effect<span class="ci">interval</span></th><th>adjusted p</th></tr></thead>
<tbody>
{% for r in drift_rows %}<tr class="{{ r.css }}"><td class="text">{{ r.metric }}</td>
<td class="text">{{ r.arm }}</td><td class="text"><code>{{ r.fingerprint }}</code></td>
<td class="text">{{ r.prompts }}</td><td class="text">{{ r.since }}</td><td>{{ r.units }}</td>
<td>{{ r.effect }}<span class="ci">{{ r.interval }}</span></td><td>{{ r.p }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}

{% if pairwise %}
<h2>Treatments against each other</h2>
<table class="results">
<thead><tr><th class="text">metric</th><th class="text">arm</th><th class="text">against</th>
<th>effect<span class="ci">interval</span></th><th>adjusted p</th></tr></thead>
<tbody>
{% for p in pairwise %}<tr class="{{ p.css }}"><td class="text">{{ p.metric }}</td>
<td class="text">{{ p.arm }}</td><td class="text">{{ p.baseline }}</td>
<td>{{ p.effect }}<span class="ci">{{ p.interval }}</span></td><td>{{ p.p }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}

{% if offline %}
<h2>Offline vs online</h2>
<p class="meta">{{ offline.note }}</p>
{% if offline.rows %}
<table class="results">
<thead><tr><th class="text">evaluator</th><th class="text">arm</th>
<th>offline diff<span class="ci">t interval</span></th><th>pairs</th><th>offline p</th>
<th>online effect<span class="ci">interval</span></th><th>units</th><th>online adjusted p</th>
<th class="text">agreement</th><th class="text">why</th></tr></thead>
<tbody>
{% for r in offline.rows %}<tr><td class="text">{{ r.evaluator }}</td>
<td class="text">{{ r.arm }}</td><td>{{ r.offline }}<span class="ci">{{ r.offline_ci }}</span></td>
<td>{{ r.pairs }}</td><td>{{ r.offline_p }}</td>
<td>{{ r.online }}<span class="ci">{{ r.online_ci }}</span></td><td>{{ r.units }}</td>
<td>{{ r.online_p }}</td><td class="text"><b>{{ r.agreement }}</b></td>
<td class="text">{{ r.reason }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
{% endif %}

{% if judges %}
<h2>Online judges</h2>
<p class="meta">Sampled live runs scored by each LLM judge. Only scores enter the
<code>judge:&lt;evaluator&gt;</code> rows above; a parse failure is an answer without a score on
the scale, an error a judge that could not answer.</p>
<table class="results">
<thead><tr><th class="text">arm</th><th class="text">evaluator</th><th>scored</th>
<th>parse failures</th><th>judge errors</th></tr></thead>
<tbody>
{% for j in judges %}<tr><td class="text">{{ j.arm }}</td><td class="text">{{ j.evaluator }}</td>
<td>{{ j.ok }}</td><td>{{ j.parse_failure }}</td><td>{{ j.judge_error }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}

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
    if settings.engine == "bayesian":
        return (
            f"Bayesian engine (flat prior, as GrowthBook's default), {(1 - settings.alpha):.0%} "
            f"credible intervals, no multiplicity correction{as_of}."
        )
    return (
        f"alpha {settings.alpha:g}, {correction} correction across all comparisons, {mode}{as_of}."
    )


def _pairwise_rows(result: ExperimentResult) -> list[dict[str, str]]:
    if result.pairwise is None:
        return []
    direction = {m.name: m.direction for m in result.experiment.metrics}

    def good(p: Any) -> bool:
        return (p.effect > 0) == (direction[p.metric] == "increase")

    return [
        {
            "metric": p.metric,
            "arm": p.arm,
            "baseline": p.baseline,
            **_effect_cells(p),
            "css": "" if not p.significant else "better" if good(p) else "worse",
        }
        for p in result.pairwise.itertuples(index=False)
    ]


def _effect_cells(row: Any) -> dict[str, str]:
    """A comparison's effect (signed, on its estimand), its interval and its adjusted p."""
    fmt = format_percent if row.estimand == "relative" else format_number
    effect = row.effect
    signed = ("+" if effect > 0 else "") + fmt(effect) if math.isfinite(effect) else "–"
    ok = math.isfinite(row.ci_low) and math.isfinite(row.ci_high)
    return {
        "effect": signed,
        "interval": f"[{fmt(row.ci_low)}, {fmt(row.ci_high)}]" if ok else "",
        "p": format_p(row.p_adjusted),
    }


def _drift_rows(result: ExperimentResult) -> list[dict[str, str]]:
    """The drifting arms once per fingerprint (see analysis.drift)."""
    if result.by_fingerprint is None:
        return []
    direction = {m.name: m.direction for m in result.experiment.metrics}
    rows = []
    for r in result.by_fingerprint.itertuples(index=False):
        manifest = result.manifests.get(r.fingerprint)
        good = (r.effect > 0) == (direction[r.metric] == "increase")
        rows.append(
            {
                "metric": r.metric,
                "arm": r.arm,
                "fingerprint": r.fingerprint[:12],
                "prompts": manifest.versions() if manifest is not None else "",
                "since": r.first_seen.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "units": f"{int(r.units):,}",
                **_effect_cells(r),
                "css": "" if not r.significant else "better" if good else "worse",
            }
        )
    return rows


def _rollout_lines(result: ExperimentResult) -> list[str]:
    """What the safe rollout (or an admin) did to the arms, for the report's readers: the
    units exposed before a stop are analysed as usual; after it, the arm took no units."""
    lines = []
    for arm, state in result.arm_states.items():
        if state.stopped:
            lines.append(
                f"{arm} was stopped at {_ms_time(state.stopped_at)} by {state.actor}: "
                f"{state.reason}. Units exposed before the stop are analysed as usual; "
                "since then its units get the control's config and are not exposed."
            )
    for entry in result.audit:
        lines.append(
            f"{_ms_time(entry.ts)}: {entry.action} {entry.arm} by {entry.actor} ({entry.reason})"
        )
    return lines


def _ms_time(ms: int | None) -> str:
    if ms is None:
        return "?"
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def _context_line(result: ExperimentResult) -> str:
    """When and what: the exposure dates, the cut-off and the definition's hash."""

    def day(value: pd.Timestamp | None) -> str:
        return "–" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")

    as_of = day(result.as_of) if result.as_of is not None else "all events"
    return (
        f"First exposure {day(result.first_exposure)}, last {day(result.last_exposure)}; "
        f"as of {as_of}; definition sha256 {result.experiment.definition_sha[:12]}."
    )


def _table_note(result: ExperimentResult) -> str:
    level = f"{(1 - result.alpha) * 100:g}%"
    if result.experiment.analysis.engine == "bayesian":
        return (
            f"Each row is judged on its metric's estimand (relative lift over {result.control}, "
            f"or the absolute difference) with a {level} credible interval. Green rows are "
            "better and red rows worse: their interval excludes 0. Chance to win is the "
            f"posterior probability the arm beats {result.control}; risk is the expected loss "
            "of shipping it, on the same scale."
        )
    return (
        f"Each row is judged on its metric's estimand (relative lift over {result.control}, "
        "or the absolute difference): the effect, its interval and the p-values all come from "
        f"that one test. Intervals are {level}, widened to the level shown under 'judged by' "
        "where the multiplicity correction applies, so a row is green (better) or red (worse) "
        f"exactly when its interval excludes 0 and its adjusted p is below {result.alpha:g}."
    )


def _offline_section(result: ExperimentResult) -> dict[str, Any] | None:
    """The offline evaluation next to the online results of the same evaluators
    (:func:`analysis.evaluation.offline_vs_online`), formatted; None without an offline
    evaluation."""
    summary = result.offline
    if summary is None:
        return None
    frame = offline_vs_online(summary, result)
    if frame.empty:
        evaluators = ", ".join(e.name for e in summary.evaluators)
        note = (
            f"The offline evaluation scored {evaluators}; the experiment has no online metric "
            f"{JUDGE_METRIC_PREFIX}<evaluator> for any of them, so there is nothing to compare."
        )
        return {"note": note, "rows": []}
    level = f"{(1 - summary.alpha) * 100:g}%"
    note = (
        "Offline, on the evaluation dataset: the treatment's mean per-row score difference "
        f"from {summary.control} over the rows both arms scored, with its {level} paired t "
        "interval and p-value. Online: the metric "
        f"{JUDGE_METRIC_PREFIX}<evaluator> on live traffic, its effect as in the results table. "
        "Both are differences in score, treatment minus control. 'agree': same direction, and "
        f"significant on both sides (offline p < {summary.alpha:g}, online adjusted p < "
        f"{result.alpha:g}) or on neither."
    )
    rows = [
        {
            "evaluator": r.evaluator,
            "arm": r.arm,
            "offline": _signed(r.offline_diff),
            "offline_ci": _ci(r.offline_ci_low, r.offline_ci_high),
            "pairs": f"{r.offline_n:,}",
            "offline_p": format_p(r.offline_p),
            "online": _signed(r.online_effect),
            "online_ci": _ci(r.online_ci_low, r.online_ci_high),
            "units": f"{r.online_units:,}",
            "online_p": format_p(r.online_p_adjusted),
            "agreement": r.agreement,
            "reason": r.reason,
        }
        for r in frame.itertuples(index=False)
    ]
    return {"note": note, "rows": rows}


def _judge_rows(result: ExperimentResult) -> list[dict[str, str]]:
    """The online judges' verdicts per arm and evaluator: scores, parse failures, errors."""
    return [
        {
            "arm": arm,
            "evaluator": evaluator,
            "ok": f"{counts.get('ok', 0):,}",
            "parse_failure": f"{counts.get('parse_failure', 0):,}",
            "judge_error": f"{counts.get('judge_error', 0):,}",
        }
        for arm in result.arms
        for evaluator, counts in sorted(result.judge_verdicts.get(arm, {}).items())
    ]


def _signed(x: float) -> str:
    return ("+" if x > 0 else "") + format_number(x) if math.isfinite(x) else "–"


def _ci(low: float, high: float) -> str:
    ok = math.isfinite(low) and math.isfinite(high)
    return f"[{format_number(low)}, {format_number(high)}]" if ok else ""


def render_report(result: ExperimentResult) -> str:
    """One self-contained HTML page: summary, traffic and SRM, table, plots, diagnostics, and
    the offline evaluation next to the online results when there is one."""
    bayesian = result.experiment.analysis.engine == "bayesian"
    table = render_table([table_row(r) for r in result.rows], bayesian)
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
        context=_context_line(result),
        pairwise=_pairwise_rows(result),
        offline=_offline_section(result),
        judges=_judge_rows(result),
        drift=[
            f"{d.arm} changed prompts at {d.at.strftime('%Y-%m-%d %H:%M:%S UTC')}: "
            f"fingerprint {d.from_[:12]} -> {d.to[:12]}"
            for d in result.drift
        ],
        drift_rows=_drift_rows(result),
        rollout=_rollout_lines(result),
        arms=[
            {
                "name": arm.name,
                "weight": format_percent(arm.weight),
                "config": json.dumps(arm.config, sort_keys=True),
                "modules": ", ".join(result.experiment.modules_for(arm)),
                "fingerprints": _fingerprint_rows(result, arm.name),
            }
            for arm in result.experiment.arms
        ],
        style=Markup(STYLE),
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


def _find_experiment(experiment_id: str, experiments_dir: str | Path) -> Experiment:
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
    experiments_dir: str | Path,
    redis: Any,
    fmt: Format = "html",
    as_of: Any = None,
) -> str:
    """Load an experiment's definition and events, analyse them and render the report.

    Parameters
    ----------
    experiment_id : str
        The experiment's ``id``.
    experiments_dir : str or Path
        Directory (or file) of definitions.
    redis : redis.Redis or str
        Where the events are, a client or a URL (see :func:`analysis.load.load_events`).
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


def _fingerprint_rows(result: ExperimentResult, arm: str) -> list[dict[str, str]]:
    """An arm's fingerprints with their exposure counts and, when recorded, the prompt
    versions behind each (a registry label shows the version it resolved to)."""
    rows = []
    for fp, count in result.fingerprints.get(arm, {}).items():
        manifest = result.manifests.get(fp)
        rows.append(
            {
                "fp": fp[:12],
                "count": f"{count:,}",
                "prompts": manifest.versions() if manifest is not None else "",
            }
        )
    return rows


def analyze_stored(experiment: Experiment, redis: Any, as_of: Any = None) -> ExperimentResult:
    """Load an experiment's events from Redis, a client or a URL (see
    :func:`analysis.load.load_events`), and analyse them: what the API, the demo and
    `build_report` share.

    The offline evaluation summary the runner stored (:func:`analysis.evaluation.read_summary`)
    becomes ``result.offline``. One that cannot be read, or that compares against another
    control, is left out (the online results do not depend on it) and counted in the
    diagnostic ``offline_summary_ignored``, with the reason logged.
    """
    exposures, outcomes = load_events(experiment.id, redis)
    result = analyze(experiment, exposures, outcomes, as_of=as_of)
    states, audit = load_arm_states(experiment.id, experiment.arm_names, redis)
    result = with_arm_states(result, exposures, states, audit)
    result = dataclasses.replace(
        result,
        manifests=load_manifests(experiment.id, redis),
        judge_verdicts=read_judge_stats(experiment.id, redis),
    )
    return _with_offline(result, redis)


def _with_offline(result: ExperimentResult, redis: Any) -> ExperimentResult:
    try:
        summary = read_summary(result.experiment_id, redis)
        if summary is not None and summary.control != result.control:
            raise ValueError(
                f"its control is '{summary.control}', the experiment's '{result.control}'"
            )
    except ValueError as error:
        _LOG.warning("offline evaluation summary of %s ignored: %s", result.experiment_id, error)
        diagnostics = {**result.diagnostics, "offline_summary_ignored": 1}
        return dataclasses.replace(result, diagnostics=diagnostics)
    return dataclasses.replace(result, offline=summary)


def render(result: ExperimentResult, fmt: Format = "html") -> str:
    """The result as HTML (:func:`render_report`), JSON (:func:`to_json`, indented, no NaN)
    or CSV (:func:`to_csv`)."""
    _check_format(fmt)
    if fmt == "json":
        return json.dumps(to_json(result), indent=2, allow_nan=False)
    if fmt == "csv":
        return to_csv(result)
    return render_report(result)
