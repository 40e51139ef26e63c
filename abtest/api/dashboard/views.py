"""The dashboard's pages as template contexts: every number formatted before a template
places it, as in the HTML report (templates hold no arithmetic).

The results table reads the same rows as `GET /v1/experiments/{id}/results`: each row's text
is `analysis.analyze.table_row` (the report's and the notebook's formatting) and its raw
values are the JSON row's, kept on the cell as `data-value` so a reader (or a test) can check
one against the other.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from abtest.api.dashboard.charts import (
    ARM_COLOURS,
    Marker,
    Point,
    Series,
    bar_scale,
    interval_bar,
    line_chart,
)
from abtest.api.dashboard.reading import ArmPrompts, Details, Reading
from abtest.arm_state import ArmState, AuditEntry
from analysis.analyze import SRM_THRESHOLD, ExperimentResult, table_row
from analysis.formatting import format_number, format_percent

__all__ = ["experiment_context", "list_context", "timeline_records", "when"]


# --- time -------------------------------------------------------------------------------------


def when(value: Any) -> str:
    """A moment as the dashboard writes it, in UTC: an ISO string, epoch milliseconds or a
    pandas Timestamp; "–" for none."""
    stamp = _timestamp(value)
    return "–" if stamp is None else stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def _timestamp(value: Any) -> pd.Timestamp | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, int | float):
        stamp = pd.Timestamp(int(value), unit="ms", tz="UTC")
    else:
        stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _epoch_ms(value: Any) -> float | None:
    stamp = _timestamp(value)
    return None if stamp is None else stamp.value / 1e6


# --- small pieces -------------------------------------------------------------------------


def _signed(value: float | None, estimand: str | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = format_percent(value) if estimand == "relative" else format_number(value)
    return ("+" if value > 0 else "") + text


def _interval(low: float | None, high: float | None, estimand: str | None) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    fmt = format_percent if estimand == "relative" else format_number
    return f"[{fmt(low)}, {fmt(high)}]"


def srm(results: Mapping[str, Any]) -> dict[str, Any]:
    """The sample-ratio check as a flag and a sentence."""
    p = results.get("srm_p_value")
    if p is None:
        return {"flag": False, "css": "", "text": "not enough units to check the split"}
    if p < SRM_THRESHOLD:
        return {
            "flag": True,
            "css": "bad",
            "text": f"sample ratio mismatch (p = {p:.2g} < {SRM_THRESHOLD:g}): the units per "
            "arm do not match the weights, so the comparisons may be biased",
        }
    text = f"no sample ratio mismatch (p = {p:.3g})"
    until = results.get("srm_until")
    if until:
        text += (
            f", checked on the units that entered before the first arm was stopped ({until}): "
            "since then a stopped arm takes no units, by design"
        )
    return {"flag": False, "css": "good", "text": text}


def _live_state(state: ArmState | None) -> dict[str, str]:
    if state is None or not state.stopped:
        return {"state": "active", "css": "good", "detail": ""}
    detail = f"since {when(state.stopped_at)} by {state.actor or '?'}: {state.reason or ''}"
    return {"state": "stopped", "css": "bad", "detail": detail}


def _guardrail_summary(results: Mapping[str, Any]) -> dict[str, str]:
    """The worst guardrail state across arms, and how many are in it."""
    checks = results.get("guardrails") or []
    if not checks:
        return {"state": "none", "css": "", "text": "no guardrails"}
    for state, css in (("fails", "bad"), ("inconclusive", "warn")):
        count = sum(1 for c in checks if c["state"] == state)
        if count:
            return {"state": state, "css": css, "text": f"{count} of {len(checks)} {state}"}
    return {"state": "passes", "css": "good", "text": f"all {len(checks)} pass"}


def _analysis_line(results: Mapping[str, Any]) -> str:
    settings = results["analysis"]
    if settings["engine"] == "bayesian":
        return f"Bayesian, {1 - settings['alpha']:.0%} credible intervals"
    return (
        f"{settings['method']} frequentist tests, alpha {settings['alpha']:g}, "
        f"{settings['correction']} correction"
    )


# --- the experiments list -------------------------------------------------------------------


def list_context(readings: Sequence[Reading]) -> dict[str, Any]:
    """`/ui`: one row per experiment."""
    return {"experiments": [experiment_row(r) for r in readings]}


def experiment_row(reading: Reading) -> dict[str, Any]:
    """One experiment at a glance: status, arms and their live state, units, the primary
    metrics' lift with its interval, SRM, guardrails and the last exposure."""
    result, results = reading.result, reading.results
    units = result.units_per_arm
    return {
        "id": reading.experiment.id,
        "description": reading.experiment.description,
        "status": reading.experiment.status,
        "arms": [
            {"name": arm, "units": f"{units.get(arm, 0):,}", **_live_state(reading.states.get(arm))}
            for arm in reading.experiment.arm_names
        ],
        "units": f"{sum(units.values()):,}",
        "units_raw": sum(units.values()),
        "primary": [row for row in results_rows(reading) if row["primary"] and not row["control"]],
        "srm": srm(results),
        "guardrails": _guardrail_summary(results),
        "last_exposure": when(results.get("last_exposure")),
    }


