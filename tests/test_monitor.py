"""The safe-rollout monitor against a real Redis: events written by the event log, one monitor
pass, and what it leaves in the store: stopped arms with their audit entries, statistics that
follow the analysis' per-unit rules and survive a restart, one leader, the webhook notice, and
the `abtest monitor` and `abtest serve` entry points. The tests that touch the store's keys,
scripts and consumer groups in new ways run on a Redis Cluster too (`both_stores`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from abtest.cli import app
from abtest.event_fields import Event, Exposure, Outcome, encode, stream_key
from abtest.events import SyncEventLog, read_group
from abtest.experiments import Experiment, parse_experiment
from abtest.monitor import GROUP, LEADER_KEY, Monitor
from abtest.monitor.monitor import counted
from abtest.monitor.tally import apply_events, read_arm_stats, tracked_metrics
from abtest.state_store import read_audit, read_states
from analysis.stats import ArmStats
from tests.api_support import api_client, experiments_copy

EXPERIMENT = "guarded"
ARMS = ("control", "bad", "fine")
UNITS = 400  # per arm
ERROR_RATES = {"control": 0.02, "bad": 0.15, "fine": 0.02}
T0 = 1_700_000_000_000


def definition(**safety: Any) -> dict[str, Any]:
    """An experiment file's data: three arms, guardrails of all three aggregations and a
    ratio guardrail (skipped by the monitor)."""
    return {
        "id": EXPERIMENT,
        "status": "running",
        "flow": "variants.support_reply",
        "overrides": {"qa-1": "bad"},
        "arms": [
            {"name": arm, "weight": w} for arm, w in zip(ARMS, (0.34, 0.33, 0.33), strict=True)
        ],
        "metrics": [
            {"name": "thumbs_up", "kind": "proportion", "primary": True},
            {
                "name": "error",
                "kind": "proportion",
                "direction": "decrease",
                "guardrail": True,
                "margin": 0.01,
            },
            {
                "name": "latency_ms",
                "kind": "mean",
                "aggregate": "mean",
                "direction": "decrease",
                "guardrail": True,
                "margin": 0.2,
            },
            {
                "name": "cost_usd",
                "kind": "mean",
                "aggregate": "sum",
                "direction": "decrease",
                "guardrail": True,
                "margin": 0.5,
            },
            {
                "name": "per_response",
                "kind": "ratio",
                "numerator": "error",
                "denominator": "responses",
                "guardrail": True,
            },
        ],  # fmt: skip
        "safety": {"min_units": 200, "alpha": 0.01, "check_every_s": 1, **safety},
    }


def experiment(**safety: Any) -> Experiment:
    return parse_experiment(definition(**safety))


@dataclass
class Traffic:
    """Events of units and the per-unit values the analysis would compute from them."""

    events: list[Event] = field(default_factory=list)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def expected(self, metric: str, arm: str) -> ArmStats:
        return ArmStats.from_values(self.values[metric][arm])


def unit_events(arm: str, k: int, prefix: str = "u") -> tuple[list[Event], dict[str, float]]:
    """A unit's exposure and outcomes: an error flag (two events for every fifth unit), one or
    two latencies, two costs; and its per-unit values (proportion, mean of values, sum)."""
    unit = f"{prefix}-{arm}-{k}"
    ts = T0 + k
    error = 1.0 if k < ERROR_RATES[arm] * UNITS else 0.0
    latencies = [800.0 + (k % 40) * 10.0] + ([1_000.0] if k % 3 == 0 else [])
    costs = [0.001 * (k % 7), 0.002]
    outcomes = [("error", error)] + ([("error", 0.0)] if k % 5 == 0 else [])
    outcomes += [("latency_ms", x) for x in latencies] + [("cost_usd", x) for x in costs]
    events: list[Event] = [Exposure(EXPERIMENT, unit, arm, f"r-{unit}", "a" * 64, "b" * 64, ts=ts)]
    events += [Outcome(EXPERIMENT, unit, arm, m, v, ts=ts + 5) for m, v in outcomes]
    values = {
        "error": error,
        "latency_ms": sum(latencies) / len(latencies),
        "cost_usd": sum(costs),
    }
    return events, values


def traffic(units: int = UNITS, prefix: str = "u") -> Traffic:
    """Every arm's units, plus events the analysis does not count: an overridden unit, a
    unit never exposed, an outcome logged before its unit's exposure, an unknown arm."""
    result = Traffic(
        values={m: {arm: [] for arm in ARMS} for m in ("error", "latency_ms", "cost_usd")}
    )
    for arm in ARMS:
        for k in range(units):
            events, values = unit_events(arm, k, prefix)
            result.events += events
            for metric, value in values.items():
                result.values[metric][arm].append(value)
    result.events += [
        Exposure(EXPERIMENT, "qa-1", "bad", "r-qa", "a" * 64, "b" * 64, ts=T0),
        Outcome(EXPERIMENT, "qa-1", "bad", "error", 1.0, ts=T0 + 1),
        Outcome(EXPERIMENT, f"{prefix}-ghost", "bad", "error", 1.0, ts=T0),
        Outcome(EXPERIMENT, f"{prefix}-control-0", "control", "cost_usd", 99.0, ts=T0 - 1),
        Exposure(EXPERIMENT, f"{prefix}-stranger", "old-arm", "r-x", "a" * 64, "b" * 64, ts=T0),
    ]
    return result


