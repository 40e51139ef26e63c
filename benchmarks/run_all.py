"""Run every benchmark and print one table of figures against their targets.

    python benchmarks/run_all.py        (or: make bench)

Each benchmark prints its own details first; the table at the end collects the figures the
issues set targets for. `bench_api` needs `wrk` (Debian: `apt-get install wrk`) and
`bench_cluster` Debian's `redis-server`; each is reported as skipped without it. The failover
drills (`bench_failover.py`, several minutes) run only alone.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Row:
    name: str
    value: float | None
    unit: str
    target: str
    met: bool | None


def _check(value: float, bound: float, at_least: bool) -> bool:
    return value >= bound if at_least else value <= bound


def _row(name: str, value: float, unit: str, bound: float, at_least: bool) -> Row:
    sign = ">=" if at_least else "<="
    return Row(name, value, unit, f"{sign} {bound:,g}", _check(value, bound, at_least))


def router_rows() -> list[Row]:
    from benchmarks import bench_router

    f = bench_router.main()
    return [
        Row("Router.assign", f["assign_us"], "us/call", "", None),
        Row(
            "GrowthBook.run (new GrowthBook per unit)", f["growthbook_run_us"], "us/call", "", None
        ),
        _row("assign speedup vs GrowthBook.run", f["speedup"], "x", 10, True),
        _row("assign_many, 1M ids", f["assign_many_ids_per_s"], "ids/s", 2_000_000, True),
    ]


def targeting_rows() -> list[Row]:
    from benchmarks import bench_targeting

    f = bench_targeting.main()
    return [
        Row(
            "Router.assign with a 3-clause condition",
            f["router_assign_with_condition_us"],
            "us/call",
            "",
            None,
        ),  # fmt: skip
        _row("conditional assign vs GrowthBook.run", f["assign_vs_run"], "x", 5, True),
    ]


def flow_rows() -> list[Row]:
    from benchmarks import bench_flow

    f = bench_flow.main([])
    return [
        _row("FlowRegistry.run overhead (excl. LLM)", f["overhead"], "ms", 1, False),
        Row("build + validate all drivers", f["build_ms"], "ms", "", None),
    ]


def eval_rows() -> list[Row]:
    from benchmarks import bench_eval

    f = bench_eval.main([])
    return [
        Row("eval throughput, concurrency 1", f["c1"], "rows x arms/s", "", None),
        Row("eval throughput, concurrency 8", f["c8"], "rows x arms/s", "", None),
        Row("eval, 20 ms model: concurrency 8 vs 1", f["slow_speedup"], "x", "", None),
        Row("eval overhead per row x arm (excl. LLM)", f["overhead_ms"], "ms", "", None),
    ]


def eventlog_rows() -> list[Row]:
    from benchmarks import bench_eventlog

    f = bench_eventlog.main([])
    return [
        _row("EventLog (async) 1000-event appends", f["async_batched"], "events/s", 100_000, True),
        _row("SyncEventLog.append outcomes", f["sync_outcomes"], "events/s", 100_000, True),
    ]


def api_rows() -> list[Row]:
    if shutil.which("wrk") is None:
        return [Row("bench_api", None, "", "needs wrk", None)]
    from benchmarks import bench_api

    f = bench_api.main()
    return [
        Row("GET assign (exposure logged)", f["assign_rps"], "req/s", "", None),
        Row("  p50 / p99", f["assign_p50_ms"], f"ms / {f['assign_p99_ms']:.1f} ms", "", None),
        Row("bare FastAPI, same JSON", f["bare_rps"], "req/s", "", None),
        _row("assign / bare", f["assign_vs_bare"], "ratio", 0.6, True),
        _row("outcomes, batch endpoint", f["batch_events_per_s"], "events/s", 20_000, True),
        _row("EventLog in-process", f["eventlog_events_per_s"], "events/s", 100_000, True),
        _row("API peak RSS under load", f["api_peak_rss_mb"], "MB", 250, False),
    ]


def cluster_rows() -> list[Row]:
    from abtest.devtools.redis_cluster import redis_server_binary

    if redis_server_binary() is None:
        return [Row("bench_cluster", None, "", "needs redis-server", None)]
    from benchmarks import bench_cluster

    f = bench_cluster.main([])
    return [
        Row("outcomes, single Redis (ack primary)", f["single_eps"], "events/s", "report", None),
        Row("outcomes, cluster 3x2 (ack primary)", f["cluster_eps"], "events/s", "report", None),
        Row(
            "outcomes, cluster (ack replicated)",
            f["cluster_replicated_eps"],
            "events/s",
            "report",
            None,
        ),
        Row("cluster / single ingestion", f["cluster_vs_single"], "ratio", "report", None),
        Row(
            "replicated / primary throughput",
            f["replicated_vs_primary_throughput"],
            "ratio",
            "report",
            None,
        ),
        Row("append p99, cluster (ack primary)", f["cluster_p99_ms"], "ms", "report", None),
        Row(
            "append p99, cluster (ack replicated)",
            f["cluster_replicated_p99_ms"],
            "ms",
            "report",
            None,
        ),
        Row("replicated / primary p99", f["replicated_vs_primary_p99"], "ratio", "report", None),
    ]


def analysis_rows() -> list[Row]:
    from benchmarks import bench_analysis

    f = bench_analysis.main()
    a, load = f["analyze"], f["load"]
    return [
        _row("analyze 1M units, 3M events", a["seconds"], "s", 5, False),
        _row("analyze peak RSS", a["peak_rss_mb"], "MB", 3072, False),
        _row("load_events from Redis", load["events_per_second"], "events/s", 300_000, True),
    ]


SECTIONS: list[tuple[str, Callable[[], list[Row]]]] = [
    ("router", router_rows),
    ("targeting", targeting_rows),
    ("flows", flow_rows),
    ("eval", eval_rows),
    ("event log", eventlog_rows),
    ("api", api_rows),
    ("cluster", cluster_rows),
    ("analysis", analysis_rows),
]


def _format(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def main() -> int:
    table: list[tuple[str, Row]] = []
    for section, run in SECTIONS:
        print(f"\n== {section} ==", flush=True)
        table.extend((section, row) for row in run())
    print("\n" + "=" * 96)
    print(f"{'section':<10} {'figure':<42} {'value':>14} {'unit':<14} {'target':<12} ok")
    missed = 0
    for section, row in table:
        value = (
            ""
            if row.value is None
            else f"{row.value:,.3g}"
            if row.value < 100
            else f"{row.value:,.0f}"
        )
        ok = "" if row.met is None else ("yes" if row.met else "NO")
        missed += row.met is False
        print(f"{section:<10} {row.name:<42} {value:>14} {row.unit:<14} {row.target:<12} {ok}")
    print(f"\n{missed} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
