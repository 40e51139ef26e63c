"""Offline evaluation results: load the per-row file, summarise it, render it, compare online.

``abtest eval EXPERIMENT`` runs every arm on every row of the experiment's dataset and scores
each answer with the evaluators; it writes one JSON line per (row, arm, evaluator)
(:data:`EVALUATION_COLUMNS`). This module is what reads that file:

* :func:`load_evaluation` turns it into a DataFrame (a notebook's entry point);
* :func:`summarize_evaluation` compares each treatment arm with the control on the rows both
  answered, as paired samples (:mod:`analysis.paired`), and adds up the runs' costs;
* :func:`render_evaluation_html` is the standalone report of a summary, in the experiment
  report's style;
* :func:`offline_vs_online` puts a summary next to the online results of the same evaluators
  (the metrics ``judge:<evaluator>``); the experiment report shows it
  (:mod:`analysis.report`), reading the summary the runner stored in Redis under
  :func:`summary_key` (:func:`read_summary`).

The summary is a tree of frozen dataclasses whose JSON form (:meth:`EvaluationSummary.to_json`)
round-trips exactly, so the runner can store it and the online report read it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from abtest.event_fields import as_str
from analysis.formatting import format_number, format_p
from analysis.paired import PairedTest, bootstrap_ci, mean_interval, paired_ttest, win_tie_loss
from analysis.proportion_bounds import wilson_interval
from analysis.table_html import STYLE

__all__ = [
    "EVALUATION_COLUMNS",
    "JUDGE_METRIC_PREFIX",
    "OFFLINE_VS_ONLINE_COLUMNS",
    "STATUSES",
    "ArmInfo",
    "ArmScores",
    "ArmUsage",
    "Disagreement",
    "EvaluationSummary",
    "EvaluatorSummary",
    "OnlineResults",
    "PairedComparison",
    "load_evaluation",
    "offline_vs_online",
    "read_summary",
    "render_evaluation_html",
    "summarize_evaluation",
    "summary_key",
    "JUDGE_VERDICT_STATUSES",
    "judge_stats_key",
    "read_judge_stats",
]

STATUSES: tuple[str, ...] = ("ok", "parse_failure", "run_error", "bad_input", "evaluator_error")
"""What a record's ``status`` can be: ``ok`` (scored), ``parse_failure`` (the judge answered
text that holds no score), ``run_error`` (the arm's flow failed on the row), ``bad_input`` (the
row's inputs do not match the flow), ``evaluator_error`` (the evaluator itself failed)."""

EVALUATION_COLUMNS: tuple[str, ...] = (
    "experiment_id",
    "row_id",
    "arm",
    "arm_fingerprint",
    "evaluator",
    "evaluator_kind",
    "evaluator_fingerprint",
    "score",
    "status",
    "detail",
    "inputs",
    "expected",
    "outputs",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "judge_prompt_tokens",
    "judge_completion_tokens",
    "judge_cost_usd",
    "scale",
)
"""Columns of :func:`load_evaluation`'s frame, in order: one record per (row, arm, evaluator).
``score`` is NaN unless ``status`` is ``ok``; the token, cost and latency columns are the
arm's run on the row (the same for every evaluator of that run), the ``judge_*`` ones the
evaluator's own usage; ``inputs``, ``expected``, ``outputs`` (JSON values) and ``scale``
(``(low, high)`` or None) are Python objects."""

JUDGE_METRIC_PREFIX = "judge:"
"""Online, the score of evaluator ``E`` on live runs is the outcome metric ``judge:E``."""

SUMMARY_FORMAT = 1
"""Version of :meth:`EvaluationSummary.to_json`'s layout; :meth:`EvaluationSummary.from_json`
reads this version only."""

OFFLINE_VS_ONLINE_COLUMNS: tuple[str, ...] = (
    "evaluator",
    "metric",
    "arm",
    "offline_n",
    "offline_diff",
    "offline_ci_low",
    "offline_ci_high",
    "offline_p",
    "offline_significant",
    "online_units",
    "online_estimand",
    "online_effect",
    "online_ci_low",
    "online_ci_high",
    "online_p_adjusted",
    "online_significant",
    "same_sign",
    "agreement",
    "reason",
)
"""Columns of :func:`offline_vs_online`, in order."""

_TEXT = ("experiment_id", "row_id", "arm", "evaluator", "status")
_OPTIONAL_TEXT = ("arm_fingerprint", "evaluator_kind", "evaluator_fingerprint", "detail")
_COUNTS = ("prompt_tokens", "completion_tokens", "judge_prompt_tokens", "judge_completion_tokens")
_AMOUNTS = ("cost_usd", "judge_cost_usd")
_JSON_VALUES = ("inputs", "expected", "outputs")
_NAN = float("nan")
_TIE = 1e-12


def summary_key(experiment_id: str) -> str:
    """The Redis string key of the experiment's offline summary (JSON of
    :meth:`EvaluationSummary.to_json`); the hash tag keeps it in the slot of the
    experiment's other keys on a cluster."""
    return f"abtest:{{{experiment_id}}}:evaluation:summary"


# --- loading ---------------------------------------------------------------------------------


def load_evaluation(path: str | Path) -> pd.DataFrame:
    """Read a per-row evaluation file (JSON lines) into a frame of :data:`EVALUATION_COLUMNS`.

    Blank lines are skipped; fields the file adds beyond these columns are kept after them.

    Raises
    ------
    ValueError
        For a line that is not a JSON object of the record's shape (a missing or mistyped
        field, an unknown status, an ``ok`` record without a finite score or another record
        with one) or a second record of the same (row, arm, evaluator); the message names the
        file and the line number.
    """
    records: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], int] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = _record(line)
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
            key = (record["row_id"], record["arm"], record["evaluator"])
            if key in seen:
                raise ValueError(
                    f"{path}, line {number}: a second record of row {key[0]!r}, arm {key[1]!r}, "
                    f"evaluator {key[2]!r} (the first is on line {seen[key]})"
                )
            seen[key] = number
            records.append(record)
    return _frame(records)


