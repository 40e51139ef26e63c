"""Outcome ingestion through `EventLog` on one Redis vs a Redis Cluster, and what
`ABTEST_ACK=replicated` costs on the cluster (median of N interleaved runs).

    python benchmarks/bench_cluster.py [--seconds 3] [--runs 3] [--concurrency 64] [--experiments 8]

Starts its own servers in a temp dir and stops them at the end (also on an error or Ctrl-C),
both Debian's `redis-server` (`apt-get install redis-server`) with AOF on, fsync everysec:
a single standalone server, and a `LocalCluster` of 3 primaries with 1 replica each.

The workload is what the API does per POST /v1/outcomes: `--concurrency` asyncio tasks each
`await log.append([one Outcome])` in a loop, over `--experiments` experiments whose hash slots
are spread evenly over the cluster's primaries, unique unit ids; one `EventLog` in one event
loop, like one API worker. Throughput = acknowledged events / elapsed; latency is per append.
Configurations, measured A B C A B C ... so machine noise falls on all of them alike:

    A  single server, ack primary        B  cluster, ack primary
    C  cluster, ack replicated (a WAIT for one replica per primary written to)

Each measurement uses fresh experiment ids, warms up briefly before the clock starts and
deletes its keys afterwards. The client and every server share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abtest import store  # noqa: E402
from abtest.devtools.redis_cluster import (  # noqa: E402
    LocalCluster,
    free_ports,
    redis_server_binary,
    slot_ranges,
)
from abtest.event_fields import Outcome, dedupe_key, stream_key  # noqa: E402
from abtest.events import AckPolicy, EventLog  # noqa: E402

HOST = "127.0.0.1"
PRIMARIES = 3
WARMUP_S = 0.3
REPLICATED = AckPolicy(replicas=1, timeout_ms=1000)


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    cluster: bool
    ack: AckPolicy


CONFIGS = (
    Config("single", "A  single server, ack primary", False, AckPolicy()),
    Config("cluster", "B  cluster, ack primary", True, AckPolicy()),
    Config("cluster_replicated", "C  cluster, ack replicated", True, REPLICATED),
)


@dataclass
class Result:
    events: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    spooled: int
    batch: float  # events per pipelined round trip (group commit)
    cpu: float  # this process's CPU seconds per elapsed second (1.0: the client is the limit)

    @property
    def eps(self) -> float:
        return self.events / self.elapsed


# -- servers --------------------------------------------------------------------------------


@contextlib.contextmanager
def single_server(directory: Path) -> Iterator[str]:
    """A standalone redis-server (no cluster mode) on a free loopback port; yields its URL."""
    binary = redis_server_binary()
    assert binary is not None
    directory.mkdir(parents=True)
    for _ in range(3):
        port = free_ports(1)[0]
        process = subprocess.Popen(
            [
                binary,
                *("--port", str(port), "--bind", HOST, "--dir", str(directory)),
                *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
                *("--daemonize", "no", "--protected-mode", "no"),
                *("--logfile", str(directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if _wait_own_server(process, port):
                yield f"redis://{HOST}:{port}"
                return
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    raise RuntimeError(f"could not start redis-server; see {directory / 'redis.log'}")


def _wait_own_server(process: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until our process answers on `port`; False if it exited or another server did."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # most likely the port was taken meanwhile: try another
        try:
            with redis.Redis(host=HOST, port=port, socket_timeout=0.5) as probe:
                return int(probe.info("server")["process_id"]) == process.pid
        except redis.RedisError:
            time.sleep(0.05)
    return False


# -- workload -------------------------------------------------------------------------------


def experiment_ids(count: int) -> list[str]:
    """Fresh experiment ids whose hash slots fall round-robin on the cluster's primaries."""
    tag = uuid.uuid4().hex[:8]
    ranges = slot_ranges(PRIMARIES)
    ids: list[str] = []
    candidates = (f"bench-{tag}-{n}" for n in itertools.count())
    for i in range(count):
        low, high = ranges[i % PRIMARIES]
        ids.append(next(c for c in candidates if low <= key_slot(c.encode()) <= high))
    return ids


async def _drive(
    log: EventLog, ids: list[str], concurrency: int, seconds: float, latencies: list[float] | None
) -> tuple[int, float]:
    """`concurrency` tasks appending one outcome at a time for `seconds`; returns
    (acknowledged appends, elapsed seconds until the last one returned)."""
    clock = time.perf_counter
    start = clock()
    end = start + seconds
    prefix = uuid.uuid4().hex[:6]
    counts = [0] * concurrency

    async def worker(task: int) -> None:
        n = 0
        while clock() < end:
            event = Outcome(
                ids[(task + n) % len(ids)],
                f"u-{prefix}-{task}-{n}",
                "treatment",
                "thumbs_up",
                1.0,
                f"req-{task}-{n}",
            )
            t0 = clock()
            await log.append([event])
            if latencies is not None:
                latencies.append(clock() - t0)
            n += 1
        counts[task] = n

    await asyncio.gather(*(worker(task) for task in range(concurrency)))
    return sum(counts), clock() - start


