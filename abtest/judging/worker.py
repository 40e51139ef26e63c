"""The judge worker: scores the runs stream with the online judges, as `judge:<name>` outcomes.

For every experiment with online judges (`Evaluation.online_judges`), each pass

1. trims the runs stream by age (``XTRIM MINID``, ``ABTEST_RUNS_RETENTION_S``) and acknowledges
   the pending entries that trimming (by age, or the writers' ``MAXLEN``) removed: they can no
   longer be judged, and would otherwise stay pending for ever;
2. takes entries through the consumer group ``abtest-judge``: first this consumer's own pending
   ones (a pass that failed half-way), then those pending for longer than ``claim_idle_ms`` at
   another consumer (a worker that died: ``XAUTOCLAIM``), then new ones;
3. judges each entry with each online judge (`abtest.evaluation.judges.Judges`, built once per
   experiment definition, since building drivers is slow): an ``ok`` verdict becomes an
   outcome ``judge:<name>`` of the run's unit, arm and request id, valued at the score and
   carrying the evaluator's fingerprint as ``judge_fingerprint``, appended through the event
   log (`abtest.events.SyncEventLog`: held by Redis or by its fsynced spool when it returns);
4. then, in a Lua script per day of the batch's runs, adds each verdict not counted before to
   the per-(arm, evaluator) counts in ``abtest:{<id>}:judge:stats`` (the verdict's id, like
   its outcome's event id, is recorded in ``abtest:{<id>}:judge:counted:<day>``, which expires
   a day after the retention: a run older than that is trimmed, never delivered again) and
   acknowledges the entries (``XACK``, with the last script).

Delivery is at least once, the effect exactly once: an outcome's ``event_id`` is a uuid5 of
the request id and the evaluator fingerprint, so an entry judged again (re-delivered after a
crash between steps 3 and 4, or read by a new group) is deduped by the event log, and its
verdicts by the ids the script records, so the counts count runs, not deliveries (the
Prometheus counter counts the work done: deliveries).

A run that a judge could not score because the judge model was unreachable (or rate-limited
after the client's retries) is left pending and judged again at a later pass. A parse failure
(the judge answered no score on the scale) and any other judge error (the judge flow failed,
or needed an input the runs stream did not keep) are counted, in the stats hash and in
``abtest_judge_verdicts_total``, and never recorded as a score: a zero would bias the arm.

Several workers may run at once (one per ``abtest serve`` worker process, ``abtest judge``): the
group hands each entry to one of them. The experiments come from a callable, read at every pass:
the live platform's inside ``abtest serve`` (a reload may swap it), the loaded files otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.exceptions
from prometheus_client import CollectorRegistry

from abtest.evaluation.judges import Judges, Verdict
from abtest.event_fields import EventError, Outcome, as_str
from abtest.events import AckPolicy, SyncEventLog, ack, autoclaim, ensure_group
from abtest.experiments import Evaluator, Experiment, definition_sha
from abtest.flows import FlowConfigError
from abtest.judging.runs_log import RunEntry, RunEntryError, runs_key
from abtest.llm import LLMClient
from abtest.prompts import PromptRegistry
from abtest.settings import Settings, get_settings
from abtest.telemetry import judge_verdict_counter
from analysis.evaluation import JUDGE_VERDICT_STATUSES, judge_stats_key

__all__ = [
    "GROUP",
    "JudgePass",
    "JudgeThread",
    "JudgeWorker",
    "judge_event_id",
    "judged_experiments",
]

logger = logging.getLogger("abtest.judging")

GROUP = "abtest-judge"
"""The consumer group of the judge workers on every runs stream."""


STORE_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)

_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "abtest:judge-outcome")

Entries = list[tuple[str, Any]]


def judged_experiments(experiments: Mapping[str, Experiment]) -> list[Experiment]:
    """The experiments with online judges (an `llm_judge` and a `judge_sample_rate` above 0)."""
    return [
        e for e in experiments.values() if e.evaluation is not None and e.evaluation.online_judges
    ]


DAY_MS = 86_400_000


def counted_key(experiment_id: str, day: int) -> str:
    """The hash of the verdicts on runs of one day (epoch day) already counted: verdict id
    -> its stats field."""
    return f"abtest:{{{experiment_id}}}:judge:counted:{day}"


#: KEYS: stats hash, counted hash of one day, runs stream. ARGV: group, the counted hash's
#: time to live in seconds, n, then n (verdict id, stats field) pairs, then the entry ids to
#: acknowledge. A verdict is counted once, whatever the number of deliveries of its run.
_COMMIT_SCRIPT = """
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local field = ARGV[5 + 2 * i]
  if redis.call('HSETNX', KEYS[2], ARGV[4 + 2 * i], field) == 1 then
    redis.call('HINCRBY', KEYS[1], field, 1)
  end