def _record(line: str) -> dict[str, Any]:
    """One line as a record with every column, checked against the runner's contract."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    record = dict(raw)
    for name in _TEXT:
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ValueError(f"'{name}' must be a non-empty string, got {raw.get(name)!r}")
    for name in _OPTIONAL_TEXT:
        record[name] = _text(raw, name)
    if raw["status"] not in STATUSES:
        raise ValueError(f"unknown status {raw['status']!r} (expected one of {STATUSES})")
    record["score"] = _score(raw)
    for name in _COUNTS:
        record[name] = _count(raw, name)
    for name in _AMOUNTS:
        record[name] = _amount(raw, name, 0.0)
    record["latency_ms"] = _amount(raw, "latency_ms", _NAN)
    for name in _JSON_VALUES:
        record[name] = raw.get(name)
    record["scale"] = _scale(raw.get("scale"))
    return record


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _score(raw: dict[str, Any]) -> float:
    score = raw.get("score")
    if raw["status"] != "ok":
        if score is not None:
            raise ValueError(f"a '{raw['status']}' record must have a null score, got {score!r}")
        return _NAN
    if not _is_number(score) or not math.isfinite(score):
        raise ValueError(f"an 'ok' record needs a finite number as score, got {score!r}")
    return float(score)


def _count(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name, 0)
    if value is None:
        return 0
    if not _is_number(value) or value < 0 or value != int(value):
        raise ValueError(f"'{name}' must be a whole number >= 0, got {value!r}")
    return int(value)


def _amount(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name)
    if value is None:
        return default
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"'{name}' must be a finite number, got {value!r}")
    return float(value)


def _scale(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(_is_number(v) and math.isfinite(v) for v in value)
    ):
        raise ValueError(f"'scale' must be null or [low, high], got {value!r}")
    return float(value[0]), float(value[1])


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    extra = list(dict.fromkeys(k for r in records for k in r if k not in EVALUATION_COLUMNS))
    columns = [*EVALUATION_COLUMNS, *extra]
    data = {name: [r.get(name) for r in records] for name in columns}
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()})
    frame = frame.reindex(columns=columns)
    for name in (*_TEXT, *_OPTIONAL_TEXT):
        frame[name] = frame[name].astype(str)
    for name in _COUNTS:
        frame[name] = frame[name].astype(np.int64)
    for name in ("score", *_AMOUNTS, "latency_ms"):
        frame[name] = frame[name].astype(np.float64)
    return frame


# --- the summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmInfo:
    """An arm of the evaluation: its name and the flow fingerprint its runs recorded."""

    name: str
    fingerprint: str


@dataclass(frozen=True)
class ArmScores:
    """One evaluator's scores of one arm.

    ``records`` counts the arm's records of the evaluator, ``scored`` those with an ``ok``
    score; ``mean`` is their mean with its ``1 - alpha`` t-interval
    (:func:`analysis.paired.mean_interval`), or for pass/fail checks (scores all 0 or 1) the
    Wilson score interval of the share passing; the other counts are records per status.
    """

    arm: str
    records: int
    scored: int
    mean: float
    ci_low: float
    ci_high: float
    parse_failures: int
    run_errors: int
    bad_inputs: int
    evaluator_errors: int


@dataclass(frozen=True)
class Disagreement:
    """A row on which the two arms' scores differ most: what a reader checks first to see
    whether the evaluator's preference is the right one. ``diff`` is treatment minus control;
    the outputs are each arm's answer as the runner recorded it."""

    row_id: str
    control_score: float
    treatment_score: float
    diff: float
    inputs: Any
    expected: Any
    control_output: Any
    treatment_output: Any


@dataclass(frozen=True)
class PairedComparison:
    """A treatment arm against the control on one evaluator, over the rows both scored.

    ``test`` is the paired t-test of the per-row differences (its ``n`` the number of pairs),
    ``bootstrap_low``/``bootstrap_high`` the percentile bootstrap interval of their mean,
    ``wins``/``ties``/``losses`` the rows where treatment scored higher, the same, lower, and
    ``disagreements`` the rows with the largest ``|treatment - control|``, largest first.
    """

    arm: str
    test: PairedTest
    bootstrap_low: float
    bootstrap_high: float
    wins: int
    ties: int
    losses: int
    disagreements: tuple[Disagreement, ...]


