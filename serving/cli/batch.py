"""Batch commands: score a roster, or a task's whole cohort on a date (DuckDB or Spark)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer

from features import cli as features_cli
from features.core import cli
from features.core.errors import InputError
from features.core.io import atomic_path
from features.storage.store import Store

if TYPE_CHECKING:
    import datetime as dt

    from features.tasks import SupportOption, Task
    from models.risk_model import RiskModel
    from serving.batch.job import RosterJob
    from serving.batch.runner import RosterScorer


AsOfOpt = Annotated[str | None, typer.Option(help="default: the data's reference date")]
ModelVersionOpt = Annotated[str | None, typer.Option(help="a registered version")]
AliasOpt = Annotated[str, typer.Option(help="registry alias, if no --model-version")]
LangOpt = Annotated[str, typer.Option(help="factor and support labels: en or zh")]


def register(app: typer.Typer) -> None:
    app.command("score-roster")(score_roster)
    app.command("score-cohort")(score_cohort)


@cli.user_errors
def score_roster(
    roster: Annotated[Path, typer.Argument(help="CSV, Parquet or .xlsx with a person_id column")],
    task: Annotated[str, typer.Option(help="relapse or youth_uptake")],
    out: Annotated[Path, typer.Option(help="output .csv, .parquet or .xlsx")],
    data: cli.DataOpt,
    as_of: AsOfOpt = None,
    model_version: ModelVersionOpt = None,
    alias: AliasOpt = "champion",
    lang: LangOpt = "en",
    explain: Annotated[
        str, typer.Option(help="top3 (every row), top (high tier only), none")
    ] = "top3",
    resume: Annotated[bool, typer.Option(help="continue an interrupted run")] = False,
    fail_on_error: Annotated[bool, typer.Option(help="exit 1 if any row is an error")] = False,
    chunk_rows: Annotated[int, typer.Option(help="rows per chunk", min=100)] = 50_000,
    interventions: Annotated[Path | None, typer.Option(help="support options YAML")] = None,
    include_out_of_cohort: Annotated[
        bool,
        typer.Option(help="also score persons outside the task's cohort (with a warning)"),
    ] = False,
    engine: cli.EngineOpt = "duckdb",
    master: cli.MasterOpt = None,
) -> None:
    """Score a whole roster: one output row per input row, with reasons and support options.
    A person outside the task's cohort on as_of is not scored (status not_in_cohort) unless
    --include-out-of-cohort. On Spark, the registry's steps (look-up, cohort, features,
    scores and reasons) run on the executors, a chunk at a time."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from features.tasks import get_task
    from serving.batch.job import RosterJob
    from serving.scoring.interventions import load_interventions

    get_task(task)
    features_cli.check_engine(engine, data)
    day = cli.parse_date(as_of, "--as-of") if as_of else None
    job = RosterJob(
        roster, task, out, day, lang, explain, resume, chunk_rows, include_out_of_cohort
    )
    options = load_interventions(interventions)[task]

    from models.registry import load_model
    from models.tracking import configure
    from serving.batch.runner import count_rows
    from serving.batch.tracking import log_batch_run

    configure(existing=True)
    model, facts = load_model(task, alias=alias, version=model_version)
    console = cli.console
    with (
        _roster_scorer(engine, master, data, job, model, facts, options) as scorer,
        Progress(
            TextColumn("scoring"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} rows"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        ) as bar,
    ):
        started = time.perf_counter()
        tid = bar.add_task("rows", total=count_rows(roster), rate="")

        def advance(n: int) -> None:
            done = bar.tasks[0].completed + n
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(tid, advance=n, rate=f"{rate:,.0f} rows/s")

        summary = scorer.run(advance)
    log_batch_run(scorer, summary)
    console.print(
        f"wrote {summary.rows:,} rows to {out} and {out.with_suffix('.html')}"
        + (
            f" (resumed: {summary.chunks_skipped} chunk(s) already done)"
            if summary.chunks_skipped
            else ""
        )
    )
    table = cli.frame_table(
        "rows by status and tier",
        pd.DataFrame(
            [{"status": k, "rows": v} for k, v in sorted(summary.status.items())]
            + [{"status": f"tier {k}", "rows": v} for k, v in sorted(summary.tiers.items())]
        ),
    )
    console.print(table)
    by_district = pd.DataFrame(summary.districts).T.fillna(0).astype(int).sort_index()
    console.print(cli.frame_table("tiers by district", by_district.reset_index(names="district")))
    if fail_on_error and summary.status.get("error"):
        raise typer.Exit(1)


@contextlib.contextmanager
def _roster_scorer(
    engine: str,
    master: str | None,
    data: str,
    job: RosterJob,
    model: RiskModel,
    facts: dict,
    options: tuple[SupportOption, ...],
) -> Iterator[RosterScorer]:
    """The roster run on the engine asked for (a Spark session lasts as long as the run)."""
    from serving.batch.runner import RosterScorer

    if engine != "spark":
        yield RosterScorer(job, Store(data), model, facts, options)
        return
    from features.compute import spark
    from serving.batch.spark import SparkRosterScorer

    with spark.command_session(master) as session:
        registry = spark.SparkRegistry(session, Path(data))
        yield SparkRosterScorer(job, registry, model, facts, options)


@cli.user_errors
def score_cohort(
    task: Annotated[str, typer.Option(help="relapse or youth_uptake")],
    out: Annotated[Path, typer.Option(help="output .parquet (with --engine spark, a folder)")],
    data: cli.DataOpt,
    as_of: AsOfOpt = None,
    model_version: ModelVersionOpt = None,
    alias: AliasOpt = "champion",
    lang: LangOpt = "en",
    explain: Annotated[str, typer.Option(help="top3 (every row), top (high tier), none")] = "top3",
    interventions: Annotated[Path | None, typer.Option(help="support options YAML")] = None,
    engine: cli.EngineOpt = "duckdb",
    master: cli.MasterOpt = None,
) -> None:
    """Score everyone in the task's cohort on a date: the columns of score-roster, one row a
    person. On Spark, the executors score with the same model and reasons."""
    from features.tasks import get_task
    from models.registry import load_model
    from models.tracking import configure
    from serving.batch.job import EXPLAIN_MODES
    from serving.scoring.interventions import load_interventions

    t = get_task(task)
    if explain not in EXPLAIN_MODES:
        raise InputError(f"--explain must be one of {', '.join(EXPLAIN_MODES)}")
    if out.suffix != ".parquet":
        raise InputError(f"{out}: score-cohort writes Parquet (.parquet)")
    options = load_interventions(interventions)[task]
    day = cli.parse_date(as_of, "--as-of") if as_of else None
    configure(existing=True)
    model, facts = load_model(task, alias=alias, version=model_version)
    started = time.perf_counter()
    if features_cli.check_engine(engine, data) == "spark":
        from features.compute import spark
        from serving.batch.spark import score_cohort as on_spark

        with spark.command_session(master) as session:
            registry = spark.SparkRegistry(session, Path(data))
            day = day or registry.reference_date
            _check_day(day, registry.reference_date)
            rows = on_spark(registry, t, day, model, facts, options, lang, explain, out)
    else:
        store = Store(data)
        day = day or store.reference_date
        _check_day(day, store.reference_date)
        rows = _score_cohort_here(t, store, day, model, facts, options, lang, explain, out)
    cli.console.print(
        f"{task}: scored {rows:,} persons in the cohort on {day} -> "
        f"{out} ({engine}, {time.perf_counter() - started:.1f}s)"
    )


def _check_day(day: dt.date, reference: dt.date) -> None:
    from features.contract.checks import as_of_problem

    if why := as_of_problem(day, reference):
        raise InputError(f"--as-of {day}: {why}")


def _score_cohort_here(
    task: Task,
    store: Store,
    day: dt.date,
    model: RiskModel,
    facts: dict,
    options: tuple[SupportOption, ...],
    lang: str,
    explain: str,
    out: Path,
) -> int:
    """The cohort as a roster, through the roster scorer: one machine, DuckDB."""
    from features.compute.labels import cohort_spine
    from serving.batch.job import RosterJob
    from serving.batch.runner import RosterScorer

    spine = cohort_spine(store, task, day)
    roster = out.with_name(f".{out.name}.cohort.parquet")
    try:
        with atomic_path(roster) as tmp:
            spine.to_parquet(tmp, index=False)
        job = RosterJob(roster, task.name, out, day, lang, explain)
        summary = RosterScorer(job, store, model, facts, options).run()
    finally:
        roster.unlink(missing_ok=True)
    return summary.rows
