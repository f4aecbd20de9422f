"""`sunshine followups`: the web pages' follow-ups, exported as data-contract events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.core import cli
from features.core.errors import InputError
from features.core.io import atomic_path
from features.core.settings import SERVICE_DB, settings
from serving.cli.service import ServiceDbOpt
from serving.storage.web_records import WebStore

followups_app = typer.Typer(help="Follow-ups recorded in the web pages.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(followups_app, name="followups")


@followups_app.command("export")
@cli.user_errors
def followups_export(
    out: Annotated[Path, typer.Option(help="events file to write (.csv or .parquet)")],
    service_db: ServiceDbOpt = None,
) -> None:
    """Every follow-up as a `support_offered` event of the data contract, for the next
    registry extract."""
    service_db = cli.in_home(service_db, SERVICE_DB)
    if not settings().database_url and not service_db.exists():
        raise InputError(f"{service_db}: no such service database (see --service-db)")
    if out.suffix not in (".csv", ".parquet"):
        raise InputError(f"{out}: write .csv or .parquet")
    events = WebStore(service_db).followup_events()
    with atomic_path(out) as tmp:
        if out.suffix == ".csv":
            events.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
        else:
            events.to_parquet(tmp, index=False)
    cli.console.print(f"{len(events):,} support_offered events -> {out}")
