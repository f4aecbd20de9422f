"""CLI commands of the feature layer: synth, validate, features."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from features.compute.builder import FeatureBuilder
from features.compute.labels import build_spine, check_label_window
from features.compute.unused import said, unused_events
from features.core.cli import (
    ENGINES,
    DataOpt,
    EngineOpt,
    LenientOpt,
    MasterOpt,
    RefOpt,
    RejectsOpt,
    console,
    parse_date,
    user_errors,
)
from features.core.errors import InputError
from features.core.io import write_table
from features.storage.store import LoadReport, Store
from features.synth.city import synthesize, write_population
from features.tasks import get_task, task_names


def open_store(
    data: str | Path, lenient: bool, rejects: Path | None, reference_date: str | None
) -> Store:
    ref = parse_date(reference_date, "--reference-date") if reference_date else None
    store = Store(data, reference_date=ref, lenient=lenient, rejects_path=rejects)
    print_report(store.report)
    return store


def print_report(report: LoadReport) -> None:
    table = Table(title="Data loaded", show_header=False)
    table.add_row("persons accepted", f"{report.persons:,}")
    table.add_row("events accepted", f"{report.events:,}")
    table.add_row("exact duplicate events collapsed", f"{report.duplicate_events_collapsed:,}")
    table.add_row("persons rejected", f"{report.rejected_persons:,}")
    table.add_row("events rejected", f"{report.rejected_events:,}")
    if report.rejects_path:
        table.add_row("rejects written to", str(report.rejects_path))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(synth)
    app.command()(validate)
    app.command()(features)
    app.command("load-registry")(load_registry)


@user_errors
def synth(
    out: Annotated[Path, typer.Option(help="output directory")],
    persons: Annotated[int, typer.Option(help="number of persons", min=1)] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same data")] = 7,
    drift_from: Annotated[
        str | None,
        typer.Option(
            help="a drift scenario from this date: one district stops recording check-ins and "
            "school absence doubles (for testing `sunshine monitor`)"
        ),
    ] = None,
    drift_district: Annotated[
        str, typer.Option(help="the district that stops recording check-ins")
    ] = "nanming",
) -> None:
    """Generate a synthetic Guiyang-like registry (persons, events) as Parquet."""
    from features.contract.vocabulary import DISTRICTS
    from features.synth.city import Drift

    drift = None
    if drift_from:
        if drift_district not in DISTRICTS:
            raise InputError(f"--drift-district {drift_district!r}: one of {', '.join(DISTRICTS)}")
        drift = Drift(parse_date(drift_from, "--drift-from"), drift_district)
    started = time.perf_counter()
    pop = synthesize(persons, seed, drift)
    write_population(pop, out, seed, drift)
    console.print(
        f"wrote {pop.persons.num_rows:,} persons and {pop.events.num_rows:,} events to {out} "
        f"in {time.perf_counter() - started:.1f}s"
    )


@user_errors
def validate(
    data: DataOpt,
    lenient: LenientOpt = False,
    rejects: RejectsOpt = None,
    reference_date: RefOpt = None,
) -> None:
    """Check persons and events against the data contract."""
    store = open_store(data, lenient, rejects, reference_date)
    table = Table(title="Events by type")
    table.add_column("event_type")
    table.add_column("events", justify="right")
    for name, count in store.report.events_by_type.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    persons = store.con.execute("SELECT person_id FROM persons").df()
    line = said(
        unused_events(store, persons.assign(as_of=store.reference_date)),
        f"the reference date {store.reference_date}",
    )
    if line:
        console.print(line, style="yellow", soft_wrap=True)


@user_errors
def features(
    data: DataOpt,
    task: Annotated[str, typer.Option(help=f"one of {', '.join(task_names())}")],
    out: Annotated[Path, typer.Option(help="output file (.parquet or .csv)")],
    as_of: Annotated[
        list[str] | None,
        typer.Option("--as-of", help="as-of date, repeatable (default: quarterly)"),
    ] = None,
    lenient: LenientOpt = False,
    rejects: RejectsOpt = None,
    reference_date: RefOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
) -> None:
    """Build the task's cohort, labels and point-in-time features."""
    get_task(task)
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"{out}: unsupported output format (use .parquet or .csv)")
    dates = [parse_date(d, "--as-of") for d in as_of] if as_of else None
    if check_engine(engine, data) == "spark":
        if out.suffix != ".parquet" or lenient:
            raise InputError("--engine spark writes Parquet (a directory) and has no --lenient")
        ref = parse_date(reference_date, "--reference-date") if reference_date else None
        build_on_spark(Path(data), task, out, dates, ref, master)
        return
    store = open_store(data, lenient, rejects, reference_date)
    build_and_write(store, task, out, dates)