@pytest.fixture
def write(redis_client, tmp_path: Path):
    """Writes events through the real event log (deduplicated by event_id)."""
    with SyncEventLog(redis_client, tmp_path / "spool.jsonl") as log:
        yield log.append


def stats_of(client, exp: Experiment) -> dict[str, dict[str, ArmStats]]:
    tracked = [t for _, t in tracked_metrics(exp)]
    return read_arm_stats(client, exp.id, tracked, exp.arm_names)


def assert_stats_follow(client, exp: Experiment, expected: Traffic) -> None:
    stats = stats_of(client, exp)
    assert set(stats) == {"error", "latency_ms", "cost_usd"}  # the ratio guardrail is skipped
    for metric, per_arm in stats.items():
        for arm, got in per_arm.items():
            want = expected.expected(metric, arm)
            assert got.n == want.n, (metric, arm)
            assert got.mean == pytest.approx(want.mean, rel=1e-12), (metric, arm)
            assert got.variance == pytest.approx(want.variance, rel=1e-9), (metric, arm)


@pytest.mark.both_stores
def test_one_pass_stops_the_harmful_arm_with_its_audit_entry(redis_client, write) -> None:
    exp = experiment()
    data = traffic()
    write(data.events)
    now = [0.0]
    monitor = Monitor(redis_client, lambda: {exp.id: exp}, monitor_id="m1", clock=lambda: now[0])

    done = monitor.tick()

    assert done.leader
    assert_stats_follow(redis_client, exp, data)
    states = read_states(redis_client, exp.id, exp.arm_names)
    assert [states[arm].state for arm in ARMS] == ["active", "stopped", "active"]
    assert states["bad"].actor == "monitor"
    assert states["bad"].reason.startswith("error rate +13.0 pp (always-valid 99% CI +")
    assert states["bad"].reason.endswith("beyond margin +1.0 pp")
    [entry] = read_audit(redis_client, exp.id)
    assert (entry.arm, entry.action, entry.actor) == ("bad", "stop", "monitor")
    assert entry.reason == states["bad"].reason
    assert entry.statistics["metric"] == "error"
    assert entry.statistics["units_control"] == entry.statistics["units_treatment"] == UNITS
    assert entry.statistics["effect"] == pytest.approx(0.13)
    assert entry.statistics["ci_low"] > 0.01 and entry.statistics["margin"] == 0.01
    assert [s.entry.arm for s in done.stops] == ["bad"]
    fine = [c for c in done.checks[EXPERIMENT] if c.arm == "fine"]
    assert {c.metric for c in fine} == {"error", "latency_ms", "cost_usd"}
    assert not any(c.harmful for c in fine)

    now[0] += 1  # check_every_s
    again = monitor.tick()
    assert again.stops == ()
    assert {c.arm for c in again.checks[EXPERIMENT]} == {"fine"}  # a stopped arm is not checked
    assert len(read_audit(redis_client, exp.id)) == 1


def test_auto_stop_off_reports_harm_but_stops_nothing(redis_client, write) -> None:
    exp = experiment(auto_stop=False)
    write(traffic().events)
    done = Monitor(redis_client, lambda: {exp.id: exp}).tick()
    assert [c.arm for c in done.checks[EXPERIMENT] if c.harmful] == ["bad"]
    assert done.stops == ()
    assert not read_states(redis_client, exp.id, exp.arm_names)["bad"].stopped


