"""Analyses beyond memory: the sufficient statistics of an experiment computed by DuckDB from
Parquet exports (``abtest export``).

:func:`analysis.analyze.experiment_stats` holds every event in pandas/NumPy; at tens of millions
of units that no longer fits a small machine. Here DuckDB streams the Parquet files and does the
whole per-unit aggregation in SQL, out of core: only per-unit aggregates and the per-arm sums
are ever materialised (and DuckDB spills those to ``temp_directory`` beyond ``memory_limit``).
The result is the same :class:`analysis.sufficient.ExperimentStats` as the in-memory path, which
:func:`analysis.analyze.analyze_stats` turns into results.

The semantics are those of ``experiment_stats(experiment, *load_events_parquet(path,
experiment.id), as_of)``, step by step:

1. Rows of other experiments are skipped (so ``exposures_other_experiment`` and
   ``outcomes_other_experiment`` are 0, as with ``load_events_parquet(path, experiment.id)``).
   Per kind, a repeated ``event_id`` keeps its first occurrence in file order (files in the
   order given, a glob's files sorted by name; rows by ``file_row_number``). Then rows without
   ``unit_id``, ``arm`` or ``ts`` (outcomes also without ``metric`` or with a non-finite
   ``value``) are dropped, as the loader does.
2. Exposures after ``as_of`` or naming an arm the definition lacks are dropped; a unit's first
   exposure (by ``ts``, ties in file order) fixes its arm; units in ``experiment.overrides``
   are not randomised and are left out.
3. Outcomes after ``as_of``, of metrics no metric uses, of unexposed or overridden units or
   logged before the unit's first exposure are dropped; the rest become per-unit values
   (proportion: any positive event; mean with ``aggregate: sum``: the sum, 0 without events;
   ``aggregate: mean``: the mean of the unit's events, units with events only; ratio: per-unit
   sums of numerator and denominator), capped where the metric says so (a percentile cap is
   DuckDB's ``quantile_cont`` of the pooled per-unit values: NumPy's linear interpolation).
4. With CUPED, each unit's covariate is the sum (for a proportion covariate: the number of
   positive events) of its outcomes within ``analysis.cuped_window_days`` before its first
   exposure.
5. Per arm: counts, Kahan sums (``fsum``), ``var_samp`` and ``covar_samp`` (numerically stable
   streaming moments), from which the statistics are built as the in-memory path builds them.

Duplicates are found without holding every event id: rows are grouped by a 64-bit hash of
(``kind``, ``event_id``) and only the rare hash groups with more than one row are resolved
exactly (by ``event_id`` itself).
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abtest.event_fields import EXPORT_COLUMNS
from abtest.experiments import Experiment, Metric
from analysis.analyze import ExperimentResult, analyze_stats
from analysis.cuped import CovariateStats
from analysis.stats import ArmStats, RatioStats
from analysis.sufficient import DIAGNOSTICS, ExperimentStats, as_of_ms, event_metrics

__all__ = ["analyze_columnar", "columnar_stats"]

_EPS = 2.220446049250313e-16  # float64 machine epsilon, as in analysis.analyze
_NAN = float("nan")
_DAY_MS = 86_400_000
_GLOB_CHARS = frozenset("*?[")

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def analyze_columnar(
    experiment: Experiment,
    source: Source,
    as_of: Any = None,
    **duckdb_options: Any,
) -> ExperimentResult:
    """Analyse an experiment from Parquet exports with DuckDB (see :func:`columnar_stats`).

    The result is :func:`analysis.analyze.analyze`'s on the same events, except that it has
    no timeline (``result.timeline`` is empty): cumulative statistics per period would need
    per-(unit, period) data, which this path does not keep.

    Parameters
    ----------
    experiment : Experiment
        The definition: arms (the first is control), metrics and analysis settings.
    source : str, Path or list of them
        One Parquet file, a glob (``"exports/*.parquet"``) or a list of files, in the export
        format of ``abtest export``.
    as_of : int, str, datetime or pandas.Timestamp, optional
        Ignore events after this time (an int is epoch ms; naive datetimes are UTC).
    **duckdb_options
        ``threads``, ``memory_limit`` (e.g. ``"2GB"``) and ``temp_directory`` (where DuckDB
        spills), passed to :func:`columnar_stats`.

    Returns
    -------
    ExperimentResult
    """
    cutoff = as_of_ms(as_of)
    stats = columnar_stats(experiment, source, cutoff, **duckdb_options)
    return analyze_stats(experiment, stats, cutoff)


def columnar_stats(
    experiment: Experiment,
    source: Source,
    as_of: Any = None,
    *,
    threads: int | None = None,
    memory_limit: str | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
) -> ExperimentStats:
    """The sufficient statistics of an experiment, aggregated by DuckDB from Parquet exports.

    Parameters
    ----------
    experiment : Experiment
        The definition analysed.
    source : str, Path or list of them
        One Parquet file, a glob or a list of files with the columns of ``abtest export``
        (``kind`` and every event field; fields a file lacks are taken as null).
    as_of : int, str, datetime or pandas.Timestamp, optional
        Ignore events after this time, as :func:`analysis.analyze.analyze` does.
    threads : int, optional
        DuckDB worker threads (default: DuckDB's, one per core).
    memory_limit : str, optional
        DuckDB's memory limit, e.g. ``"2GB"`` (default: DuckDB's, 80% of RAM). Beyond it,
        intermediate results spill to ``temp_directory``.
    temp_directory : str or Path, optional
        Where DuckDB spills (default: DuckDB's, ``.tmp`` in the working directory).

    Returns
    -------
    ExperimentStats
        Equal (to rounding) to :func:`analysis.analyze.experiment_stats` on
        ``load_events_parquet(path, experiment.id)`` of the same events, diagnostics included.

    Raises
    ------
    FileNotFoundError
        If a file does not exist or a glob matches none.
    ValueError
        If ``source`` is empty, the files have no ``kind`` column, or ``as_of`` is not a time.
    """
    import duckdb

    cutoff = as_of_ms(as_of)
    files = _files(source)
    config: dict[str, Any] = {"preserve_insertion_order": False}
    if threads is not None:
        config["threads"] = int(threads)
    if memory_limit is not None:
        config["memory_limit"] = str(memory_limit)
    if temp_directory is not None:
        config["temp_directory"] = str(temp_directory)
    con = duckdb.connect(":memory:", config=config)
    try:
        return _Query(con, experiment, files, cutoff).run()
    finally:
        con.close()


# --- source --------------------------------------------------------------------------------


def _files(source: Source) -> list[str]:
    """The Parquet files of `source`, in the order that decides which duplicate is first."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.exists(path) and _GLOB_CHARS & set(path):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no Parquet file matches {path!r}")
            return matches
        paths = [path]
    else:
        # a file listed twice adds nothing (its events repeat), and must not be read twice
        paths = list(dict.fromkeys(os.fspath(p) for p in source))
        if not paths:
            raise ValueError("source is an empty list of Parquet files")
    for path in paths:
        if "://" not in path and not Path(path).is_file():  # URLs are DuckDB's to read
            raise FileNotFoundError(f"Parquet file not found: {path!r}")
    return paths


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(_quote(v) for v in values) + ")"


