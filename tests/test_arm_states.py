"""Stopping and resuming arms at run time (issue 12, item 2), through the real app and a real
Redis: the admin endpoints, what units get afterwards, and how the state reaches a replica
that did not make the change."""

from __future__ import annotations

import time

import pytest

from abtest.experiments import load_experiment
from abtest.router import Router
from abtest.state_store import change_state
from tests.api_support import EXAMPLES, EXPERIMENT, api_client, stream

pytestmark = pytest.mark.both_stores

ROUTER = Router([load_experiment(EXAMPLES / "pdf_summary.yaml")])
V2_UNITS = [u for u in (f"u{i}" for i in range(200)) if ROUTER.assign(EXPERIMENT, u).arm == "v2"]
KEYS = {"api_keys": frozenset({"k-user"}), "admin_keys": frozenset({"k-admin"})}
ADMIN = {"Authorization": "Bearer k-admin"}
USER = {"Authorization": "Bearer k-user"}
BASE = f"/v1/experiments/{EXPERIMENT}"


def _wait_for(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_a_stopped_arm_gives_its_units_the_control_without_exposure(
    env, tmp_path, redis_client
) -> None:
    with api_client(tmp_path, **KEYS) as client:
        stop = client.post(
            f"/v1/admin/experiments/{EXPERIMENT}/arms/v2/stop",
            json={"reason": "latency regression seen by hand"},
            headers=ADMIN,
        )
        answers = [
            client.get(f"{BASE}/assign", params={"unit_id": u}, headers=USER).json()
            for u in V2_UNITS[:10]
        ]
        detail = client.get(BASE, headers=USER).json()
        listed = client.get("/v1/experiments", headers=USER).json()
        audit = client.get(f"{BASE}/audit", headers=USER).json()
        metrics = client.get("/metrics", headers=USER).text
        again = client.post(f"/v1/admin/experiments/{EXPERIMENT}/arms/v2/stop", headers=ADMIN)
        resume = client.post(f"/v1/admin/experiments/{EXPERIMENT}/arms/v2/resume", headers=ADMIN)
        back = client.get(f"{BASE}/assign", params={"unit_id": V2_UNITS[0]}, headers=USER).json()
    assert stop.status_code == 200, stop.text
    assert stop.json()["changed"] is True and stop.json()["arm"]["state"] == "stopped"
    control = load_experiment(EXAMPLES / "pdf_summary.yaml").control.config
    for answer in answers:
        assert (answer["arm"], answer["in_experiment"], answer["reason"]) == (
            "control",
            False,
            "arm_stopped",
        )
        assert answer["config"] == control and answer["exposure_logged"] is False
    exposed = [e["unit_id"] for e in stream(redis_client, "exposures")]
    assert exposed == [V2_UNITS[0]]  # only the assignment after the resume
    v2 = next(a for a in detail["arms"] if a["name"] == "v2")
    assert v2["state"] == "stopped" and v2["reason"] == "latency regression seen by hand"
    assert isinstance(v2["stopped_at"], int)
    assert next(a for a in listed if a["id"] == EXPERIMENT)["arms"][1]["state"] == "stopped"
    assert [(e["arm"], e["action"], e["actor"]) for e in audit] == [("v2", "stop", "admin")]
    assert f'abtest_arm_stopped{{arm="v2",experiment="{EXPERIMENT}"}} 1.0' in metrics
    assert again.json()["changed"] is False and again.json()["audit"] is None
    assert resume.json()["changed"] is True and resume.json()["arm"]["state"] == "active"
    assert back["arm"] == "v2" and back["in_experiment"] is True


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("arms/v2/stop", {}, 401, "unauthorized"),
        ("arms/v2/stop", USER, 403, "forbidden"),
        ("arms/v9/stop", ADMIN, 404, "unknown_arm"),
        ("arms/control/stop", ADMIN, 409, "invalid_change"),
    ],
)
def test_bad_stops_are_refused(env, tmp_path, path, headers, status, error) -> None:
    with api_client(tmp_path, **KEYS) as client:
        response = client.post(f"/v1/admin/experiments/{EXPERIMENT}/{path}", headers=headers)
        unknown = client.post("/v1/admin/experiments/nope/arms/v2/stop", headers=ADMIN)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert unknown.status_code == 404


