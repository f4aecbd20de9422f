"""A registry kept in PostgreSQL, read wherever a data folder is accepted.

A city's registry lives in its database, not in files. `--data postgresql://host/db?schema=s`
names one: the tables `persons`, `events`, `codebook` (optional) and `dataset` (its reference
date) in schema `s` (default `public`). Rows come out through the ADBC PostgreSQL driver, which
reads them with the server's binary COPY straight into Arrow; the store then validates them by
the same contract, with the same named rejects, as it does a file (a row is named by the
table's `row_id` key where it has one). A column whose database type cannot hold what the
contract expects (text where a timestamp belongs) is refused before any row is read, naming
the column: casting it row by row would turn a schema mistake into a million rejects.

`sunshine load-registry` creates these tables (Alembic migrations in `postgres_migrations/`,
with keys and indexes) and fills them from a data folder.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from features.contract.checks import Column
from features.contract.codebook import COLUMNS as CODEBOOK_COLUMNS
from features.contract.codebook import Codebook, parse_codebook
from features.core.errors import ContractError, InputError

SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# what each contract type may be stored as, and how it is read
TEXT = {"text", "character varying", "character"}
NUMBER = {"double precision", "real", "numeric", "integer", "bigint", "smallint"}
TIMESTAMP = {"timestamp without time zone", "timestamp with time zone"}
ACCEPTED = {"VARCHAR": TEXT, "DATE": {"date"}, "TIMESTAMP": TIMESTAMP, "DOUBLE": NUMBER}


def is_database(data: object) -> bool:
    return isinstance(data, str) and data.startswith(SCHEMES)


@dataclass(frozen=True)
class DatabaseRegistry:
    """A registry's database and schema; `url` is libpq's, without the schema parameter."""

    url: str
    schema: str

    @classmethod
    def parse(cls, text: str) -> DatabaseRegistry:
        parts = urllib.parse.urlsplit(text)
        query = urllib.parse.parse_qs(parts.query)
        schema = (query.pop("schema", None) or ["public"])[0]
        if not IDENTIFIER.fullmatch(schema):
            raise InputError(f"{text}: schema must be a plain lower-case name, not {schema!r}")
        rest = urllib.parse.urlencode(query, doseq=True)
        url = urllib.parse.urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
        return cls(url, schema)

    @property
    def name(self) -> str:
        """The registry as messages name it: never with a password."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path}?schema={self.schema}"

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)

    def connect(self) -> Any:
        from adbc_driver_postgresql import dbapi

        try:
            return dbapi.connect(self.url)
        except Exception as exc:  # refused, unknown host, bad credentials: say which
            raise InputError(f"{self.name}: cannot connect ({_first_line(exc)})") from None

    def query(self, sql: str) -> pa.Table:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def columns(self, table: str) -> dict[str, str] | None:
        """The table's columns and their database types, or None when there is no table."""
        found = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{self.schema}' AND table_name = '{table}' "
            "ORDER BY ordinal_position"
        ).to_pylist()
        return {r["column_name"]: r["data_type"] for r in found} or None

    def read(self, table: str, columns: tuple[Column, ...], have: dict[str, str]) -> pa.Table:
        """Every row of `table`, each contract column as its contract type, columns beyond the
        contract as text, and `_row` (its `row_id`, or its position when it has none)."""
        wrong = [
            f"{c.name} is {have[c.name]}, expected {c.sql_type.lower()}"
            for c in columns
            if c.name in have and have[c.name] not in ACCEPTED[c.sql_type]
        ]
        if wrong:
            raise ContractError(
                f"{self.name}: table {self.schema}.{table} has column(s) of the wrong type: "
                + "; ".join(wrong)
            )
        contract = {c.name: c for c in columns}
        picks = [
            _read_as(name, contract[name].sql_type if name in contract else "VARCHAR", kind)
            for name, kind in have.items()
            if name != "row_id"
        ]
        row = "row_id" if "row_id" in have else "row_number() OVER ()"
        picks.append(f"CAST({row} AS bigint) AS _row")
        return self.query(f"SELECT {', '.join(picks)} FROM {self.schema}.{table} ORDER BY _row")

    def reference_date(self) -> dt.date | None:
        if self.columns("dataset") is None:
            return None
        rows = self.query(f"SELECT reference_date FROM {self.schema}.dataset").to_pylist()
        if len(rows) != 1:
            raise ContractError(
                f"{self.name}: table {self.schema}.dataset must hold one row, not {len(rows)}"
            )
        return rows[0]["reference_date"]

    def codebook(self) -> Codebook:
        have = self.columns("codebook")
        if have is None:
            return Codebook(())
        picks = ", ".join(f'CAST("{c}" AS text) AS "{c}"' for c in CODEBOOK_COLUMNS if c in have)
        raw = self.query(f"SELECT {picks} FROM {self.schema}.codebook").to_pandas()
        return parse_codebook(raw.fillna(""), f"{self.name} table {self.schema}.codebook")

    def stamp(self) -> tuple:
        """What changes when rows arrive: the events' count and latest `recorded_time`, the
        persons' count, the reference date and the codebook's size. Cheap on indexed tables."""
        s = self.schema
        parts = [f"(SELECT count(*) FROM {s}.persons) AS persons"]
        events = self.columns("events") or {}
        if events:
            parts.append(f"(SELECT count(*) FROM {s}.events) AS events")
        if "recorded_time" in events:
            parts.append(f"(SELECT CAST(max(recorded_time) AS text) FROM {s}.events) AS recorded")
        if self.columns("dataset") is not None:
            parts.append(f"(SELECT CAST(max(reference_date) AS text) FROM {s}.dataset) AS ref")
        if self.columns("codebook") is not None:
            parts.append(f"(SELECT count(*) FROM {s}.codebook) AS items")
        return tuple(self.query("SELECT " + ", ".join(parts)).to_pylist()[0].items())


def _read_as(name: str, sql_type: str, kind: str) -> str:
    col = f'"{name}"'
    if sql_type == "TIMESTAMP" and kind == "timestamp with time zone":
        return f"({col} AT TIME ZONE 'UTC') AS {col}"
    if sql_type == "DOUBLE":
        return f"CAST({col} AS double precision) AS {col}"
    if sql_type == "VARCHAR":
        return f"CAST({col} AS text) AS {col}"
    return col


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
