"""The `abtest` command line: thin commands that parse, call a library function and print.

Expected failures print a plain message and exit with code 1; heavy imports (Hamilton, pandas)
happen inside the commands that need them so that `validate` and `assign` start fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from abtest.experiments import ExperimentFileError, check_files

app = typer.Typer(
    help="Prompt A/B experimentation: validate experiments, assign units, run flows, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DEFAULT_EXPERIMENTS = Path(os.environ.get("ABTEST_EXPERIMENTS", "experiments"))

ExperimentsOption = Annotated[
    Path,
    typer.Option(
        "--experiments",
        "-e",
        help="Directory (or file) of experiment definitions [env: ABTEST_EXPERIMENTS].",
    ),
]


def fail(message: str) -> typer.Exit:
    """Print `message` to stderr and return the exit to raise (code 1)."""
    typer.echo(message, err=True)
    return typer.Exit(code=1)


def _load_all(path: Path):
    from abtest.experiments import load_experiments

    if not path.exists():
        raise fail(f"error: {path}: no such file or directory")
    try:
        return load_experiments(path)
    except ExperimentFileError as exc:
        raise fail(f"error: {exc}") from None


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or directories (default: experiments/).")
    ] = None,
) -> None:
    """Validate experiment files: one summary line per file, or every error and exit 1."""
    results = check_files(paths or [DEFAULT_EXPERIMENTS])
    if not results:
        raise fail("error: no experiment files found")
    failed = False
    for path, outcome in results:
        if isinstance(outcome, ExperimentFileError):
            typer.echo(f"FAIL {outcome}", err=True)
            failed = True
            continue
        arms = ", ".join(f"{a.name} {a.weight:g}" for a in outcome.arms)
        typer.echo(
            f"ok   {path}: {outcome.id} ({outcome.status}; arms: {arms}; "
            f"coverage {outcome.coverage:g}; sha {outcome.definition_sha[:12]})"
        )
    if failed:
        raise typer.Exit(code=1)


@app.command()
def assign(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    unit_id: Annotated[str, typer.Argument(help="Value of the experiment's hash attribute.")],
    experiments: ExperimentsOption = DEFAULT_EXPERIMENTS,
) -> None:
    """Print the arm a unit gets, the rule that decided it and the arm's config."""
    from abtest.router import Router, UnknownExperimentError

    router = Router(_load_all(experiments))
    try:
        assignment = router.assign(experiment_id, unit_id)
    except UnknownExperimentError as exc:
        raise fail(f"error: {exc}") from None
    arm = router.experiment(experiment_id).arm(assignment.arm)
    typer.echo(f"arm: {assignment.arm}")
    typer.echo(f"in_experiment: {str(assignment.in_experiment).lower()}")
    typer.echo(f"reason: {assignment.reason}")
    typer.echo(f"config: {json.dumps(arm.config, sort_keys=True)}")


@app.command()
def demo(
    experiments: ExperimentsOption = DEFAULT_EXPERIMENTS,
    users: Annotated[int, typer.Option(help="Sample units to assign.")] = 10,
) -> None:
    """Validate the example experiments and show sample assignments."""
    from abtest.router import Router

    loaded = _load_all(experiments)
    router = Router(loaded)
    for experiment in loaded.values():
        typer.echo(f"{experiment.id}: {experiment.status}, arms {', '.join(experiment.arm_names)}")
        for i in range(users):
            a = router.assign(experiment.id, f"user-{i}")
            typer.echo(f"  user-{i:<4} -> {a.arm:<16} ({a.reason})")


@app.command("llm-server")
def llm_server(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0.0,
    failure_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of requests failing (500/429).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the failure draws.")] = 0,
) -> None:
    """Serve the offline OpenAI-compatible model (a local stand-in for a real model)."""
    from abtest.llm_server import main as serve

    serve(host=host, port=port, latency_ms=latency_ms, failure_rate=failure_rate, seed=seed)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
