"""In-process append throughput of the event log on the embedded Redis (median of N runs).

    python benchmarks/bench_eventlog.py [--events 200000] [--runs 5]

Events are built before the clock starts, so the numbers are the write path alone: encoding,
the dedupe script, the round trips and Redis itself (AOF on, as the embedded store runs it).
Uses a throwaway ABTEST_HOME unless ABTEST_HOME or REDIS_URL is set, and deletes its keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abtest import store  # noqa: E402
from abtest.event_fields import Exposure, Outcome, dedupe_key, stream_key  # noqa: E402
from abtest.events import EventLog, SyncEventLog  # noqa: E402

SHA = "0" * 64


def outcomes(experiment_id: str, n: int) -> list[Outcome]:
    return [
        Outcome(experiment_id, f"user-{i}", "treatment", "latency_ms", 100.0 + i % 997, "run-1")
        for i in range(n)
    ]


def exposures(experiment_id: str, n: int) -> list[Exposure]:
    return [Exposure(experiment_id, f"user-{i}", "control", f"req-{i}", SHA, SHA) for i in range(n)]


def run_sync(url: str, spool: Path, events: list) -> float:
    log = SyncEventLog(store.sync_client(url), spool)
    start = time.perf_counter()
    log.append(events)
    elapsed = time.perf_counter() - start
    assert log.events_written == len(events), (log.events_written, len(events))
    return elapsed


def run_async(url: str, spool: Path, events: list, per_call: int) -> float:
    async def main() -> float:
        client = store.async_client(url)
        log = EventLog(client, spool)
        await log.start()
        calls = [events[i : i + per_call] for i in range(0, len(events), per_call)]
        start = time.perf_counter()
        await asyncio.gather(*(log.append(call) for call in calls))
        elapsed = time.perf_counter() - start
        await log.close()
        await client.aclose()
        assert log.events_written == len(events), (log.events_written, len(events))
        return elapsed

    return asyncio.run(main())


def measure(
    name: str, runs: int, n: int, make: Callable[[str, int], list], go: Callable[[list], float]
) -> float:
    client = store.sync_client()
    rates = []
    for _ in range(runs):
        experiment_id = f"bench-{uuid.uuid4().hex[:8]}"
        events = make(experiment_id, n)
        rates.append(n / go(events))
        for kind in ("exposure", "outcome"):
            client.delete(stream_key(experiment_id, kind), dedupe_key(experiment_id, kind))
    print(
        f"{name:<42} {statistics.median(rates):>10,.0f} events/s"
        f"   (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
    )
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    throwaway = not os.environ.get("ABTEST_HOME") and not os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="abtest-bench-") as tmp:
        if throwaway:
            os.environ["ABTEST_HOME"] = str(Path(tmp) / "home")
        url = store.redis_url()
        n, runs = args.events, args.runs
        spool = Path(tmp) / "spool.jsonl"
        print(f"redis: {url}   events per run: {n:,}   runs: {runs}")
        figures: dict[str, float] = {}
        small = max(n // 10, 1)
        cases = [
            ("sync_outcomes", "sync  SyncEventLog.append, outcomes", n, outcomes, run_sync, None),
            (
                "sync_exposures",
                "sync  SyncEventLog.append, exposures",
                n,
                exposures,
                run_sync,
                None,
            ),
            ("async_batched", "async EventLog, 1000-event appends", n, outcomes, run_async, 1000),
            (
                "async_single",
                f"async EventLog, {small:,} concurrent 1-event appends",
                small,
                outcomes,
                run_async,
                1,
            ),
        ]
        try:
            for key, name, count, make, run, per_call in cases:
                if per_call is None:
                    go = partial(run, url, spool)
                else:
                    go = partial(_with_calls, run, url, spool, per_call)
                figures[key] = measure(name, runs, count, make, go)
        finally:
            if throwaway:
                store.stop_embedded()
    return figures


def _with_calls(run: Callable, url: str, spool: Path, per_call: int, events: list) -> float:
    return run(url, spool, events, per_call)


if __name__ == "__main__":
    main()