@dataclass(frozen=True)
class EvaluatorSummary:
    """One evaluator: what it is (kind, fingerprint, score scale), its scores per arm (control
    first) and the paired comparison of each treatment arm with the control."""

    name: str
    kind: str
    fingerprint: str
    scale: tuple[float, float] | None
    arms: tuple[ArmScores, ...]
    comparisons: tuple[PairedComparison, ...]

    def scores(self, arm: str) -> ArmScores:
        """The scores of ``arm`` (KeyError naming it otherwise)."""
        return _named(self.arms, "arm", arm, f"evaluator '{self.name}' has no arm")

    def comparison(self, arm: str) -> PairedComparison:
        """``arm`` against the control (KeyError for the control or an unknown arm)."""
        return _named(self.comparisons, "arm", arm, f"evaluator '{self.name}' compares no arm")


@dataclass(frozen=True)
class ArmUsage:
    """What an arm's runs cost, each (row, arm) run counted once whatever the number of
    evaluators that scored it; the judges' own usage is counted apart (``judge_*``, every
    record). ``mean_cost_usd`` is per run, ``mean_latency_ms`` over runs that recorded one."""

    arm: str
    runs: int
    run_errors: int
    bad_inputs: int
    cost_usd: float
    mean_cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    mean_latency_ms: float
    judge_cost_usd: float
    judge_prompt_tokens: int
    judge_completion_tokens: int


