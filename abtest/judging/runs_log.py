"""The runs stream: the live runs kept for online judging (DESIGN.md, Events and Evaluation).

``abtest:{<experiment_id>}:runs`` carries the experiment's hash tag, so on a Redis Cluster it
lives on the shard of the experiment's other streams. Each entry is one successful run of a
unit in the experiment, with these fields (all strings):

``request_id``, ``ts`` (epoch ms), ``unit_id``, ``arm``, ``flow_fingerprint``
    the run, as its exposure and outcomes name it;
``inputs``
    the run's inputs as a JSON object, bytes inputs replaced by ``{"bytes": n, "sha256": ...}``
    (`abtest.evaluation.dataset.json_safe`: a PDF is never copied into Redis); the empty string
    when ``ABTEST_RUNS_STORE_INPUTS=off``;
``outputs``
    the run's outputs as a JSON object.

Why it looks the way it does:

* Judging costs an LLM call per judge, so it happens later, in the judge worker
  (`abtest.judging.worker`), never on the request path. The API only decides, in microseconds,
  whether a run is kept (`keeps`), and hands the write to a background task: a run's answer
  never waits for the runs stream and never fails because of it. A write that fails is logged
  and counted (``abtest_runs_logged_total{result="failed"}``), and the run is simply not judged.
* Sampling is a pure function of the run's request id (`is_sampled`), so every worker and
  replica keeps the same runs, and anyone can tell afterwards whether a run was due.
* The stream is bounded twice: by count, with an approximate ``MAXLEN`` of
  ``ABTEST_RUNS_MAX_LEN`` on every write (Redis then trims whole radix-tree nodes, so the stream
  may exceed the cap by up to one node, 100 entries by default, which keeps trimming cheap), and
  by age, by the judge worker (``ABTEST_RUNS_RETENTION_S``).
* Inputs can hold personal data: ``ABTEST_RUNS_STORE_INPUTS=off`` keeps outputs only; judges
  that read a flow input then record a judge error for those runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions
from pydantic import BaseModel

from abtest.evaluation.dataset import json_safe
from abtest.event_fields import as_str, now_ms
from abtest.experiments import Experiment
from abtest.platform import Run

__all__ = [
    "RUN_FIELDS",
    "RunEntry",
    "RunEntryError",
    "RunsLog",
    "is_sampled",
    "keeps",
    "runs_key",
]

logger = logging.getLogger("abtest.judging")

RUN_FIELDS: tuple[str, ...] = (
    "request_id",
    "ts",
    "unit_id",
    "arm",
    "flow_fingerprint",
    "inputs",
    "outputs",
)
"""The fields of a runs stream entry, in the order written."""

#: Errors of a write the run must not see (the store, or inputs that do not encode as JSON).
_WRITE_ERRORS = (
    redis.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
    TypeError,
    ValueError,
)

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class RunEntryError(ValueError):
    """A runs stream entry that cannot be read (missing field, malformed JSON)."""


def runs_key(experiment_id: str) -> str:
    """The experiment's runs stream (same hash tag as its exposures and outcomes)."""
    return f"abtest:{{{experiment_id}}}:runs"


def is_sampled(request_id: str, rate: float) -> bool:
    """Whether the run `request_id` is judged at `judge_sample_rate` `rate`: the first 32 bits
    of its sha256 as a fraction of 2**32, below `rate` (0 never, 1 always)."""
    digest = hashlib.sha256(request_id.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) / 2**32 < rate


def keeps(experiment: Experiment, run: Run) -> bool:
    """Whether the run goes to the runs stream: its experiment has online judges, the unit is
    in the experiment (an outcome of a unit outside it would never be analysed), the run
    succeeded (there is nothing to judge otherwise) and its request id is sampled."""
    evaluation = experiment.evaluation
    if evaluation is None or not evaluation.online_judges:
        return False
    if not run.assignment.in_experiment or run.result.error is not None:
        return False
    return is_sampled(run.result.run_id, evaluation.judge_sample_rate)


