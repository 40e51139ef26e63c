"""The `abtest` command line: thin commands that parse, call a library function and print.

Expected failures print a plain message and exit with code 1; heavy imports (Hamilton, pandas)
happen inside the commands that need them so that `validate` and `assign` start fast.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import typer

from abtest.experiments import ExperimentFileError, check_files

app = typer.Typer(
    help="Prompt A/B experimentation: validate experiments, assign units, run flows, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ExperimentsOption = Annotated[
    Path | None,
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


_SETTINGS: ContextVar[Any] = ContextVar("abtest_cli_settings", default=None)


@app.callback()
def _start() -> None:
    """Parse the settings once, before any command: a bad environment variable stops here
    with a message naming it. Hamilton's plugin autoloading (matplotlib, polars...) is
    switched off unless asked for: our flows pass strings and lists, and it costs ~40 MB and
    ~0.5 s per process (its documented switch, set before Hamilton is imported)."""
    from abtest.settings import Settings, SettingsError

    try:
        _SETTINGS.set(Settings.from_env())
    except SettingsError as exc:
        raise fail(f"error: {exc}") from None
    os.environ.setdefault("HAMILTON_AUTOLOAD_EXTENSIONS", "0")
    signal.signal(signal.SIGTERM, _exit_cleanly)


def _exit_cleanly(signum: int, frame: object) -> None:
    """SIGTERM (systemd, Docker, Kubernetes) ends a command like Ctrl-C does: `finally`
    blocks and exit handlers run, so the embedded Redis and the local model server stop with
    the last process using them. Without it the default action kills the process on the spot,
    also after uvicorn's graceful shutdown, which re-raises the signal it stopped on."""
    raise SystemExit(0)


def settings():
    """The settings `_start` parsed for this command (parsed now when a command function is
    called directly, without the command line)."""
    from abtest.settings import Settings

    return _SETTINGS.get() or Settings.from_env()


def _experiments_dir(path: Path | None) -> Path:
    return path if path is not None else settings().experiments_dir


def _load_all(path: Path | None):
    from abtest.experiments import load_experiments

    path = _experiments_dir(path)
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
    """Validate experiment files and their flows: one summary line per file (with the flow's
    inputs and outputs), or every error of every file and exit 1. A file passes when it parses,
    every arm's Hamilton driver builds, every arm config key is read by the flow, all arms share
    inputs and outputs, and every arm runs end to end on the flow's SAMPLE_INPUTS against an
    offline stub model."""
    results = check_files(paths or [_experiments_dir(None)])
    if not results:
        raise fail("error: no experiment files found")
    failed = False
    for path, outcome in results:
        outcome, flows = _with_flow_problems(path, outcome)
        if isinstance(outcome, ExperimentFileError):
            typer.echo(f"FAIL {outcome}", err=True)
            failed = True
            continue
        arms = ", ".join(f"{a.name} {a.weight:g}" for a in outcome.arms)
        contract = flows.contract(outcome.id)
        inputs = ", ".join(s.name if s.required else f"{s.name}?" for s in contract.inputs)
        typer.echo(
            f"ok   {path}: {outcome.id} ({outcome.status}; arms: {arms}; "
            f"coverage {outcome.coverage:g}; sha {outcome.definition_sha[:12]}; "
            f"inputs: {inputs}; outputs: {', '.join(contract.outputs)})"
        )
    if failed:
        raise typer.Exit(code=1)


def _with_flow_problems(path: Path, outcome):
    """`outcome` (an experiment or the file's schema errors) with the problems of its arms'
    flows added, so that one pass lists every problem of the file, and the flows when there is
    none. A file whose schema fails still has its arms' flows checked, from what can be read
    of them."""
    from abtest.experiments import partial_experiment
    from abtest.flows import FlowConfigError, FlowRegistry

    failed = isinstance(outcome, ExperimentFileError)
    experiment = partial_experiment(path) if failed else outcome
    problems = list(outcome.problems) if failed else []
    flows = None
    if experiment is not None:
        try:
            flows = FlowRegistry.from_experiments(
                [experiment], prompt_registry=_prompt_registry_for([experiment])
            )
        except FlowConfigError as exc:
            problems.extend(str(problem) for problem in exc.problems)
    if not problems and flows is not None:
        problems.extend(_evaluation_problems(path, experiment, flows))
    if problems:
        return ExperimentFileError(path, problems), None
    return outcome, flows