end
if n > 0 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
end
for i = 4 + 2 * n, #ARGV do
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[i])
end
return n
"""


def judge_event_id(request_id: str, evaluator_fingerprint: str) -> str:
    """The event id of a judge's score of one run: the same for every delivery of the run."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{request_id}:{evaluator_fingerprint}").hex


@dataclass(frozen=True)
class JudgePass:
    """What one pass did, per experiment: entries judged, entries trimmed by age, entries that
    could not be read, verdicts per (experiment, arm, evaluator) and status, and the
    experiments skipped (with why). ``more``: some stream had more entries than one pass takes."""

    runs: dict[str, int] = field(default_factory=dict)
    verdicts: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    trimmed: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    more: bool = False
    deferred: dict[str, int] = field(default_factory=dict)

    @property
    def judged(self) -> int:
        """Entries judged in this pass, over every experiment."""
        return sum(self.runs.values())

    def count(self, experiment_id: str, arm: str, evaluator: str, status: str = "ok") -> int:
        """Verdicts of one status for one (experiment, arm, evaluator) in this pass."""
        return self.verdicts.get((experiment_id, arm, evaluator), {}).get(status, 0)

    def lines(self) -> list[str]:
        """Human-readable lines: per experiment what was judged, then per arm and evaluator
        the scores, parse failures and judge errors."""
        lines: list[str] = []
        for experiment_id in sorted(set(self.runs) | set(self.skipped)):
            if experiment_id in self.skipped:
                lines.append(f"{experiment_id}: skipped: {self.skipped[experiment_id]}")
                continue
            lines.append(self._summary(experiment_id))
            for (owner, arm, evaluator), counts in sorted(self.verdicts.items()):
                if owner == experiment_id:
                    lines.append(
                        f"  {arm} {evaluator}: {counts.get('ok', 0)} scored, "
                        f"{counts.get('parse_failure', 0)} parse failures, "
                        f"{counts.get('judge_error', 0)} judge errors"
                    )
        return lines or ["no experiment has online judges"]

    def _summary(self, experiment_id: str) -> str:
        text = f"{experiment_id}: judged {self.runs.get(experiment_id, 0)} runs"
        if self.trimmed.get(experiment_id):
            text += f", trimmed {self.trimmed[experiment_id]} older than the retention"
        if self.unreadable.get(experiment_id):
            text += f", skipped {self.unreadable[experiment_id]} unreadable entries"
        if self.deferred.get(experiment_id):
            text += (
                f", left {self.deferred[experiment_id]} for a later pass (the judge model "
                "could not be reached)"
            )
        return text