@dataclass(frozen=True, eq=False)
class EvaluationSummary:
    """The offline evaluation of an experiment (:func:`summarize_evaluation`).

    Attributes
    ----------
    experiment_id, control : str
        The experiment and its control arm.
    alpha : float
        One minus the coverage of every interval; a comparison is significant when its
        paired p-value is below it.
    arms : tuple of ArmInfo
        The arms, control first, then in the order the file lists them.
    evaluators : tuple of EvaluatorSummary
        In the order the file lists them.
    usage : tuple of ArmUsage
        Cost and tokens per arm, in the order of ``arms``.
    resamples, seed : int
        The bootstrap's settings.

    Two summaries are equal when their JSON forms are (so an undefined statistic, NaN,
    equals NaN here, unlike in float comparison).
    """

    experiment_id: str
    control: str
    alpha: float
    arms: tuple[ArmInfo, ...]
    evaluators: tuple[EvaluatorSummary, ...]
    usage: tuple[ArmUsage, ...]
    resamples: int = 2000
    seed: int = 0

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.arms)

    def evaluator(self, name: str) -> EvaluatorSummary:
        """The evaluator called ``name`` (KeyError naming it otherwise)."""
        return _named(self.evaluators, "name", name, "the evaluation has no evaluator")

    def arm_usage(self, arm: str) -> ArmUsage:
        """The cost and tokens of ``arm`` (KeyError naming it otherwise)."""
        return _named(self.usage, "arm", arm, "the evaluation has no arm")

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (``json.dumps(..., allow_nan=False)`` accepts it).

        Fields as the dataclasses name them, tuples as lists; a NaN (an undefined statistic)
        is ``null`` and an infinite t statistic (every difference the same) the string
        ``"Infinity"`` or ``"-Infinity"``, so :meth:`from_json` restores every value exactly.
        ``"format"`` is the layout's version.
        """
        return {"format": SUMMARY_FORMAT, **_encode(self)}

    @classmethod
    def from_json(cls, data: Any) -> EvaluationSummary:
        """The summary :meth:`to_json` returned (also after a trip through ``json``).

        Raises
        ------
        ValueError
            If ``data`` is not such a dict, or of another format version.
        """
        if not isinstance(data, dict):
            raise ValueError(f"an evaluation summary is a JSON object, got {type(data).__name__}")
        if data.get("format") != SUMMARY_FORMAT:
            raise ValueError(
                f"evaluation summary format {data.get('format')!r} is not {SUMMARY_FORMAT}"
            )
        try:
            return _decode(cls, data)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed evaluation summary: {error!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EvaluationSummary):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]


def _named(items: Sequence[Any], attribute: str, name: str, missing: str) -> Any:
    for item in items:
        if getattr(item, attribute) == name:
            return item
    raise KeyError(f"{missing} '{name}'")


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    return value


def _decode(kind: Any, value: Any) -> Any:
    """``value`` (from :func:`_encode`) as an instance of the annotation ``kind``."""
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(
            **{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)}
        )
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = (arg for arg in typing.get_args(kind) if arg is not type(None))
        return _decode(inner, value)
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if kind is float:
        return _decode_float(value)
    if kind is int:
        if not _is_number(value) or value != int(value):
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    return value


def _decode_float(value: Any) -> float:
    if value is None:
        return _NAN
    if value in ("Infinity", "-Infinity"):
        return float(value)
    if not _is_number(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def summarize_evaluation(
    frame: pd.DataFrame,
    control: str,
    alpha: float = 0.05,
    top_disagreements: int = 3,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> EvaluationSummary:
    """Summarise an evaluation frame (:func:`load_evaluation`) against ``control``.

    Per evaluator and arm: the records, the ``ok`` scores' mean and t-interval, and the
    records per failure status. Per evaluator and treatment arm: the paired comparison with
    the control over the rows where *both* have an ``ok`` score (a row one arm failed on says
    nothing about the difference; the failure counts say how many were lost): the paired
    t-test, the percentile bootstrap interval (``resamples`` draws from ``seed``, pairs in
    ``row_id`` order), wins/ties/losses, and the ``top_disagreements`` rows of largest
    non-zero ``|treatment - control|`` (ties broken by ``row_id``). Per arm: cost and tokens
    (:class:`ArmUsage`).

    Every sum runs in ``row_id`` order, so the order of the file's lines changes no number of
    the summary (only the order of arms and evaluators, which follows the file's).

    Scores are taken as higher-is-better only where the report colours a significant
    difference; the numbers themselves are signed treatment minus control.

    Raises
    ------
    ValueError
        If the frame is empty, mixes experiments, lacks ``control``, has two records of one
        (row, arm, evaluator), or records an arm or evaluator under two fingerprints (scores
        of two versions would be pooled).
    """
    _check_frame(frame, control)
    if top_disagreements < 0:
        raise ValueError(f"top_disagreements must be >= 0, got {top_disagreements}")
    arms = [control, *(a for a in dict.fromkeys(frame["arm"]) if a != control)]
    names = list(dict.fromkeys(frame["evaluator"]))
    frame = frame.sort_values("row_id", kind="stable")
    evaluators = [
        _evaluator_summary(
            frame[frame["evaluator"] == name], name, arms, alpha, top_disagreements, resamples, seed
        )
        for name in names
    ]
    return EvaluationSummary(
        experiment_id=str(frame["experiment_id"].iloc[0]),
        control=control,
        alpha=float(alpha),
        arms=tuple(
            ArmInfo(arm, _one_value(frame.loc[frame["arm"] == arm, "arm_fingerprint"], arm))
            for arm in arms
        ),
        evaluators=tuple(evaluators),
        usage=tuple(_arm_usage(frame[frame["arm"] == arm], arm) for arm in arms),
        resamples=resamples,
        seed=seed,
    )


def _check_frame(frame: pd.DataFrame, control: str) -> None:
    missing = [name for name in EVALUATION_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"the evaluation frame lacks columns {missing}")
    if frame.empty:
        raise ValueError("the evaluation frame has no records")
    experiments = list(dict.fromkeys(frame["experiment_id"]))
    if len(experiments) > 1:
        raise ValueError(f"the evaluation frame mixes experiments {experiments}")
    if control not in set(frame["arm"]):
        raise ValueError(
            f"control arm '{control}' has no records (arms: {sorted(set(frame['arm']))})"
        )
    repeated = frame.duplicated(["row_id", "arm", "evaluator"], keep=False)
    if repeated.any():
        first = frame[repeated].iloc[0]
        raise ValueError(
            f"{int(repeated.sum())} records repeat a (row, arm, evaluator), e.g. row "
            f"{first['row_id']!r}, arm {first['arm']!r}, evaluator {first['evaluator']!r}"
        )


def _one_value(values: pd.Series, owner: str) -> str:
    """The one non-empty value of a fingerprint column for an arm or evaluator."""
    distinct = sorted({v for v in values if v})
    if len(distinct) > 1:
        shown = ", ".join(v[:12] for v in distinct)
        raise ValueError(f"'{owner}' is recorded under {len(distinct)} fingerprints ({shown})")
    return distinct[0] if distinct else ""


def _evaluator_summary(
    part: pd.DataFrame,
    name: str,
    arms: list[str],
    alpha: float,
    top: int,
    resamples: int,
    seed: int,
) -> EvaluatorSummary:
    kinds = list(dict.fromkeys(k for k in part["evaluator_kind"] if k))
    scales = [s for s in part["scale"] if s is not None]
    control = part[part["arm"] == arms[0]]
    return EvaluatorSummary(
        name=name,
        kind=kinds[0] if kinds else "",
        fingerprint=_one_value(part["evaluator_fingerprint"], name),
        scale=(float(scales[0][0]), float(scales[0][1])) if scales else None,
        arms=tuple(_arm_scores(part[part["arm"] == arm], arm, alpha) for arm in arms),
        comparisons=tuple(
            _paired(control, part[part["arm"] == arm], arm, alpha, top, resamples, seed)
            for arm in arms[1:]
        ),
    )


def _arm_scores(part: pd.DataFrame, arm: str, alpha: float) -> ArmScores:
    status = part["status"]
    mean, low, high = _mean_interval(part.loc[status == "ok", "score"].to_numpy(), alpha)
    return ArmScores(
        arm=arm,
        records=len(part),
        scored=int((status == "ok").sum()),
        mean=mean,
        ci_low=low,
        ci_high=high,
        parse_failures=int((status == "parse_failure").sum()),
        run_errors=int((status == "run_error").sum()),
        bad_inputs=int((status == "bad_input").sum()),
        evaluator_errors=int((status == "evaluator_error").sum()),
    )


def _mean_interval(scores: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """The mean score and its interval: for pass/fail checks (every score 0 or 1) the share
    passing with its Wilson score interval (Wilson 1927; within [0, 1], sound near 0 and 1,
    where the t-interval of a proportion leaves [0, 1] or collapses to a point), else the
    t-interval of :func:`analysis.paired.mean_interval`."""
    if scores.size and np.isin(scores, (0.0, 1.0)).all():
        low, high = wilson_interval(int(scores.sum()), int(scores.size), alpha)
        return float(scores.mean()), low, high
    return mean_interval(scores, alpha)


def _paired(
    control: pd.DataFrame,
    treatment: pd.DataFrame,
    arm: str,
    alpha: float,
    top: int,
    resamples: int,
    seed: int,
) -> PairedComparison:
    columns = ["row_id", "score", "outputs", "inputs", "expected"]
    pairs = control.loc[control["status"] == "ok", columns].merge(
        treatment.loc[treatment["status"] == "ok", columns[:3]], on="row_id", suffixes=("_c", "_t")
    )
    t = pairs["score_t"].to_numpy(dtype=np.float64)
    c = pairs["score_c"].to_numpy(dtype=np.float64)
    low, high = bootstrap_ci(t - c, alpha, resamples, seed)
    wins, ties, losses = win_tie_loss(t, c, _TIE)
    return PairedComparison(
        arm=arm,
        test=paired_ttest(t, c, alpha),
        bootstrap_low=low,
        bootstrap_high=high,
        wins=wins,
        ties=ties,
        losses=losses,
        disagreements=_disagreements(pairs, top),
    )


def _disagreements(pairs: pd.DataFrame, top: int) -> tuple[Disagreement, ...]:
    diff = pairs["score_t"] - pairs["score_c"]
    ranked = pairs.assign(diff=diff, size=diff.abs())
    ranked = ranked[ranked["size"] > _TIE].sort_values(
        ["size", "row_id"], ascending=[False, True], kind="stable"
    )
    return tuple(
        Disagreement(
            row_id=str(r.row_id),
            control_score=float(r.score_c),
            treatment_score=float(r.score_t),
            diff=float(r.diff),
            inputs=r.inputs,
            expected=r.expected,
            control_output=r.outputs_c,
            treatment_output=r.outputs_t,
        )
        for r in ranked.head(top).itertuples(index=False)
    )


def _arm_usage(part: pd.DataFrame, arm: str) -> ArmUsage:
    """Amounts are summed with ``math.fsum`` (exactly rounded, so in any order the same)."""
    runs = part.drop_duplicates("row_id")
    runs_count = len(runs)
    cost = math.fsum(runs["cost_usd"])
    latency = runs["latency_ms"].dropna()
    return ArmUsage(
        arm=arm,
        runs=runs_count,
        run_errors=_rows_with(part, "run_error"),
        bad_inputs=_rows_with(part, "bad_input"),
        cost_usd=cost,
        mean_cost_usd=cost / runs_count if runs_count else _NAN,
        prompt_tokens=int(runs["prompt_tokens"].sum()),
        completion_tokens=int(runs["completion_tokens"].sum()),
        mean_latency_ms=math.fsum(latency) / len(latency) if len(latency) else _NAN,
        judge_cost_usd=math.fsum(part["judge_cost_usd"]),
        judge_prompt_tokens=int(part["judge_prompt_tokens"].sum()),
        judge_completion_tokens=int(part["judge_completion_tokens"].sum()),
    )


def _rows_with(part: pd.DataFrame, status: str) -> int:
    """Runs (rows) with a record of ``status``: a run's failure shows in each of its records."""
    return int(part.loc[part["status"] == status, "row_id"].nunique())


# --- reading the stored summary -----------------------------------------------------------------


def read_summary(experiment_id: str, redis: Any) -> EvaluationSummary | None:
    """The offline summary the runner stored for the experiment (:func:`summary_key`), or None
    when there is none. ``redis`` is a client or a URL, as :func:`analysis.load.load_events`
    takes.

    Raises
    ------
    ValueError
        If the key holds something other than a summary of this experiment (not JSON, not a
        summary, another experiment's, or a key of another type).
    """
    from redis.exceptions import ResponseError

    from analysis.load import _client

    key = summary_key(experiment_id)
    with _client(redis) as client:
        try:
            raw = client.get(key)
        except ResponseError as error:
            raise ValueError(f"{key} is not a string key: {error}") from None
    if raw is None:
        return None
    try:
        summary = EvaluationSummary.from_json(json.loads(raw))
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None
    if summary.experiment_id != experiment_id:
        raise ValueError(f"{key} holds the summary of experiment '{summary.experiment_id}'")
    return summary


JUDGE_VERDICT_STATUSES: tuple[str, ...] = ("ok", "parse_failure", "judge_error")
"""What an online judge's verdict on a live run can be: a score, text without a score on the
scale, or no answer (the judge flow failed, or lacked an input the runs stream did not keep)."""


def judge_stats_key(experiment_id: str) -> str:
    """The hash of the online judges' verdict counts, field ``<arm>:<evaluator>:<status>``
    (the experiment's hash tag); the judge worker increments it, the report reads it."""
    return f"abtest:{{{experiment_id}}}:judge:stats"


def read_judge_stats(experiment_id: str, redis: Any) -> dict[str, dict[str, dict[str, int]]]:
    """The online judges' verdict counts so far: arm -> evaluator -> {ok, parse_failure,
    judge_error} (empty when nothing was judged). ``redis`` is a client or a URL."""
    from analysis.load import _client

    with _client(redis) as client:
        raw = client.hgetall(judge_stats_key(experiment_id))
    stats: dict[str, dict[str, dict[str, int]]] = {}
    for raw_field, raw_count in raw.items():
        arm, evaluator, status = as_str(raw_field).rsplit(":", 2)
        counts = stats.setdefault(arm, {}).setdefault(
            evaluator, dict.fromkeys(JUDGE_VERDICT_STATUSES, 0)
        )
        counts[status] = int(raw_count)
    return stats


# --- offline vs online ------------------------------------------------------------------------


class OnlineResults(Protocol):
    """What :func:`offline_vs_online` reads of an :class:`analysis.analyze.ExperimentResult`
    (a protocol, so that ``analyze``, whose results hold an offline summary, is the one of the
    two modules that imports the other)."""

    @property
    def table(self) -> pd.DataFrame: ...

    @property
    def control(self) -> str: ...


def offline_vs_online(summary: EvaluationSummary, result: OnlineResults) -> pd.DataFrame:
    """Each evaluator's offline difference next to its online effect, per treatment arm.

    For every evaluator ``E`` whose online metric ``judge:E`` the experiment analyses, and
    every treatment arm both sides have: the offline paired difference (mean, t-interval,
    p-value; :func:`summarize_evaluation`) and the online row of ``judge:E`` for that arm in
    ``result.table`` (an :class:`analysis.analyze.ExperimentResult`'s: effect, interval,
    adjusted p-value). Online judge metrics are declared
    ``kind: mean, aggregate: mean, estimand: absolute``, so both sides estimate the same kind
    of number, the absolute difference in mean score, treatment minus control: offline over
    the dataset's rows, online over live units (``online_estimand`` says if a metric was
    declared otherwise; only the signs are then comparable).

    ``offline_significant`` is ``offline_p < summary.alpha``, ``online_significant`` the
    table's (``p_adjusted < alpha`` of the experiment). ``agreement`` is ``"agree"`` when the
    signs agree (``same_sign``) and so does significance (both significant or neither),
    ``"disagree"`` otherwise, and ``"n/a"`` while one side has no estimate (no pairs offline,
    not enough data online); ``reason`` says which. Rows follow the summary's evaluators, then
    its arms; an empty frame (these columns) when no evaluator has an online metric.

    Raises
    ------
    ValueError
        If the summary's control is not the experiment's.
    """
    if summary.control != result.control:
        raise ValueError(
            f"the offline summary's control is '{summary.control}', the experiment's "
            f"'{result.control}'"
        )
    table = result.table.set_index(["metric", "arm"])
    rows = []
    for evaluator in summary.evaluators:
        metric = JUDGE_METRIC_PREFIX + evaluator.name
        for comparison in evaluator.comparisons:
            if (metric, comparison.arm) in table.index:
                online = table.loc[(metric, comparison.arm)]
                rows.append(_side_by_side(evaluator.name, metric, comparison, online, summary))
    return pd.DataFrame(rows, columns=list(OFFLINE_VS_ONLINE_COLUMNS))


def _side_by_side(
    evaluator: str,
    metric: str,
    comparison: PairedComparison,
    online: pd.Series,
    summary: EvaluationSummary,
) -> dict[str, Any]:
    test = comparison.test
    offline_significant = bool(test.p_value < summary.alpha)
    online_significant = bool(online["significant"])
    effect = float(online["effect"])
    same_sign = _sign(test.mean_diff) is not None and _sign(test.mean_diff) == _sign(effect)
    agreement, reason = _agreement(test.mean_diff, effect, offline_significant, online_significant)
    return {
        "evaluator": evaluator,
        "metric": metric,
        "arm": comparison.arm,
        "offline_n": test.n,
        "offline_diff": test.mean_diff,
        "offline_ci_low": test.ci_low,
        "offline_ci_high": test.ci_high,
        "offline_p": test.p_value,
        "offline_significant": offline_significant,
        "online_units": int(online["units"]),
        "online_estimand": online["estimand"],
        "online_effect": effect,
        "online_ci_low": float(online["ci_low"]),
        "online_ci_high": float(online["ci_high"]),
        "online_p_adjusted": float(online["p_adjusted"]),
        "online_significant": online_significant,
        "same_sign": bool(same_sign),
        "agreement": agreement,
        "reason": reason,
    }


def _sign(x: float) -> int | None:
    if not math.isfinite(x):
        return None
    return (x > 0) - (x < 0)


def _agreement(
    offline: float, online: float, offline_sig: bool, online_sig: bool
) -> tuple[str, str]:
    if _sign(offline) is None:
        return "n/a", "no offline estimate: no row was scored by both arms"
    if _sign(online) is None:
        return "n/a", "no online estimate yet: not enough online data"
    if _sign(offline) != _sign(online):
        return "disagree", f"signs differ: offline {_signed(offline)}, online {_signed(online)}"
    if offline_sig and online_sig:
        return "agree", "both significant, in the same direction"
    if not offline_sig and not online_sig:
        return "agree", "neither significant, in the same direction"
    side = "offline" if offline_sig else "online"
    return "disagree", f"same direction, but significant {side} only"


def _signed(x: float) -> str:
    return ("+" if x > 0 else "") + format_number(x) if math.isfinite(x) else "–"


# --- HTML -------------------------------------------------------------------------------------

_EXTRA_STYLE = """
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0.8em; margin: 0.4em 0 1.4em; }
.pair > div { border: 1px solid #d0d7de; padding: 0.4em 0.8em; min-width: 0; }
.pair h4, .row h4 { margin: 0.2em 0; font-size: 0.95em; }
pre.answer { white-space: pre-wrap; word-break: break-word; font-size: 0.85em; margin: 0.3em 0; }
.row { border-top: 1px solid #d0d7de; padding-top: 0.4em; margin-top: 0.8em; }
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Offline evaluation: {{ experiment_id }}</title>
<style>{{ style }}</style>
</head>
<body>
<h1>Offline evaluation: {{ experiment_id }}</h1>
<p class="meta">{{ intro }}</p>

{% for e in evaluators %}
<h2>{{ e.name }}</h2>
<p class="meta">{{ e.meta }}</p>
<table class="results">
<thead><tr><th class="text">arm</th><th>mean<span class="ci">interval</span></th>
<th>scored</th><th>parse failures</th><th>run errors</th><th>bad inputs</th>
<th>evaluator errors</th><th>pairs</th>
<th>diff vs {{ control }}<span class="ci">t interval</span></th>
<th>bootstrap interval</th><th>p-value</th><th>W / T / L</th></tr></thead>
<tbody>
{% for r in e.rows %}<tr class="{{ r.css }}"><td class="text">{{ r.arm }}</td>
<td>{{ r.mean }}<span class="ci">{{ r.mean_ci }}</span></td><td>{{ r.scored }}</td>
<td>{{ r.parse_failures }}</td><td>{{ r.run_errors }}</td><td>{{ r.bad_inputs }}</td>
<td>{{ r.evaluator_errors }}</td><td>{{ r.pairs }}</td>
<td>{{ r.diff }}<span class="ci">{{ r.diff_ci }}</span></td><td>{{ r.bootstrap }}</td>
<td>{{ r.p }}</td><td>{{ r.wtl }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endfor %}

<h2>Cost and tokens</h2>
<p class="meta">Each (row, arm) run counted once, whatever the number of evaluators that scored
it; the judges' own usage apart.</p>
<table class="results">
<thead><tr><th class="text">arm</th><th>runs</th><th>run errors</th><th>bad inputs</th>
<th>cost (USD)</th><th>cost per run</th><th>prompt tokens</th><th>completion tokens</th>
<th>mean latency (ms)</th><th>judge cost (USD)</th><th>judge prompt tokens</th>
<th>judge completion tokens</th></tr></thead>
<tbody>
{% for u in usage %}<tr><td class="text">{{ u.arm }}</td><td>{{ u.runs }}</td>
<td>{{ u.run_errors }}</td><td>{{ u.bad_inputs }}</td><td>{{ u.cost }}</td>
<td>{{ u.mean_cost }}</td><td>{{ u.prompt_tokens }}</td><td>{{ u.completion_tokens }}</td>
<td>{{ u.latency }}</td><td>{{ u.judge_cost }}</td><td>{{ u.judge_prompt_tokens }}</td>
<td>{{ u.judge_completion_tokens }}</td></tr>
{% endfor %}
</tbody>
</table>

<h2>Largest disagreements</h2>
{% for d in disagreements %}
<h3>{{ d.title }}</h3>
{% for row in d.rows %}
<div class="row">
<h4>row {{ row.row_id }}: {{ control }} {{ row.control_score }}, {{ d.arm }}
{{ row.treatment_score }} ({{ row.diff }})</h4>
<p class="meta">inputs:</p><pre class="answer">{{ row.inputs }}</pre>
{% if row.expected %}<p class="meta">expected:</p><pre class="answer">{{ row.expected }}</pre>
{% endif %}
<div class="pair">
<div><h4>{{ control }} (score {{ row.control_score }})</h4>
<pre class="answer">{{ row.control_output }}</pre></div>
<div><h4>{{ d.arm }} (score {{ row.treatment_score }})</h4>
<pre class="answer">{{ row.treatment_output }}</pre></div>
</div>
</div>
{% else %}<p>The two arms scored every row they both answered alike.</p>
{% endfor %}
{% else %}<p>No treatment arm to compare.</p>
{% endfor %}
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_evaluation_html(summary: EvaluationSummary) -> str:
    """A standalone HTML page of the summary (no external assets): per evaluator a table of the
    arms with the paired comparison of each treatment, the cost and tokens per arm, and the
    largest disagreements with both answers side by side. Every value is escaped (answers are
    model text). A row is green (red) when its paired p-value is below alpha and the treatment
    scored higher (lower): evaluators score higher-is-better."""
    return _ENV.from_string(_TEMPLATE).render(
        experiment_id=summary.experiment_id,
        control=summary.control,
        intro=_intro(summary),
        style=Markup(STYLE + _EXTRA_STYLE),
        evaluators=[
            {"name": e.name, "meta": _evaluator_meta(e), "rows": _evaluator_rows(e, summary)}
            for e in summary.evaluators
        ],
        usage=[_usage_row(u) for u in summary.usage],
        disagreements=[
            {
                "title": f"{e.name}: {c.arm} vs {summary.control}",
                "arm": c.arm,
                "rows": [_disagreement_row(d) for d in c.disagreements],
            }
            for e in summary.evaluators
            for c in e.comparisons
        ],
    )


def _intro(summary: EvaluationSummary) -> str:
    level = f"{(1 - summary.alpha) * 100:g}%"
    arms = ", ".join(a + (" (control)" if a == summary.control else "") for a in summary.arm_names)
    return (
        f"Arms: {arms}. Each arm's mean score comes with its {level} interval (Wilson's for "
        "pass/fail checks, scored 0 or 1; Student's t otherwise). Each treatment is "
        f"compared with {summary.control} on the rows both scored: the mean per-row difference "
        f"with its {level} paired t interval and p-value, and a {level} percentile bootstrap "
        f"interval ({summary.resamples:,} resamples, seed {summary.seed}). Green (red): "
        f"p < {summary.alpha:g} and a higher (lower) score than {summary.control}."
    )


def _evaluator_meta(evaluator: EvaluatorSummary) -> str:
    parts = [evaluator.kind or "evaluator"]
    if evaluator.scale is not None:
        parts.append(
            f"scale {format_number(evaluator.scale[0])}-{format_number(evaluator.scale[1])}"
        )
    if evaluator.fingerprint:
        parts.append(f"fingerprint {evaluator.fingerprint[:12]}")
    return ", ".join(parts)


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{format_number(low)}, {format_number(high)}]"


def _evaluator_rows(
    evaluator: EvaluatorSummary, summary: EvaluationSummary
) -> list[dict[str, str]]:
    rows = []
    for scores in evaluator.arms:
        row = {
            "arm": scores.arm,
            "mean": format_number(scores.mean),
            "mean_ci": _interval(scores.ci_low, scores.ci_high),
            "scored": f"{scores.scored:,}",
            "parse_failures": f"{scores.parse_failures:,}",
            "run_errors": f"{scores.run_errors:,}",
            "bad_inputs": f"{scores.bad_inputs:,}",
            "evaluator_errors": f"{scores.evaluator_errors:,}",
            **_comparison_cells(evaluator, scores.arm, summary),
        }
        rows.append(row)
    return rows


def _comparison_cells(
    evaluator: EvaluatorSummary, arm: str, summary: EvaluationSummary
) -> dict[str, str]:
    if arm == summary.control:
        blank = ("pairs", "diff", "diff_ci", "bootstrap", "p", "wtl")
        return {**dict.fromkeys(blank, ""), "css": "control"}
    comparison = evaluator.comparison(arm)
    test = comparison.test
    significant = test.p_value < summary.alpha
    return {
        "pairs": f"{test.n:,}",
        "diff": _signed(test.mean_diff),
        "diff_ci": _interval(test.ci_low, test.ci_high),
        "bootstrap": _interval(comparison.bootstrap_low, comparison.bootstrap_high),
        "p": format_p(test.p_value),
        "wtl": f"{comparison.wins} / {comparison.ties} / {comparison.losses}",
        "css": ("better" if test.mean_diff > 0 else "worse") if significant else "",
    }


def _usage_row(usage: ArmUsage) -> dict[str, str]:
    return {
        "arm": usage.arm,
        "runs": f"{usage.runs:,}",
        "run_errors": f"{usage.run_errors:,}",
        "bad_inputs": f"{usage.bad_inputs:,}",
        "cost": format_number(usage.cost_usd),
        "mean_cost": format_number(usage.mean_cost_usd),
        "prompt_tokens": f"{usage.prompt_tokens:,}",
        "completion_tokens": f"{usage.completion_tokens:,}",
        "latency": format_number(usage.mean_latency_ms),
        "judge_cost": format_number(usage.judge_cost_usd),
        "judge_prompt_tokens": f"{usage.judge_prompt_tokens:,}",
        "judge_completion_tokens": f"{usage.judge_completion_tokens:,}",
    }


def _disagreement_row(d: Disagreement) -> dict[str, str]:
    return {
        "row_id": d.row_id,
        "control_score": format_number(d.control_score),
        "treatment_score": format_number(d.treatment_score),
        "diff": _signed(d.diff),
        "inputs": _json_text(d.inputs),
        "expected": "" if d.expected is None else _json_text(d.expected),
        "control_output": _shown(d.control_output),
        "treatment_output": _shown(d.treatment_output),
    }


def _shown(value: Any) -> str:
    """An answer as a reader wants to see it: an output of one text field as that text,
    anything else as indented JSON."""
    if value is None:
        return "(no output)"
    if isinstance(value, dict) and len(value) == 1:
        (only,) = value.values()
        if isinstance(only, str):
            return only
    if isinstance(value, str):
        return value
    return _json_text(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
