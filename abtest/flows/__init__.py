"""The flow runtime: one Hamilton driver per (experiment, arm), its contract and its runs."""

from abtest.flows.errors import FlowConfigError, FlowInputError, FlowProblem, InvalidInputs
from abtest.flows.registry import (
    REGISTRY_PREFIX,
    FlowRecorder,
    FlowRegistry,
    FlowResult,
    PromptUse,
)

__all__ = [
    "REGISTRY_PREFIX",
    "FlowConfigError",
    "FlowInputError",
    "FlowProblem",
    "FlowRecorder",
    "FlowRegistry",
    "FlowResult",
    "InvalidInputs",
    "PromptUse",
]
