"""The errors of the flow runtime: a flow's refusal of its input, and arms that cannot run.

`FlowInputError` is public (`from abtest import FlowInputError`): a flow node raises it (or a
subclass) for input it cannot use, and the platform answers the caller 422 with its message
and records nothing. Any other exception in a node is a bug of the flow: the run is recorded
as an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FlowConfigError", "FlowInputError", "FlowProblem", "InvalidInputs"]


class FlowInputError(ValueError):
    """Raised by a flow node for input it cannot use (an unreadable file, an empty question).

    `reason` is a short machine-readable word (`"too_large"`, `"corrupt"`) that refines the
    error in the run record; the message is shown to the caller as is, so it should name the
    input and say what is wrong with it.
    """

    reason: str = "invalid"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidInputs(FlowInputError):
    """Run inputs that do not fit the experiment's input model (missing, unknown, of the wrong
    type or too large); the message names each input."""

    reason = "inputs"


@dataclass(frozen=True)
class FlowProblem:
    """One reason an arm's flow is unusable."""

    experiment_id: str
    arm: str
    message: str
    node: str | None = None

    def __str__(self) -> str:
        where = f"experiment '{self.experiment_id}', arm '{self.arm}'"
        if self.node:
            where += f", node '{self.node}'"
        return f"{where}: {self.message}"


class FlowConfigError(ValueError):
    """Arms whose flows cannot run; carries every `FlowProblem` found."""

    def __init__(self, problems: Sequence[FlowProblem]):
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{count} {noun} in prompt flows:\n  " + "\n  ".join(map(str, self.problems))
        )
