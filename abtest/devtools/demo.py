"""`abtest demo`: the main job end to end, from nothing, with every part of the platform.

1. Embedded defaults: the embedded Redis (unless `REDIS_URL`) and the local model server
   (unless `OPENAI_BASE_URL`/`OPENAI_API_KEY`).
2. Every experiment's flows are built and validated; the API starts on a free port.
3. Each demo experiment with an `evaluation:` section is first evaluated offline on its
   dataset, as `abtest eval` does (`reports/<experiment>-eval.html`, JSON and per-row file).
4. For each demo experiment, N simulated users each send run inputs through
   `POST /v1/experiments/{id}/run`, then post feedback through `POST /v1/outcomes`, as a real
   client would. The API's judge worker scores the sampled runs with the online judges.
5. The analysis reads the streams back and writes `reports/<experiment>.html`, with the
   offline evaluation's lifts next to the online judges' lifts.

The demo knows no particular flow: a flow takes part when its package has a `simulation`
module (`<flow>.simulation`) with `FEEDBACK_METRIC`, `sample_inputs(rng) -> inputs` and
`feedback_probability(inputs, outputs) -> float`, its documented preference model. The truth
is therefore known, and printed beside the analysis' verdict.
"""

from __future__ import annotations

import base64
import importlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from abtest import store
from abtest.experiments import Experiment


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs: which experiments (default: every running experiment whose flow has
    a simulation), how many users each, how concurrently, where the reports go."""

    experiments_dir: Path = Path("experiments")
    experiment_ids: tuple[str, ...] = ()
    users: int = 2000
    concurrency: int = 8
    seed: int = 2026
    reports_dir: Path = Path("reports")
    fresh: bool = True


@dataclass(frozen=True)
class DemoOutcome:
    """What a demo run produced for one experiment."""

    experiment_id: str
    metric: str
    report_path: Path
    summary: str
    table: object
    srm_p_value: float
    true_rates: dict[str, float]
    runs_ok: int
    runs_failed: int
    seconds: float
    users_skipped: int = 0
    stopped: tuple[str, ...] = ()
    offline: OfflineOutcome | None = None
    offline_vs_online: object = None
    #: Live runs the online judges scored, per evaluator and status ("ok", "parse_failure"...).
    judged: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class OfflineOutcome:
    """What the offline evaluation before the online part produced for one experiment."""

    summary: object
    report_path: Path
    flows_run: int
    answers_cached: int
    llm_calls: int
    bad_rows: tuple[str, ...]
    seconds: float


def simulation_of(experiment: Experiment) -> ModuleType | None:
    """The `simulation` module of the experiment's flow package, None when it has none."""
    base = experiment.modules_for(experiment.arms[0])[0]
    try:
        return importlib.import_module(f"{base}.simulation")
    except ModuleNotFoundError as exc:
        if exc.name is not None and base.startswith(exc.name.rsplit(".simulation", 1)[0]):
            return None
        raise


def demo_experiments(
    experiments: Mapping[str, Experiment], wanted: Sequence[str]
) -> list[tuple[Experiment, ModuleType]]:
    """(experiment, simulation) pairs the demo runs; raises `ValueError` for a wanted
    experiment that does not exist or has no simulation."""
    chosen = []
    for experiment_id, experiment in experiments.items():
        if wanted and experiment_id not in wanted:
            continue
        simulation = simulation_of(experiment)
        if simulation is None:
            if wanted:
                raise ValueError(
                    f"experiment '{experiment_id}': its flow has no simulation module "
                    f"('{experiment.modules_for(experiment.arms[0])[0]}.simulation')"
                )
            continue
        if wanted or experiment.status == "running":
            chosen.append((experiment, simulation))
    missing = sorted(set(wanted) - set(experiments))
    if missing:
        raise ValueError(f"unknown experiment(s): {', '.join(missing)}")
    return chosen


