"""Prometheus metrics of the API: requests and latency per route, events, spool, LLM errors,
online judging.

Each app owns its registry (so tests and several apps in one process never collide); with
several uvicorn workers each worker reports its own series, told apart by the scraper's
`instance` label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Telemetry", "judge_verdict_counter"]


class EventLogCounters(Protocol):
    spool_depth: int
    batches_written: int
    events_written: int


def judge_verdict_counter(registry: CollectorRegistry) -> Counter:
    """The online judges' verdicts on `registry`: the service's, or a standalone worker's."""
    return Counter(
        "abtest_judge_verdicts_total",
        "Online judge verdicts by experiment, arm, evaluator and status (ok: a score was "
        "recorded; parse_failure: the judge answered no score; judge_error: the judge failed).",
        ["experiment", "arm", "evaluator", "status"],
        registry=registry,
    )


class Telemetry:
    """The service's metrics, registered on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "abtest_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "abtest_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.events = Counter(
            "abtest_events_accepted_total",
            "Events acknowledged to clients (held by Redis or the spool), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.exposures_accepted = self.events.labels("exposure")
        self.outcomes_accepted = self.events.labels("outcome")
        self.llm_errors = Counter(
            "abtest_llm_errors_total",
            "Flow runs that failed in the LLM call after retries, by experiment and arm.",
            ["experiment", "arm"],
            registry=self.registry,
        )
        self.spool_depth = Gauge(
            "abtest_spool_depth",
            "Events waiting in the local spool for Redis to come back.",
            registry=self.registry,
        )
        self.redis_batches = Gauge(
            "abtest_event_batches_written",
            "Pipelined round trips the event log sent to Redis (group commits and replays).",
            registry=self.registry,
        )
        self.redis_events = Gauge(
            "abtest_events_written",
            "Events Redis accepted as new through the event log (events / batches = batch size).",
            registry=self.registry,
        )
        self.reloads = Counter(
            "abtest_reloads_total",
            "Experiment reloads by result.",
            ["result"],
            registry=self.registry,
        )
        self.client_exposure_mismatches = Counter(
            "abtest_client_exposure_mismatches_total",
            "Client-reported exposures refused because the server assigns another arm.",
            ["experiment"],
            registry=self.registry,
        )
        self.runs_logged = Counter(
            "abtest_runs_logged_total",
            "Sampled live runs offered to the runs stream for online judging, by experiment "
            "and result (stored; failed: not kept, the run itself was answered).",
            ["experiment", "result"],
            registry=self.registry,
        )
        self.judge_verdicts = judge_verdict_counter(self.registry)
        self.arm_stopped = Gauge(
            "abtest_arm_stopped",
            "1 when a safe rollout or an admin stopped the arm, else 0.",
            ["experiment", "arm"],
            registry=self.registry,
        )

    def set_arm_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Every arm's runtime state as `abtest_arm_stopped` (experiment -> arm -> ArmState)."""
        for experiment_id, arms in states.items():
            for arm, state in arms.items():
                self.arm_stopped.labels(experiment_id, arm).set(1.0 if state.stopped else 0.0)

    def watch_event_log(self, event_log: EventLogCounters) -> None:
        """Read the event log's spool depth and write counters at every scrape."""
        self.spool_depth.set_function(lambda: float(event_log.spool_depth))
        self.redis_batches.set_function(lambda: float(event_log.batches_written))
        self.redis_events.set_function(lambda: float(event_log.events_written))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency (label children cached: this runs per request)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