# --- the experiment page --------------------------------------------------------------------


def results_rows(reading: Reading) -> list[dict[str, Any]]:
    """The results table: each (metric, arm) row as the report writes it, with the JSON row's
    raw numbers and its interval drawn on the metric's common scale."""
    raw_rows = reading.results["table"]
    shown = [table_row(r) for r in reading.result.rows]
    scales = _bar_scales(raw_rows)
    rows = []
    for text, raw in zip(shown, raw_rows, strict=True):
        if (text.metric, text.arm) != (raw["metric"], raw["arm"]):
            raise ValueError(f"table rows out of order: {text.metric}/{text.arm}")
        control = text.css == "control"
        rows.append(
            {
                "text": text,
                "raw": raw,
                "control": control,
                "primary": bool(raw["primary"]),
                "guardrail": bool(raw["guardrail"]),
                "data": {
                    "units": raw["units"],
                    "effect": raw["effect"],
                    "ci_low": raw["ci_low"],
                    "ci_high": raw["ci_high"],
                    "p_adjusted": raw["p_adjusted"],
                },
                "bar": ""
                if control
                else interval_bar(
                    _num(raw["effect"]),
                    _num(raw["ci_low"]),
                    _num(raw["ci_high"]),
                    scales[raw["metric"]],
                    text.css,
                ),
            }
        )
    return rows


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _bar_scales(raw_rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    by_metric: dict[str, list[tuple[float, float, float]]] = {}
    for raw in raw_rows:
        triple = (_num(raw["effect"]), _num(raw["ci_low"]), _num(raw["ci_high"]))
        by_metric.setdefault(raw["metric"], []).append(triple)
    return {metric: bar_scale(rows) for metric, rows in by_metric.items()}


def _traffic(reading: Reading) -> list[dict[str, str]]:
    units = reading.result.units_per_arm
    total = sum(units.values())
    weights = sum(arm.weight for arm in reading.experiment.arms)
    return [
        {
            "arm": arm.name,
            "units": f"{units.get(arm.name, 0):,}",
            "units_raw": units.get(arm.name, 0),
            "share": format_percent(units.get(arm.name, 0) / total) if total else "–",
            "expected": format_percent(arm.weight / weights) if weights else "–",
        }
        for arm in reading.experiment.arms
    ]


def _progress(results: Mapping[str, Any]) -> dict[str, Any] | None:
    progress = results.get("progress")
    if not progress:
        return None
    share = progress.get("share")
    return {
        "sentence": progress["sentence"],
        "percent": None if share is None else min(100.0, share * 100),
        "share": "–" if share is None else format_percent(share),
        "planned": "–"
        if progress.get("planned_units_per_arm") is None
        else f"{progress['planned_units_per_arm']:,}",
        "smallest": f"{progress['smallest_arm_units']:,}",
        "to_go": _duration(progress.get("days_to_go")),
    }


def _duration(days: float | None) -> str:
    """`days_to_go` in the unit a reader expects: minutes, hours or days."""
    if days is None or not math.isfinite(days):
        return ""
    if days < 1 / 24:
        return f"about {max(1, round(days * 1440))} minutes to go"
    if days < 2:
        return f"about {days * 24:.0f} hours to go"
    return f"about {days:.0f} days to go"


def _arms(reading: Reading, details: Details) -> list[dict[str, Any]]:
    prompts = {p.arm: p for p in details.prompts}
    seen = reading.results.get("flow_fingerprints") or {}
    rows = []
    for arm in reading.experiment.arms:
        now = prompts.get(arm.name)
        rows.append(
            {
                "name": arm.name,
                "weight": format_percent(arm.weight),
                "config": [
                    {"key": key, "value": json.dumps(value)}
                    for key, value in sorted(arm.config.items())
                ],
                "modules": ", ".join(reading.experiment.modules_for(arm)),
                "fingerprint": now.fingerprint if now is not None else "",
                "seen": _fingerprints_seen(reading.result, seen.get(arm.name, {})),
                **_live_state(reading.states.get(arm.name)),
            }
        )
    return rows


def _fingerprints_seen(result: ExperimentResult, counts: Mapping[str, int]) -> list[dict[str, str]]:
    rows = []
    for fp, count in counts.items():
        manifest = result.manifests.get(fp)
        versions = manifest.versions() if manifest is not None else ""
        rows.append({"fp": fp, "short": fp[:12], "count": f"{count:,}", "prompts": versions})
    return rows


def _guardrails(results: Mapping[str, Any]) -> list[dict[str, str]]:
    css = {"fails": "bad", "inconclusive": "warn", "passes": "good"}
    return [{**check, "css": css.get(check["state"], "")} for check in results["guardrails"]]


def _decisions(results: Mapping[str, Any]) -> list[dict[str, str]]:
    css = {"ship": "good", "don't ship": "bad"}
    return [{**d, "css": css.get(d["decision"], "warn")} for d in results["decisions"]]


def _offline_vs_online(results: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """The report's offline-vs-online rows, formatted (None without an offline evaluation)."""
    records = results.get("offline_vs_online")
    if records is None:
        return None
    css = {"agree": "good", "disagree": "bad"}
    return [
        {
            "evaluator": r["evaluator"],
            "arm": r["arm"],
            "offline": _signed(r["offline_diff"], "absolute"),
            "offline_ci": _interval(r["offline_ci_low"], r["offline_ci_high"], "absolute"),
            "pairs": f"{r['offline_n']:,}",
            "online": _signed(r["online_effect"], r["online_estimand"]),
            "online_ci": _interval(r["online_ci_low"], r["online_ci_high"], r["online_estimand"]),
            "units": f"{r['online_units']:,}",
            "agreement": r["agreement"],
            "css": css.get(r["agreement"], ""),
            "reason": r["reason"],
        }
        for r in records
    ]


def _judge_verdicts(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The online judges' verdicts per arm and evaluator (none before any run was judged)."""
    return [
        {"arm": arm, "evaluator": evaluator, **{k: f"{v:,}" for k, v in counts.items()}}
        for arm, by_evaluator in results.get("judge_verdicts", {}).items()
        for evaluator, counts in sorted(by_evaluator.items())
    ]


def _drift(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON's `drift` list, when the analysis reports one: when an arm's prompts changed."""
    out = []
    for d in results.get("drift") or []:
        out.append(
            {
                "arm": d["arm"],
                "from": str(d["from"])[:12],
                "to": str(d["to"])[:12],
                "at": when(d["at"]),
                "at_ms": _epoch_ms(d["at"]),
            }
        )
    return out


def _audit(entries: Sequence[AuditEntry]) -> list[dict[str, str]]:
    return [
        {
            "when": when(e.ts),
            "arm": e.arm,
            "action": e.action,
            "actor": e.actor,
            "reason": e.reason,
            "statistics": json.dumps(e.statistics, sort_keys=True) if e.statistics else "",
        }
        for e in reversed(entries)  # newest first
    ]


def _prompts(details: Details) -> list[dict[str, Any]]:
    """Each arm's templates with their text, and the diff of each against the control's
    template for the same node."""
    control = details.prompts[0] if details.prompts else ArmPrompts("")
    return [
        {
            "arm": arm.arm,
            "is_control": arm.arm == control.arm,
            "fingerprint": arm.fingerprint,
            "problem": arm.problem,
            "nodes": [
                _prompt_node(node, use, control, arm.arm == control.arm)
                for node, use in sorted(arm.prompts.items())
            ],
        }
        for arm in details.prompts
    ]


def _prompt_node(node: str, use: Any, control: ArmPrompts, is_control: bool) -> dict[str, Any]:
    base = control.prompts.get(node)
    if is_control:
        compare = "control"
    elif base is None:
        compare = "not used by the control"
    elif base.text == use.text:
        compare = "same text as the control"
    else:
        compare = "differs from the control"
    return {
        "node": node,
        "prompt_id": use.prompt_id,
        "version": use.version,
        "sha256": use.sha256[:12],
        "source": use.source,
        "text": use.text,
        "compare": compare,
        "diff": [] if is_control or base is None else diff_lines(base.text, use.text),
    }


def diff_lines(control: str, arm: str) -> list[dict[str, str]]:
    """A unified diff of the control's template against the arm's, one dict per line with
    its css class (`add`, `del`, `hunk` or empty)."""
    lines = difflib.unified_diff(
        control.splitlines(), arm.splitlines(), "control", "this arm", lineterm="", n=2
    )
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        css = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")
        out.append({"css": css, "line": line})
    return out


# --- the timeline ---------------------------------------------------------------------------


def timeline_records(result: ExperimentResult) -> list[dict[str, Any]]:
    """`result.timeline` as JSON rows (period as ISO time, NaN as None)."""
    rows = []
    for record in result.timeline.to_dict(orient="records"):
        row = {}
        for key, value in record.items():
            if key == "period":
                row[key] = pd.Timestamp(value).isoformat()
            elif isinstance(value, float) and not math.isfinite(value):
                row[key] = None
            elif hasattr(value, "item"):
                row[key] = value.item()
            else:
                row[key] = value
        rows.append(row)
    return rows


def _x_format(granularity: str):
    pattern = {"second": "%H:%M:%S", "minute": "%m-%d %H:%M", "hour": "%m-%d %H:%M"}.get(
        granularity, "%Y-%m-%d"
    )

    def fmt(ms: float) -> str:
        return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime(pattern)

    return fmt


def _charts(reading: Reading, drift: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One chart of cumulative units per arm, then one of the cumulative lift (with its
    interval) per metric; prompt drifts are marked on each."""
    timeline = reading.result.timeline
    if timeline.empty:
        return []
    colours = {arm: ARM_COLOURS[i % len(ARM_COLOURS)] for i, arm in enumerate(reading.result.arms)}
    markers = [Marker(d["at_ms"], f"drift: {d['arm']}") for d in drift if d["at_ms"] is not None]
    x_format = _x_format(reading.result.granularity)
    period_ms = timeline["period"].map(lambda t: t.value / 1e6)
    frame = timeline.assign(ms=period_ms)
    traffic = reading.result.traffic
    charts = []
    if traffic is not None and not traffic.empty:
        units = traffic.assign(ms=traffic["period"].map(lambda t: t.value / 1e6))
        charts.append(_units_chart(units, colours, markers, x_format))
    for metric in dict.fromkeys(frame["metric"]):
        part = frame[frame["metric"] == metric]
        charts.append(_lift_chart(part, metric, colours, markers, x_format))
    return charts


def _units_chart(
    frame: pd.DataFrame, colours: Mapping[str, str], markers: Sequence[Marker], x_format: Any
) -> dict[str, Any]:
    """Cumulative units that entered each arm, control included (`ExperimentResult.traffic`)."""
    units = frame.sort_values(["arm", "ms"])
    series = []
    for arm in colours:
        part = units[units["arm"] == arm]
        if part.empty:
            continue
        points = tuple(
            Point(ms, float(n), label=f"{arm}, {x_format(ms)}: {int(n):,} units")
            for ms, n in zip(part["ms"], part["units"], strict=True)
        )
        series.append(Series(arm, colours[arm], points))
    title = "Cumulative units per arm"
    svg = line_chart(
        series,
        title=title,
        y_format=lambda v: f"{v:,.0f}",
        x_format=x_format,
        markers=markers,
        zero_line=True,
    )
    return {"title": title, "svg": svg, "legend": _legend(series, colours), "note": ""}


def _lift_chart(
    part: pd.DataFrame,
    metric: str,
    colours: Mapping[str, str],
    markers: Sequence[Marker],
    x_format: Any,
) -> dict[str, Any]:
    """A metric's cumulative effect per treatment arm, on its estimand's scale, with the
    interval as a band."""
    relative = bool((part["estimand"] == "relative").all())
    scale = 100.0 if relative else 1.0
    series = []
    for arm in colours:
        line = part[part["arm"] == arm]
        if line.empty:
            continue
        points = []
        for row in line.itertuples(index=False):
            label = (
                f"{arm}: {_signed(row.effect, row.estimand)} "
                f"{_interval(row.ci_low, row.ci_high, row.estimand)}, {int(row.units):,} units"
            )
            points.append(
                Point(
                    row.ms,
                    row.effect * scale,
                    row.ci_low * scale,
                    row.ci_high * scale,
                    label,
                )
            )
        series.append(Series(arm, colours[arm], tuple(points)))
    title = f"{metric}: cumulative {'lift (%)' if relative else 'difference'} vs control"
    svg = line_chart(
        series,
        title=title,
        y_format=(lambda v: f"{v:+.3g}%") if relative else (lambda v: f"{v:+.3g}"),
        x_format=x_format,
        markers=markers,
    )
    return {
        "title": title,
        "svg": svg,
        "legend": _legend(series, colours),
        "note": "the band is the interval (always-valid when the analysis is sequential)",
    }


def _legend(series: Sequence[Series], colours: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"arm": s.name, "colour": colours[s.name]} for s in series]


# --- the page -------------------------------------------------------------------------------


def experiment_context(reading: Reading, details: Details) -> dict[str, Any]:
    """`/ui/experiments/{id}`: every section's context (each section is also re-rendered
    alone when the page polls)."""
    results = reading.results
    drift = _drift(results)
    rows = results_rows(reading)
    return {
        "experiment": reading.experiment,
        "analysis_line": _analysis_line(results),
        "read_at": when(reading.read_at * 1000),
        "first_exposure": when(results.get("first_exposure")),
        "last_exposure": when(results.get("last_exposure")),
        "summary": reading.result.summary_sentences(),
        "bayesian": results["analysis"]["engine"] == "bayesian",
        "goals": [r for r in rows if not r["guardrail"]],
        "guardrail_rows": [r for r in rows if r["guardrail"]],
        "srm": srm(results),
        "traffic": _traffic(reading),
        "progress": _progress(results),
        "guardrails": _guardrails(results),
        "guardrail_summary": _guardrail_summary(results),
        "decisions": _decisions(results),
        "offline_vs_online": _offline_vs_online(results),
        "judges": _judge_verdicts(results),
        "arms": _arms(reading, details),
        "charts": _charts(reading, drift),
        "drift": drift,
        "prompts": _prompts(details),
        "audit": _audit(details.audit),
    }