def _json_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Run inputs as the JSON API takes them (bytes as base64)."""
    return {
        name: base64.b64encode(value).decode() if isinstance(value, bytes) else value
        for name, value in inputs.items()
    }


def _simulate_user(
    http: httpx.Client, experiment_id: str, simulation: ModuleType, index: int, seed: int
) -> tuple[str, float] | None:
    """One user: a run, then feedback. Returns the user's arm and true feedback probability,
    or None when the run failed."""
    rng = random.Random(f"{seed}:{experiment_id}:{index}")
    unit_id = f"demo-user-{index:05d}"
    inputs = simulation.sample_inputs(rng)
    mood = rng.choice(MOODS)
    _post_history(http, experiment_id, unit_id, simulation.FEEDBACK_METRIC, mood, rng)
    response = http.post(
        f"/v1/experiments/{experiment_id}/run",
        json={"unit_id": unit_id, "inputs": _json_inputs(inputs)},
    )
    if response.status_code != 200:
        return None
    body = response.json()
    probability = _with_mood(simulation.feedback_probability(inputs, body["outputs"]), mood)
    liked = rng.random() < probability
    feedback = {
        "experiment_id": experiment_id,
        "unit_id": unit_id,
        "metric": simulation.FEEDBACK_METRIC,
        "value": 1.0 if liked else 0.0,
        "request_id": body["request_id"],
    }
    http.post("/v1/outcomes", json=feedback).raise_for_status()
    return body["arm"], probability


#: Each simulated user's persistent propensity to like answers, added to the probability the
#: flow's preference model gives: some users are easy to please, some hard. It shows in their
#: feedback before the experiment too, which is what CUPED uses to narrow the intervals.
MOODS = (-0.3, 0.0, 0.3)
#: Feedback each user gave in the week before the experiment (on the old flow), at this rate
#: plus the user's mood.
HISTORY_EVENTS, HISTORY_RATE = 6, 0.6


def _with_mood(probability: float, mood: float) -> float:
    return min(0.98, max(0.02, probability + mood))


def _post_history(
    http: httpx.Client,
    experiment_id: str,
    unit_id: str,
    metric: str,
    mood: float,
    rng: random.Random,
) -> None:
    """The user's feedback from the week before its first exposure (pre-exposure data)."""
    now = int(time.time() * 1000)
    rate = _with_mood(HISTORY_RATE, mood)
    history = [
        {
            "experiment_id": experiment_id,
            "unit_id": unit_id,
            "metric": metric,
            "value": 1.0 if rng.random() < rate else 0.0,
            "ts": now - (day + 1) * 86_400_000,
        }
        for day in range(HISTORY_EVENTS)
    ]
    http.post("/v1/outcomes", json=history).raise_for_status()


def _clear_experiment(experiment_id: str, client: Any) -> None:
    """Forget everything stored for the experiment: its streams, the arms' runtime state and
    audit log, the monitor's statistics and the fingerprint manifests. They all carry the
    experiment's hash tag, so one pattern finds them (on every node of a Redis Cluster)."""
    keys = list(client.scan_iter(match=f"abtest:{{{experiment_id}}}:*", count=1000))
    for key in keys:
        client.delete(key)


