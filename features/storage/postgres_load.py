"""Put a validated registry into PostgreSQL: `sunshine load-registry --data DIR --to URL`.

The source passes the data contract first (strict, or with `--lenient` its bad rows set aside
in the rejects file), so the database only ever holds rows the contract accepts, under keys
and indexes a database can keep (a person once, every event's person known). The tables come
from Alembic migrations in the registry's own schema. The load is one transaction: a reader,
or a load killed halfway, sees the old rows or the new ones, never half of them.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from alembic import command
from alembic.config import Config

from features.contract.checks import PERSON_COLUMNS
from features.core.errors import InputError
from features.storage.postgres import DatabaseRegistry
from features.storage.store import Store

MIGRATIONS = Path(__file__).with_name("postgres_migrations")
TABLES = ("events", "persons", "codebook", "dataset")  # children first: what TRUNCATE takes
BATCH_ROWS = 500_000


def migrate(target: DatabaseRegistry) -> None:
    """Create or bring the registry's tables in `target.schema` to the newest migration."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", target.sqlalchemy_url.replace("%", "%%"))
    cfg.set_main_option("registry_schema", target.schema)
    try:
        command.upgrade(cfg, "head")
    except Exception as exc:  # unreachable, refused: name the database, not the traceback
        raise InputError(f"{target.name}: cannot create the registry's tables ({exc})") from None


def load_registry(store: Store, target: DatabaseRegistry, replace: bool = False) -> dict[str, int]:
    """Copy the store's accepted persons and events (and its codebook and reference date) into
    `target`; refuses a registry that holds rows unless `replace`. Returns the rows loaded."""
    migrate(target)
    persons = ", ".join(c.name for c in PERSON_COLUMNS)
    # registration answers are assessment events already; recorded_time keeps the point in
    # time the features see (available_time: never before the event itself)
    events = (
        store.cursor()
        .sql(
            "SELECT p.person_id, e.event_time, CAST(e.event_type AS VARCHAR) AS event_type, "
            "e.value, e.detail, e.available_time AS recorded_time "
            "FROM events e JOIN persons p USING (pk) ORDER BY e.pk, e.event_time"
        )
        .to_arrow_reader(BATCH_ROWS)
    )
    tables = {
        "persons": store.con.sql(f"SELECT {persons} FROM persons ORDER BY pk").to_arrow_table(),
        "events": events,
        "codebook": pa.Table.from_pandas(store.codebook.rows(), preserve_index=False),
        "dataset": pa.table(
            {"id": pa.array([1], pa.int32()), "reference_date": [store.reference_date]}
        ),
    }
    s = target.schema
    with target.connect() as con:
        with con.cursor() as cur:
            cur.execute(
                f"SELECT (SELECT count(*) FROM {s}.persons) + (SELECT count(*) FROM {s}.events)"
            )
            held = cur.fetchall()[0][0]
        if held and not replace:
            raise InputError(
                f"{target.name}: the registry already holds {held:,} rows; pass --replace to "
                "replace them in one transaction"
            )
        with con.cursor() as cur:
            cur.execute(f"TRUNCATE {', '.join(f'{s}.{t}' for t in TABLES)} RESTART IDENTITY")
        for name in ("persons", "events", "codebook", "dataset"):
            with con.cursor() as cur:
                cur.adbc_ingest(name, tables[name], mode="append", db_schema_name=s)
        con.commit()
    return {"persons": store.report.persons, "events": store.report.events}
