"""Online judging (DESIGN.md, Evaluation): a `judge_sample_rate` share of an experiment's live
runs is scored by its `llm_judge` evaluators, off the request path, and every score becomes an
outcome `judge:<evaluator>` that the analysis, the dashboard and the guardrails treat like any
other.

* `abtest.judging.runs_log`: the API keeps the sampled runs (inputs and outputs) in the
  experiment's capped runs stream, ``abtest:{<experiment_id>}:runs``, from a background task,
  so a run's answer never waits for it.
* `abtest.judging.worker`: `JudgeWorker` reads the runs streams through a consumer group,
  judges each run, appends the scores through the event log and counts parse failures and
  judge errors per arm (read back with `analysis.evaluation.read_judge_stats`);
  `JudgeThread` runs it inside ``abtest serve`` (``ABTEST_JUDGE=on``, the default),
  ``abtest judge`` alone.
"""

from __future__ import annotations

from abtest.judging.runs_log import RunEntry, RunsLog, is_sampled, keeps, runs_key
from abtest.judging.worker import (
    GROUP,
    JudgePass,
    JudgeThread,
    JudgeWorker,
    judged_experiments,
)

__all__ = [
    "GROUP",
    "JudgePass",
    "JudgeThread",
    "JudgeWorker",
    "RunEntry",
    "RunsLog",
    "is_sampled",
    "judged_experiments",
    "keeps",
    "runs_key",
]