def run_demo(
    settings: DemoSettings,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_eval: Callable[[str], None] | None = None,
) -> list[DemoOutcome]:
    """Run the whole demo; `on_eval(experiment_id)` is called before each offline evaluation,
    `on_start(experiment_id, users)` before each experiment's users and `progress(n)` after
    each simulated user."""
    from abtest.api import create_app
    from abtest.devtools.local import ensure_llm_endpoint
    from abtest.devtools.serving import serve_app_in_thread
    from abtest.platform import Platform, platform_options
    from abtest.prompts import PromptRegistry
    from abtest.settings import Settings

    llm = ensure_llm_endpoint()
    try:
        # parsed once, after the local model server (if any) set OPENAI_BASE_URL
        service = replace(Settings.from_env(), experiments_dir=settings.experiments_dir)
        url = store.redis_url(service)
        platform = Platform.load(
            settings.experiments_dir,
            prompt_registry=PromptRegistry(store.sync_client(url)),
            **platform_options(service),
        )
        chosen = demo_experiments(platform.experiments, settings.experiment_ids)
        if not chosen:
            raise ValueError(
                f"no running experiment under {settings.experiments_dir} has a flow with a "
                "simulation module"
            )
        offline = {}
        for experiment, _ in chosen:
            if settings.fresh:
                _clear_experiment(experiment.id, store.sync_client(url))
            if experiment.evaluation is not None and experiment.evaluation.dataset:
                if on_eval is not None:
                    on_eval(experiment.id)
                offline[experiment.id] = _evaluate_offline(experiment, settings, url)
        app = create_app(service, platform=platform)
        outcomes = []
        with serve_app_in_thread(app, ready_path="/health", name="abtest-demo-api") as api:
            with httpx.Client(base_url=api.root_url, timeout=60) as http:
                for experiment, simulation in chosen:
                    if on_start is not None:
                        on_start(experiment.id, settings.users)
                    outcomes.append(
                        _run_experiment(
                            http,
                            experiment,
                            simulation,
                            settings,
                            url,
                            progress,
                            offline.get(experiment.id),
                        )
                    )
    finally:
        if llm is not None:
            llm.stop()
    return outcomes


def _evaluate_offline(experiment: Experiment, settings: DemoSettings, url: str) -> OfflineOutcome:
    """`abtest eval` of the experiment before its users arrive: its reports go beside the
    online ones, and its summary into the store, where the online report finds it."""
    from abtest.evaluation.cache import EvalCache
    from abtest.evaluation.outputs import write_outputs
    from abtest.evaluation.runner import evaluate_experiment
    from abtest.prompts import PromptRegistry

    client = store.sync_client(url)
    done = evaluate_experiment(
        experiment,
        settings.experiments_dir,
        client,
        prompt_registry=PromptRegistry(client),
        concurrency=settings.concurrency,
    )
    written = write_outputs(
        experiment, done, settings.reports_dir, EvalCache(client, experiment.id)
    )
    return OfflineOutcome(
        summary=written.summary,
        report_path=written.html_path,
        flows_run=done.flows_run,
        answers_cached=done.answers_cached,
        llm_calls=done.llm_calls,
        bad_rows=tuple(done.bad_rows),
        seconds=done.seconds,
    )


#: How long the demo waits for the online judges to score the last sampled runs.
JUDGE_DRAIN_S = 60.0


def _drain_judges(experiment: Experiment, url: str) -> dict[str, dict[str, int]]:
    """Judge the sampled runs the service's judge worker has not scored yet, so the report
    has every score: passes of a worker of our own (sharing the work through the consumer
    group) until one finds nothing left. Returns the judges' tallies per evaluator."""
    if experiment.evaluation is None or not experiment.evaluation.online_judges:
        return {}
    from abtest.judging.runs_log import runs_key
    from abtest.judging.worker import JudgeWorker
    from analysis.evaluation import read_judge_stats

    client = store.sync_client(url)
    worker = JudgeWorker(client, lambda: {experiment.id: experiment}, claim_idle_ms=2_000)
    deadline = time.monotonic() + JUDGE_DRAIN_S
    try:
        idle = 0
        while idle < 2 and time.monotonic() < deadline:
            quiet = worker.tick().judged == 0 and _group_done(client, runs_key(experiment.id))
            idle = idle + 1 if quiet else 0
            time.sleep(0.2 if idle else 0.0)
    finally:
        worker.close()
    tallies: dict[str, dict[str, int]] = {}
    for by_evaluator in read_judge_stats(experiment.id, client).values():
        for evaluator, counts in by_evaluator.items():
            mine = tallies.setdefault(evaluator, {})
            for status, count in counts.items():
                mine[status] = mine.get(status, 0) + count
    return tallies


