"""The live set of experiments: definitions, router, flows and fingerprints, loaded together.

The API, the CLI, the demo and applications in-process all serve from one `Platform`, and
`Platform.run` is the one run path they share: assign the unit, validate the inputs, run the
arm's flow, and say which events record it. It is immutable once built, so a hot reload builds
a new one beside the old and swaps a single reference: requests in flight finish on the
definitions they started with, and a file that fails validation never replaces what is live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from abtest.event_fields import Event
from abtest.experiments import Experiment, definition_sha, load_experiments
from abtest.flows import FlowInputError, FlowRegistry, FlowResult
from abtest.flows.registry import bindings_of
from abtest.llm import LLMClient
from abtest.prompts import PromptRegistry
from abtest.router import Assignment, Router
from abtest.settings import Settings
from abtest.tracking import exposure, run_outcomes


def platform_options(settings: Settings) -> dict[str, Any]:
    """What the settings configure in a platform: the LLM client (endpoint, key, prices) when
    an endpoint is configured, and the size limits of run inputs."""
    llm_client = LLMClient(settings=settings) if settings.llm_configured else None
    return {
        "llm_client": llm_client,
        "max_input_chars": settings.max_input_chars,
        "max_input_bytes": settings.max_upload_bytes,
    }


def uses_prompt_registry(experiments: Iterable[Experiment]) -> bool:
    """Whether an arm binds a prompt node to the prompt registry (`registry:name@label`)."""
    return any(bindings_of(arm.config) for experiment in experiments for arm in experiment.arms)


@dataclass(frozen=True)
class Run:
    """One unit's run: its assignment, the flow's result and the events that record it (the
    exposure, when the unit is in the experiment, and the run's automatic outcomes)."""

    unit_id: str
    assignment: Assignment
    result: FlowResult
    events: list[Event]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.result.outputs

    def as_dict(self) -> dict[str, Any]:
        """The run as the API answers it (DESIGN.md, API)."""
        result = self.result
        return {
            "experiment_id": self.assignment.experiment_id,
            "unit_id": self.unit_id,
            "arm": self.assignment.arm,
            "in_experiment": self.assignment.in_experiment,
            "request_id": result.run_id,
            "outputs": result.outputs,
            "prompts": {
                node: {"prompt_id": use.prompt_id, "version": use.version, "sha256": use.sha256}
                for node, use in result.prompts.items()
            },
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": result.cost_usd,
            "latency_ms": result.latency_ms,
            "error": result.error,
        }


@dataclass(frozen=True)
class Platform:
    """Validated experiments with their router, every arm's flow and definition hashes."""

    experiments: Mapping[str, Experiment]
    router: Router
    flows: FlowRegistry
    definition_shas: Mapping[str, str]
    source: Path | None = None
    _fingerprints: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _stopped: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_experiments(
        cls,
        experiments: Mapping[str, Experiment],
        *,
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
        source: Path | None = None,
        **limits: int,
    ) -> Platform:
        """Build the router and every arm's driver; raises `FlowConfigError` naming the
        experiment, arm and node of every problem. `limits`: `max_input_chars`,
        `max_input_bytes` (see `FlowRegistry`)."""
        flows = FlowRegistry.from_experiments(
            experiments, llm_client=llm_client, prompt_registry=prompt_registry, **limits
        )
        return cls(
            experiments=dict(experiments),
            router=Router(experiments),
            flows=flows,
            definition_shas={key: definition_sha(e) for key, e in experiments.items()},
            source=source,
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
        **limits: int,
    ) -> Platform:
        """Load every definition under `path` (raises `ExperimentFileError`) and build."""
        return cls.from_experiments(
            load_experiments(path),
            llm_client=llm_client,
            prompt_registry=prompt_registry,
            source=Path(path),
            **limits,
        )

    def run(
        self,
        experiment_id: str,
        unit_id: str,
        inputs: Mapping[str, Any] | BaseModel,
        attributes: Mapping[str, Any] | None = None,
    ) -> Run:
        """Assign `unit_id`, run its arm's flow on `inputs`, and return the run with the events
        that record it (append them to an event log to count the run).

        Raises `UnknownExperimentError`, and `FlowInputError` when the inputs do not fit the
        experiment's input model or the flow refuses them: nothing is to be recorded then. Any
        other failure (LLM, prompt registry, a bug of the flow) is a `Run` whose
        `result.error` is set and whose events record `error=1`.
        """
        values, assignment = self._assigned(experiment_id, unit_id, inputs, attributes)
        result = self.flows.run(experiment_id, assignment.arm, values)
        return self._recorded(unit_id, assignment, result)

    async def arun(
        self,
        experiment_id: str,
        unit_id: str,
        inputs: Mapping[str, Any] | BaseModel,
        attributes: Mapping[str, Any] | None = None,
    ) -> Run:
        """`run` with the flow in a worker thread (see `FlowRegistry.arun`)."""
        values, assignment = self._assigned(experiment_id, unit_id, inputs, attributes)
        result = await self.flows.arun(experiment_id, assignment.arm, values)
        return self._recorded(unit_id, assignment, result)

    def assign(
        self, experiment_id: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """The unit's assignment, with the arms stopped by a safe rollout taken into account
        (`set_stopped_arms`); what every exposure-logging path uses."""
        stopped = self._stopped.get(experiment_id, frozenset())
        return self.router.assign(experiment_id, unit_id, attributes, stopped)

    def stopped_arms(self, experiment_id: str) -> frozenset[str]:
        return self._stopped.get(experiment_id, frozenset())

    def set_stopped_arms(self, experiment_id: str, arms: frozenset[str]) -> None:
        """The arms stopped now (runtime state: the service refreshes it from the store)."""
        self._stopped[experiment_id] = frozenset(arms)

    def _assigned(
        self,
        experiment_id: str,
        unit_id: str,
        inputs: Mapping[str, Any] | BaseModel,
        attributes: Mapping[str, Any] | None,
    ) -> tuple[BaseModel, Assignment]:
        """The checked inputs and the unit's assignment; inputs first, so a refused run is
        never assigned."""
        self.router.experiment(experiment_id)
        values = self.flows.checked_inputs(experiment_id, inputs)
        return values, self.assign(experiment_id, unit_id, attributes)

    def _recorded(self, unit_id: str, assignment: Assignment, result: FlowResult) -> Run:
        if result.error_kind == "bad_input":
            raise FlowInputError(result.error or "the flow refused its inputs")
        event = exposure(
            assignment,
            unit_id,
            result.run_id,
            self.definition_shas[assignment.experiment_id],
            result.fingerprint,
        )
        events: list[Event] = [event] if event is not None else []
        events.extend(run_outcomes(assignment, unit_id, result))
        return Run(unit_id, assignment, result, events)

    def fingerprint(self, experiment_id: str, arm: str) -> str:
        """sha256 over the arm's config and prompt templates (DESIGN.md, Events).

        Cached for the platform's life, since code-defined prompts cannot change under a
        running process; arms bound to the prompt registry are recomputed (a label may move).
        """
        key = (experiment_id, arm)
        cached = self._fingerprints.get(key)
        if cached is not None:
            return cached
        fingerprint = self.flows.flow_fingerprint(experiment_id, arm)
        if not bindings_of(self.experiments[experiment_id].arm(arm).config):
            self._fingerprints[key] = fingerprint
        return fingerprint