def test_min_units_holds_back_every_decision(redis_client, write) -> None:
    exp = experiment(min_units=UNITS + 1)
    write(traffic().events)
    done = Monitor(redis_client, lambda: {exp.id: exp}).tick()
    assert done.stops == ()
    assert all(f"fewer than min_units {UNITS + 1}" in c.reason for c in done.checks[EXPERIMENT])
    assert not read_states(redis_client, exp.id, exp.arm_names)["bad"].stopped


def test_checks_follow_check_every_s(redis_client, write) -> None:
    exp = experiment(check_every_s=30)
    now = [100.0]
    monitor = Monitor(redis_client, lambda: {exp.id: exp}, clock=lambda: now[0])
    assert EXPERIMENT in monitor.tick().checks
    write(traffic().events)
    now[0] += 29
    early = monitor.tick()
    assert early.applied[EXPERIMENT] > 0 and EXPERIMENT not in early.checks
    now[0] += 1
    assert [s.entry.arm for s in monitor.tick().stops] == ["bad"]


@pytest.mark.both_stores
def test_a_restarted_monitor_resumes_without_double_counting(redis_client, write) -> None:
    """The first monitor consumes the first half; then a monitor that saved the second half's
    statistics crashes before acknowledging them; a new monitor continues from the stored
    statistics and the consumer group: the re-delivered events change nothing."""
    exp = experiment(auto_stop=False)
    first, second = traffic(units=200, prefix="a"), traffic(units=200, prefix="b")
    write(first.events)
    one = Monitor(redis_client, lambda: {exp.id: exp}, monitor_id="first")
    assert one.tick().applied[EXPERIMENT] > 0
    one.close()

    write(second.events)
    tracked = [t for _, t in tracked_metrics(exp)]
    for kind in ("exposure", "outcome"):  # read and saved, never acknowledged
        key = stream_key(exp.id, kind)
        entries = read_group(redis_client, key, GROUP, "crashed", count=10_000, raw=True)
        events = [event for _, fields in entries if (event := counted(exp, fields))]
        assert apply_events(redis_client, exp.id, tracked, events) > 0
    saved = stats_of(redis_client, exp)

    two = Monitor(redis_client, lambda: {exp.id: exp}, monitor_id="second")
    done = two.tick()

    assert done.applied[EXPERIMENT] == 0
    assert stats_of(redis_client, exp) == saved
    both = Traffic(
        values={
            m: {arm: first.values[m][arm] + second.values[m][arm] for arm in ARMS}
            for m in first.values
        }
    )
    assert_stats_follow(redis_client, exp, both)
    for kind in ("exposure", "outcome"):
        assert redis_client.xpending(stream_key(exp.id, kind), GROUP)["pending"] == 0
    counted_again = [event for event in second.events if counted(exp, encode(event))]
    assert apply_events(redis_client, exp.id, tracked, counted_again) == 0
    write(second.events)  # a client re-posting the same event ids: deduplicated on write
    assert two.tick().applied[EXPERIMENT] == 0


