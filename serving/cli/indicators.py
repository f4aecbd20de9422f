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


NoSuppressionOpt = Annotated[
    bool,
    typer.Option(
        "--no-suppression",
        help="analysts only: publish counts below the threshold too (written to the audit trail)",
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
    no_suppression: NoSuppressionOpt = False,
    audit_db: cli.AuditDbOpt = None,
) -> None:
    """Monthly indicators by district (youth new-user, intake-and-control, abstinence
    consolidation and relapse rates, and any external ones), point in time, ranked."""
    from features.core.months import month_range, parse_month
    from features.indicators.inputs import load_indicator_config, read_external, read_population
    from features.indicators.ranking import indicator_table
    from serving.batch.indicator_report import check_out, rank_range, write_report

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
    if no_suppression:
        audited_raw_export(audit_db, out, months)
    started = time.perf_counter()
    table = indicator_table(store, months, settings, people, outside, suppress=not no_suppression)
    note = (
        f"{months[0]} to {months[-1]}; registry {store.name} as each month ended "
        f"(reference date {store.reference_date}); written "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. A district's score on an indicator is "
        "100 for the best and 0 for the worst district that month; the composite weighs them "
        f"as {settings.source} says. "
        + (
            "RAW EXPORT: small counts are NOT withheld; not for publication."
            if no_suppression
            else f"Counts of fewer than {settings.suppress_below} persons are shown as "
            f"<{settings.suppress_below}, and * marks a count withheld so that a small one cannot "
            "be worked out from it."
        )
    )
    paths = write_report(table, out, note)
    latest = table[(table["month"] == months[-1]) & (table["indicator"] == "composite")]
    latest = latest.sort_values("rank")
    shown = latest.assign(
        interval=[
            f"{a:.1f}-{b:.1f}" for a, b in zip(latest["lower"], latest["upper"], strict=True)
        ],
        rank_range=[
            rank_range(a, b) for a, b in zip(latest["rank_lo"], latest["rank_hi"], strict=True)
        ],
    )
    cli.console.print(
        cli.frame_table(
            f"ranking {months[-1]} (ranges that overlap are no order)",
            shown[["district", "district_zh", "value", "interval", "rank", "rank_range"]],
        )
    )
    cli.console.print(
        f"{len(months)} months x {table['indicator'].nunique()} indicators in "
        f"{time.perf_counter() - started:.1f}s -> {', '.join(str(p) for p in paths)}"
    )


def audited_raw_export(audit_db: Path | None, out: Path, months: list[str]) -> None:
    """Write the raw export into the audit trail before any of it is computed: who (the
    operating-system account running the command), the months, and where it goes."""
    import getpass
    import uuid

    from features.core.settings import AUDIT_DB
    from serving.access.audit import open_audit
    from serving.access.audit_chain import Entry

    log = open_audit(cli.in_home(audit_db, AUDIT_DB))
    entry = Entry(
        route=f"cli indicators --no-suppression -> {out.resolve()}"[:500],
        request_id=str(uuid.uuid4()),
        status=200,
        user=getpass.getuser(),
        role="cli",
        as_of=f"{months[0]}..{months[-1]}",
    )
    log.append([entry])
    cli.err_console.print(
        f"raw export without disclosure control: written to the audit trail ({log.path})"
    )
