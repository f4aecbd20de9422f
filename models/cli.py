"""CLI commands for data scientists: train, promote, and list models.

Heavy modules (LightGBM, MLflow, the training stack) are imported inside the commands, so
the `sunshine` command starts, and reports a user's mistake, in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.cli import open_store
from features.core.cli import (
    DataOpt,
    FormatOpt,
    LenientOpt,
    RefOpt,
    RejectsOpt,
    console,
    show_frame,
    user_errors,
)
from features.core.errors import RegistryError
from features.tasks import get_task, task_names

TaskOpt = Annotated[str, typer.Option(help="the task: relapse or youth_uptake")]

models_app = typer.Typer(help="The model registry.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("monitor")(monitor_cmd)
    app.command("recalibrate")(recalibrate_cmd)
    app.add_typer(models_app, name="models")


@user_errors
def train_cmd(
    data: DataOpt,
    task: TaskOpt,
    config: Annotated[
        Path | None, typer.Option(help="YAML config (default: the task's own)")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="your own outcome: person_id, as_of, label")
    ] = None,
    tune: Annotated[
        int, typer.Option(help="Optuna trials before the final fit (0 = none)", min=0)
    ] = 0,
    lenient: LenientOpt = False,
    rejects: RejectsOpt = None,
    reference_date: RefOpt = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default sunshine-<task>)")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="register as challenger")
    ] = True,
    split: Annotated[
        Path | None,
        typer.Option(
            help="a split fixed outside the project, replacing the config's: a CSV of "
            "person_id with part (train or test), or with group (each group held out in "
            "turn). In a config, split: {mode: group, by: COLUMN} holds out each value of any "
            "persons column, and by: item:CODE each first answer to a coded assessment (a "
            "trial, a site, a school)"
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            help="train on a label-stratified sample of N spine rows (for a cohort too big "
            "for memory); probabilities stay calibrated to the full cohort",
            min=1,
        ),
    ] = None,
    ceiling: Annotated[
        bool,
        typer.Option(
            "--ceiling",
            help="on a synthetic city: also fit the same learner with each person's hidden "
            "traits (its truth/ folder) and report the gap to that ceiling in the model card",
        ),
    ] = False,
) -> None:
    """Train a task's model, log the run to MLflow and register it as challenger."""
    from models.tracking import configure
    from models.training_run import train_task

    get_task(task)
    configure()
    train_task(
        data,
        task,
        config,
        labels,
        tune,
        lenient,
        rejects,
        reference_date,
        experiment,
        register,
        split,
        sample,
        ceiling,
    )


@user_errors
def promote_cmd(
    task: TaskOpt,
    version: Annotated[
        str | None, typer.Option(help="version to promote (default: challenger)")
    ] = None,
    force: Annotated[bool, typer.Option(help="promote even if the gate refuses")] = False,
    reason: Annotated[str | None, typer.Option(help="why, required with --force")] = None,
) -> None:
    """Make a version the champion if it is no worse than the current one."""
    from models.registry import promote
    from models.tracking import configure

    get_task(task)
    configure(existing=True)
    decision = promote(task, version, force, reason)
    for shown in decision.warnings:
        console.print(shown, style="yellow")
    if decision.promoted:
        console.print(
            f"sunshine-{task} version {decision.version} is now champion"
            + (f" (was {decision.previous})" if decision.previous else "")
            + (f"; gate overridden: {'; '.join(decision.reasons)}" if decision.reasons else "")
        )
        return
    raise RegistryError(
        f"refused to promote sunshine-{task} version {decision.version}: "
        + "; ".join(decision.reasons)
        + ". Use --force --reason TEXT to override."
    )


@user_errors
def rollback_cmd(
    task: TaskOpt,
    reason: Annotated[str, typer.Option(help="why, recorded in the registry")],
    to: Annotated[
        str | None, typer.Option(help="the former champion to restore (default: the last one)")
    ] = None,
) -> None:
    """Bring a former champion back, without the promotion gate."""
    from models.registry import rollback
    from models.tracking import configure

    get_task(task)
    configure(existing=True)
    decision = rollback(task, reason, to)
    console.print(
        f"sunshine-{task} version {decision.version} is champion again"
        + (f" (was {decision.previous})" if decision.previous else "")
    )