@pytest.mark.both_stores
def test_only_the_leader_consumes_and_decides(redis_client, write) -> None:
    exp = experiment()
    write(traffic().events)
    first = Monitor(redis_client, lambda: {exp.id: exp}, monitor_id="first", lease_ms=5_000)
    second = Monitor(redis_client, lambda: {exp.id: exp}, monitor_id="second", lease_ms=5_000)

    assert first.tick().leader
    waiting = second.tick()
    assert (waiting.leader, waiting.holder, waiting.stops) == (False, "first", ())
    assert redis_client.pttl(LEADER_KEY) > 4_000
    assert second.lease.current() == "first"

    first.close()
    assert second.tick().leader
    assert not first.tick().leader
    assert len(read_audit(redis_client, exp.id)) == 1


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server recording the JSON bodies POSTed to it."""
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/abtest", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_receives_the_stop_notice(redis_client, write, webhook) -> None:
    url, received = webhook
    exp = experiment(webhook=url)
    write(traffic().events)
    done = Monitor(redis_client, lambda: {exp.id: exp}).tick()
    assert [s.notified for s in done.stops] == [True]
    [body] = received
    assert set(body) == {"experiment_id", "arm", "metric", "reason", "statistics", "stopped_at"}
    assert (body["experiment_id"], body["arm"], body["metric"]) == (EXPERIMENT, "bad", "error")
    [entry] = read_audit(redis_client, exp.id)
    assert body["reason"] == entry.reason and body["stopped_at"] == entry.ts
    assert body["statistics"] == entry.statistics


def test_an_unreachable_webhook_does_not_stop_the_monitor(redis_client, write) -> None:
    exp = experiment(webhook="http://127.0.0.1:9/nobody-listens")
    write(traffic().events)
    done = Monitor(redis_client, lambda: {exp.id: exp}, webhook_timeout_s=0.5).tick()
    assert [(s.entry.arm, s.notified) for s in done.stops] == [("bad", False)]


runner = CliRunner()


@pytest.fixture
def experiments_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Path:
    directory = tmp_path / "experiments"
    directory.mkdir()
    (directory / "guarded.yaml").write_text(yaml.safe_dump(definition()))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ABTEST_HOME", str(tmp_path / "home"))
    return directory


@pytest.mark.both_stores
def test_cli_monitor_once(redis_client, write, experiments_dir: Path) -> None:
    write(traffic().events)
    result = runner.invoke(app, ["monitor", "--once", "-e", str(experiments_dir)])
    assert result.exit_code == 0, result.output
    assert f"monitor: watching {EXPERIMENT}" in result.output
    assert f"{EXPERIMENT}/fine: error rate +0.0 pp" in result.output
    assert f"STOPPED {EXPERIMENT}/bad: error rate +13.0 pp" in result.output
    assert redis_client.get(LEADER_KEY) is None  # released on the way out


def test_cli_monitor_fails_clearly(redis_client, experiments_dir: Path) -> None:
    redis_client.set(LEADER_KEY, "serve-worker-1", px=10_000)
    busy = runner.invoke(app, ["monitor", "--once", "-e", str(experiments_dir)])
    assert busy.exit_code == 1
    assert "another monitor (serve-worker-1) is the leader" in busy.output
    data = definition()
    del data["safety"]
    (experiments_dir / "guarded.yaml").write_text(yaml.safe_dump(data))
    idle = runner.invoke(app, ["monitor", "--once", "-e", str(experiments_dir)])
    assert idle.exit_code == 1
    assert "no running experiment has a safety: section" in idle.output


@pytest.mark.both_stores
def test_serve_runs_the_monitor_on_the_live_experiments(env, tmp_path, redis_client) -> None:
    """`abtest serve`'s app, with a safety section added to the example experiment: events
    of a harmful arm written while it runs get that arm stopped by the monitor."""
    experiments = experiments_copy(tmp_path)
    path = experiments / "pdf_summary.yaml"
    data = yaml.safe_load(path.read_text())
    data["safety"] = {"min_units": 200, "check_every_s": 1}
    path.write_text(yaml.safe_dump(data))
    experiment_id = data["id"]
    events = [
        event
        for arm, rate in (("control", 0.02), ("v2", 0.2))
        for k in range(400)
        for event in (
            Exposure(experiment_id, f"s-{arm}-{k}", arm, "r", "a" * 64, "b" * 64, ts=T0 + k),
            Outcome(experiment_id, f"s-{arm}-{k}", arm, "error", float(k < rate * 400), ts=T0 + k),
        )
    ]
    with api_client(tmp_path / "home", experiments=experiments) as client:
        with SyncEventLog(redis_client, tmp_path / "spool.jsonl") as log:
            log.append(events)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if read_states(redis_client, experiment_id, ["control", "v2"])["v2"].stopped:
                break
            time.sleep(0.1)
        detail = client.get(f"/v1/experiments/{experiment_id}").json()
    [entry] = read_audit(redis_client, experiment_id)
    assert (entry.arm, entry.actor) == ("v2", "monitor")
    assert entry.statistics["metric"] == "error"
    v2 = next(arm for arm in detail["arms"] if arm["name"] == "v2")
    assert (v2["state"], v2["reason"]) == ("stopped", entry.reason)
    assert redis_client.get(LEADER_KEY) is None  # the lifespan released the lease