def _evaluation_problems(path: Path, experiment, flows) -> list[str]:
    """The `evaluation:` section's problems that need imports and builds (the dataset, a
    callable, judge flows); none without the section."""
    if experiment.evaluation is None:
        return []
    from abtest.evaluation.checks import evaluation_problems

    return evaluation_problems(
        experiment,
        path,
        flows.contract(experiment.id),
        prompt_registry=_prompt_registry_for([experiment]),
    )


@app.command()
def assign(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    unit_id: Annotated[str, typer.Argument(help="Value of the experiment's hash attribute.")],
    experiments: ExperimentsOption = None,
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
def status(
    experiment_id: Annotated[
        str | None, typer.Argument(help="One experiment (default: every experiment).")
    ] = None,
    experiments: ExperimentsOption = None,
    audit: Annotated[int, typer.Option(min=0, help="Audit entries shown per experiment.")] = 5,
) -> None:
    """Each experiment's status and its arms' runtime state (a safe rollout or an admin may
    have stopped an arm), with the latest changes from the audit log."""
    import redis

    from abtest.state_store import read_audit, read_states

    loaded = _load_all(experiments)
    if experiment_id is not None and experiment_id not in loaded:
        raise fail(f"error: unknown experiment '{experiment_id}' (known: {', '.join(loaded)})")
    client = _store_client()
    chosen = [loaded[experiment_id]] if experiment_id else list(loaded.values())
    try:
        for experiment in chosen:
            states = read_states(client, experiment.id, experiment.arm_names)
            typer.echo(f"{experiment.id} ({experiment.status})")
            for arm in experiment.arms:
                state = states[arm.name]
                line = f"  {arm.name:<20} weight {arm.weight:<6g} {state.state}"
                if state.stopped:
                    line += f" since {_iso(state.stopped_at)} by {state.actor}: {state.reason}"
                typer.echo(line)
            for entry in read_audit(client, experiment.id, audit) if audit else []:
                typer.echo(
                    f"  audit {_iso(entry.ts)} {entry.action} {entry.arm} by {entry.actor}: "
                    f"{entry.reason}"
                )
    except redis.RedisError as exc:
        raise fail(f"error: the store cannot be read: {exc}") from None


def _iso(ms: int | None) -> str:
    import datetime as dt

    if ms is None:
        return "?"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


@app.command()
def demo(
    users: Annotated[int, typer.Option(min=1, help="Simulated users per experiment.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, help="Users in flight at once.")] = 8,
    experiments: ExperimentsOption = None,
    experiment_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            help="Experiment to run (repeatable; default: every running experiment whose "
            "flow has a simulation module).",
        ),
    ] = None,
    reports: Annotated[Path, typer.Option(help="Where the HTML reports go.")] = Path("reports"),
    fresh: Annotated[
        bool, typer.Option(help="Start from empty streams for the demo's experiments.")
    ] = True,
) -> None:
    """Run the main job end to end: API, flows, simulated users, analysis, HTML reports."""
    from abtest.devtools.demo import DemoSettings, run_demo
    from abtest.flows import FlowConfigError

    settings = DemoSettings(
        experiments_dir=_experiments_dir(experiments),
        experiment_ids=tuple(experiment_ids or ()),
        users=users,
        concurrency=concurrency,
        reports_dir=reports,
        fresh=fresh,
    )

    bars: list = []

    def announce(experiment_id: str, count: int) -> None:
        if bars:
            bars.pop().__exit__(None, None, None)
        typer.echo(f"demo: {count} simulated users through the API on '{experiment_id}'")
        bars.append(typer.progressbar(length=count, label="users").__enter__())

    def evaluating(experiment_id: str) -> None:
        typer.echo(f"demo: offline evaluation of '{experiment_id}' on its dataset (abtest eval)")

    try:
        outcomes = run_demo(
            settings,
            progress=lambda n: bars[-1].update(n),
            on_start=announce,
            on_eval=evaluating,
        )
    except (ExperimentFileError, FlowConfigError, ValueError, ImportError) as exc:
        raise fail(f"error: {exc}") from None
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    for outcome in outcomes:
        if outcome.offline is not None:
            _print_offline(outcome.experiment_id, outcome.offline)
        typer.echo(f"\n== {outcome.experiment_id} ==")
        _print_table(outcome.table)
        typer.echo("")
        truth = ", ".join(f"{arm} {rate:.3f}" for arm, rate in outcome.true_rates.items())
        typer.echo(
            f"true {outcome.metric} rate of the simulated users (the planted truth): {truth}"
        )
        typer.echo(outcome.summary)
        typer.echo(
            f"\n{outcome.runs_ok} runs ok, {outcome.runs_failed} failed; SRM p = "
            f"{outcome.srm_p_value:.3f}; {outcome.seconds:.0f} s"
        )
        for line in outcome.stopped:
            typer.echo(f"safe rollout: {line}")
        if outcome.users_skipped:
            typer.echo(
                f"safe rollout: every treatment arm was stopped, so the last "
                f"{outcome.users_skipped:,} users (who would all get the control) were not "
                "simulated"
            )
        for evaluator, counts in outcome.judged.items():
            typer.echo(
                f"online judge {evaluator}: {counts.get('ok', 0):,} live runs scored, "
                f"{counts.get('parse_failure', 0):,} parse failures, "
                f"{counts.get('judge_error', 0):,} errors"
            )
        if outcome.offline_vs_online is not None:
            _print_offline_vs_online(outcome.offline_vs_online)
        typer.echo(f"report: {outcome.report_path}")


def _print_offline(experiment_id: str, offline) -> None:
    typer.echo(f"\n== {experiment_id}: offline evaluation ==")
    typer.echo(
        f"{offline.flows_run} arm runs ({offline.answers_cached} reused), "
        f"{offline.llm_calls} LLM calls, {offline.seconds:.1f} s"
    )
    for line in offline.bad_rows:
        typer.echo(f"bad row: {line}")
    _print_evaluation(offline.summary)
    typer.echo(f"offline report: {offline.report_path}")


def _print_offline_vs_online(table) -> None:
    """Each online judge's lift next to the offline evaluation's, and whether they agree."""
    typer.echo("\noffline vs online (absolute difference in mean score, treatment - control):")
    if table.empty:
        typer.echo("  no online judge scores yet")
        return
    view = table[["evaluator", "arm"]].copy()
    view["offline"] = [
        f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        for d, lo, hi in zip(
            table["offline_diff"], table["offline_ci_low"], table["offline_ci_high"], strict=True
        )
    ]
    view["online"] = [
        f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        for d, lo, hi in zip(
            table["online_effect"], table["online_ci_low"], table["online_ci_high"], strict=True
        )
    ]
    view["agreement"] = table["agreement"]
    view["why"] = table["reason"]
    typer.echo(view.to_string(index=False))


def _print_table(table) -> None:
    """The verdict columns: each row's effect and interval on its own estimand."""
    columns = ["metric", "arm", "units", "mean", "effect", "ci_low", "ci_high", "p_adjusted"]
    view = table[columns].copy()
    relative = table["estimand"] == "relative"
    for name in ("effect", "ci_low", "ci_high"):
        view[name] = [
            "" if x != x else (f"{x:+.1%}" if rel else f"{x:+.4g}")
            for x, rel in zip(table[name], relative, strict=True)
        ]
    view["mean"] = view["mean"].map(lambda x: f"{x:.4g}")
    view["p_adjusted"] = view["p_adjusted"].map(lambda x: "" if x != x else f"{x:.3g}")
    typer.echo(view.to_string(index=False))


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
    from abtest.devtools.llm_server import main as serve

    serve(host=host, port=port, latency_ms=latency_ms, failure_rate=failure_rate, seed=seed)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    experiments: ExperimentsOption = None,
) -> None:
    """Serve the API (assign, run, outcomes, results) with uvicorn.

    Uses REDIS_URL or the embedded Redis, and OPENAI_BASE_URL/OPENAI_API_KEY or, when neither is
    set, the built-in local model server.
    """
    import uvicorn

    from abtest import store
    from abtest.devtools.local import ensure_llm_endpoint

    _store_client()  # a cluster that cannot be mapped stops here, before anything starts
    _load_platform(experiments)
    # the workers' create_app parses the environment again: pass the directory on to them
    os.environ["ABTEST_EXPERIMENTS"] = str(_experiments_dir(experiments))
    llm = ensure_llm_endpoint()
    if llm is not None:
        typer.echo(f"using the built-in local model server at {llm.base_url}")
    from abtest.settings import shown_url

    typer.echo(f"events: {shown_url(store.redis_url(settings()))}")
    uvicorn.run(
        "abtest.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


def _store_client():
    """The store's client; a Redis Cluster that cannot be reached or mapped ends the command
    with the message naming REDIS_URL."""
    from abtest import store

    try:
        return store.sync_client(store.redis_url(settings()))
    except store.StoreError as exc:
        raise fail(f"error: {exc}") from None


def _load_platform(experiments: Path | None):
    """Every experiment's flows, built and validated, with the prompt registry when an arm
    binds a prompt to it."""
    from abtest.flows import FlowConfigError
    from abtest.platform import Platform, platform_options

    definitions = _load_all(experiments)
    try:
        return Platform.from_experiments(
            definitions,
            prompt_registry=_prompt_registry_for(definitions.values()),
            source=_experiments_dir(experiments),
            **platform_options(settings()),
        )
    except FlowConfigError as exc:
        raise fail(f"error: {exc}") from None


def _prompt_registry_for(definitions):
    """The prompt registry on the store, when an arm binds a prompt to it (None otherwise, so
    that commands on code-only flows never start the embedded Redis)."""
    from abtest.platform import uses_prompt_registry

    if not uses_prompt_registry(definitions):
        return None
    from abtest.prompts import PromptRegistry

    return PromptRegistry(
        _store_client(),
        cache_ttl_s=settings().prompt_cache_ttl_s,
    )


@contextmanager
def _llm_endpoint():
    """The configured model endpoint, or the built-in local model server while the block
    runs (stopped afterwards, however the block exits)."""
    from abtest.devtools.local import ensure_llm_endpoint

    handle = ensure_llm_endpoint()
    try:
        yield
    finally:
        if handle is not None:
            handle.stop()


@app.command()
def run(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    unit_id: Annotated[str, typer.Argument(help="The unit whose arm runs.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            help="NAME=VALUE of a run input (JSON text for list and dict inputs); repeatable.",
        ),
    ] = None,
    input_files: Annotated[
        list[str] | None,
        typer.Option("--input-file", help="NAME=PATH: a run input read from a file."),
    ] = None,
    attributes: Annotated[
        list[str] | None,
        typer.Option("--attribute", "-a", help="NAME=VALUE of a unit attribute; repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    experiments: ExperimentsOption = None,
) -> None:
    """Run a unit's arm end to end and print the outputs, the arm and the prompt versions.

    Nothing is recorded: this is for trying flows, not for traffic. `abtest run EXP UNIT`
    with no input lists the flow's inputs.
    """
    from abtest.flows import FlowInputError
    from abtest.router import UnknownExperimentError

    platform = _load_platform(experiments)
    try:
        platform.router.experiment(experiment_id)
    except UnknownExperimentError as exc:
        raise fail(f"error: {exc}") from None
    values = _cli_inputs(platform, experiment_id, inputs or [], input_files or [])
    with _llm_endpoint():
        try:
            done = platform.run(
                experiment_id, unit_id, values, _pairs(attributes or [], "--attribute")
            )
        except FlowInputError as exc:
            raise fail(f"error: {exc}") from None
    if as_json:
        typer.echo(json.dumps(done.as_dict(), indent=2, ensure_ascii=False))
        if done.result.error is not None:
            raise typer.Exit(code=1)
        return
    result = done.result
    typer.echo(f"arm: {done.assignment.arm} ({done.assignment.reason})")
    for node, use in sorted(result.prompts.items()):
        typer.echo(f"prompt: {node} = {use.prompt_id} {use.version} sha256 {use.sha256[:12]}")
    typer.echo(
        f"usage: {result.prompt_tokens} prompt + {result.completion_tokens} completion tokens, "
        f"${result.cost_usd:.6f}, {result.latency_ms:.0f} ms"
    )
    if result.error is not None:
        raise fail(f"error: {result.error}")
    for name, value in result.outputs.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        typer.echo(f"\n{name}:\n{shown}")


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise fail(f"error: {option} {item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value
    return pairs


def _cli_inputs(platform, experiment_id: str, inputs: list[str], files: list[str]):
    """Run inputs from `--input NAME=VALUE` and `--input-file NAME=PATH`, converted to each
    input's type (JSON text for lists and dicts; "3" for an int) and checked by the
    experiment's input model."""
    from pydantic import ValidationError

    from abtest.flows.registry import describe_validation_error

    specs = {spec.name: spec for spec in platform.flows.contract(experiment_id).inputs}
    if not inputs and not files:
        listed = ", ".join(
            f"{s.name} ({s.type_name}{'' if s.required else ', optional'})" for s in specs.values()
        )
        raise fail(f"error: give the run inputs with --input/--input-file: {listed}")
    raw: dict = {}
    for name, value in _pairs(inputs, "--input").items():
        spec = specs.get(name)
        if spec is not None and spec.structured:
            try:
                value = json.loads(value)
            except ValueError:
                raise fail(
                    f"error: --input {name}: expected JSON text for {spec.type_name}"
                ) from None
        raw[name] = value
    for name, path in _pairs(files, "--input-file").items():
        file = Path(path)
        if not file.is_file():
            raise fail(f"error: --input-file {name}={path}: no such file")
        spec = specs.get(name)
        raw[name] = file.read_bytes() if spec is None or spec.binary else file.read_text("utf-8")
    try:
        return platform.flows.input_model(experiment_id).model_validate(raw)
    except ValidationError as exc:
        raise fail(f"error: {describe_validation_error(exc)}") from None


prompts_app = typer.Typer(help="The prompt registry: versioned templates in Redis.")
app.add_typer(prompts_app, name="prompts")


def _registry_call(fn, *args):
    from abtest.prompts import PromptNotFoundError, PromptRegistryError

    try:
        return fn(_store_client(), *args)
    except (PromptNotFoundError, PromptRegistryError, ValueError) as exc:
        raise fail(f"error: {exc}") from None


@prompts_app.command("push")
def prompts_push(
    name: Annotated[str, typer.Argument(help="Prompt name, e.g. final-summary.")],
    file: Annotated[Path, typer.Argument(help="Template file ('-' for stdin).")],
    experiments: ExperimentsOption = None,
) -> None:
    """Store a template as the next version of NAME (no new version if unchanged).

    The template's placeholders are checked first against every prompt node an arm binds to
    NAME (`node: registry:NAME@label`): a placeholder the node's renderer would not fill is
    refused, naming the ones it fills."""
    import sys

    from abtest.flows.registry import check_placeholders
    from abtest.prompts import push_prompt

    if str(file) == "-":
        template = sys.stdin.read()
    elif file.is_file():
        template = file.read_text(encoding="utf-8")
    else:
        raise fail(f"error: {file}: no such file")
    directory = _experiments_dir(experiments)
    definitions = _load_all(directory).values() if directory.exists() else []
    check = check_placeholders(definitions, name, template)
    if check.problems:
        raise fail(f"error: template of '{name}': " + "; ".join(check.problems))
    version, is_new = _registry_call(push_prompt, name, template)
    state = "new version" if is_new else "unchanged, latest is"
    fields = ", ".join("{" + f + "}" for f in check.placeholders) or "none"
    checked = (
        f"; checked against {', '.join(check.allowed)}"
        if check.allowed
        else "; no arm binds it yet"
    )
    typer.echo(f"{state} {version.ref} (placeholders: {fields}{checked})")


@prompts_app.command("list")
def prompts_list() -> None:
    """Every prompt: its latest version and each label with the version it points at."""
    from abtest.prompts import list_prompts

    for latest, labels in _registry_call(list_prompts):
        shown = ", ".join(f"{label} -> @{version}" for label, version in sorted(labels.items()))
        typer.echo(f"{latest.ref} (latest); labels: {shown or 'none'}")


@prompts_app.command("label")
def prompts_label(
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    label: Annotated[str, typer.Argument(help="Label, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version the label points at.")],
) -> None:
    """Point LABEL of NAME at VERSION (processes see it within the cache TTL)."""
    from abtest.prompts import label_prompt

    found = _registry_call(label_prompt, name, label, version)
    typer.echo(f"{name}@{label} -> {found.ref}")


@prompts_app.command("show")
def prompts_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
) -> None:
    """Print one version's template."""
    from abtest.prompts import show_prompt

    found = _registry_call(show_prompt, ref)
    labels = f" [{', '.join(found.labels)}]" if found.labels else ""
    typer.echo(f"# {found.ref}{labels}")
    typer.echo(found.template)


@prompts_app.command("history")
def prompts_history(name: Annotated[str, typer.Argument(help="Prompt name.")]) -> None:
    """Every version of NAME, oldest first."""
    from abtest.prompts import prompt_history

    for version in _registry_call(prompt_history, name):
        labels = f" [{', '.join(version.labels)}]" if version.labels else ""
        typer.echo(f"{version.ref}{labels} sha256 {version.sha256[:12]}")


@app.command()
def report(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, json or csv.")] = "html",
    experiments: ExperimentsOption = None,
) -> None:
    """Analyse the experiment's events and write the report (HTML, JSON or CSV)."""
    import redis

    from analysis.report import build_report

    try:
        text = build_report(
            experiment_id,
            _experiments_dir(experiments),
            _store_client(),
            fmt=fmt,
        )
    except (ValueError, redis.RedisError) as exc:
        raise fail(f"error: {exc}") from None
    if out is None:
        typer.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("eval")
def evaluate(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where the HTML, JSON and per-row files go.")
    ] = Path("reports"),
    concurrency: Annotated[int, typer.Option(min=1, help="(row, arm) runs in flight.")] = 8,
    experiments: ExperimentsOption = None,
) -> None:
    """Run every arm on every row of the experiment's evaluation dataset and score the answers
    with its evaluators; report per evaluator and arm, paired against the control. Answers
    and scores are kept in the store by (row, arm fingerprint, evaluator fingerprint): a
    repeated run redoes only what changed, an interrupted one resumes."""
    import redis

    from abtest.evaluation.cache import EvalCache
    from abtest.evaluation.dataset import DatasetError
    from abtest.evaluation.outputs import write_outputs
    from abtest.evaluation.runner import evaluate_experiment
    from abtest.flows import FlowConfigError

    definitions = _load_all(experiments)
    experiment = definitions.get(experiment_id)
    if experiment is None:
        known = ", ".join(sorted(definitions)) or "none"
        raise fail(f"error: unknown experiment '{experiment_id}' (experiments: {known})")
    client = _store_client()
    bars: list = []

    def start(path: Path, total: int) -> None:
        typer.echo(
            f"eval: {total // len(experiment.arms)} rows x {len(experiment.arms)} arms of "
            f"'{experiment_id}' from {path}, "
            f"{len(experiment.evaluation.evaluators)} evaluators"
        )
        bars.append(typer.progressbar(length=total, label="runs").__enter__())

    try:
        with _llm_endpoint():
            done = evaluate_experiment(
                experiment,
                _experiments_dir(experiments),
                client,
                prompt_registry=_prompt_registry_for([experiment]),
                concurrency=concurrency,
                progress=lambda n: bars[-1].update(n),
                on_start=start,
            )
        outputs = write_outputs(experiment, done, out_dir, EvalCache(client, experiment.id))
    except (DatasetError, FlowConfigError, ValueError) as exc:
        raise fail(f"error: {exc}") from None
    except redis.RedisError as exc:
        raise fail(f"error: the store cannot be used: {exc}") from None
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    for line in done.bad_rows:
        typer.echo(f"bad row: {line}", err=True)
    typer.echo(
        f"{done.flows_run} arm runs and {done.scores_computed} scores computed, "
        f"{done.answers_cached} answers and {done.scores_cached} scores reused; "
        f"{done.llm_calls} LLM calls; {done.seconds:.1f} s"
    )
    _print_evaluation(outputs.summary)
    typer.echo(f"report: {outputs.html_path}\njson: {outputs.json_path}\nrows: {outputs.rows_path}")


def _print_evaluation(summary) -> None:
    """One table per evaluator: each arm's mean [interval], then its paired difference with
    the control [t interval], p-value, bootstrap interval and wins/ties/losses ("–" where
    nothing was scored)."""
    import pandas as pd

    for evaluator in summary.evaluators:
        rows = []
        for scores in evaluator.arms:
            row = {
                "arm": scores.arm,
                "n": scores.scored,
                "mean": _estimate(scores.mean, scores.ci_low, scores.ci_high, "{:.3f}"),
                "parse failures": scores.parse_failures,
                "errors": scores.run_errors + scores.bad_inputs + scores.evaluator_errors,
            }
            if scores.arm != summary.control:
                paired = evaluator.comparison(scores.arm)
                test = paired.test
                row["diff vs control"] = _estimate(
                    test.mean_diff, test.ci_low, test.ci_high, "{:+.3f}"
                )
                row["p"] = "–" if test.p_value != test.p_value else f"{test.p_value:.3g}"
                row["bootstrap"] = _estimate(
                    None, paired.bootstrap_low, paired.bootstrap_high, "{:+.3f}"
                )
                row["W/T/L"] = f"{paired.wins}/{paired.ties}/{paired.losses}"
            rows.append(row)
        typer.echo(f"\n-- {evaluator.name} ({evaluator.kind}) --")
        typer.echo(pd.DataFrame(rows).fillna("").to_string(index=False))


def _estimate(value: float | None, low: float, high: float, spec: str) -> str:
    """`value [low, high]` (or just the interval without a value); "–" when undefined."""
    if value is not None and value != value:
        return "–"
    interval = "" if low != low else f"[{spec.format(low)}, {spec.format(high)}]"
    if value is None:
        return interval or "–"
    return f"{spec.format(value)} {interval}".strip()


@app.command()
def export(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
) -> None:
    """Archive both event streams of an experiment to one Parquet file."""
    from abtest.events import export_parquet

    rows = export_parquet(_store_client(), experiment_id, out)
    typer.echo(f"wrote {rows} events to {out}")


@app.command()
def monitor(
    experiments: ExperimentsOption = None,
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
) -> None:
    """Watch the guardrails of running experiments that have a `safety:` section and stop a
    treatment arm shown harmful beyond its margin (one leader across monitors; `abtest serve`
    runs one too unless ABTEST_MONITOR=off). Prints every check with --once, else each stop."""
    import redis

    from abtest.monitor import Monitor, watched_experiments

    loaded = _load_all(experiments)
    watched = watched_experiments(loaded)
    if not watched:
        raise fail("error: no running experiment has a safety: section with a guardrail to watch")
    typer.echo(f"monitor: watching {', '.join(e.id for e in watched)}")
    runner = Monitor(_store_client(), lambda: loaded)
    if not once:
        runner.run_forever(on_pass=_print_stops)
        return
    try:
        done = runner.tick()
    except redis.RedisError as exc:
        raise fail(f"error: the store cannot be used: {exc}") from None
    finally:
        runner.close()
    if not done.leader:
        raise fail(f"error: another monitor ({done.holder}) is the leader; nothing done")
    for line in done.lines(every_check=True):
        typer.echo(line)


@app.command()
def judge(
    experiments: ExperimentsOption = None,
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
) -> None:
    """Score the sampled live runs of experiments with online judges (`judge_sample_rate`
    above 0) and record each score as the outcome `judge:<evaluator>`; `abtest serve` runs
    this worker too unless ABTEST_JUDGE=off. Prints what each pass judged."""
    import redis

    from abtest.judging import JudgeWorker, judged_experiments

    loaded = _load_all(experiments)
    judged = judged_experiments(loaded)
    if not judged:
        raise fail(
            "error: no experiment has an llm_judge evaluator with a judge_sample_rate above 0"
        )
    typer.echo(f"judge: judging {', '.join(e.id for e in judged)}")
    with _llm_endpoint():
        worker = JudgeWorker(_store_client(), lambda: loaded, settings=settings())
        if not once:
            worker.run_forever(on_pass=_print_judged)
            return
        try:
            done = worker.tick()
        except redis.RedisError as exc:
            raise fail(f"error: the store cannot be used: {exc}") from None
        finally:
            worker.close()
    for line in done.lines():
        typer.echo(line)


def _print_judged(done) -> None:
    if done.judged or done.skipped:
        for line in done.lines():
            typer.echo(line)


def _print_stops(done) -> None:
    for line in done.lines(every_check=False):
        typer.echo(line)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