@dataclass
class _Progress:
    """A pass's running totals (frozen into a `JudgePass` at its end)."""

    runs: Tally[str] = field(default_factory=Tally)
    verdicts: Tally[tuple[str, str, str, str]] = field(default_factory=Tally)
    trimmed: dict[str, int] = field(default_factory=dict)
    unreadable: Tally[str] = field(default_factory=Tally)
    skipped: dict[str, str] = field(default_factory=dict)
    more: bool = False
    deferred: Tally[str] = field(default_factory=Tally)

    def frozen(self) -> JudgePass:
        verdicts: dict[tuple[str, str, str], dict[str, int]] = {}
        for (experiment_id, arm, evaluator, status), n in self.verdicts.items():
            counts = verdicts.setdefault(
                (experiment_id, arm, evaluator), dict.fromkeys(JUDGE_VERDICT_STATUSES, 0)
            )
            counts[status] += n
        return JudgePass(
            runs=dict(self.runs),
            verdicts=verdicts,
            trimmed=self.trimmed,
            unreadable=dict(self.unreadable),
            skipped=self.skipped,
            more=self.more,
            deferred=dict(self.deferred),
        )


@dataclass(frozen=True)
class _Built:
    """The judges of one experiment definition, or why they do not build."""

    sha: str
    judges: Judges | None
    problem: str = ""


