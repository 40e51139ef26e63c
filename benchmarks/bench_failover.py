"""Acknowledged outcomes lost when a Redis Cluster primary is SIGKILLed, per ``ABTEST_ACK``.

    python benchmarks/bench_failover.py [--drills 3] [--posters 6] [--lag 3]

Each drill (``abtest.devtools.failover_drill``) starts a fresh local cluster (3 primaries, 1
replica each, Debian's ``redis-server``, AOF fsync everysec, node timeout 1 s) and ``abtest
serve`` on it, posts outcomes from ``--posters`` threads, SIGKILLs the primary of the
experiment's streams, waits for the failover, restarts the killed node, drains the service's
spool and counts acknowledged event ids missing from the stream. Two scenarios: the primary
dies with its replica in step, and with its replica paused (SIGSTOP) for ``--lag`` seconds
first, as a replica behind on a slow link would be. Modes and scenarios alternate so machine
noise falls on all alike.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abtest.devtools.failover_drill import DrillResult, run_drill  # noqa: E402
from abtest.devtools.redis_cluster import LocalCluster, redis_server_binary  # noqa: E402

EXPERIMENT = "pdf-summary-prompts"
MODES = ("primary", "replicated")


def drill(ack: str, posters: int, lag_s: float) -> DrillResult:
    with tempfile.TemporaryDirectory(prefix="abtest-failover-") as tmp:
        root = Path(tmp)
        with LocalCluster(root / "cluster") as cluster:
            return run_drill(
                cluster,
                root / "home",
                ROOT / "experiments",
                EXPERIMENT,
                "thumbs_up",
                ack,
                posters=posters,
                lag_s=lag_s,
            )


def measure(drills: int = 3, posters: int = 6, lag_s: float = 3.0) -> dict[str, list[DrillResult]]:
    """`drills` drills per mode and scenario; the results by ``"<mode>, <scenario>"``."""
    if redis_server_binary() is None:
        raise RuntimeError("redis-server not found on PATH (apt-get install redis-server)")
    scenarios = {"replica in step": 0.0, f"replica {lag_s:g} s behind": lag_s}
    results: dict[str, list[DrillResult]] = {}
    for number in range(1, drills + 1):
        for scenario, lag in scenarios.items():
            for mode in MODES:
                result = drill(mode, posters, lag)
                results.setdefault(f"{mode}, {scenario}", []).append(result)
                print(
                    f"  drill {number} ack={mode:<10} {scenario:<20} acknowledged"
                    f" {result.acknowledged:>6,} ({result.acknowledged_after_kill:,} after the"
                    f" kill)   lost {result.lost}   duplicates {result.duplicates}"
                    f"   refused {result.refused}   failover {result.failover_s:.1f} s",
                    flush=True,
                )
    return results


def report(results: dict[str, list[DrillResult]]) -> None:
    print(f"\n{'ABTEST_ACK, scenario':<36} {'drills':>6} {'acknowledged':>13} {'lost':>6}")
    for name, rows in results.items():
        acknowledged = sum(r.acknowledged for r in rows)
        lost = sum(r.lost for r in rows)
        print(f"{name:<36} {len(rows):>6} {acknowledged:>13,} {lost:>6}")


def main(argv: list[str] | None = None) -> dict[str, list[DrillResult]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drills", type=int, default=3)
    parser.add_argument("--posters", type=int, default=6)
    parser.add_argument("--lag", type=float, default=3.0, help="seconds the replica is paused")
    args = parser.parse_args(argv)
    results = measure(args.drills, args.posters, args.lag)
    report(results)
    return results


if __name__ == "__main__":
    main()
