"""The command-line toolkit every layer's commands share: the consoles, the option types,
user mistakes as one clear line and exit 2, dates, and listings for people or programs."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from features.core.errors import InputError, SunshineError
from features.core.settings import AUDIT_DB, home

console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="data directory (persons, events), or a PostgreSQL registry: "
        "postgresql://user@host/db?schema=NAME",
    ),
]
LenientOpt = Annotated[
    bool, typer.Option("--lenient", help="set bad rows aside in a rejects file instead of failing")
]
RejectsOpt = Annotated[
    Path | None, typer.Option("--rejects", help="rejects file (default DATA/rejects.csv)")
]
LISTING_FORMATS = ("table", "csv", "json")
FormatOpt = Annotated[
    str, typer.Option("--format", help="table (for people), csv or json (for programs)")
]
ENGINES = ("duckdb", "spark")
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="duckdb (one machine, the default) or spark (a cluster; Parquet in and out)",
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option("--master", help="the Spark master (default local[2], on loopback)"),
]
RefOpt = Annotated[
    str | None,
    typer.Option("--reference-date", help="the data's 'today' (default: DATA/dataset.json)"),
]
AuditDbOpt = Annotated[
    Path | None,
    typer.Option("--audit-db", help=f"audit log (SQLite; default {AUDIT_DB} in the home)"),
]


def in_home(path: Path | None, name: str) -> Path:
    """A store's file or folder: the one given, else `name` in the home (features.core.settings)."""
    return path if path is not None else home() / name


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user's data mistake into a clear message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SunshineError as exc:
            # one line, wrapped by the terminal itself: a path or a command in the message is
            # never cut by an inserted line break, so it can be copied whole
            # escaped: a message quotes the user's own text (a file name, a cell, a column),
            # which rich would otherwise read as markup, and a stray "[/x]" would crash it
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper


def parse_date(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None


def cell(value: Any) -> str:
    """A table cell: floats to 3 places, and nothing at all for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def frame_table(title: str, frame: pd.DataFrame) -> Table:
    """A rich table that folds a long cell onto more lines rather than cut it short, so an
    identifier is always shown whole, at any terminal width."""
    table = Table(title=title)
    for c in frame.columns:
        table.add_column(str(c), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*[cell(v) for v in row])
    return table


def show_frame(frame: pd.DataFrame, fmt: str, title: str) -> None:
    """A listing in the chosen format: a table for people; CSV or JSON for other programs,
    on standard output, whole, with empty cells for missing values."""
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        # JSON has no NaN or infinity (JSON.parse rejects them): a missing or unbounded
        # number is null, and a listing that can hold one says why in a column of its own
        finite = frame.replace([math.inf, -math.inf], None)
        clean = finite.astype(object).where(finite.notna(), None)
        records = clean.to_dict(orient="records")
        sys.stdout.write(json.dumps(records, ensure_ascii=False, default=str, allow_nan=False))
        sys.stdout.write("\n")
    elif fmt == "table":
        cells = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
        widths = [
            max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(frame.columns)
        ]
        if sum(widths) + 3 * len(widths) + 1 <= console.width:
            console.print(frame_table(title, frame))
            return
        # too wide for the terminal: one block per row, a field a line, nothing cut short
        console.print(title, style="bold", highlight=False)
        name_width = max((len(str(c)) for c in frame.columns), default=0)
        for n, row in enumerate(cells, 1):
            console.print(f"-- {n} --", highlight=False)
            for c, v in zip(frame.columns, row, strict=True):
                console.print(f"{str(c):<{name_width}}  {v}", highlight=False, soft_wrap=True)
    else:
        raise InputError(f"--format must be one of {', '.join(LISTING_FORMATS)}, not {fmt!r}")