def check_engine(engine: str, data: str | Path) -> str:
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "spark" and "://" in str(data):
        raise InputError(f"--engine spark reads a folder of Parquet files, not {data}")
    return engine


def build_on_spark(
    data: Path,
    task: str,
    out: Path,
    dates: list[dt.date] | None,
    reference_date: dt.date | None,
    master: str | None,
) -> None:
    """The same cohort, labels and features, built by Spark; Parquet partitioned by as_of."""
    from features.compute import spark

    started = time.perf_counter()
    with spark.command_session(master) as session:
        registry = spark.SparkRegistry(session, data, reference_date)
        t = get_task(task)
        dates = sorted(set(dates)) if dates else registry.default_dates(t)
        check_label_window(t, dates, registry.reference_date)
        rows = spark.spine(registry, t, dates).persist()
        written = spark.write(spark.features(registry, rows).drop("row_id", "pk"), out)
        counted = rows.groupBy("as_of").agg({"*": "count", "label": "sum"})
        counts = counted.toArrow().to_pandas()
    counts.columns = ["as_of", "rows", "positives"]
    print_spine_summary(task, counts.sort_values("as_of"))
    console.print(
        f"{task}: {written:,} rows x {len(registry.features)} features -> {out} "
        f"(Spark, partitioned by as_of; {time.perf_counter() - started:.1f}s)"
    )


@user_errors
def load_registry(
    data: DataOpt,
    to: Annotated[
        str, typer.Option("--to", help="the PostgreSQL registry: postgresql://...?schema=NAME")
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="replace the rows the registry holds")
    ] = False,
    lenient: LenientOpt = False,
    rejects: RejectsOpt = None,
    reference_date: RefOpt = None,
) -> None:
    """Validate a registry and load it into PostgreSQL (tables created by migrations), in
    one transaction."""
    from features.storage.postgres import DatabaseRegistry, is_database
    from features.storage.postgres_load import load_registry as load

    if not is_database(to):
        raise InputError(f"--to {to}: not a PostgreSQL URL (postgresql://user@host/db)")
    target = DatabaseRegistry.parse(to)
    store = open_store(data, lenient, rejects, reference_date)
    started = time.perf_counter()
    rows = load(store, target, replace)
    console.print(
        f"loaded {rows['persons']:,} persons and {rows['events']:,} events into {target.name} "
        f"({time.perf_counter() - started:.1f}s)"
    )


def build_and_write(store: Store, task: str, out: Path, dates: list[dt.date] | None) -> None:
    started = time.perf_counter()
    spine = build_spine(store, task, dates)
    builder = FeatureBuilder(store)
    if out.suffix == ".parquet":
        builder.write(spine, out)
    else:
        write_table(builder.build(spine), out)
    by_date = spine.groupby("as_of").label
    print_spine_summary(
        task, pd.DataFrame({"rows": by_date.size(), "positives": by_date.sum()}).reset_index()
    )
    console.print(
        f"{task}: {len(spine):,} rows x {len(builder.names)} features -> {out} "
        f"({time.perf_counter() - started:.1f}s)"
    )


def print_spine_summary(task: str, counts: pd.DataFrame) -> None:
    """`counts`: rows and positives by as_of."""
    table = Table(title=f"{task}: cohort and labels by as_of")
    for col in ("as_of", "rows", "positives", "rate"):
        table.add_column(col, justify="right")
    for r in counts.itertuples(index=False):
        table.add_row(
            str(r.as_of), f"{r.rows:,}", f"{r.positives:,}", f"{r.positives / r.rows:.1%}"
        )
    rows, positives = int(counts["rows"].sum()), int(counts["positives"].sum())
    if rows:
        table.add_row("all", f"{rows:,}", f"{positives:,}", f"{positives / rows:.1%}")
    console.print(table)
