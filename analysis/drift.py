"""Prompt drift: an arm whose flow fingerprint changed while the experiment ran.

A registry label moved or a deploy edited a prompt, and an arm's later units ran different
prompts from its earlier ones. Pooling them would report one lift for two treatments, so the
analysis names each change (:class:`Drift`) and reports the drifting arm once per fingerprint
against the whole control (:func:`by_fingerprint`). A unit belongs to the fingerprint of its
first exposure, as it belongs to that exposure's arm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from abtest.experiments import Experiment

__all__ = [
    "Drift",
    "by_fingerprint",
    "fingerprint_drift",
    "first_exposures",
    "first_fingerprints",
]


@dataclass(frozen=True)
class Drift:
    """Arm `arm` started running fingerprint `to` (after `from_`) at time `at`."""

    arm: str
    from_: str
    to: str
    at: pd.Timestamp

    def as_dict(self) -> dict[str, str]:
        return {"arm": self.arm, "from": self.from_, "to": self.to, "at": self.at.isoformat()}


def first_exposures(experiment: Experiment, exposures: pd.DataFrame) -> pd.DataFrame:
    """Each analysed unit's first exposure (by ``ts``, epoch ms): columns unit_id, arm, ts and
    flow_fingerprint (None where not recorded).

    Exposures of other experiments, of unknown arms and of override units are left out, as the
    analysis leaves them out.
    """
    columns = ["unit_id", "arm", "flow_fingerprint", "ts"]
    frame = exposures
    if "flow_fingerprint" not in frame.columns:
        frame = frame.assign(flow_fingerprint=None)
    if len(frame) == 0:
        return pd.DataFrame(columns=columns)
    if "experiment_id" in frame.columns:
        frame = frame[frame["experiment_id"].astype(str) == experiment.id]
    frame = frame[frame["arm"].astype(str).isin(experiment.arm_names)]
    frame = frame[~frame["unit_id"].astype(str).isin(experiment.overrides)]
    frame = frame.assign(unit_id=frame["unit_id"].astype(str), arm=frame["arm"].astype(str))
    return frame.sort_values("ts", kind="stable").drop_duplicates("unit_id")[columns]


def first_fingerprints(experiment: Experiment, exposures: pd.DataFrame) -> pd.DataFrame:
    """`first_exposures` of the units whose first exposure recorded a fingerprint."""
    firsts = first_exposures(experiment, exposures)
    firsts = firsts[firsts["flow_fingerprint"].notna()]
    return firsts.assign(flow_fingerprint=firsts["flow_fingerprint"].astype(str))


def fingerprint_drift(experiment: Experiment, firsts: pd.DataFrame) -> list[Drift]:
    """Every change of an arm's fingerprint, in time order, from `first_fingerprints`."""
    drifts = []
    for arm in experiment.arm_names:
        seen = firsts[firsts["arm"] == arm]
        starts = seen.groupby("flow_fingerprint", observed=True)["ts"].min().sort_values()
        fingerprints = list(starts.index)
        for before, after in zip(fingerprints, fingerprints[1:], strict=False):
            at = pd.Timestamp(int(starts[after]), unit="ms", tz="UTC")
            drifts.append(Drift(arm, str(before), str(after), at))
    return sorted(drifts, key=lambda d: d.at)


def by_fingerprint(
    experiment: Experiment,
    exposures: pd.DataFrame,
    firsts: pd.DataFrame,
    drifts: list[Drift],
    table_of: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame | None:
    """The drifting arms' rows of the results table, once per fingerprint.

    `table_of(exposures)` analyses a subset of the exposures (with all outcomes) and returns
    its results table. Each subset holds the control's exposures and those of one drifting
    arm's units whose first exposure carried one fingerprint; the arm's rows of that table
    are its results for that fingerprint, against the whole control. Columns: `fingerprint`,
    `first_seen`, then the table's. None without drift.
    """
    if not drifts:
        return None
    control = experiment.control.name
    parts = []
    for arm in dict.fromkeys(d.arm for d in drifts if d.arm != control):
        of_arm = firsts[firsts["arm"] == arm]
        for fingerprint, units in of_arm.groupby("flow_fingerprint", observed=True):
            keep = (exposures["arm"].astype(str) == control) | (
                exposures["unit_id"].astype(str).isin(units["unit_id"])
            )
            table = table_of(exposures[keep])
            rows = table[table["arm"] == arm].copy()
            rows.insert(0, "first_seen", pd.Timestamp(int(units["ts"].min()), unit="ms", tz="UTC"))
            rows.insert(0, "fingerprint", str(fingerprint))
            parts.append(rows)
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True).sort_values(
        ["metric", "arm", "first_seen"], kind="stable", ignore_index=True
    )