@user_errors
def recalibrate_cmd(
    task: TaskOpt,
    data: DataOpt,
    labels: Annotated[
        Path, typer.Option(help="the site's matured outcomes: person_id, as_of, label")
    ],
    from_version: Annotated[
        str | None, typer.Option(help="the version to recalibrate (default: the champion)")
    ] = None,
    lenient: LenientOpt = False,
    reference_date: RefOpt = None,
) -> None:
    """Refit a model's calibrator on a site's own outcomes and register it as challenger."""
    from models.recalibration import REPEATS, recalibrate, verdict
    from models.tracking import configure

    get_task(task)
    configure(existing=True)
    store = open_store(data, lenient, None, reference_date)
    r = recalibrate(store, task, labels, from_version)
    console.print(
        f"{r.rows:,} local rows ({r.positives:,} events): the new calibrator ({r.method}) "
        f"fitted on {r.fit_rows:,}, checked on the other {r.check_rows:,} (persons it never saw)"
    )
    console.print(
        f"ECE on the held-out half: {r.before['ece']:.4f} with version {r.source_version}'s "
        f"calibrator, {r.after['ece']:.4f} with the new one (Brier {r.before['brier']:.4f} -> "
        f"{r.after['brier']:.4f})"
    )
    console.print(
        f"over {REPEATS} halves drawn afresh (one half can flatter or wrong a calibrator by "
        f"luck): ECE with version {r.source_version}'s calibrator {r.spread['before'].said()}, "
        f"with a refitted one {r.spread['after'].said()}; a perfectly calibrated model shows "
        f"{r.spread['floor'].said()} on the same halves by chance alone: {verdict(r.spread)}",
        soft_wrap=True,
    )
    console.print(
        f"registered sunshine-{task} version {r.version} as challenger (run {r.run_id}); "
        f"`sunshine promote --task {task}` makes it the champion"
    )


@models_app.command("list")
@user_errors
def list_cmd(
    task: Annotated[str | None, typer.Option(help="only this task")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Registered versions with their aliases and key test metrics."""
    from models.registry import list_versions
    from models.tracking import configure

    configure(existing=True)
    tasks = [get_task(task).name] if task else list(task_names())
    frame = list_versions(tasks)
    if frame.empty and fmt == "table":
        console.print("no registered models yet: run `sunshine train --task ...`")
        return
    show_frame(frame, fmt, "registered models")


@user_errors
def monitor_cmd(
    task: TaskOpt,
    data: DataOpt,
    out: Annotated[Path, typer.Option(help="directory for the report, tables and status")],
    as_of: Annotated[
        str | None, typer.Option(help="the cohort's date (default: the data's reference date)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML: monitoring thresholds")] = None,
    model_version: Annotated[
        str | None, typer.Option(help="a registered version (default: the champion)")
    ] = None,
    lenient: LenientOpt = False,
    rejects: RejectsOpt = None,
    reference_date: RefOpt = None,
) -> None:
    """Drift since training and realized performance of the champion: ok, warning or alert
    with reasons, logged to MLflow (sunshine-monitor-<task>) with an HTML report. Exit code
    0 whatever the status; read it from the output or status.json."""
    from features.core.cli import parse_date
    from models.monitoring import load_monitor_config, monitor
    from models.tracking import configure

    get_task(task)
    thresholds = load_monitor_config(config)
    day = parse_date(as_of, "--as-of") if as_of else None
    configure(existing=True)
    store = open_store(data, lenient, rejects, reference_date)
    result, run_id = monitor(store, task, out, day, thresholds, model_version)
    style = {"ok": "green", "warning": "yellow", "alert": "bold red"}[result.status]
    console.print(
        f"{task} version {result.version}, cohort of {result.as_of} ({result.rows:,} persons): "
        f"[{style}]{result.status}[/]",
        highlight=False,
    )
    for reason in result.reasons:
        console.print(f"  {reason}", highlight=False, soft_wrap=True)
    console.print(f"report {out / 'report.html'}; MLflow run {run_id}")
