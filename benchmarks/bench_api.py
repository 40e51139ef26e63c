"""API throughput under wrk: assign (with exposure logging) vs a bare FastAPI endpoint, outcome
ingestion through the batch endpoint and through `EventLog` in-process, peak RSS of the API.

    python benchmarks/bench_api.py [--seconds 10] [--runs 3]

One uvicorn worker each, same settings (`--no-access-log --log-level warning`), wrk with one
thread and 32 connections on the same 2-core machine (so the load generator shares the CPU;
both sides of each ratio pay that equally). Needs `wrk` (Debian: `apt-get install wrk`).
Targets: assign/bare >= 0.6; batch ingestion >= 20,000 events/s; EventLog in-process >=
100,000 events/s; API peak RSS <= 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPERIMENT = "pdf-summary-prompts"
ASSIGN_LUA = f"""
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/experiments/{EXPERIMENT}/assign?unit_id=user-" .. counter)
end
"""


def _batch_lua(path: Path) -> str:
    body = json.dumps(
        [
            {"experiment_id": EXPERIMENT, "unit_id": f"u{i}", "metric": "thumbs_up", "value": 1}
            for i in range(1000)
        ]
    )
    path.write_text(body)
    return f"""
local f = io.open("{path}", "r")
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _uvicorn(target: str, port: int, env: dict[str, str], factory: bool) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        args.append("--factory")
    process = subprocess.Popen(args, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{target} did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(url: str, script: str, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        latency[pct] = float(value) * _UNITS[unit]
    return {
        "rps": rps,
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _in_process_rate(url: str, spool: Path, runs: int, n: int = 100_000) -> float:
    """Median events/s of the asyncio `EventLog` taking 1,000-event appends."""
    from benchmarks.bench_eventlog import outcomes, run_async

    rates = [n / run_async(url, spool, outcomes(f"bench-{i}", n), 1000) for i in range(runs)]
    return statistics.median(rates)


def main(seconds: int = 10, runs: int = 3) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench_api needs wrk: apt-get install wrk")
    from abtest import store

    home = Path(tempfile.mkdtemp(prefix="abtest-bench-"))
    os.environ.setdefault("ABTEST_HOME", str(home))
    url = store.redis_url()
    env = {
        **os.environ,
        "REDIS_URL": url,
        "ABTEST_HOME": str(home),
        "ABTEST_EXPERIMENTS": str(ROOT / "experiments"),
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "PYTHONPATH": str(ROOT),
        "HAMILTON_AUTOLOAD_EXTENSIONS": "0",  # as `abtest serve` runs its workers
    }
    for key in ("ABTEST_API_KEYS", "ABTEST_ADMIN_KEYS"):
        env.pop(key, None)
    in_process = _in_process_rate(url, home / "spool.jsonl", runs)  # first, on a quiet Redis
    api_port, bare_port = _free_port(), _free_port()
    api = _uvicorn("abtest.api:create_app", api_port, env, factory=True)
    bare = _uvicorn("benchmarks.bare_app:app", bare_port, env, factory=False)
    try:
        assign_runs, bare_runs = [], []
        for _ in range(runs):
            assign_runs.append(_wrk(f"http://127.0.0.1:{api_port}", ASSIGN_LUA, seconds))
            bare_runs.append(_wrk(f"http://127.0.0.1:{bare_port}", ASSIGN_LUA, seconds))
        assign, baseline = _median(assign_runs), _median(bare_runs)
        batch_script = _batch_lua(home / "batch.json")
        ingest = _median(
            [
                _wrk(f"http://127.0.0.1:{api_port}/v1/outcomes", batch_script, seconds)
                for _ in range(runs)
            ]
        )
        rss = _peak_rss_mb(api.pid)
    finally:
        api.terminate()
        bare.terminate()
        api.wait(10)
        bare.wait(10)
    figures = {
        "assign_rps": assign["rps"],
        "assign_p50_ms": assign["p50_ms"],
        "assign_p99_ms": assign["p99_ms"],
        "bare_rps": baseline["rps"],
        "bare_p50_ms": baseline["p50_ms"],
        "bare_p99_ms": baseline["p99_ms"],
        "assign_vs_bare": assign["rps"] / baseline["rps"],
        "batch_events_per_s": ingest["rps"] * 1000,
        "eventlog_events_per_s": in_process,
        "api_peak_rss_mb": rss,
        "non_2xx": assign["non_2xx"] + ingest["non_2xx"],
    }
    print(f"medians of {runs} wrk runs of {seconds}s, 1 thread, 32 connections, 1 uvicorn worker")
    print(
        f"assign (exposure logged)  {assign['rps']:9.0f} req/s  p50 {assign['p50_ms']:.2f} ms"
        f"  p99 {assign['p99_ms']:.2f} ms"
    )
    print(
        f"bare FastAPI, same JSON   {baseline['rps']:9.0f} req/s  p50 {baseline['p50_ms']:.2f} ms"
        f"  p99 {baseline['p99_ms']:.2f} ms"
    )
    print(f"ratio assign/bare         {figures['assign_vs_bare']:9.2f}        (target >= 0.6)")
    print(
        f"batch ingestion           {figures['batch_events_per_s']:9.0f} events/s"
        "  (target >= 20,000)"
    )
    print(f"EventLog in-process       {in_process:9.0f} events/s  (target >= 100,000)")
    print(f"API peak RSS              {rss:9.1f} MB        (target <= 250)")
    print(f"non-2xx responses         {figures['non_2xx']:9.0f}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    main(options.seconds, options.runs)
