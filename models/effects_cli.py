"""`sunshine effects`: which support lowers whose risk, said for a data scientist in a terminal
(the tables themselves go to the output folder and the MLflow run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.cli import open_store
from features.core.cli import (
    DataOpt,
    LenientOpt,
    RefOpt,
    RejectsOpt,
    console,
    frame_table,
    user_errors,
)
from features.core.errors import InputError
from features.tasks import get_task
from models.cli import TaskOpt


def register(app: typer.Typer) -> None:
    app.command("effects")(effects_cmd)


@user_errors
def effects_cmd(
    data: DataOpt,
    task: TaskOpt,
    option: Annotated[
        str | None, typer.Option(help="one support option's code (default: every option)")
    ] = None,
    capacity: Annotated[
        float,
        typer.Option(
            help="the share of each as_of's cohort the programme can offer an option to",
            min=0.01,
            max=0.9,
        ),
    ] = 0.10,
    out: Annotated[
        Path | None,
        typer.Option(help="folder for the tables (default: effects-<task> here)"),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="serve every estimated option even where the gate refuses")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="why, required with --force")] = None,
    lenient: LenientOpt = False,
    rejects: RejectsOpt = None,
    reference_date: RefOpt = None,
) -> None:
    """Estimate each support option's effect on each person's risk from the offers recorded
    (support_offered events), say how sure it is, log it to MLflow and register the effects
    model beside the task's champion. Needs the task's champion risk model. An option with too
    few offers, or too little overlap between who was and was not offered, is refused."""
    from models.effects_model import effects_name
    from models.effects_run import run_effects
    from models.tracking import configure

    get_task(task)
    if force and not (reason or "").strip():
        raise InputError("--force needs --reason TEXT, recorded in the MLflow run")
    configure(existing=True)
    out = out or Path(f"effects-{task}")
    store = open_store(data, lenient, rejects, reference_date)
    run = run_effects(store, task, option, capacity, out, force=reason if force else None)
    show(run, out)
    name = effects_name(task)
    console.print(
        f"{name} version {run.version} "
        + (
            "is now champion: the service shows the served options' estimates beside the risk"
            if run.promoted
            else "registered, not champion: no option passed the gate"
        ),
        soft_wrap=True,
        highlight=False,
    )


def _points(v: float) -> str:
    return f"{100 * v:+.1f}"


def show(run, out: Path) -> None:
    """Each option: offers, overlap, average effect, heterogeneity, policies and verdict."""
    from models.effects_run import tables

    for code, r in run.results.items():
        est, lo, hi = r.ate
        console.print(f"\n[bold]{code}[/bold]", highlight=False)
        console.print(
            f"offered {r.offered:,} of {r.rows:,} cohort rows; {len(r.excluded):,} rows outside "
            f"the overlap left out (named in {out / f'{code}.excluded.csv'})",
            soft_wrap=True,
            highlight=False,
        )
        console.print(
            f"average effect on the chance of the outcome: {_points(est)} percentage points "
            f"(95% CI {_points(lo)} to {_points(hi)})",
            highlight=False,
        )
        area = r.qini_area
        console.print(
            f"Qini area on held-out persons: {area[0]:.4f} (95% CI {area[1]:.4f} to "
            f"{area[2]:.4f}; 0 = the estimates rank no better than chance)",
            highlight=False,
        )
        t = tables(r)
        console.print(
            frame_table("offering to the capacity share, held-out persons", t["policies"].round(2))
        )
        for name, title in (
            ("calibration", "calibration by quintile of the estimate, in percentage points"),
            ("by_group", "effect by group, in percentage points"),
        ):
            shown = t[name].copy()
            cols = [
                c for c in ("estimated", "doubly_robust", "effect", "low", "high") if c in shown
            ]
            shown[cols] = (100 * shown[cols]).round(1)
            console.print(frame_table(title, shown))
        console.print(f"verdict: {r.verdict()}", style="bold", highlight=False)
    for code, why in run.refused.items():
        console.print(f"\n{code}: refused: {why}", style="yellow", soft_wrap=True, highlight=False)
    console.print(f"\ntables -> {out}", highlight=False)
