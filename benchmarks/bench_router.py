"""Router speed: `Router.assign` vs `GrowthBook.run`, and `assign_many` throughput.

Prints, in one run, the median microseconds per call of both on the same three-arm experiment
(GrowthBook with a new `GrowthBook(attributes=...)` per unit, as a server does per request),
their ratio, and `assign_many` ids per second on 1,000,000 ids.
Targets: ratio >= 10; assign_many >= 2,000,000 ids/s.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from growthbook import Experiment as GBExperiment  # noqa: E402
from growthbook import GrowthBook  # noqa: E402

from abtest.experiments import load_experiment  # noqa: E402
from abtest.router import Router  # noqa: E402

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "pdf_summary.yaml"
CALLS = 20_000
REPEATS = 7


def _median_us(fn, ids: list[str]) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for unit in ids:
            fn(unit)
        samples.append((time.perf_counter() - start) / len(ids) * 1e6)
    return statistics.median(samples)


def main() -> dict[str, float]:
    experiment = load_experiment(EXPERIMENT)
    router = Router([experiment])
    gb_experiment = GBExperiment(
        key=experiment.id,
        variations=list(range(len(experiment.arms))),
        weights=[arm.weight for arm in experiment.arms],
        coverage=experiment.coverage,
        hashAttribute="user_id",
        hashVersion=2,
        seed=experiment.hash_seed,
    )
    ids = [f"user-{i}" for i in range(CALLS)]

    def ours(unit: str) -> object:
        return router.assign(experiment.id, unit)

    def growthbook(unit: str) -> object:
        return GrowthBook(attributes={"user_id": unit}).run(gb_experiment)

    ours_us = _median_us(ours, ids)
    gb_us = _median_us(growthbook, ids)
    many_ids = [f"user-{i}" for i in range(1_000_000)]
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        router.assign_many(experiment.id, many_ids)
        rates.append(len(many_ids) / (time.perf_counter() - start))
    figures = {
        "assign_us": ours_us,
        "growthbook_run_us": gb_us,
        "speedup": gb_us / ours_us,
        "assign_many_ids_per_s": statistics.median(rates),
    }
    print(f"Router.assign          median {ours_us:8.3f} us/call")
    print(f"GrowthBook.run         median {gb_us:8.3f} us/call (new GrowthBook per unit)")
    print(f"speedup                       {figures['speedup']:8.1f}x   (target >= 10x)")
    print(
        f"assign_many 1,000,000  median {figures['assign_many_ids_per_s']:,.0f} ids/s"
        "   (target >= 2,000,000)"
    )
    return figures


if __name__ == "__main__":
    main()
