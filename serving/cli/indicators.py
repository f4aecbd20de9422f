"""`sunshine indicators`: the programme's monthly indicators and district ranking."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

import typer

from features import cli as features_cli
from features.core import cli
from features.core.errors import InputError

ExternalOpt = Annotated[
    Path | None,
    typer.Option(help="CSV or .xlsx: district, month, indicator, value (drug price, ...)"),
]
PopulationOpt = Annotated[
    Path | None,
    typer.Option(help="CSV or .xlsx: district, age_band, count (default: Guiyang 2020)"),
]
IndicatorConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "--indicators-config", help="YAML: the indicators' settings and weights"
    ),
]


def register(app: typer.Typer) -> None:
    app.command()(indicators)


@cli.user_errors
def indicators(
    data: cli.DataOpt,
    out: Annotated[Path, typer.Option(help="output .xlsx or .parquet; an .html page beside it")],
    from_month: Annotated[
        str | None, typer.Option("--from", help="first month, YYYY-MM (default: 24 months back)")
    ] = None,
    to_month: Annotated[
        str | None, typer.Option("--to", help="last month, YYYY-MM (default: the latest complete)")
    ] = None,
    external: ExternalOpt = None,
    population: PopulationOpt = None,
    config: IndicatorConfigOpt = None,
    lenient: cli.LenientOpt = False,
    rejects: cli.RejectsOpt = None,
    reference_date: cli.RefOpt = None,
) -> None:
    """Monthly indicators by district (youth new-user, intake-and-control, abstinence
    consolidation and relapse rates, and any external ones), point in time, ranked."""
    from features.core.months import month_range, parse_month
    from features.indicators.inputs import load_indicator_config, read_external, read_population
    from features.indicators.monthly import indicator_table
    from serving.batch.indicator_report import check_out, write_report

    check_out(out)
    settings = load_indicator_config(config)
    people = read_population(population)
    first = parse_month(from_month, "--from") if from_month else None
    last = parse_month(to_month, "--to") if to_month else None
    store = features_cli.open_store(data, lenient, rejects, reference_date)
    months = month_range(first, last, store.reference_date)
    if len(months) > 120:
        raise InputError(
            f"{months[0]} to {months[-1]} is {len(months)} months; ask for 120 at most"
        )
    outside = read_external(external, settings, months[-1]) if external else None
    started = time.perf_counter()
    table = indicator_table(store, months, settings, people, outside)
    note = (
        f"{months[0]} to {months[-1]}; registry {store.name} as each month ended "
        f"(reference date {store.reference_date}); written "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. A district's score on an indicator is "
        "100 for the best and 0 for the worst district that month; the composite weighs them "
        f"as {settings.source} says."
    )
    paths = write_report(table, out, note)
    latest = table[(table["month"] == months[-1]) & (table["indicator"] == "composite")]
    cli.console.print(
        cli.frame_table(
            f"ranking {months[-1]}",
            latest[["district", "district_zh", "value", "rank", "rank_change"]].sort_values("rank"),
        )
    )
    cli.console.print(
        f"{len(months)} months x {table['indicator'].nunique()} indicators in "
        f"{time.perf_counter() - started:.1f}s -> {', '.join(str(p) for p in paths)}"
    )