@dataclass(frozen=True)
class RunEntry:
    """One kept run. `inputs` is None when the inputs were not stored."""

    request_id: str
    ts: int
    unit_id: str
    arm: str
    flow_fingerprint: str
    inputs: Mapping[str, Any] | None
    outputs: Mapping[str, Any]

    @classmethod
    def of_run(
        cls, run: Run, inputs: Mapping[str, Any] | BaseModel, store_inputs: bool
    ) -> RunEntry:
        """The entry of `run` on `inputs` (the checked inputs of the request)."""
        values = inputs.model_dump() if isinstance(inputs, BaseModel) else dict(inputs)
        return cls(
            request_id=run.result.run_id,
            ts=now_ms(),
            unit_id=run.unit_id,
            arm=run.assignment.arm,
            flow_fingerprint=run.result.fingerprint,
            inputs=values if store_inputs else None,
            outputs=run.outputs,
        )

    @property
    def hashes_bytes(self) -> bool:
        """Whether encoding hashes a bytes input (worth doing off the event loop)."""
        return self.inputs is not None and any(
            isinstance(v, bytes | bytearray) for v in self.inputs.values()
        )

    def fields(self) -> dict[str, str]:
        """The stream fields; bytes inputs become their size and sha256."""
        return {
            "request_id": self.request_id,
            "ts": str(self.ts),
            "unit_id": self.unit_id,
            "arm": self.arm,
            "flow_fingerprint": self.flow_fingerprint,
            "inputs": "" if self.inputs is None else _json(json_safe(self.inputs)),
            "outputs": _json(dict(self.outputs)),
        }

    @classmethod
    def parse(cls, fields: Mapping[Any, Any]) -> RunEntry:
        """The entry of stored stream fields; RunEntryError naming what is wrong."""
        data = {as_str(k): as_str(v) for k, v in fields.items()}
        missing = [name for name in RUN_FIELDS if name not in data]
        if missing:
            raise RunEntryError(f"runs entry is missing field(s) {', '.join(missing)}")
        try:
            ts = int(data["ts"])
            inputs = json.loads(data["inputs"]) if data["inputs"] else None
            outputs = json.loads(data["outputs"])
        except ValueError as exc:
            raise RunEntryError(f"runs entry {data['request_id']!r} is malformed: {exc}") from None
        if not isinstance(outputs, dict) or not (inputs is None or isinstance(inputs, dict)):
            raise RunEntryError(
                f"runs entry {data['request_id']!r}: inputs and outputs must be JSON objects"
            )
        return cls(
            request_id=data["request_id"],
            ts=ts,
            unit_id=data["unit_id"],
            arm=data["arm"],
            flow_fingerprint=data["flow_fingerprint"],
            inputs=inputs,
            outputs=outputs,
        )


class RunsLog:
    """Writes kept runs to their runs stream from background tasks of the API's event loop.

    Parameters
    ----------
    client
        The service's asyncio Redis (or Redis Cluster) client.
    max_len
        ``ABTEST_RUNS_MAX_LEN``: the approximate ``MAXLEN`` of every write.
    store_inputs
        ``ABTEST_RUNS_STORE_INPUTS``: False keeps outputs only.
    counter
        A Prometheus counter labelled (experiment, result), counting ``stored`` and ``failed``
        writes (``Telemetry.runs_logged``); None counts nothing.
    max_pending
        Writes in flight at most; a run offered beyond that (the store is slow or down) is
        counted as failed instead of queueing without bound.
    """

    def __init__(
        self,
        client: Any,
        *,
        max_len: int,
        store_inputs: bool = True,
        counter: Any = None,
        max_pending: int = 1000,
    ) -> None:
        self.client = client
        self.max_len = max_len
        self.store_inputs = store_inputs
        self.counter = counter
        self.max_pending = max_pending
        self._pending: set[asyncio.Task[bool]] = set()

    def offer(
        self, experiment: Experiment, run: Run, inputs: Mapping[str, Any] | BaseModel
    ) -> bool:
        """Keep `run` if `keeps` says so: schedule its write and return at once. Returns
        whether a write was scheduled. Call it from the event loop, after the run's events
        were appended (a judge's score then never precedes its run's exposure)."""
        if not keeps(experiment, run):
            return False
        if len(self._pending) >= self.max_pending:
            self._failed(experiment.id, run.result.run_id, "too many writes in flight")
            return False
        entry = RunEntry.of_run(run, inputs, self.store_inputs)
        task = asyncio.get_running_loop().create_task(self.append(experiment.id, entry))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def append(self, experiment_id: str, entry: RunEntry) -> bool:
        """Write one entry (capped); True when stored. Failures are logged and counted, never
        raised: the run this entry records was already answered."""
        try:
            if entry.hashes_bytes:
                fields = await asyncio.to_thread(entry.fields)
            else:
                fields = entry.fields()
            await self.client.xadd(
                runs_key(experiment_id), fields, maxlen=self.max_len, approximate=True
            )
        except _WRITE_ERRORS as exc:
            self._failed(experiment_id, entry.request_id, f"{type(exc).__name__}: {exc}")
            return False
        except asyncio.CancelledError:
            self._failed(experiment_id, entry.request_id, "cancelled: the service is stopping")
            raise
        if self.counter is not None:
            self.counter.labels(experiment_id, "stored").inc()
        return True

    @property
    def pending(self) -> int:
        """Writes scheduled and not finished yet."""
        return len(self._pending)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Wait up to `timeout_s` for the writes in flight (the service is stopping); the rest
        are cancelled and counted as failed."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def _failed(self, experiment_id: str, request_id: str, why: str) -> None:
        logger.warning(
            "runs stream: run %s of %s not kept for judging: %s", request_id, experiment_id, why
        )
        if self.counter is not None:
            self.counter.labels(experiment_id, "failed").inc()
