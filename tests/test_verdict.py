"""One estimand, one method, one verdict: every row's interval, p-value, `significant`, colour
and sentence come from the same test, so they cannot disagree (issue 11, item 1)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.analyze import analyze, table_row
from tests.analysis_support import experiment

ARMS = (("control", 0.34), ("v2", 0.33), ("v3", 0.33))


def _frames(seed: int, units: int, lifts: tuple[float, float], kinds: tuple[str, str]):
    """Per-unit events for three arms: a proportion and a heavy-tailed cost."""
    rng = np.random.default_rng(seed)
    arms = rng.choice(["control", "v2", "v3"], size=units)
    bump = np.select([arms == "v2", arms == "v3"], [lifts[0], lifts[1]], 0.0)
    thumbs = rng.random(units) < np.clip(0.3 * (1 + bump), 0, 1)
    cost = rng.lognormal(np.log(0.01) + bump, 1.0 if kinds[1] == "mean" else 0.3, units)
    unit_ids = [f"u{i}" for i in range(units)]
    ts = 1_700_000_000_000 + np.arange(units) * 1000
    exposures = pd.DataFrame({"unit_id": unit_ids, "arm": arms, "ts": ts})
    rows = [
        (u, "thumbs_up", 1.0, t + 10) for u, t, ok in zip(unit_ids, ts, thumbs, strict=True) if ok
    ]
    rows += [(u, "cost_usd", float(c), t + 20) for u, t, c in zip(unit_ids, ts, cost, strict=True)]
    outcomes = pd.DataFrame(rows, columns=["unit_id", "metric", "value", "ts"])
    return exposures, outcomes


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    units=st.integers(20, 1500),
    lifts=st.tuples(st.floats(-0.3, 0.4), st.floats(-0.3, 0.4)),
    estimands=st.tuples(
        st.sampled_from(["relative", "absolute"]), st.sampled_from(["relative", "absolute"])
    ),
    method=st.sampled_from(["fixed", "sequential", "bayesian"]),
    correction=st.sampled_from(["holm", "bh", "none"]),
)
def test_no_row_disagrees_with_its_interval(seed, units, lifts, estimands, method, correction):
    exp = experiment(
        [
            {"name": "thumbs_up", "kind": "proportion", "primary": True,
             "estimand": estimands[0]},
            {"name": "cost_usd", "kind": "mean", "guardrail": True, "direction": "decrease",
             "estimand": estimands[1]},
        ],
        arms=ARMS,
        correction=correction,
        sequential=method == "sequential",
        engine="bayesian" if method == "bayesian" else "frequentist",
    )  # fmt: skip
    result = analyze(exp, *_frames(seed, units, lifts, ("proportion", "mean")))
    alpha = exp.analysis.alpha
    sentences = result.summary()
    for row in result.rows:
        if row.is_control:
            continue
        v = row.verdict
        assert v is not None and v.method == method
        excludes_zero = v.ci_low > 0 or v.ci_high < 0
        assert row.significant == excludes_zero, (row.metric.name, row.arm, v)
        if method != "bayesian":
            assert row.significant == (v.p_adjusted < alpha)
            assert (v.p_value < 1 - v.level + 1e-12) == (v.p_adjusted < alpha) or not (
                math.isfinite(v.p_value)
            )
        else:
            assert math.isnan(v.p_value)
            # a chance to win exactly when there is a posterior (an arm may be too small)
            assert (0 <= v.chance_to_win <= 1) == math.isfinite(v.ci_low)
        shown = table_row(row)
        assert shown.css == ("better" if row.better else "worse" if row.worse else "")
        if row.better or row.worse:
            good = (v.effect > 0) == (row.metric.direction == "increase")
            assert row.better == good
        if row.metric.primary and math.isfinite(v.ci_low):
            # the sentence quotes exactly the interval the table shows
            assert shown.interval.strip("[]").replace(", ", " to ") in sentences
    table = result.table
    treated = table[table["arm"] != "control"]
    excl = (treated["ci_low"] > 0) | (treated["ci_high"] < 0)
    assert (treated["significant"] == excl).all()
