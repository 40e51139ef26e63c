"""The offline evaluation's results in the store, keyed so unchanged work is never redone.

Two hashes per experiment, with its hash tag (one Redis Cluster slot, like its streams):

- `abtest:{<id>}:eval:answers`: field `<row id>:<inputs digest>:<arm fingerprint>`, the arm's
  outputs (or the deterministic failure) and usage on that row;
- `abtest:{<id>}:eval:scores`: field `<answer field>:<expected digest>:<evaluator
  fingerprint>`, the evaluator's score (or parse failure) of that answer.

A changed prompt changes the arm fingerprint, so only that arm's rows run again; a changed
judge prompt or evaluator changes only its scores. Each result is written as soon as it
exists, so an interrupted run resumes where it stopped. Transient failures (model down) are
not kept: the next run retries them.

`abtest:{<id>}:evaluation:summary` holds the last run's summary (JSON), which the experiment
report reads for its offline-vs-online table.
"""

from __future__ import annotations

import json
from typing import Any

from abtest.event_fields import as_str
from analysis.evaluation import summary_key

__all__ = ["EvalCache"]


def _prefix(experiment_id: str) -> str:
    return f"abtest:{{{experiment_id}}}"


class EvalCache:
    """Answers and scores of one experiment's offline evaluation (sync redis client)."""

    def __init__(self, client: Any, experiment_id: str) -> None:
        self._client = client
        self.answers_key = f"{_prefix(experiment_id)}:eval:answers"
        self.scores_key = f"{_prefix(experiment_id)}:eval:scores"
        self.summary_key = summary_key(experiment_id)

    def load(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Every stored answer and score (read once at the start of a run)."""
        return self._read(self.answers_key), self._read(self.scores_key)

    def put_answer(self, field: str, record: dict[str, Any]) -> None:
        self._client.hset(self.answers_key, field, _dumps(record))

    def put_score(self, field: str, record: dict[str, Any]) -> None:
        self._client.hset(self.scores_key, field, _dumps(record))

    def put_summary(self, summary: dict[str, Any]) -> None:
        self._client.set(self.summary_key, _dumps(summary))

    def _read(self, key: str) -> dict[str, dict[str, Any]]:
        return {
            as_str(field): json.loads(value) for field, value in self._client.hgetall(key).items()
        }


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
