"""Targeting speed: `eval_condition` vs GrowthBook's Python SDK on the same condition.

Prints the median microseconds per call of `abtest.targeting.eval_condition` and of the SDK's
`evalCondition` on a three-clause condition (a `$in`, a `$ne`, a `$vgte`), over units whose
attributes make every clause vary; timings are interleaved (ours, theirs, ours...) so that a
slow moment of the machine hits both. For context it also prints `GrowthBook.run` on an
experiment with that condition (new `GrowthBook` per unit, as a server does per request): the
router's conditional path, `eval_condition` + `Router.assign`, must be >= 5x faster than it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from growthbook import Experiment as GBExperiment  # noqa: E402
from growthbook import GrowthBook  # noqa: E402
from growthbook.core import evalCondition  # noqa: E402

from abtest.experiments import parse_experiment  # noqa: E402
from abtest.router import Router  # noqa: E402
from abtest.targeting import eval_condition  # noqa: E402

CONDITION = {
    "tier": {"$in": ["pro", "enterprise"]},
    "country": {"$ne": "FR"},
    "app_version": {"$vgte": "2.3.0"},
}
CALLS = 20_000
REPEATS = 7


def _units(n: int) -> list[dict[str, Any]]:
    """Attributes cycling through matches and misses of every clause (most match)."""
    tiers = ["pro", "enterprise", "free", "pro"]
    countries = ["US", "DE", "FR", "GB", "US"]
    versions = ["2.3.0", "2.10.1", "2.2.9", "3.0.0-beta", "v2.4.0", "2.3.0+build.7"]
    return [
        {
            "id": f"user-{i}",
            "tier": tiers[i % len(tiers)],
            "country": countries[i % len(countries)],
            "app_version": versions[i % len(versions)],
        }
        for i in range(n)
    ]


def _time_us(fn: Callable[[dict[str, Any]], object], units: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for attributes in units:
        fn(attributes)
    return (time.perf_counter() - start) / len(units) * 1e6


def main() -> dict[str, float]:
    units = _units(CALLS)
    ours_results = [eval_condition(CONDITION, u) for u in units]
    sdk_results = [evalCondition(u, CONDITION) for u in units]
    assert ours_results == sdk_results, "eval_condition and the SDK disagree"
    gb_experiment = GBExperiment(
        key="bench", variations=[0, 1], hashAttribute="id", condition=CONDITION, hashVersion=2
    )

    def ours(attributes: dict[str, Any]) -> object:
        return eval_condition(CONDITION, attributes)

    def sdk(attributes: dict[str, Any]) -> object:
        return evalCondition(attributes, CONDITION)

    def sdk_run(attributes: dict[str, Any]) -> object:
        return GrowthBook(attributes=attributes).run(gb_experiment)

    router = Router([_experiment()])

    def assign(attributes: dict[str, Any]) -> object:
        return router.assign("bench", attributes["id"], attributes)

    for attributes in units[:2000]:  # the same arms and in/out decisions as the SDK
        theirs = GrowthBook(attributes=attributes).run(gb_experiment)
        mine = assign(attributes)
        assert (mine.arm_index, mine.in_experiment) == (
            theirs.variationId if theirs.inExperiment else 0,
            theirs.inExperiment,
        ), attributes

    samples: dict[str, list[float]] = {"ours": [], "sdk": [], "run": [], "assign": []}
    for _ in range(REPEATS):
        samples["ours"].append(_time_us(ours, units))
        samples["sdk"].append(_time_us(sdk, units))
        samples["assign"].append(_time_us(assign, units))
        samples["run"].append(_time_us(sdk_run, units[: CALLS // 4]))
    ours_us, sdk_us, run_us, assign_us = (
        statistics.median(samples[k]) for k in ("ours", "sdk", "run", "assign")
    )
    figures = {
        "eval_condition_us": ours_us,
        "sdk_eval_condition_us": sdk_us,
        "speedup": sdk_us / ours_us,
        "growthbook_run_with_condition_us": run_us,
        "router_assign_with_condition_us": assign_us,
        "assign_vs_run": run_us / assign_us,
    }
    matched = sum(ours_results) / len(ours_results)
    print(f"condition: {CONDITION}  ({matched:.0%} of {CALLS:,} units match)")
    print(f"eval_condition             median {ours_us:8.3f} us/call")
    print(f"growthbook evalCondition   median {sdk_us:8.3f} us/call")
    print(f"speedup                           {figures['speedup']:8.2f}x")
    print(f"GrowthBook.run + condition median {run_us:8.3f} us/call (new GrowthBook per unit)")
    print(f"Router.assign + condition  median {assign_us:8.3f} us/call")
    print(
        f"Router.assign vs GrowthBook.run   {figures['assign_vs_run']:8.2f}x faster "
        "[target: >= 5x]"
    )
    return figures


def _experiment():
    """The benchmark's experiment for the router: hashed by `id`, as the SDK's default."""
    return parse_experiment(
        {
            "id": "bench",
            "status": "running",
            "flow": "variants.summarization",
            "hash_attribute": "id",
            "seed": "bench",
            "condition": CONDITION,
            "arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
        }
    )


if __name__ == "__main__":
    main()