def _group_done(client: Any, key: str) -> bool:
    """Whether the judges' consumer group has taken every entry of the stream (no lag) and
    acknowledged it (nothing pending with the service's worker either)."""
    from abtest.event_fields import as_str
    from abtest.judging.worker import GROUP

    for group in client.xinfo_groups(key):
        if as_str(group.get("name", "")) == GROUP:
            return not group.get("pending") and not group.get("lag")
    return False


#: Users simulated after the monitor stopped every treatment arm of a safe rollout: enough
#: to show their units getting the control's config, then the demo moves on.
TAIL_USERS = 50


def _simulate_users(
    pool: ThreadPoolExecutor,
    user: Callable[[int], tuple[str, float] | None],
    record: Callable[[tuple[str, float] | None], None],
    experiment: Experiment,
    settings: DemoSettings,
    url: str,
) -> int:
    """Simulate the experiment's users; returns how many. An experiment with a `safety:`
    section runs in batches, and once the monitor has stopped every treatment arm, the rest
    would all get the control's config: after `TAIL_USERS` more the demo moves on."""
    if experiment.safety is None:
        for answer in pool.map(user, range(settings.users)):
            record(answer)
        return settings.users
    from abtest.state_store import read_states

    batch = 4 * settings.concurrency
    done, last = 0, settings.users
    treatments = experiment.arm_names[1:]
    while done < last:
        for answer in pool.map(user, range(done, min(done + batch, last))):
            record(answer)
        done = min(done + batch, last)
        if last == settings.users:
            states = read_states(store.sync_client(url), experiment.id, experiment.arm_names)
            if all(states[arm].stopped for arm in treatments):
                last = min(settings.users, done + TAIL_USERS)
    return done


def _run_experiment(
    http: httpx.Client,
    experiment: Experiment,
    simulation: ModuleType,
    settings: DemoSettings,
    url: str,
    progress: Callable[[int], None] | None,
    offline: OfflineOutcome | None = None,
) -> DemoOutcome:
    from analysis.evaluation import offline_vs_online
    from analysis.report import analyze_stored, render_report

    started = time.perf_counter()
    failed = 0
    truth: dict[str, list[float]] = {arm: [] for arm in experiment.arm_names}

    def user(index: int) -> tuple[str, float] | None:
        return _simulate_user(http, experiment.id, simulation, index, settings.seed)

    def record(answer: tuple[str, float] | None) -> None:
        nonlocal failed
        if answer is None:
            failed += 1
        else:
            truth[answer[0]].append(answer[1])
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(settings.concurrency) as pool:
        done = _simulate_users(pool, user, record, experiment, settings, url)
    if progress is not None:
        progress(settings.users - done)
    judged = _drain_judges(experiment, url)
    result = analyze_stored(experiment, store.sync_client(url))
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    report_path = settings.reports_dir / f"{experiment.id}.html"
    report_path.write_text(render_report(result), encoding="utf-8")
    return DemoOutcome(
        experiment_id=experiment.id,
        metric=simulation.FEEDBACK_METRIC,
        report_path=report_path,
        summary=result.summary(),
        table=result.table,
        srm_p_value=result.srm_p_value,
        true_rates={arm: sum(p) / len(p) for arm, p in truth.items() if p},
        runs_ok=sum(len(p) for p in truth.values()),
        runs_failed=failed,
        seconds=time.perf_counter() - started,
        users_skipped=settings.users - done,
        stopped=tuple(
            f"{arm} stopped by the {state.actor} after {result.units_per_arm.get(arm, 0):,} "
            f"of its units: {state.reason}"
            for arm, state in result.arm_states.items()
            if state.stopped
        ),
        offline=offline,
        offline_vs_online=None if offline is None else offline_vs_online(offline.summary, result),
        judged=judged,
    )