def _index_of(column: str, names: Sequence[str]) -> str:
    """SQL: the position of `column` in `names` (NULL when absent)."""
    if not names:
        return "NULL::INTEGER"
    cases = " ".join(f"WHEN {_quote(n)} THEN {i}" for i, n in enumerate(names))
    return f"(CASE {column} {cases} END)::INTEGER"


# --- the query -----------------------------------------------------------------------------


class _Query:
    """The SQL of one analysis, run step by step on one DuckDB connection."""

    def __init__(self, con: Any, experiment: Experiment, files: list[str], cutoff: int | None):
        self.con = con
        self.experiment = experiment
        self.files = files
        self.cutoff = cutoff
        self.arms = experiment.arm_names
        self.base = event_metrics(experiment.metrics)
        self.window_ms = int(experiment.analysis.cuped_window_days * _DAY_MS)
        self.relevant = 0
        self.late = "FALSE" if cutoff is None else f"(ts > {int(cutoff)})"

    def run(self) -> ExperimentStats:
        self._source()
        self._dedupe()
        self._units()
        diagnostics = self._diagnostics()
        self.relevant = diagnostics.pop("relevant")
        self._unit_values()
        caps = self._caps()
        metrics, covariates, outcome_diag = self._arm_stats(caps)
        diagnostics.update(outcome_diag)
        arm_units, first, last, unit_diag = self._arm_units()
        diagnostics.update(unit_diag)
        fingerprints = self._fingerprints()
        return ExperimentStats(
            arm_units=arm_units,
            first_exposure_ms=first,
            last_exposure_ms=last,
            metrics=metrics,
            covariates=covariates,
            caps=caps,
            diagnostics={name: int(diagnostics.get(name, 0)) for name in DIAGNOSTICS},
            fingerprints=fingerprints,
        )

    # events: this experiment's rows, typed, with their position in file order
    def _source(self) -> None:
        files = "[" + ", ".join(_quote(f) for f in self.files) + "]"
        several = len(self.files) > 1
        scan = f"read_parquet({files}, file_row_number = true, union_by_name = true" + (
            ", filename = true)" if several else ")"
        )
        present = {row[0] for row in self.con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        if "kind" not in present:
            raise ValueError(f"{self.files[0]}: no 'kind' column; is this an `abtest export` file?")
        types = {"ts": "BIGINT", "value": "DOUBLE"}

        def column(name: str) -> str:
            kind = types.get(name, "VARCHAR")
            if name not in present:
                return f"NULL::{kind} AS {name}"
            cast = "TRY_CAST" if name in types else "CAST"
            return f"{cast}({name} AS {kind}) AS {name}"

        wanted = [c for c in EXPORT_COLUMNS if c in _USED_COLUMNS]
        where = "kind IN ('exposure', 'outcome')"
        if "experiment_id" in present:
            where += f" AND CAST(experiment_id AS VARCHAR) = {_quote(self.experiment.id)}"
        ord = "file_row_number::BIGINT"
        if several:  # the file's position in the list (filename, not file_index: DuckDB 1.0)
            index = _index_of("filename", self.files)
            ord = f"({index}::BIGINT << 40) + {ord}"
        self.con.execute(
            f"""
            CREATE TEMP VIEW src AS
            SELECT {", ".join(column(c) for c in wanted)}, {ord} AS ord
            FROM {scan}
            WHERE {where}
            """
        )

    def _dedupe(self) -> None:
        """`events`: `src` without the repeats of an event id (first occurrence kept, per kind)."""
        con = self.con
        con.execute(
            """
            CREATE TEMP TABLE dup_hash AS
            SELECT hash(kind, event_id) AS h
            FROM src WHERE event_id IS NOT NULL
            GROUP BY h HAVING count(*) > 1
            """
        )
        (candidates,) = con.execute("SELECT count(*) FROM dup_hash").fetchone()
        if candidates == 0:
            con.execute("CREATE TEMP VIEW events AS SELECT * FROM src")
            return
        con.execute(
            """
            CREATE TEMP TABLE dropped AS
            SELECT ord FROM (
                SELECT s.ord, row_number() OVER (PARTITION BY s.kind, s.event_id ORDER BY s.ord)
                    AS rn
                FROM src s SEMI JOIN dup_hash d ON hash(s.kind, s.event_id) = d.h
            ) WHERE rn > 1
            """
        )
        con.execute("CREATE TEMP VIEW events AS SELECT * FROM src ANTI JOIN dropped USING (ord)")

    def _units(self) -> None:
        """`units`: per unit with a kept exposure, its arm (-1: overridden), first exposure
        and whether its exposures name several arms."""
        arm = _index_of("arm", self.arms)
        overrides = list(self.experiment.overrides)
        overridden = f"unit_id IN {_in_list(overrides)}" if overrides else "FALSE"
        self.con.execute(
            f"""
            CREATE TEMP TABLE units AS
            SELECT unit_id,
                   CASE WHEN {overridden} THEN -1 ELSE a END::SMALLINT AS arm,
                   start,
                   multi
            FROM (
                SELECT unit_id,
                       arg_min(a, ts::HUGEINT * 4611686018427387904 + ord) AS a,
                       min(ts) AS start,
                       min(a) <> max(a) AS multi
                FROM (
                    SELECT unit_id, ts, ord, {arm} AS a FROM events
                    WHERE kind = 'exposure' AND unit_id IS NOT NULL AND arm IS NOT NULL
                      AND ts IS NOT NULL AND NOT {self.late}
                )
                WHERE a IS NOT NULL
                GROUP BY unit_id
            )
            """
        )

    def _fingerprints(self) -> dict[str, dict[str, int]]:
        """Per arm, the flow fingerprints its kept exposures recorded (each exposure under the
        arm it names, overridden units left out) and how many of each."""
        arm = _index_of("arm", self.arms)
        overrides = list(self.experiment.overrides)
        randomised = f"unit_id NOT IN {_in_list(overrides)}" if overrides else "TRUE"
        rows = self.con.execute(
            f"""
            SELECT a, flow_fingerprint, count(*) AS n
            FROM (
                SELECT {arm} AS a, flow_fingerprint FROM events
                WHERE kind = 'exposure' AND unit_id IS NOT NULL AND arm IS NOT NULL
                  AND ts IS NOT NULL AND NOT {self.late} AND flow_fingerprint IS NOT NULL
                  AND {randomised}
            )
            WHERE a IS NOT NULL
            GROUP BY ALL
            ORDER BY n DESC, flow_fingerprint
            """
        ).fetchall()
        found: dict[str, dict[str, int]] = {name: {} for name in self.arms}
        for a, fingerprint, n in rows:
            found[self.arms[int(a)]][str(fingerprint)] = int(n)
        return found

    def _diagnostics(self) -> dict[str, int]:
        """Counts of the events the loader keeps and of those dropped before the join."""
        metric = _index_of("metric", self.base)
        arm = _index_of("arm", self.arms)
        late = self.late
        row = self.con.execute(
            f"""
            SELECT
                count(*) FILTER (kind = 'exposure' AND exposure_ok),
                count(*) FILTER (kind = 'exposure' AND exposure_ok AND {late}),
                count(*) FILTER (kind = 'exposure' AND exposure_ok AND NOT {late}
                                 AND {arm} IS NULL),
                count(*) FILTER (kind = 'outcome' AND outcome_ok),
                count(*) FILTER (kind = 'outcome' AND outcome_ok AND {late}),
                count(*) FILTER (kind = 'outcome' AND outcome_ok AND NOT {late}
                                 AND {metric} IS NULL),
                count(*) FILTER (kind = 'outcome' AND outcome_ok AND NOT {late}
                                 AND {metric} IS NOT NULL)
            FROM (
                SELECT kind, ts, arm, metric,
                       unit_id IS NOT NULL AND arm IS NOT NULL AND ts IS NOT NULL AS exposure_ok,
                       unit_id IS NOT NULL AND arm IS NOT NULL AND ts IS NOT NULL
                           AND metric IS NOT NULL AND coalesce(isfinite(value), FALSE)
                           AS outcome_ok
                FROM events
            )
            """
        ).fetchone()
        names = (
            "exposures",
            "exposures_after_as_of",
            "exposures_unknown_arm",
            "outcomes",
            "outcomes_after_as_of",
            "outcomes_other_metric",
            "relevant",
        )
        return {name: int(value or 0) for name, value in zip(names, row, strict=True)}

    # per-unit aggregates ---------------------------------------------------------------------

    def _needs(self) -> list[dict[str, Any]]:
        """Per base metric, which per-unit aggregates the metrics need."""
        metrics = self.experiment.metrics
        kinds = {m.name: m.kind for m in metrics}
        needs = [{"sum": False, "count": False, "pos": False, "pre": None} for _ in self.base]
        index = {name: i for i, name in enumerate(self.base)}
        for metric in metrics:
            if metric.kind == "ratio":
                needs[index[str(metric.numerator)]]["sum"] = True
                needs[index[str(metric.denominator)]]["sum"] = True
                continue
            own = needs[index[metric.name]]
            if metric.kind == "proportion":
                own["pos"] = True
            else:
                own["sum"] = True
                own["count"] |= metric.aggregate == "mean"
            if self.experiment.analysis.cuped:
                name = metric.covariate or metric.name
                positive = kinds.get(name) == "proportion"
                needs[index[name]]["pre"] = "pos" if positive else "sum"
        return needs

    def _unit_values(self) -> None:
        """`unit_values`, a view: per exposed (or overridden) unit, its arm and the per-metric
        aggregates of its outcomes. A view, not a table: materialising tens of millions of rows
        costs more than aggregating again (which only percentile caps need)."""
        post = "ts >= start"
        pre = f"ts < start AND ts >= start - {self.window_ms}"
        columns = []
        for i, need in enumerate(self._needs()):
            if need["sum"]:
                columns.append(f"sum(v) FILTER (m = {i} AND {post}) AS s{i}")
            if need["count"]:
                columns.append(f"count(*) FILTER (m = {i} AND {post})::INTEGER AS n{i}")
            if need["pos"]:
                columns.append(f"bool_or(v > 0) FILTER (m = {i} AND {post}) AS p{i}")
            if need["pre"] == "pos":
                columns.append(f"count(*) FILTER (m = {i} AND v > 0 AND {pre})::DOUBLE AS x{i}")
            elif need["pre"] == "sum":
                columns.append(f"sum(v) FILTER (m = {i} AND {pre}) AS x{i}")
        metric = _index_of("metric", self.base)
        arm = _index_of("arm", self.arms)
        aggregates = "".join(f",\n {c}" for c in columns)
        self.con.execute(
            f"""
            CREATE TEMP VIEW unit_values AS
            SELECT uid, arm,
                   count(m)::INTEGER AS n_outcomes,
                   count(m) FILTER (ts < start)::INTEGER AS n_before,
                   count(m) FILTER ({post} AND o_arm IS DISTINCT FROM arm)::INTEGER AS n_mismatch
                   {aggregates}
            FROM (
                SELECT rowid AS uid, arm, start, NULL::INTEGER AS m, NULL::BIGINT AS ts,
                       NULL::DOUBLE AS v, NULL::INTEGER AS o_arm
                FROM units
                UNION ALL
                SELECT u.uid, u.arm, u.start, o.m, o.ts, o.v, o.o_arm
                FROM (
                    SELECT unit_id, ts, value AS v, {metric} AS m, {arm} AS o_arm
                    FROM events
                    WHERE kind = 'outcome' AND unit_id IS NOT NULL AND arm IS NOT NULL
                      AND ts IS NOT NULL AND metric IS NOT NULL
                      AND coalesce(isfinite(value), FALSE) AND NOT {self.late}
                ) o
                JOIN (SELECT rowid AS uid, unit_id, arm, start FROM units) u USING (unit_id)
                WHERE o.m IS NOT NULL
            )
            GROUP BY uid, arm
            """
        )

    def _value(self, metric: Metric, caps: dict[str, float] | None = None) -> str:
        """SQL over `unit_values`: a non-ratio metric's per-unit value (NULL where the unit
        does not count), capped when `caps` holds the metric's cap."""
        i = self.base.index(metric.name)
        if metric.kind == "proportion":
            value = f"coalesce(p{i}, FALSE)::DOUBLE"
        elif metric.aggregate == "sum":
            value = f"coalesce(s{i}, 0.0)"
        else:
            value = f"(CASE WHEN n{i} > 0 THEN s{i} / n{i} END)"
        cap = (caps or {}).get(metric.name)
        if cap is not None:
            # not least(): DuckDB's least() skips NULLs, and NULL means "does not count"
            value = f"(CASE WHEN {value} > {cap!r} THEN {cap!r}::DOUBLE ELSE {value} END)"
        return value

    def _caps(self) -> dict[str, float]:
        """The cap of each capped metric: absolute, or the percentile of the per-unit values
        of all arms pooled (all percentile caps in one pass)."""
        caps: dict[str, float] = {}
        percentiles: list[tuple[str, str]] = []
        for metric in self.experiment.metrics:
            if metric.cap is None:
                continue
            if metric.cap.absolute is not None:
                caps[metric.name] = float(metric.cap.absolute)
            else:
                percentile = float(metric.cap.percentile)  # type: ignore[arg-type]
                quantile = f"quantile_cont({self._value(metric)}, {percentile!r})"
                percentiles.append((metric.name, quantile))
        if percentiles:
            row = self.con.execute(
                f"SELECT {', '.join(q for _, q in percentiles)} FROM unit_values WHERE arm >= 0"
            ).fetchone()
            for (name, _), cap in zip(percentiles, row, strict=True):
                if cap is not None and math.isfinite(cap):
                    caps[name] = float(cap)
        return {m.name: caps[m.name] for m in self.experiment.metrics if m.name in caps}

    # per-arm statistics ----------------------------------------------------------------------

    def _arm_stats(
        self, caps: dict[str, float]
    ) -> tuple[
        dict[str, list[ArmStats | RatioStats]], dict[str, list[CovariateStats]], dict[str, int]
    ]:
        experiment = self.experiment
        selects: list[str] = []
        plans: list[tuple[Metric, str, int]] = []  # metric, what, first column
        for metric in experiment.metrics:
            start = len(selects)
            if metric.kind == "ratio":
                num = f"coalesce(s{self.base.index(str(metric.numerator))}, 0.0)"
                den = f"coalesce(s{self.base.index(str(metric.denominator))}, 0.0)"
                selects += [
                    "count(*)",
                    f"fsum({num})",
                    f"fsum({den})",
                    f"var_samp({num})",
                    f"var_samp({den})",
                    f"covar_samp({num}, {den})",
                    f"fsum({num} * {num})",
                    f"fsum({den} * {den})",
                ]
                plans.append((metric, "ratio", start))
                continue
            y = self._value(metric, caps)
            selects += [f"count({y})", f"fsum({y})", f"var_samp({y})", f"fsum({y} * {y})"]
            plans.append((metric, "mean", start))
            if experiment.analysis.cuped:
                i = self.base.index(metric.covariate or metric.name)
                x = f"coalesce(x{i}, 0.0)"
                has = f"FILTER ({y} IS NOT NULL)"
                selects += [
                    f"fsum({x}) {has}",
                    f"fsum({x} * {x}) {has}",
                    f"fsum({x} * {y})",
                    f"min({x}) {has}",
                    f"max({x}) {has}",
                ]
                plans.append((metric, "covariate", start))
        diag = [
            "sum(n_outcomes) FILTER (arm >= 0)",
            "sum(n_before) FILTER (arm >= 0)",
            "sum(n_mismatch) FILTER (arm >= 0)",
            "sum(n_outcomes) FILTER (arm < 0)",
        ]
        rows = self.con.execute(
            f"SELECT arm, {', '.join(diag + selects)} FROM unit_values GROUP BY arm"
        ).fetchall()
        k = len(self.arms)
        by_arm: dict[int, tuple[Any, ...]] = {}
        totals = [0, 0, 0, 0]
        for arm, *values in rows:
            totals = [t + int(v or 0) for t, v in zip(totals, values[:4], strict=True)]
            if arm >= 0:
                by_arm[int(arm)] = tuple(values[4:])
        matched, before, mismatch, overridden = totals
        diagnostics = {
            "outcomes_overridden": overridden,
            "outcomes_unexposed": self.relevant - matched - overridden,
            "outcomes_before_exposure": before,
            "outcomes_used": matched - before,
            "outcomes_arm_mismatch": mismatch,
        }
        empty = (None,) * len(selects)
        arms = [by_arm.get(j, empty) for j in range(k)]
        metrics: dict[str, list[ArmStats | RatioStats]] = {}
        covariates: dict[str, list[CovariateStats]] = {}
        for metric, what, start in plans:
            if what == "ratio":
                metrics[metric.name] = [_ratio_stats(a[start : start + 8]) for a in arms]
            elif what == "mean":
                metrics[metric.name] = [_arm_stats(a[start : start + 4]) for a in arms]
            else:
                pairs = _covariate_stats(
                    [a[start : start + 4] for a in arms], [a[start + 4 : start + 9] for a in arms]
                )
                if pairs is not None:
                    covariates[metric.name] = pairs
        return metrics, covariates, diagnostics

    def _arm_units(self) -> tuple[tuple[int, ...], int | None, int | None, dict[str, int]]:
        rows = self.con.execute(
            "SELECT arm, count(*), min(start), max(start), count(*) FILTER (multi) "
            "FROM units GROUP BY arm"
        ).fetchall()
        counts = [0] * len(self.arms)
        starts: list[int] = []
        multi = overridden = 0
        for arm, n, first, last, several in rows:
            if arm < 0:
                overridden += int(n)
                continue
            counts[int(arm)] = int(n)
            starts += [int(first), int(last)]
            multi += int(several)
        diagnostics = {
            "units": sum(counts),
            "units_multiple_arms": multi,
            "units_overridden": overridden,
        }
        first, last = (min(starts), max(starts)) if starts else (None, None)
        return tuple(counts), first, last, diagnostics


_USED_COLUMNS = frozenset(
    {"kind", "event_id", "ts", "unit_id", "arm", "flow_fingerprint", "metric", "value"}
)


# --- statistics from the aggregates ----------------------------------------------------------


def _m2(variance: Any, n: int, sum_sq: Any) -> float:
    """The centred second moment ``variance * (n - 1)``, 0 within rounding noise of the sum
    of squares (as ``analysis.analyze._floor``)."""
    m2 = float(variance) * (n - 1)
    return 0.0 if m2 <= n * _EPS * float(sum_sq) else m2


def _arm_stats(values: Sequence[Any]) -> ArmStats:
    n, total, variance, sum_sq = values
    n = int(n or 0)
    if n == 0:
        return ArmStats(0, _NAN, _NAN)
    mean = float(total) / n
    if n == 1:
        return ArmStats(1, mean, _NAN)
    return ArmStats(n, mean, _m2(variance, n, sum_sq) / (n - 1))


def _ratio_stats(values: Sequence[Any]) -> RatioStats:
    n, sum_num, sum_den, var_num, var_den, cov, sq_num, sq_den = values
    n = int(n or 0)
    if n == 0:
        return RatioStats(0, _NAN, _NAN, _NAN, _NAN, _NAN)
    mean_num, mean_den = float(sum_num) / n, float(sum_den) / n
    if n == 1:
        return RatioStats(1, mean_num, mean_den, _NAN, _NAN, _NAN)
    d = n - 1
    return RatioStats(
        n,
        mean_num,
        mean_den,
        _m2(var_num, n, sq_num) / d,
        _m2(var_den, n, sq_den) / d,
        float(cov),
    )


def _covariate_stats(
    outcome: list[Sequence[Any]], covariate: list[Sequence[Any]]
) -> list[CovariateStats] | None:
    """Per arm the CUPED sums; None when the covariate has no variance over all arms (as
    ``analysis.analyze._covariate_stats``)."""
    n_total = sum(int(y[0] or 0) for y in outcome)
    lows = [float(x[3]) for x in covariate if x[3] is not None]
    highs = [float(x[4]) for x in covariate if x[4] is not None]
    if n_total < 2 or min(lows) == max(highs):
        return None
    stats = []
    for (n, sum_y, _, sum_y2), (sum_x, sum_x2, sum_xy, _, _) in zip(
        outcome, covariate, strict=True
    ):
        stats.append(
            CovariateStats(
                int(n or 0),
                float(sum_y or 0.0),
                float(sum_y2 or 0.0),
                float(sum_x or 0.0),
                float(sum_x2 or 0.0),
                float(sum_xy or 0.0),
            )
        )
    return stats
