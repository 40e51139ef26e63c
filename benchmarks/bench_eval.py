"""Benchmark: offline evaluation throughput, and what the runner adds per (row, arm).

Run: `.venv/bin/python benchmarks/bench_eval.py [--repeats 3]`. Everything is real: the
support-reply example experiment with its bundled dataset and evaluators (an LLM judge among
them), its Hamilton drivers, the `openai` SDK over HTTP to the local model server (in a child
process, so its work does not compete for this process's GIL), and the store (an embedded
Redis in a temporary folder). Every measured run starts from an empty cache, so every arm
runs and every judge is asked. Figures printed (medians of `--repeats` runs):

- throughput at concurrency 1 and 8: (rows x arms) / wall seconds, and the ratio 8 vs 1,
  against the local model as it is (answers in about a millisecond: the runner and the
  model server compete for 2 cores) and with `--latency-ms` (20) added to every answer, as a
  remote model takes time to answer: that is where concurrency pays;
- overhead per (row, arm) at concurrency 1, excluding LLM time: (wall time - time spent
  waiting for the model, arm runs and judges) / (rows x arms). It covers the dataset inputs,
  input checks, Hamilton, the deterministic evaluators, the judges' parsing, the cache writes
  and the records;
- a repeated run with everything cached (no LLM call): (rows x arms) / wall seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_flow import _server_process  # noqa: E402

EXPERIMENT_ID = "support-reply-prompts"


def _setup(base_url: str):
    from abtest import store
    from abtest.evaluation.cache import EvalCache
    from abtest.evaluation.dataset import dataset_path, load_dataset
    from abtest.evaluation.judges import Judges
    from abtest.experiments import load_experiments
    from abtest.flows import FlowRegistry
    from abtest.llm import LLMClient

    experiment = load_experiments(ROOT / "experiments")[EXPERIMENT_ID]
    path = dataset_path(experiment.evaluation, ROOT / "experiments")
    rows = load_dataset(path)
    client = LLMClient(base_url=base_url, api_key="local")
    registry = FlowRegistry.from_experiments([experiment], llm_client=client)
    judges = Judges(experiment, llm_client=client, flow_contract=registry.contract(EXPERIMENT_ID))
    redis = store.sync_client(store.redis_url())
    cache = EvalCache(redis, EXPERIMENT_ID)
    return experiment, rows, path.parent, registry, judges, cache, redis, client


def _clear(redis, cache) -> None:
    redis.delete(cache.answers_key, cache.scores_key)


def _measure(base_url: str, repeats: int, figures: dict[str, list[float]], prefix: str) -> int:
    """Evaluate `repeats` times at concurrency 1 and 8 from an empty cache, and (without
    latency) once more from a full one; appends to `figures`; returns rows x arms."""
    from abtest.evaluation.runner import run_evaluation

    experiment, rows, folder, registry, judges, cache, redis, client = _setup(base_url)
    tasks = len(rows) * len(experiment.arms)

    def timed(concurrency: int):
        return run_evaluation(
            experiment, registry, judges, rows, cache=cache,
            dataset_folder=folder, concurrency=concurrency,
        )  # fmt: skip

    _clear(redis, cache)
    timed(8)  # warm-up: imports, connections, the model server's caches
    for _ in range(repeats):
        for concurrency in (1, 8):
            _clear(redis, cache)
            done = timed(concurrency)
            figures[f"{prefix}c{concurrency}"].append(tasks / done.seconds)
            if concurrency == 1 and not prefix:
                figures["overhead_ms"].append((done.seconds * 1000 - done.llm_ms) / tasks)
        if not prefix:
            again = timed(8)
            assert again.llm_calls == 0 and again.flows_run == 0
            figures["cached"].append(tasks / again.seconds)
    client.close()
    redis.close()
    return tasks


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {
        "c1": [], "c8": [], "overhead_ms": [], "cached": [], "slow_c1": [], "slow_c8": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as home:
        os.environ["ABTEST_HOME"] = home
        os.environ.pop("REDIS_URL", None)
        for latency, prefix in ((0.0, ""), (args.latency_ms, "slow_")):
            with _server_process(latency) as base_url:
                tasks = _measure(base_url, args.repeats, figures, prefix)
        from abtest import store

        store.stop_embedded()
    result = {name: statistics.median(values) for name, values in figures.items()}
    result["speedup"] = result["c8"] / result["c1"]
    result["slow_speedup"] = result["slow_c8"] / result["slow_c1"]
    result["tasks"] = float(tasks)
    print(
        f"offline evaluation of '{EXPERIMENT_ID}': {tasks} rows x arms, 4 evaluators, one of "
        f"them an LLM judge (medians of {args.repeats} runs)"
    )
    print(f"  concurrency 1: {result['c1']:8.1f} rows x arms / s")
    print(f"  concurrency 8: {result['c8']:8.1f} rows x arms / s  ({result['speedup']:.2f}x)")
    print(
        f"  with {args.latency_ms:g} ms per model answer: concurrency 1 {result['slow_c1']:.1f}, "
        f"concurrency 8 {result['slow_c8']:.1f} rows x arms / s ({result['slow_speedup']:.2f}x)"
    )
    print(
        "  overhead per row x arm, excluding LLM time (concurrency 1): "
        f"{result['overhead_ms']:.2f} ms"
    )
    print(f"  repeated run, all cached (no LLM call): {result['cached']:8.1f} rows x arms / s")
    return result


if __name__ == "__main__":
    main()
