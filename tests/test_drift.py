"""Prompt drift (issue 12, item 3): when an arm's flow fingerprint changes mid-experiment, the
analysis names the change and reports the arm once per fingerprint instead of pooling."""

from __future__ import annotations

import numpy as np

from analysis.analyze import analyze
from analysis.report import render_report, to_json
from tests.analysis_support import HOUR, T0, experiment, exposure, frames, outcome

OLD, NEW = "1" * 64, "2" * 64


def _events(rng: np.random.Generator):
    """200 units per arm; v2's first 100 units ran fingerprint OLD (rate 0.5, as control),
    its next 100 NEW (rate 0.9): pooled, v2 looks +40%, which is neither prompt."""
    exposures, outcomes = [], []
    for i in range(200):
        for arm, rate, fp in (
            ("control", 0.5, "c" * 64),
            ("v2", 0.5 if i < 100 else 0.9, OLD if i < 100 else NEW),
        ):
            unit = f"{arm}-{i}"
            event = exposure(unit, arm, ts=T0 + i * HOUR)
            event["flow_fingerprint"] = fp
            exposures.append(event)
            value = float(rng.random() < rate)
            outcomes.append(outcome(unit, arm, "thumbs_up", value, ts=T0 + i * HOUR + 1000))
    return frames(exposures, outcomes)


def test_a_changed_fingerprint_is_reported_per_fingerprint() -> None:
    exposures, outcomes = _events(np.random.default_rng(3))
    result = analyze(experiment(), exposures, outcomes)
    (drift,) = result.drift
    assert (drift.arm, drift.from_, drift.to) == ("v2", OLD, NEW)
    assert drift.at.value // 1_000_000 == T0 + 100 * HOUR
    split = result.by_fingerprint.set_index("fingerprint")
    assert list(split["units"]) == [100, 100]
    control = outcomes[outcomes["arm"] == "control"]["value"].mean()
    for fp, units in ((OLD, range(100)), (NEW, range(100, 200))):
        ids = [f"v2-{i}" for i in units]
        mean = outcomes[outcomes["unit_id"].isin(ids)]["value"].mean()
        assert split.loc[fp, "mean"] == mean
        assert abs(split.loc[fp, "lift"] - (mean / control - 1)) < 1e-12
    assert not split.loc[OLD, "significant"] and split.loc[NEW, "significant"]
    data = to_json(result)
    assert data["drift"] == [drift.as_dict()]
    assert [r["fingerprint"] for r in data["by_fingerprint"]] == [OLD, NEW]
    html = render_report(result)
    assert "Prompt drift" in html and f"fingerprint {OLD[:12]} -&gt; {NEW[:12]}" in html


def test_one_fingerprint_per_arm_is_no_drift() -> None:
    exposures, outcomes = _events(np.random.default_rng(4))
    exposures["flow_fingerprint"] = exposures["arm"].map({"control": "c" * 64, "v2": OLD})
    result = analyze(experiment(), exposures, outcomes)
    assert result.drift == () and result.by_fingerprint is None
    assert to_json(result)["drift"] == [] and "Prompt drift" not in render_report(result)


def test_traffic_counts_every_arms_units_per_period() -> None:
    """`ExperimentResult.traffic` (the dashboard's units chart) has the control too, and its
    last period equals the units per arm."""
    exposures, outcomes = _events(np.random.default_rng(5))
    result = analyze(experiment(), exposures, outcomes)
    last = result.traffic.groupby("arm")["units"].max().to_dict()
    assert last == result.units_per_arm == {"control": 200, "v2": 200}
    per_day = result.traffic[result.traffic["arm"] == "control"]["units"].tolist()
    assert per_day == sorted(per_day) and per_day[0] == 24  # one unit an hour, from T0