async def _run_once(
    client: store.AsyncClient,
    config: Config,
    spool: Path,
    seconds: float,
    concurrency: int,
    experiments: int,
) -> Result:
    ids = experiment_ids(experiments)
    log = EventLog(client, spool, ack=config.ack)
    await log.start()
    try:
        warm, _ = await _drive(log, ids, concurrency, min(WARMUP_S, seconds), None)
        latencies: list[float] = []
        batches, cpu = log.batches_written, time.process_time()
        events, elapsed = await _drive(log, ids, concurrency, seconds, latencies)
        cpu = (time.process_time() - cpu) / elapsed
        batch = events / max(log.batches_written - batches, 1)
    finally:
        await log.close()
        for experiment_id in ids:
            stream = stream_key(experiment_id, "outcome")
            await client.delete(stream, dedupe_key(experiment_id, "outcome"), stream + ":sync")
    if log.events_written + log.events_spooled != warm + events:
        raise RuntimeError(
            f"{config.key}: {warm + events} appends acknowledged, log counted "
            f"{log.events_written} written + {log.events_spooled} spooled"
        )
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(events, elapsed, cuts[49] * 1000, cuts[98] * 1000, log.events_spooled, batch, cpu)


async def _measure(
    single_url: str,
    cluster_url: str,
    spool_dir: Path,
    seconds: float,
    runs: int,
    concurrency: int,
    experiments: int,
) -> dict[str, list[Result]]:
    single = await store.connect_async(single_url)
    cluster = await store.connect_async(cluster_url)
    results: dict[str, list[Result]] = {config.key: [] for config in CONFIGS}
    try:
        for run in range(1, runs + 1):
            for config in CONFIGS:
                client = cluster if config.cluster else single
                spool = spool_dir / f"{config.key}-{run}.jsonl"
                result = await _run_once(client, config, spool, seconds, concurrency, experiments)
                results[config.key].append(result)
                print(
                    f"  run {run} {config.label:<32} {result.eps:>9,.0f} events/s"
                    f"   p50 {result.p50_ms:6.2f} ms   p99 {result.p99_ms:6.2f} ms"
                    f"   spooled {result.spooled}   {result.batch:4.1f} events/batch"
                    f"   client CPU {result.cpu:.0%}",
                    flush=True,
                )
    finally:
        await store.close_async_client(single)
        await store.close_async_client(cluster)
    return results


def measure(
    seconds: float = 3.0, runs: int = 3, concurrency: int = 64, experiments: int = 8
) -> dict[str, float]:
    """Start the servers, run A B C `runs` times, stop the servers; returns the medians
    (`<config>_eps`, `<config>_p50_ms`, `<config>_p99_ms`, `<config>_spooled` for `single`,
    `cluster`, `cluster_replicated`) and the ratios `cluster_vs_single`,
    `replicated_vs_primary_throughput` and `replicated_vs_primary_p99`."""
    if redis_server_binary() is None:
        raise RuntimeError("redis-server not found on PATH (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="abtest-bench-cluster-") as tmp:
        root = Path(tmp)
        spool_dir = root / "spool"
        spool_dir.mkdir()
        with (
            single_server(root / "single") as single_url,
            LocalCluster(root / "cluster", primaries=PRIMARIES, replicas=1) as cluster,
        ):
            results = asyncio.run(
                _measure(
                    single_url, cluster.url, spool_dir, seconds, runs, concurrency, experiments
                )
            )
    figures: dict[str, float] = {}
    for key, rows in results.items():
        figures[f"{key}_eps"] = statistics.median(r.eps for r in rows)
        figures[f"{key}_p50_ms"] = statistics.median(r.p50_ms for r in rows)
        figures[f"{key}_p99_ms"] = statistics.median(r.p99_ms for r in rows)
        figures[f"{key}_spooled"] = float(sum(r.spooled for r in rows))
    figures["cluster_vs_single"] = figures["cluster_eps"] / figures["single_eps"]
    figures["replicated_vs_primary_throughput"] = (
        figures["cluster_replicated_eps"] / figures["cluster_eps"]
    )
    figures["replicated_vs_primary_p99"] = (
        figures["cluster_replicated_p99_ms"] / figures["cluster_p99_ms"]
    )
    return figures


def report(figures: dict[str, float]) -> None:
    print(f"\n{'configuration':<34} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'spooled':>8}")
    for config in CONFIGS:
        k = config.key
        print(
            f"{config.label:<34} {figures[f'{k}_eps']:>10,.0f} {figures[f'{k}_p50_ms']:>8.2f}"
            f" {figures[f'{k}_p99_ms']:>8.2f} {figures[f'{k}_spooled']:>8.0f}"
        )
    print(f"\ncluster / single ingestion rate (B/A)        {figures['cluster_vs_single']:.2f}")
    print(
        "replicated / primary throughput (C/B)        "
        f"{figures['replicated_vs_primary_throughput']:.2f}"
    )
    print(
        f"replicated / primary p99 latency (C/B)       {figures['replicated_vs_primary_p99']:.2f}"
    )
    spooled = sum(figures[f"{config.key}_spooled"] for config in CONFIGS)
    if spooled:
        print(f"\nWARNING: {spooled:.0f} events went to the spool: Redis refused or timed out")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--experiments", type=int, default=8)
    args = parser.parse_args(argv)
    print(
        f"{args.concurrency} concurrent 1-outcome appends, {args.experiments} experiments, "
        f"{args.seconds:g} s x {args.runs} runs per configuration"
    )
    figures = measure(args.seconds, args.runs, args.concurrency, args.experiments)
    report(figures)
    return figures


if __name__ == "__main__":
    main()
