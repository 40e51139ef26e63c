"""Online judging end to end: live runs through the real API (JSON and multipart) land in the
runs stream as sampled, capped and, when asked, without their inputs; the judge worker turns
them into `judge:<name>` outcomes carrying the judge's fingerprint, which the analysis reads
like any metric, exactly once however often an entry is delivered; parse failures and judge
errors are counted per arm, never scored; old entries are trimmed; `abtest serve` starts and
stops the worker. Real Redis (a server and a Redis Cluster: `both_stores`), the local model
server through the openai SDK, real Hamilton drivers, and two judge flows written for these
tests (`tests.flows.reply_judge` answers with a parseable score, `tests.flows.rambling_judge`
with a summary)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from abtest import store
from abtest.evaluation.judges import Judges
from abtest.event_fields import now_ms, stream_key
from abtest.experiments import Experiment, load_experiment, parse_experiment
from abtest.judging import (
    GROUP,
    JudgeWorker,
    RunEntry,
    RunsLog,
    is_sampled,
    runs_key,
)
from abtest.judging.runs_log import RUN_FIELDS
from abtest.judging.worker import judge_event_id
from abtest.llm import LLMClient
from abtest.settings import Settings, SettingsError
from analysis.analyze import analyze
from analysis.evaluation import judge_stats_key, read_judge_stats
from analysis.load import load_events
from tests.api_support import EXAMPLES, api_client, service_settings, stream
from variants.summarization.pdfs import SAMPLE_REPORT, make_pdf

pytestmark = pytest.mark.both_stores

EXPERIMENT = "judged-replies"
ARMS = ("control", "v2")
MESSAGES = (
    "I was charged twice for my order this month, can you check my invoice?",
    "My package has not arrived yet, where can I track the delivery?",
    "I forgot my password and cannot log in to my account.",
    "The app shows an error and crashes when I open my invoices.",
)


def definition(rate: float = 1.0, **evaluation: Any) -> dict[str, Any]:
    """An experiment of the support-reply flow judged online by both test judges."""
    return {
        "id": EXPERIMENT,
        "status": "running",
        "flow": "variants.support_reply",
        "arms": [
            {"name": "control", "weight": 0.5, "config": {"prompt_version": "v1"}},
            {"name": "v2", "weight": 0.5, "config": {"prompt_version": "v2"}},
        ],
        "metrics": [{"name": "thumbs_up", "kind": "proportion", "primary": True}],
        "evaluation": {
            "judge_sample_rate": rate,
            "evaluators": [
                {
                    "name": "reply",
                    "kind": "llm_judge",
                    "flow": "tests.flows.reply_judge",
                    "model": "gpt-4o-mini",
                    "scale": [1, 5],
                    "output": "reply",
                },
                {
                    "name": "rambling",
                    "kind": "llm_judge",
                    "flow": "tests.flows.rambling_judge",
                    "model": "gpt-4o-mini",
                    "scale": [1, 5],
                },
            ],
            **evaluation,
        },
    }


def experiments_dir(tmp_path: Path, *definitions: dict[str, Any]) -> Path:
    directory = tmp_path / "experiments"
    directory.mkdir(exist_ok=True)
    for data in definitions:
        (directory / f"{data['id']}.yaml").write_text(yaml.safe_dump(data))
    return directory


def run_units(client: Any, n: int, prefix: str = "u") -> list[dict[str, Any]]:
    """`n` runs of distinct units through `POST /run` (JSON); their response bodies."""
    bodies = []
    for k in range(n):
        body = {
            "unit_id": f"{prefix}-{k}",
            "inputs": {"message": MESSAGES[k % len(MESSAGES)], "customer_tier": "pro"},
        }
        response = client.post(f"/v1/experiments/{EXPERIMENT}/run", json=body)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return bodies


def entries(client: redis.Redis, experiment_id: str = EXPERIMENT) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(runs_key(experiment_id))]


def worker_for(
    experiment: Experiment, client: redis.Redis, llm: LLMClient, home: Path, **options: Any
) -> JudgeWorker:
    settings = service_settings(home=home)
    return JudgeWorker(
        client, lambda: {experiment.id: experiment}, llm, settings=settings, **options
    )


def judge_outcomes(client: redis.Redis, metric: str = "judge:reply") -> list[dict[str, str]]:
    return [o for o in stream(client, "outcomes", EXPERIMENT) if o["metric"] == metric]


def served_metrics(client: Any) -> str:
    """What `GET /metrics` of the app served by `client` reports now."""
    return client.app.state.telemetry.render().decode()


def per_arm(bodies: list[dict[str, Any]]) -> Counter[str]:
    return Counter(body["arm"] for body in bodies)


# --- sampling and the runs stream ------------------------------------------------------------


def test_sampling_is_a_function_of_the_request_id_near_the_rate() -> None:
    ids = [uuid.uuid4().hex for _ in range(20_000)]
    share = sum(is_sampled(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert not any(is_sampled(i, 0.0) for i in ids) and all(is_sampled(i, 1.0) for i in ids)
    first = ids[0]
    expected = int(hashlib.sha256(first.encode()).hexdigest()[:8], 16) / 2**32 < 0.5
    assert all(is_sampled(first, 0.5) == expected for _ in range(3))


def test_sampled_runs_land_in_the_runs_stream(env, tmp_path, redis_client) -> None:
    directory = experiments_dir(tmp_path, definition(rate=0.5))
    with api_client(tmp_path / "home", directory, judge="off", runs_max_len=777) as client:
        assert client.app.state.runs_log.max_len == 777  # ABTEST_RUNS_MAX_LEN: every XADD's cap
        bodies = run_units(client, 24)
    metrics = served_metrics(client)  # after shutdown, which waits for the writes in flight
    kept = entries(redis_client)
    due = [b for b in bodies if is_sampled(b["request_id"], 0.5)]
    assert 0 < len(due) < len(bodies)
    assert [e["request_id"] for e in kept] == [b["request_id"] for b in due]
    fingerprints = {
        e["request_id"]: e["flow_fingerprint"]
        for e in stream(redis_client, "exposures", EXPERIMENT)
    }
    for entry, body in zip(kept, due, strict=True):
        assert tuple(entry) == RUN_FIELDS
        assert (entry["unit_id"], entry["arm"]) == (body["unit_id"], body["arm"])
        assert entry["flow_fingerprint"] == fingerprints[body["request_id"]]
        assert json.loads(entry["outputs"]) == body["outputs"]
        unit = int(body["unit_id"].split("-")[1])
        message = MESSAGES[unit % len(MESSAGES)]
        assert json.loads(entry["inputs"]) == {"message": message, "customer_tier": "pro"}
        assert abs(int(entry["ts"]) - now_ms()) < 120_000
    line = f'abtest_runs_logged_total{{experiment="{EXPERIMENT}",result="stored"}} {len(due)}.0'
    assert line in metrics


def test_rate_zero_and_experiments_without_judges_keep_nothing(env, tmp_path, redis_client):
    plain = {**definition(), "id": "plain-replies"}
    del plain["evaluation"]
    directory = experiments_dir(tmp_path, definition(rate=0.0), plain)
    with api_client(tmp_path / "home", directory) as client:
        run_units(client, 6)
        response = client.post(
            "/v1/experiments/plain-replies/run",
            json={"unit_id": "u-1", "inputs": {"message": MESSAGES[0]}},
        )
        assert response.status_code == 200
        assert client.app.state.judge is None  # nothing to judge online: no worker either
    assert redis_client.keys("*:runs") == []


def pdf_experiment(tmp_path: Path) -> Path:
    """The example PDF experiment, judged online at rate 1 by the summary-quality judge."""
    data = yaml.safe_load((EXAMPLES / "pdf_summary.yaml").read_text())
    data["evaluation"] = {
        "judge_sample_rate": 1.0,
        "evaluators": [
            {
                "name": "quality",
                "kind": "llm_judge",
                "flow": "variants.judges.summary_quality",
                "model": "gpt-4o-mini",
                "scale": [1, 5],
            }
        ],
    }
    return experiments_dir(tmp_path, data)


def test_bytes_inputs_are_kept_as_size_and_digest_on_both_paths(env, tmp_path, redis_client):
    pdf = make_pdf(SAMPLE_REPORT)
    digest = {"bytes": len(pdf), "sha256": hashlib.sha256(pdf).hexdigest()}
    experiment_id = "pdf-summary-prompts"
    with api_client(tmp_path / "home", pdf_experiment(tmp_path)) as client:
        multipart = client.post(
            f"/v1/experiments/{experiment_id}/run",
            data={"unit_id": "u-form", "user_query": "What did the pilot cost?"},
            files={"pdf_source": ("report.pdf", pdf, "application/pdf")},
        )
        posted = client.post(
            f"/v1/experiments/{experiment_id}/run",
            json={
                "unit_id": "u-json",
                "inputs": {"pdf_source": base64.b64encode(pdf).decode(), "user_query": "Cost?"},
            },
        )
    assert multipart.status_code == 200 and posted.status_code == 200
    kept = {e["unit_id"]: e for e in entries(redis_client, experiment_id)}
    assert json.loads(kept["u-form"]["inputs"]) == {
        "pdf_source": digest,
        "user_query": "What did the pilot cost?",
    }
    assert json.loads(kept["u-json"]["inputs"]) == {"pdf_source": digest, "user_query": "Cost?"}
    assert json.loads(kept["u-form"]["outputs"]) == multipart.json()["outputs"]


def test_the_cap_holds(redis_url, redis_client) -> None:
    """Approximate MAXLEN trims whole stream nodes (100 entries by default), so the stream
    stays within one node of the cap."""
    cap, written = 50, 700

    async def write() -> list[bool]:
        client = await store.connect_async(redis_url)
        try:
            log = RunsLog(client, max_len=cap)
            return [
                await log.append(
                    EXPERIMENT, RunEntry(f"r{k}", now_ms(), "u", "control", "f", {}, {})
                )
                for k in range(written)
            ]
        finally:
            await store.close_async_client(client)

    assert all(asyncio.run(write()))
    assert cap <= redis_client.xlen(runs_key(EXPERIMENT)) <= cap + 100


def test_a_failing_runs_stream_never_fails_the_run(env, tmp_path, redis_client) -> None:
    redis_client.set(runs_key(EXPERIMENT), "not a stream")  # every XADD fails (WRONGTYPE)
    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory, judge="off") as client:
        bodies = run_units(client, 3)
    metrics = served_metrics(client)
    assert all(body["error"] is None and body["outputs"]["reply"] for body in bodies)
    assert f'abtest_runs_logged_total{{experiment="{EXPERIMENT}",result="failed"}} 3.0' in metrics


def test_privacy_off_keeps_outputs_only_and_input_judges_fail(
    env, tmp_path, redis_client, llm_client
) -> None:
    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory, runs_store_inputs=False, judge="off") as client:
        bodies = run_units(client, 6)
    kept = entries(redis_client)
    assert len(kept) == 6 and all(e["inputs"] == "" and json.loads(e["outputs"]) for e in kept)
    experiment = parse_experiment(definition(rate=1.0))
    worker = worker_for(experiment, redis_client, llm_client, tmp_path / "w")
    try:
        done = worker.tick()
    finally:
        worker.close()
    arms = per_arm(bodies)
    stats = read_judge_stats(EXPERIMENT, redis_client)
    for arm, n in arms.items():
        assert done.count(EXPERIMENT, arm, "reply", "judge_error") == n  # needs `message`
        assert done.count(EXPERIMENT, arm, "rambling", "parse_failure") == n
        assert stats[arm]["reply"] == {"ok": 0, "parse_failure": 0, "judge_error": n}
    assert [
        o for o in stream(redis_client, "outcomes", EXPERIMENT) if o["metric"].startswith("judge:")
    ] == []


# --- the worker ------------------------------------------------------------------------------


def test_a_pass_records_scores_the_analysis_reads_exactly_once(
    env, tmp_path, redis_url, redis_client, llm_client
) -> None:
    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory, judge="off") as client:
        bodies = run_units(client, 16)
    experiment = load_experiment(directory / f"{EXPERIMENT}.yaml")
    key = runs_key(EXPERIMENT)
    # A worker that died holding four entries: they stay pending until another claims them.
    redis_client.xgroup_create(key, GROUP, id="0")
    held = redis_client.xreadgroup(GROUP, "dead-worker", {key: ">"}, count=4)[0][1]
    worker = worker_for(experiment, redis_client, llm_client, tmp_path / "w", claim_idle_ms=0)
    try:
        done = worker.tick()
        again = worker.tick()
    finally:
        worker.close()

    arms = per_arm(bodies)
    assert done.runs == {EXPERIMENT: 16} and again.runs == {EXPERIMENT: 0}
    stats = read_judge_stats(EXPERIMENT, redis_client)
    for arm, n in arms.items():
        assert done.count(EXPERIMENT, arm, "reply") == n
        assert done.count(EXPERIMENT, arm, "rambling", "parse_failure") == n
        assert stats[arm] == {
            "reply": {"ok": n, "parse_failure": 0, "judge_error": 0},
            "rambling": {"ok": 0, "parse_failure": n, "judge_error": 0},
        }
    assert redis_client.xpending(key, GROUP)["pending"] == 0
    assert (
        f"  control reply: {arms['control']} scored, 0 parse failures, 0 judge errors"
        in done.lines()
    )

    fingerprint = Judges(experiment, llm_client=llm_client).fingerprint("reply")
    scores = judge_outcomes(redis_client)
    by_request = {o["request_id"]: o for o in scores}
    assert len(scores) == 16 and set(by_request) == {b["request_id"] for b in bodies}
    assert {fields["request_id"] for _, fields in held} <= set(by_request)  # claimed, judged
    for body in bodies:
        score = by_request[body["request_id"]]
        assert (score["unit_id"], score["arm"]) == (body["unit_id"], body["arm"])
        assert score["judge_fingerprint"] == fingerprint
        assert score["event_id"] == judge_event_id(body["request_id"], fingerprint)
        assert 1.0 <= float(score["value"]) <= 5.0
    assert judge_outcomes(redis_client, "judge:rambling") == []  # parse failures: no score

    # Every entry delivered again (a new group reads the stream from its start): no duplicate.
    redis_client.xgroup_destroy(key, GROUP)
    redelivered = worker_for(experiment, redis_client, llm_client, tmp_path / "w")
    try:
        assert redelivered.tick().runs == {EXPERIMENT: 16}
    finally:
        redelivered.close()
    assert len(judge_outcomes(redis_client)) == 16
    assert read_judge_stats(EXPERIMENT, redis_client) == stats  # runs counted, not deliveries
    # the ids that make the counts exact live a day longer than the runs they count
    counted = list(redis_client.scan_iter(match=f"abtest:{{{EXPERIMENT}}}:judge:counted:*"))
    assert len(counted) == 1 and redis_client.hlen(counted[0]) == 32
    retention = service_settings().runs_retention_s
    assert retention < redis_client.ttl(counted[0]) <= retention + 86_400

    exposures, outcomes = load_events(EXPERIMENT, redis_url)
    assert set(outcomes.loc[outcomes["metric"] == "judge:reply", "judge_fingerprint"]) == {
        fingerprint
    }
    result = analyze(experiment, exposures, outcomes)
    rows = result.table[result.table["metric"] == "judge:reply"].set_index("arm")
    values = {arm: [float(o["value"]) for o in scores if o["arm"] == arm] for arm in ARMS}
    for arm in ARMS:
        assert rows.loc[arm, "units"] == arms[arm]
        assert rows.loc[arm, "mean"] == pytest.approx(sum(values[arm]) / len(values[arm]))

    # the report shows every verdict: the parse failures of the judge that cannot be parsed too
    from analysis.report import analyze_stored, render_report, to_json

    stored = analyze_stored(experiment, redis_url)
    assert stored.judge_verdicts == stats and to_json(stored)["judge_verdicts"] == stats
    page = render_report(stored)
    assert "<h2>Online judges</h2>" in page
    for arm, n in arms.items():
        cells = f'<td class="text">{arm}</td><td class="text">rambling</td>\n<td>0</td><td>{n}</td>'
        assert cells in page


def test_retention_trims_old_entries_and_their_pending_claims(redis_client, tmp_path, llm_client):
    experiment = parse_experiment(definition(rate=1.0))
    key = runs_key(EXPERIMENT)
    week_ago = now_ms() - 8 * 86_400_000
    reply = {
        "reply": "A double charge is a hold that disappears within 3 days.",
        "intent": "billing",
    }
    inputs = {"message": MESSAGES[0], "customer_tier": "pro"}
    for k in range(5):
        old = RunEntry(f"old-{k}", week_ago + k, f"u-{k}", "control", "f", inputs, reply)
        redis_client.xadd(key, old.fields(), id=f"{week_ago + k}-0")
    fresh = RunEntry("fresh", now_ms(), "u-9", "v2", "f", inputs, reply)
    redis_client.xadd(key, fresh.fields())
    redis_client.xadd(key, {"request_id": "broken", "ts": "1"})  # unreadable: skipped, acked
    redis_client.xgroup_create(key, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "dead-worker", {key: ">"}, count=2)  # two old ones, pending
    worker = worker_for(experiment, redis_client, llm_client, tmp_path / "w")
    try:
        done = worker.tick()
    finally:
        worker.close()
    assert done.trimmed == {EXPERIMENT: 5} and done.unreadable == {EXPERIMENT: 1}
    assert done.runs == {EXPERIMENT: 1} and done.count(EXPERIMENT, "v2", "reply") == 1
    assert [fields["request_id"] for _, fields in redis_client.xrange(key)] == ["fresh", "broken"]
    assert redis_client.xpending(key, GROUP)["pending"] == 0
    assert "trimmed 5 older than the retention" in done.lines()[0]
    assert [o["request_id"] for o in judge_outcomes(redis_client)] == ["fresh"]
    assert redis_client.hget(judge_stats_key(EXPERIMENT), "v2:reply:ok") == "1"
    consumers = redis_client.xinfo_consumers(key, GROUP)
    assert [c["name"] for c in consumers] == ["dead-worker"]  # the closed worker left the group


def test_judges_that_do_not_build_leave_the_runs_for_later(redis_client, tmp_path, llm_client):
    data = definition(rate=1.0)
    data["evaluation"]["evaluators"][0]["flow"] = "tests.flows.no_such_judge"
    experiment = parse_experiment(data)
    inputs = {"message": MESSAGES[0]}
    entry = RunEntry("r-1", now_ms(), "u-1", "control", "f", inputs, {"reply": "Hi", "intent": "x"})
    redis_client.xadd(runs_key(EXPERIMENT), entry.fields())
    worker = worker_for(experiment, redis_client, llm_client, tmp_path / "w")
    try:
        first, second = worker.tick(), worker.tick()
    finally:
        worker.close()
    assert first.skipped[EXPERIMENT].startswith("its judges do not build: ")
    assert "tests.flows.no_such_judge" in first.skipped[EXPERIMENT]
    assert second.skipped == first.skipped and first.judged == 0
    assert first.lines()[0].startswith(f"{EXPERIMENT}: skipped: its judges do not build")
    assert redis_client.xlen(runs_key(EXPERIMENT)) == 1  # kept for a fixed definition


# --- inside `abtest serve` -------------------------------------------------------------------


def judge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("abtest-judge") and t.is_alive()]


def test_serve_judges_live_runs_and_stops_its_worker(env, tmp_path, redis_client) -> None:
    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory) as client:
        judge = client.app.state.judge
        assert judge is not None and judge.alive
        bodies = run_units(client, 6)
        deadline = time.monotonic() + 30
        while len(judge_outcomes(redis_client)) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    metrics = served_metrics(client)  # the worker has stopped: its counts are final
    assert {o["request_id"] for o in judge_outcomes(redis_client)} == {
        b["request_id"] for b in bodies
    }
    arm = bodies[0]["arm"]
    n = per_arm(bodies)[arm]
    line = (
        f'abtest_judge_verdicts_total{{arm="{arm}",evaluator="reply",experiment="{EXPERIMENT}",'
        f'status="ok"}} {n}.0'
    )
    assert line in metrics
    assert not judge.alive and judge_threads() == []


def test_serve_with_judge_off_starts_no_worker(env, tmp_path, redis_client) -> None:
    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory, judge="off") as client:
        assert client.app.state.judge is None and judge_threads() == []
        run_units(client, 2)
    assert len(entries(redis_client)) == 2  # runs are still kept, for `abtest judge`
    assert judge_outcomes(redis_client) == []


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ABTEST_JUDGE": "sometimes"}, "ABTEST_JUDGE must be one of on, off"),
        ({"ABTEST_RUNS_MAX_LEN": "0"}, "ABTEST_RUNS_MAX_LEN must be a positive integer"),
        (
            {"ABTEST_RUNS_RETENTION_S": "0"},
            "ABTEST_RUNS_RETENTION_S must be a number of seconds > 0",
        ),
        ({"ABTEST_RUNS_RETENTION_S": "week"}, "ABTEST_RUNS_RETENTION_S must be a number of sec"),
        ({"ABTEST_RUNS_STORE_INPUTS": "no"}, "ABTEST_RUNS_STORE_INPUTS must be one of on, off"),
    ],
)
def test_bad_judging_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_judging_settings_defaults_and_values() -> None:
    default = Settings.from_env({})
    assert (default.judge, default.runs_max_len, default.runs_retention_s) == (
        "on",
        10_000,
        604_800,
    )
    assert default.runs_store_inputs is True
    custom = Settings.from_env(
        {
            "ABTEST_JUDGE": "OFF",
            "ABTEST_RUNS_MAX_LEN": "500",
            "ABTEST_RUNS_RETENTION_S": "3600",
            "ABTEST_RUNS_STORE_INPUTS": "off",
        }
    )
    assert (custom.judge, custom.runs_max_len, custom.runs_retention_s) == ("off", 500, 3600.0)
    assert custom.runs_store_inputs is False


def test_the_stream_keys_share_the_experiment_hash_tag() -> None:
    assert runs_key(EXPERIMENT) == "abtest:{judged-replies}:runs"
    assert judge_stats_key(EXPERIMENT) == "abtest:{judged-replies}:judge:stats"
    assert stream_key(EXPERIMENT, "outcome").startswith("abtest:{judged-replies}:")


def test_the_judge_command_scores_pending_runs_once(env, tmp_path, redis_client, monkeypatch):
    """`abtest judge --once`: one pass of the worker, printed per arm and evaluator; a second
    pass finds nothing left; without online judges it is a plain error."""
    from typer.testing import CliRunner

    from abtest.cli import app

    monkeypatch.setenv("ABTEST_HOME", str(tmp_path / "cli-home"))
    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory, judge="off") as client:
        bodies = run_units(client, 6)
    runner = CliRunner()
    first = runner.invoke(app, ["judge", "--once", "-e", str(directory)])
    assert first.exit_code == 0, first.output
    assert f"judge: judging {EXPERIMENT}" in first.output
    assert f"{EXPERIMENT}: judged 6 runs" in first.output
    for arm, n in per_arm(bodies).items():
        assert f"{arm} reply: {n} scored, 0 parse failures" in first.output
    assert len(judge_outcomes(redis_client)) == 6
    second = runner.invoke(app, ["judge", "--once", "-e", str(directory)])
    assert second.exit_code == 0 and f"{EXPERIMENT}: judged 0 runs" in second.output
    assert len(judge_outcomes(redis_client)) == 6
    (tmp_path / "other").mkdir()
    unjudged = experiments_dir(tmp_path / "other", definition(rate=0.0))
    none = runner.invoke(app, ["judge", "--once", "-e", str(unjudged)])
    assert none.exit_code == 1 and "no experiment has an llm_judge evaluator" in none.output


def test_runs_the_judge_model_could_not_reach_are_judged_at_a_later_pass(
    env, tmp_path, redis_client, llm_client
) -> None:
    """The judge model down: the runs stay pending, uncounted and unscored; once it answers,
    the same worker judges them, exactly once."""
    import socket

    directory = experiments_dir(tmp_path, definition(rate=1.0))
    with api_client(tmp_path / "home", directory, judge="off") as client:
        run_units(client, 4)
    experiment = load_experiment(directory / f"{EXPERIMENT}.yaml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    with LLMClient(base_url=dead_url, api_key="x", max_retries=1, backoff_base=0.001) as dead:
        down = worker_for(experiment, redis_client, dead, tmp_path / "w", consumer="c1")
        try:
            first = down.tick()
        finally:
            down.close()
    assert first.runs == {EXPERIMENT: 0} and first.deferred == {EXPERIMENT: 4}
    assert "left 4 for a later pass" in first.lines()[0]
    assert redis_client.xpending(runs_key(EXPERIMENT), GROUP)["pending"] == 4
    assert read_judge_stats(EXPERIMENT, redis_client) == {} and judge_outcomes(redis_client) == []
    up = worker_for(experiment, redis_client, llm_client, tmp_path / "w", consumer="c1")
    try:
        second = up.tick()
        third = up.tick()
    finally:
        up.close()
    assert second.runs == {EXPERIMENT: 4} and third.runs == {EXPERIMENT: 0}
    assert redis_client.xpending(runs_key(EXPERIMENT), GROUP)["pending"] == 0
    assert len(judge_outcomes(redis_client)) == 4
    stats = read_judge_stats(EXPERIMENT, redis_client)
    assert sum(by["reply"]["ok"] + by["rambling"]["parse_failure"] for by in stats.values()) == 8