def test_a_stop_made_elsewhere_reaches_this_replica_within_the_refresh(
    env, tmp_path, redis_client
) -> None:
    """The monitor (or an admin on another replica) writes the store; this app only reads."""
    with api_client(tmp_path, state_refresh_s=0.2) as client:

        def reason() -> str:
            body = client.get(f"{BASE}/assign", params={"unit_id": V2_UNITS[1]}).json()
            return body["reason"]

        assert reason() == "hashed"
        change_state(redis_client, EXPERIMENT, "v2", "stop", actor="monitor", reason="error +4 pp")
        assert _wait_for(lambda: reason() == "arm_stopped", seconds=3.0)
        change_state(redis_client, EXPERIMENT, "v2", "resume", actor="admin", reason="fixed")
        assert _wait_for(lambda: reason() == "hashed", seconds=3.0)


def test_the_report_says_when_and_why_an_arm_was_stopped(redis_client) -> None:
    from analysis.report import analyze_stored, render_report, to_json
    from tests.analysis_support import T0, exposure, outcome, write_events

    experiment = load_experiment(EXAMPLES / "pdf_summary.yaml")
    units = [(f"u{i}", ROUTER.assign(EXPERIMENT, f"u{i}").arm) for i in range(40)]
    write_events(
        redis_client,
        EXPERIMENT,
        [exposure(u, arm, T0, experiment_id=EXPERIMENT) for u, arm in units],
        [outcome(u, arm, "thumbs_up", 1.0, experiment_id=EXPERIMENT) for u, arm in units],
    )
    change_state(
        redis_client, EXPERIMENT, "v2", "stop", actor="monitor", reason="error +4.0 pp",
        statistics={"p_value": 0.001}, now_ms=T0 + 3_600_000,
    )  # fmt: skip
    result = analyze_stored(experiment, redis_client)
    assert result.units_per_arm["v2"] == sum(arm == "v2" for _, arm in units)
    data = to_json(result)
    assert data["arm_states"]["v2"] == {
        "state": "stopped", "reason": "error +4.0 pp", "stopped_at": T0 + 3_600_000,
        "actor": "monitor",
    }  # fmt: skip
    assert data["audit"][0]["statistics"] == {"p_value": 0.001}
    html = render_report(result)
    assert "v2 was stopped at 2026-01-01 01:00:00 UTC by monitor: error +4.0 pp." in html


def test_the_traffic_check_counts_units_before_the_first_stop(redis_client) -> None:
    """After a stop, control keeps taking units and the stopped arm none: that imbalance is by
    design, so the sample-ratio check looks at the units that entered before the stop."""
    from analysis.report import analyze_stored, render_report, to_json
    from tests.analysis_support import T0, exposure, write_events

    experiment = load_experiment(EXAMPLES / "pdf_summary.yaml")
    before = [(f"u{i}", ROUTER.assign(EXPERIMENT, f"u{i}").arm) for i in range(600)]
    after = [(f"w{i}", "control") for i in range(400)]  # the treatments' units are not exposed
    events = [exposure(u, a, T0 + i, experiment_id=EXPERIMENT) for i, (u, a) in enumerate(before)]
    events += [exposure(u, a, T0 + 10_000 + i, experiment_id=EXPERIMENT) for i, (u, a) in enumerate(after)]  # noqa: E501
    write_events(redis_client, EXPERIMENT, events)
    pooled = analyze_stored(experiment, redis_client)
    assert pooled.srm_warning and pooled.srm_until is None
    change_state(
        redis_client, EXPERIMENT, "v2", "stop", actor="monitor", reason="harm", now_ms=T0 + 5_000
    )
    result = analyze_stored(experiment, redis_client)
    assert not result.srm_warning, result.srm_p_value
    assert to_json(result)["srm_until"] == "2026-01-01T00:00:05+00:00"
    assert "before the first arm was stopped (2026-01-01 00:00:05 UTC)" in render_report(result)
