"""The live set of experiments: definitions, router, flows and fingerprints, loaded together.

The API, the CLI and the demo all serve from one `Platform`. It is immutable once built, so a
hot reload builds a new one beside the old and swaps a single reference: requests in flight
finish on the definitions they started with, and a file that fails validation never replaces
what is live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from abtest.experiments import Experiment, definition_sha, load_experiments
from abtest.flows import REGISTRY_PREFIX, FlowRegistry
from abtest.llm import LLMClient
from abtest.prompts import PromptRegistry
from abtest.router import Router


@dataclass(frozen=True)
class Platform:
    """Validated experiments with their router, every arm's flow and definition hashes."""

    experiments: Mapping[str, Experiment]
    router: Router
    flows: FlowRegistry
    definition_shas: Mapping[str, str]
    source: Path | None = None
    _fingerprints: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_experiments(
        cls,
        experiments: Mapping[str, Experiment],
        *,
        llm_client: LLMClient | None = None,
        prompt_registry: PromptRegistry | None = None,
        source: Path | None = None,
    ) -> Platform:
        """Build the router and every arm's driver; raises `FlowConfigError` naming the
        experiment, arm and node of every problem."""
        flows = FlowRegistry.from_experiments(
            experiments, llm_client=llm_client, prompt_registry=prompt_registry
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
    ) -> Platform:
        """Load every definition under `path` (raises `ExperimentFileError`) and build."""
        return cls.from_experiments(
            load_experiments(path),
            llm_client=llm_client,
            prompt_registry=prompt_registry,
            source=Path(path),
        )

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
        config = self.experiments[experiment_id].arm(arm).config
        if not any(str(value).startswith(REGISTRY_PREFIX) for value in config.values()):
            self._fingerprints[key] = fingerprint
        return fingerprint