def new_consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class JudgeWorker:
    """The online judges of one process, on a blocking Redis (or Redis Cluster) client.

    Parameters
    ----------
    client
        The store (``abtest.store.sync_client``).
    experiments
        Returns the definitions; called at every pass.
    llm_client
        The judges' model client (None: an ``LLMClient()`` from the environment). Borrowed:
        the caller closes it.
    settings
        ``ABTEST_RUNS_RETENTION_S``, ``ABTEST_STREAM_MAXLEN``, ``ABTEST_ACK`` and
        ``ABTEST_HOME`` (the outcome spool, ``judge-spool.jsonl``); default: the environment's.
    prompt_registry
        For judges whose prompts are bound to the prompt registry.
    consumer
        This worker's consumer name (default: unique per process).
    batch
        Entries judged (concurrently) and acknowledged together.
    max_per_pass
        Entries of one stream one pass takes at most (the rest waits for the next pass).
    claim_idle_ms
        How long another consumer's entry stays pending before this worker takes it over.
    concurrency
        Judge calls in flight at once.
    verdicts
        The Prometheus counter of verdicts (``Telemetry.judge_verdicts`` inside the service;
        default: one on a private registry).
    clock
        Epoch seconds, for the retention.
    """

    def __init__(
        self,
        client: Any,
        experiments: Callable[[], Mapping[str, Experiment]],
        llm_client: LLMClient | None = None,
        *,
        settings: Settings | None = None,
        prompt_registry: PromptRegistry | None = None,
        consumer: str | None = None,
        batch: int = 20,
        max_per_pass: int = 500,
        claim_idle_ms: int = 300_000,
        concurrency: int = 4,
        verdicts: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = settings or get_settings()
        self.client = client
        self.experiments = experiments
        self.llm_client = llm_client
        self.prompt_registry = prompt_registry
        self.consumer = consumer or new_consumer_name()
        self.retention_s = settings.runs_retention_s
        self.batch = batch
        self.max_per_pass = max_per_pass
        self.claim_idle_ms = claim_idle_ms
        self.clock = clock
        self.verdicts = verdicts or judge_verdict_counter(CollectorRegistry())
        self.event_log = SyncEventLog(
            client,
            settings.home / "judge-spool.jsonl",
            maxlen=settings.stream_maxlen,
            ack=AckPolicy.from_settings(settings),
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="abtest-judge")
        self._built: dict[str, _Built] = {}
        self._streams: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    # --- running -------------------------------------------------------------------------------

    def tick(self, stop: threading.Event | None = None) -> JudgePass:
        """One pass over every experiment with online judges (see the module docstring). A
        store error in one experiment is logged and the others go on; `stop` ends the pass
        between batches (what is not acknowledged is taken again later)."""
        with self._lock:
            progress = _Progress()
            for experiment in judged_experiments(self.experiments()):
                if stop is not None and stop.is_set():
                    break
                try:
                    self._pass(experiment, progress, stop)
                except STORE_ERRORS as exc:
                    logger.warning("judge: experiment %s skipped this pass: %s", experiment.id, exc)
                    progress.skipped[experiment.id] = f"the store failed: {exc}"
            return progress.frozen()

    def run_forever(
        self,
        stop_event: threading.Event | None = None,
        tick_s: float = 1.0,
        on_pass: Callable[[JudgePass], None] | None = None,
    ) -> None:
        """Pass after pass until `stop_event` is set (or interrupted), waiting `tick_s` between
        passes unless a stream had more entries than one pass takes; store errors are logged
        and retried at the next pass. Closes the worker on the way out."""
        stop = stop_event or threading.Event()
        try:
            while not stop.is_set():
                report = self._guarded_tick(stop)
                if report is not None and on_pass is not None:
                    on_pass(report)
                if report is None or not report.more:
                    stop.wait(tick_s)
        finally:
            self.close()

    def close(self) -> None:
        """Finish the running pass, leave the group's consumer list if nothing is pending
        here, and flush the outcome spool. The client and the LLM client stay open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for key in self._streams:
                self._leave_group(key)
            self._pool.shutdown(wait=True)
            self.event_log.close()

    def _guarded_tick(self, stop: threading.Event) -> JudgePass | None:
        try:
            return self.tick(stop)
        except STORE_ERRORS as exc:
            logger.warning("judge: pass failed, retrying: %s", exc)
        except Exception:  # a bug must not end a long-running worker silently
            logger.exception("judge: pass failed, retrying")
        return None

    # --- one experiment ------------------------------------------------------------------------

    def _pass(
        self, experiment: Experiment, progress: _Progress, stop: threading.Event | None
    ) -> None:
        built = self._judges(experiment)
        judges = built.judges
        if judges is None:
            progress.skipped[experiment.id] = f"its judges do not build: {built.problem}"
            return
        key = runs_key(experiment.id)
        # Every pass: a stream deleted and written again has lost its group.
        ensure_group(self.client, key, GROUP, "0")
        self._streams.add(key)
        progress.runs.setdefault(experiment.id, 0)
        progress.trimmed[experiment.id] = self._trim(key)
        self._ack_removed(key)
        taken = 0
        for entries in self._entries(key):
            taken += len(entries)
            self._judge_batch(experiment, judges, key, entries, progress)
            if stop is not None and stop.is_set():
                return
        progress.more = progress.more or taken >= self.max_per_pass

    def _judges(self, experiment: Experiment) -> _Built:
        """The experiment's judges, built on first use and again when its definition changes
        (a judge that does not build is logged once per definition, not at every pass)."""
        sha = definition_sha(experiment)
        built = self._built.get(experiment.id)
        if built is None or built.sha != sha:
            try:
                judges = Judges(
                    experiment, llm_client=self.llm_client, prompt_registry=self.prompt_registry
                )
                built = _Built(sha, judges)
            except FlowConfigError as exc:
                logger.error("judge: the judges of %s do not build: %s", experiment.id, exc)
                built = _Built(sha, None, str(exc))
            self._built[experiment.id] = built
        return built

    def _trim(self, key: str) -> int:
        """Remove entries older than the retention (exact MINID: the stream is small)."""
        min_id = max(0, int((self.clock() - self.retention_s) * 1000))
        return int(self.client.xtrim(key, minid=min_id, approximate=False))

    def _ack_removed(self, key: str) -> int:
        """Acknowledge pending entries below the stream's first entry: trimming removed them."""
        first = self.client.xrange(key, min="-", max="+", count=1)
        upper = "(" + as_str(first[0][0]) if first else "+"
        removed = 0
        while True:
            pending = self.client.xpending_range(key, GROUP, min="-", max=upper, count=1000)
            ids = [as_str(p["message_id"]) for p in pending]
            removed += ack(self.client, key, GROUP, *ids)
            if len(ids) < 1000:
                break
        if removed:
            logger.warning("judge: %d entries of %s were trimmed before being judged", removed, key)
        return removed

    def _entries(self, key: str) -> Iterator[Entries]:
        """Batches for this consumer: its own pending entries, then entries idle longer than
        ``claim_idle_ms`` at other consumers, then new ones; ``max_per_pass`` at most."""
        taken = 0
        for source in (self._own_pending, self._claimed, self._new):
            for entries in source(key):
                taken += len(entries)
                yield entries
                if taken >= self.max_per_pass:
                    return

    def _own_pending(self, key: str) -> Iterator[Entries]:
        start = "0-0"
        while True:
            reply = self.client.xreadgroup(GROUP, self.consumer, {key: start}, count=self.batch)
            entries = [(as_str(i), f) for i, f in reply[0][1]] if reply else []
            if not entries:
                return
            yield entries
            start = entries[-1][0]

    def _claimed(self, key: str) -> Iterator[Entries]:
        start = "0-0"
        while True:
            start, entries = autoclaim(
                self.client,
                key,
                GROUP,
                self.consumer,
                self.claim_idle_ms,
                start,
                count=self.batch,
                raw=True,
            )
            if entries:
                yield entries
            if start == "0-0":
                return

    def _new(self, key: str) -> Iterator[Entries]:
        while True:
            reply = self.client.xreadgroup(GROUP, self.consumer, {key: ">"}, count=self.batch)
            entries = [(as_str(i), f) for i, f in reply[0][1]] if reply else []
            if not entries:
                return
            yield entries

    def _judge_batch(
        self,
        experiment: Experiment,
        judges: Judges,
        key: str,
        entries: Entries,
        progress: _Progress,
    ) -> None:
        """Judge a batch, append the scores, then count and acknowledge it. A run that a judge
        could not score because its model was unreachable is neither counted nor acknowledged:
        it stays pending, and this consumer judges it again at its next pass."""
        runs = self._readable(experiment.id, entries, progress)
        evaluation = experiment.evaluation
        assert evaluation is not None
        tasks = [(run, evaluator) for run in runs for evaluator in evaluation.online_judges]
        verdicts = list(self._pool.map(lambda task: _verdict(judges, *task), tasks))
        retry = {run.request_id for (run, _), v in zip(tasks, verdicts, strict=True) if v.retry}
        outcomes = []
        counts: Tally[tuple[str, str, str]] = Tally()
        counted: dict[int, list[tuple[str, str]]] = {}
        for (run, evaluator), verdict in zip(tasks, verdicts, strict=True):
            outcome = _score(experiment.id, run, evaluator, verdict)
            if outcome is not None:
                outcomes.append(outcome)
            if run.request_id in retry:
                continue  # judged again at a later pass: its scores are deduped then
            status = "judge_error" if verdict.status == "ok" and outcome is None else verdict.status
            counts[(run.arm, evaluator.name, status)] += 1
            verdict_id = judge_event_id(run.request_id, verdict.fingerprint)
            day = counted.setdefault(run.ts // DAY_MS, [])
            day.append((verdict_id, f"{run.arm}:{evaluator.name}:{status}"))
        self.event_log.append(outcomes)
        done = [entry_id for entry_id, fields in entries if _request_id(fields) not in retry]
        self._commit(experiment.id, key, done, counted)
        if retry:
            logger.warning(
                "judge: %d runs of %s left pending: the judge model could not be reached",
                len(retry),
                experiment.id,
            )
        progress.deferred[experiment.id] += len(retry)
        progress.runs[experiment.id] += len(runs) - len(retry)
        for (arm, name, status), n in counts.items():
            progress.verdicts[(experiment.id, arm, name, status)] += n
            self.verdicts.labels(experiment.id, arm, name, status).inc(n)

    def _readable(
        self, experiment_id: str, entries: Entries, progress: _Progress
    ) -> list[RunEntry]:
        """The entries that parse; the others are logged and counted (and acknowledged with
        the batch: no pass could ever judge them)."""
        runs = []
        for entry_id, fields in entries:
            try:
                runs.append(RunEntry.parse(fields))
            except RunEntryError as exc:
                logger.warning("judge: entry %s of %s skipped: %s", entry_id, experiment_id, exc)
                progress.unreadable[experiment_id] += 1
        return runs

    def _commit(
        self,
        experiment_id: str,
        key: str,
        entry_ids: Sequence[str],
        counted: Mapping[int, Sequence[tuple[str, str]]],
    ) -> None:
        """Count the verdicts not counted before, one script per day of runs, and acknowledge
        the entries with the last (a crash in between re-delivers them, and the counted ids
        keep the counts exact)."""
        ttl_s = int(self.retention_s) + DAY_MS // 1000
        days = sorted(counted) or [0]
        for index, day in enumerate(days):
            verdicts = counted.get(day, ())
            keys = (judge_stats_key(experiment_id), counted_key(experiment_id, day), key)
            pairs = [value for verdict in verdicts for value in verdict]
            acked = entry_ids if index == len(days) - 1 else ()
            self.client.eval(
                _COMMIT_SCRIPT, len(keys), *keys, GROUP, ttl_s, len(verdicts), *pairs, *acked
            )

    def _leave_group(self, key: str) -> None:
        """Delete this consumer from the group when it holds no pending entry (deleting it
        otherwise would drop them), so dead names do not pile up in ``XINFO CONSUMERS``."""
        try:
            summary = self.client.xpending_range(
                key, GROUP, min="-", max="+", count=1, consumername=self.consumer
            )
            if not summary:
                self.client.xgroup_delconsumer(key, GROUP, self.consumer)
        except STORE_ERRORS as exc:
            logger.debug("judge: could not leave the group of %s: %s", key, exc)


def _verdict(judges: Judges, run: RunEntry, evaluator: Evaluator) -> Verdict:
    """One judge's verdict on one run: its output named by the evaluator (default: the first)."""
    output = evaluator.output or next(iter(run.outputs), None)
    if output is None or output not in run.outputs:
        detail = f"the run has no output '{output}'" if output else "the run has no output"
        return Verdict(None, "judge_error", detail, judges.fingerprint(evaluator.name))
    return judges.judge(
        evaluator.name, output=run.outputs[output], inputs=run.inputs or {}, row_id=run.request_id
    )


def _request_id(fields: Mapping[Any, Any]) -> str:
    """The request id of a raw stream entry ("" when it has none: it is acknowledged)."""
    for name, value in fields.items():
        if as_str(name) == "request_id":
            return as_str(value)
    return ""


def _score(
    experiment_id: str, run: RunEntry, evaluator: Evaluator, verdict: Verdict
) -> Outcome | None:
    """The outcome recording an ``ok`` verdict (None otherwise, or when the entry names a unit
    or arm no event may carry), dated at the run, so it is never before the run's exposure."""
    if verdict.status != "ok" or verdict.score is None:
        return None
    try:
        return Outcome(
            experiment_id=experiment_id,
            unit_id=run.unit_id,
            arm=run.arm,
            metric=evaluator.metric,
            value=verdict.score,
            request_id=run.request_id,
            event_id=judge_event_id(run.request_id, verdict.fingerprint),
            ts=run.ts,
            judge_fingerprint=verdict.fingerprint,
        )
    except EventError as exc:
        logger.warning("judge: score of run %s not recorded: %s", run.request_id, exc)
        return None


class JudgeThread:
    """`JudgeWorker.run_forever` on a thread of its own: the background judge of ``abtest
    serve`` (judging makes blocking LLM calls, so it stays off the event loop and its
    default executor, which runs the flows)."""

    def __init__(self, worker: JudgeWorker, tick_s: float = 1.0) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=worker.run_forever,
            kwargs={"stop_event": self._stop, "tick_s": tick_s},
            name="abtest-judge",
            daemon=True,
        )

    def start(self) -> JudgeThread:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask the worker to stop after its current batch and wait up to `timeout_s`; True
        when it has stopped (and closed)."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
