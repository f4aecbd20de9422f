"""The event store: validated persons and events in an embedded DuckDB, read from CSV or Parquet.

Loading validates every row once (see `features.contract.checks`), keeps the accepted rows in typed
tables, and accounts for every other row: in strict mode it raises with the first problems, in
lenient mode it writes them to a rejects file. Exact duplicate events, a known wart of registry
extracts, are collapsed and counted rather than dropped silently.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from features.contract.checks import (
    ANSWERS_DATE,
    EVENT_COLUMNS,
    PERSON_COLUMNS,
    Column,
    answers_date_sql,
    declared_columns,
    event_checks,
    person_checks,
    problem_list,
    registration_answer_checks,
    require_columns,
)
from features.contract.codebook import FILE as CODEBOOK_FILE
from features.contract.codebook import Codebook, find_codebook, read_codebook
from features.contract.vocabulary import EVENT_TYPES
from features.core.errors import ContractError, InputError, Problem
from features.core.io import atomic_path, file_sha256
from features.core.settings import settings
from features.residence import districts_sql
from features.spec import FEATURES, Feature, codebook_features, register
from features.storage.csv_text import ENCODING, read_registry_csv
from features.storage.postgres import DatabaseRegistry, is_database

MAX_LISTED_PROBLEMS = 20
METADATA_FILE = "dataset.json"
KNOWN_AT_SCHEMA = "known_at"


@dataclass
class LoadReport:
    persons: int = 0
    events: int = 0
    rejected_persons: int = 0
    rejected_events: int = 0
    duplicate_events_collapsed: int = 0
    rejects_path: Path | None = None
    events_by_type: dict[str, int] = field(default_factory=dict)


def connect(
    memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that spills to disk instead of failing on inputs larger than memory."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    given = settings()
    con.execute(f"SET memory_limit = '{memory_limit or given.duckdb_memory}'")
    spill = Path(tempfile.gettempdir()) / "sunshine-duckdb-spill"
    con.execute(f"SET temp_directory = '{spill}'")
    if threads or given.duckdb_threads:
        con.execute(f"SET threads = {int(threads or given.duckdb_threads or 1)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def find_table(data_dir: Path, name: str) -> Path | None:
    found = [p for p in (data_dir / f"{name}.parquet", data_dir / f"{name}.csv") if p.exists()]
    if len(found) > 1:
        raise InputError(f"{data_dir}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def read_reference_date(data_dir: Path) -> dt.date | None:
    meta = data_dir / METADATA_FILE
    if not meta.exists():
        return None
    try:
        return dt.date.fromisoformat(json.loads(meta.read_text())["reference_date"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ContractError(f"{meta}: reference_date must be an ISO date ({exc})") from None


def registry_files(data_dir: Path) -> list[Path]:
    """The files a registry folder is made of (persons, events, its metadata and codebook),
    in name order: what identifies its data, and what a change to means new data. By their
    exact names: a file being written beside one (`events.parquet.new`, renamed over it when
    complete) is not yet the registry's, and counting it let a refresh read the old file."""
    names = {f"{t}.{s}" for t in ("persons", "events") for s in ("parquet", "csv")}
    names |= {METADATA_FILE, CODEBOOK_FILE}
    return sorted(p for p in Path(data_dir).iterdir() if p.is_file() and p.name in names)


def open_registry(data: Path | str | DatabaseRegistry) -> Path | DatabaseRegistry:
    """Where a registry lives: a data folder, or a PostgreSQL database named by its URL."""
    if isinstance(data, DatabaseRegistry):
        return data
    if is_database(data):
        return DatabaseRegistry.parse(str(data))
    if not Path(data).is_dir():
        raise InputError(f"{data}: no such data directory")
    return Path(data)


def reference_date_of(source: Path | DatabaseRegistry) -> dt.date | None:
    """The registry's own reference date ("today" of its data), if it records one."""
    if isinstance(source, DatabaseRegistry):
        return source.reference_date()
    return read_reference_date(source)


def identity_of(
    source: Path | DatabaseRegistry, reference_date: dt.date | None, content: bool = False
) -> dict:
    """What identifies a registry's data: its name, the reference date, and its files'
    stamps (cheap, without reading them: a materialized state is matched on this) or, with
    `content`, their SHA-256 (a resumed roster run: a file rewritten with its size and time
    kept is other data all the same). A database is identified by its stamp."""
    # a folder by its absolute path: `--data registry` run from its parent and `--data
    # /srv/registry` are the same data, and a materialized state or a resumable run of one
    # serves the other (compared as given, the state of 1M persons was built again, ~5 min)
    name = source.name if isinstance(source, DatabaseRegistry) else str(Path(source).resolve())
    seen: dict[str, object]
    if content and not isinstance(source, DatabaseRegistry):
        seen = {"digests": {p.name: file_sha256(p) for p in registry_files(Path(source))}}
    else:
        seen = {"stamp": [list(x) for x in stamp_of(source)]}
    return {"source": name, **seen, "reference_date": str(reference_date)}


def stamp_of(source: Path | DatabaseRegistry) -> tuple:
    """What changes when new data arrives: each file's name, size and modification time,
    or a database's row counts and latest recorded_time. Cheap enough to poll."""
    if isinstance(source, DatabaseRegistry):
        return source.stamp()
    return tuple(file_stamp(p) for p in registry_files(source))


def file_stamp(path: Path) -> tuple:
    """A file's name, size and modification time: what changes when it is written again."""
    stat = path.stat()
    return (path.name, stat.st_size, stat.st_mtime_ns)


def _raw_file(con: duckdb.DuckDBPyConnection, path: Path, view: str) -> list[str]:
    """Expose a file as `view` with a 1-based `_row`; returns the view's columns."""
    if path.suffix == ".parquet":
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * EXCLUDE (file_row_number), "
                f"file_row_number + 1 AS _row FROM read_parquet({_sql_str(path)}, "
                "file_row_number = true)"
            )
            return [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
        except duckdb.Error as exc:
            raise ContractError(f"{path}: not a readable Parquet file ({exc})") from None
    return _raw_arrow(con, read_registry_csv(path), view)


def _raw_arrow(con: duckdb.DuckDBPyConnection, table: pa.Table, view: str) -> list[str]:
    con.register(f"{view}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {view}_arrow")
    return table.column_names


def _complete(
    con: duckdb.DuckDBPyConnection,
    where: str,
    view: str,
    columns: tuple[Column, ...],
    have: list[str],
) -> list[str]:
    """Check a raw view's header against the contract and expose it as `{view}_full` with every
    contract column (an absent optional one as NULLs); returns its columns but `_row`."""
    require_columns(where, columns, have)
    absent = [c for c in columns if c.name not in have]
    if absent:
        nulls = ", ".join(f"CAST(NULL AS VARCHAR) AS {c.name}" for c in absent)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view}_full AS SELECT *, {nulls} FROM {view}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view}_full AS SELECT * FROM {view}")
    return [c for c in have if c not in ("_row", ENCODING)]


def _sql_str(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class Store:
    """Validated persons and events, with the dataset's reference date ("today" of the data).

    `data` is a data folder (persons and events as CSV or Parquet) or a PostgreSQL registry's
    URL (`features.storage.postgres`); both pass the same contract."""

    def __init__(
        self,
        data: Path | str | DatabaseRegistry,
        *,
        reference_date: dt.date | None = None,
        lenient: bool = False,
        rejects_path: Path | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
        codebook: Codebook | None = None,
    ) -> None:
        self.source = open_registry(data)
        ref = reference_date or reference_date_of(self.source)
        if ref is None:
            where = (
                "write one row into its dataset table"
                if isinstance(self.source, DatabaseRegistry)
                else f'write {METADATA_FILE} with {{"reference_date": "YYYY-MM-DD"}}'
            )
            raise ContractError(f"{self.name}: no reference date; {where} or pass --reference-date")
        self.reference_date = ref
        self.con = con or connect()
        self.catalog = "memory"  # where persons and events live (`saved` when opened from a file)
        self.report = LoadReport()
        folder = self.source if isinstance(self.source, Path) else Path.cwd()
        self._load(lenient, rejects_path or folder / "rejects.csv", codebook)

    @property
    def name(self) -> str:
        """The registry as messages name it (a database never with its password)."""
        return self.source.name if isinstance(self.source, DatabaseRegistry) else str(self.source)

    def stamp(self) -> tuple:
        return stamp_of(self.source)

    def identity(self, content: bool = False) -> dict[str, object]:
        return identity_of(self.source, self.reference_date, content)

    def digests(self) -> dict[str, str]:
        """Each registry file's SHA-256, or, for a database, its stamp: enough for a model's
        card to tell whether two runs saw the same data, without copying any of it."""
        if isinstance(self.source, DatabaseRegistry):
            return {self.source.name: repr(self.source.stamp())}
        return identity_of(self.source, self.reference_date, content=True)["digests"]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for another thread; it sees the same persons and events."""
        con = self.con.cursor()
        con.execute(f"USE {self.catalog}")
        return con

    # -- a validated store as a file, for processes that share it -------------------------------
    SAVED_TABLES = ("persons", "events", "residence")

    def save(self, path: Path) -> None:
        """The validated tables as one DuckDB file, which `open_saved` maps read-only in any
        number of processes: they share the validation done once, and the operating system's
        cache of the file, instead of each holding the registry in its own memory."""
        with atomic_path(Path(path)) as tmp:
            tmp.unlink(missing_ok=True)  # DuckDB creates the file itself
            self.con.execute(f"ATTACH {_sql_str(tmp)} AS out")
            try:
                for table in self.SAVED_TABLES:
                    order = " ORDER BY pk, event_time" if table == "events" else " ORDER BY pk"
                    self.con.execute(f"CREATE TABLE out.{table} AS SELECT * FROM {table}{order}")
            finally:
                self.con.execute("DETACH out")

    @classmethod
    def open_saved(
        cls,
        path: Path,
        source: Path | str | DatabaseRegistry,
        reference_date: dt.date,
        report: LoadReport,
        codebook: Codebook,
    ) -> Store:
        """A store over a file `save` wrote, read-only, as the registry `source` stood when it
        was validated (`report`); its memory is DuckDB's cache of the file, bounded by
        SUNSHINE_DUCKDB_MEMORY."""
        store = cls.__new__(cls)
        store.source = open_registry(source)
        store.reference_date = reference_date
        store.report = report
        store.con = connect()
        store.con.execute(f"ATTACH {_sql_str(Path(path))} AS saved (READ_ONLY)")
        store.catalog = "saved"
        store.con.execute("USE saved")
        store.answered_at_registration = []
        store.answers_dated = False
        store._adopt_codebook(codebook)
        return store

    def known_at(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own on which `events` holds only what the registry had recorded
        before the instant `SET VARIABLE known_before = TIMESTAMP '...'` names, and nothing
        after it. A figure computed there for a past month cannot change when a late record
        arrives: what was not recorded by then did not exist for it."""
        con = self.con.cursor()
        # in the in-memory catalog, which is writable even beside a read-only saved store
        con.execute(f"CREATE SCHEMA IF NOT EXISTS memory.{KNOWN_AT_SCHEMA}")
        con.execute(
            f"CREATE OR REPLACE VIEW memory.{KNOWN_AT_SCHEMA}.events AS SELECT * FROM "
            f"{self.catalog}.main.events WHERE available_time < getvariable('known_before')"
        )
        con.execute(f"SET search_path = 'memory.{KNOWN_AT_SCHEMA},{self.catalog}.main'")
        return con

    # -- loading -----------------------------------------------------------------------------
    def _load(self, lenient: bool, rejects_path: Path, codebook: Codebook | None) -> None:
        self._register_codebook(codebook)
        persons_where, have = self._raw("persons", "raw_persons", PERSON_COLUMNS)
        if persons_where is None:
            raise InputError(
                f"{self.name}: no table persons"
                if isinstance(self.source, DatabaseRegistry)
                else f"{self.name}: no persons.parquet or persons.csv"
            )
        events_where, _ = self._raw("events", "raw_events", EVENT_COLUMNS)
        con = self.con
        ref = {"ref": self.reference_date}

        self.answered_at_registration = declared_columns(
            f"{self.name}: {persons_where}", have, self.codebook
        )
        self.answers_dated = ANSWERS_DATE in have
        checks = person_checks() + registration_answer_checks(
            [self.codebook.item(c) for c in self.answered_at_registration], self.answers_dated
        )
        checks += self._encoding_check("raw_persons")
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE persons_checked AS
            WITH firsts AS (
                SELECT person_id, min(_row) AS first_row FROM raw_persons_full
                WHERE person_id IS NOT NULL GROUP BY person_id
            )
            SELECT r.*, {problem_list(checks)} AS problems
            FROM raw_persons_full r LEFT JOIN firsts f USING (person_id)
            """,
            ref,
        )
        typed = ", ".join(
            f"TRY_CAST({c.name} AS {c.sql_type}) AS {c.name}" for c in PERSON_COLUMNS[1:]
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE persons AS
            SELECT CAST(row_number() OVER (ORDER BY person_id) AS INTEGER) AS pk,
                   CAST(person_id AS VARCHAR) AS person_id, {typed}
            FROM persons_checked WHERE len(problems) = 0
            """
        )

        event_enum = ", ".join(f"'{e.name}'" for e in EVENT_TYPES)
        con.execute(f"CREATE TYPE IF NOT EXISTS event_type_t AS ENUM ({event_enum})")
        if events_where is not None:
            encoding = self._encoding_check("raw_events")
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE events_checked AS
                WITH rejected AS (
                    SELECT DISTINCT person_id FROM persons_checked WHERE len(problems) > 0
                    AND person_id NOT IN (SELECT person_id FROM persons)
                ), r AS (
                    SELECT e.*, p.pk, (x.person_id IS NOT NULL) AS rejected_person,
                        c.code AS cb_code, c.kind AS cb_kind, c.low AS cb_low,
                        c.high AS cb_high, c.answers AS cb_answers, c.allows AS cb_allows
                    FROM raw_events_full e
                    LEFT JOIN persons p ON p.person_id = e.person_id
                    LEFT JOIN rejected x ON x.person_id = e.person_id
                    LEFT JOIN codebook_items c
                        ON e.event_type = 'assessment' AND c.code = e.detail
                )
                SELECT r.*, {problem_list(event_checks() + encoding)} AS problems FROM r
                """,
                ref,
            )
        self._account(lenient, rejects_path, persons_where, events_where)
        self._build_events(events_where is not None)

    def _encoding_check(self, view: str) -> list[str]:
        """The check of a CSV's rows whose bytes are not UTF-8, where the file has such rows
        (features.storage.csv_text)."""
        have = [r[0] for r in self.con.execute(f"DESCRIBE {view}").fetchall()]
        return [f"r.{ENCODING}"] if ENCODING in have else []

    def _raw(
        self, table: str, view: str, columns: tuple[Column, ...]
    ) -> tuple[str | None, list[str]]:
        """Expose a registry table as `view` (and `{view}_full`); returns what problems name
        it by (a file's name, a database's schema.table) and its columns, or (None, [])."""
        if isinstance(self.source, DatabaseRegistry):
            have_db = self.source.columns(table)
            if have_db is None:
                return None, []
            where = f"{self.source.schema}.{table}"
            raw = _raw_arrow(self.con, self.source.read(table, columns, have_db), view)
            return where, _complete(self.con, f"{self.name}: {where}", view, columns, raw)
        path = find_table(self.source, table)
        if path is None:
            return None, []
        raw = _raw_file(self.con, path, view)
        return path.name, _complete(self.con, str(path), view, columns, raw)

    def _add_registration_answers(self) -> None:
        """Each declared persons column's answers as assessment events, dated (and recorded)
        on the row's answers_date, else at the person's registration, kept in the events'
        person and time order."""
        if not self.answered_at_registration:
            return
        day = answers_date_sql(self.answers_dated, "c")
        parts = [
            f"SELECT p.pk, CAST({day} AS TIMESTAMP) AS t, "
            f"CAST(TRY_CAST(c.{code} AS DOUBLE) AS DOUBLE) AS value, '{code}' AS detail "
            f"FROM persons_checked c JOIN persons p USING (person_id) "
            f"WHERE len(c.problems) = 0 AND c.{code} IS NOT NULL"
            for code in self.answered_at_registration
        ]
        self.con.execute(
            "CREATE OR REPLACE TABLE events AS SELECT * FROM ("
            "SELECT * FROM events UNION ALL BY NAME "
            "SELECT pk, t AS event_time, t AS available_time, "
            "CAST('assessment' AS event_type_t) AS event_type, value, detail FROM ("
            + " UNION ALL ".join(parts)
            + ")) ORDER BY pk, event_time"
        )

    def _adopt_codebook(self, codebook: Codebook) -> None:
        """The codebook, and the features it adds beside the spec's, known to every layer
        from now on."""
        self.codebook = codebook
        extra = codebook_features(codebook)
        register(extra)
        self.features: tuple[Feature, ...] = (*FEATURES, *extra)

    def _register_codebook(self, given: Codebook | None) -> None:
        """The dataset's codebook, or the one given (a registry's, for records scored against
        it); none: every assessment answer is an unknown item."""
        if given is not None:
            self.codebook = given
        elif isinstance(self.source, DatabaseRegistry):
            self.codebook = self.source.codebook()
        else:
            path = find_codebook(self.source)
            self.codebook = read_codebook(path) if path else Codebook(())
        self._adopt_codebook(self.codebook)
        self.con.register("codebook_frame", self.codebook.frame())
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE codebook_items AS SELECT CAST(code AS VARCHAR) AS code, "
            "CAST(kind AS VARCHAR) AS kind, CAST(low AS DOUBLE) AS low, "
            "CAST(high AS DOUBLE) AS high, CAST(answers AS DOUBLE[]) AS answers, "
            "CAST(allows AS VARCHAR) AS allows FROM codebook_frame"
        )
        self.con.unregister("codebook_frame")

    def _account(
        self, lenient: bool, rejects_path: Path, persons_where: str, events_where: str | None
    ) -> None:
        con = self.con
        sources = [("persons_checked", persons_where, PERSON_COLUMNS)]
        if events_where is not None:
            sources.append(("events_checked", events_where, EVENT_COLUMNS))
        problems: list[Problem] = []
        totals = {}
        for table, where, _ in sources:
            totals[table] = con.execute(
                f"SELECT count(*) FROM {table} WHERE len(problems) > 0"
            ).fetchall()[0][0]
            for row, reason in con.execute(
                f"SELECT _row, unnest(problems) FROM {table} WHERE len(problems) > 0 "
                f"ORDER BY _row LIMIT {MAX_LISTED_PROBLEMS}"
            ).fetchall():
                column, _, why = reason.partition(": ")
                problems.append(Problem(where, row, column, why))
        self.report.rejected_persons = totals["persons_checked"]
        self.report.rejected_events = totals.get("events_checked", 0)
        bad = self.report.rejected_persons + self.report.rejected_events
        if bad and not lenient:
            total_problems = sum(
                con.execute(f"SELECT coalesce(sum(len(problems)), 0) FROM {t}").fetchall()[0][0]
                for t, _, _ in sources
            )
            raise ContractError(
                f"{self.name}: {bad} row(s) fail the data contract "
                f"(use --lenient to set them aside in a rejects file):",
                problems[:MAX_LISTED_PROBLEMS],
                total_problems,
            )
        if bad:
            self._write_rejects(sources, rejects_path)

    def _write_rejects(self, sources: list, rejects_path: Path) -> None:
        parts = []
        for table, where, columns in sources:
            cols = ", ".join(f"CAST({c.name} AS VARCHAR) AS {c.name}" for c in columns)
            parts.append(
                f"SELECT '{where}' AS file, _row AS row, array_to_string(problems, '; ') "
                f"AS reasons, {cols} FROM {table} WHERE len(problems) > 0"
            )
        query = " UNION ALL BY NAME ".join(parts) + " ORDER BY file, row"
        with atomic_path(rejects_path) as tmp:
            self.con.execute(f"COPY ({query}) TO {_sql_str(tmp)} (HEADER, DELIMITER ',')")
        self.report.rejects_path = rejects_path

    def _build_events(self, have_events: bool) -> None:
        con = self.con
        if have_events:
            con.execute(
                """
                CREATE OR REPLACE TABLE events AS
                SELECT DISTINCT pk,
                    TRY_CAST(event_time AS TIMESTAMP) AS event_time,
                    greatest(TRY_CAST(event_time AS TIMESTAMP),
                             coalesce(TRY_CAST(recorded_time AS TIMESTAMP),
                                      TRY_CAST(event_time AS TIMESTAMP))) AS available_time,
                    CAST(event_type AS event_type_t) AS event_type,
                    TRY_CAST(value AS DOUBLE) AS value,
                    CAST(detail AS VARCHAR) AS detail
                FROM events_checked WHERE len(problems) = 0
                ORDER BY pk, event_time
                """
            )
            accepted = con.execute(
                "SELECT count(*) FROM events_checked WHERE len(problems) = 0"
            ).fetchall()[0][0]
            con.execute("DROP TABLE events_checked")
        else:
            con.execute(
                "CREATE OR REPLACE TABLE events (pk INTEGER, event_time TIMESTAMP, "
                "available_time TIMESTAMP, event_type event_type_t, value DOUBLE, detail VARCHAR)"
            )
            accepted = 0
        self._add_registration_answers()
        con.execute("DROP TABLE persons_checked")
        # where each person lives on the reference date (what a caseworker's districts match)
        con.execute(
            "CREATE OR REPLACE TABLE residence AS "
            + districts_sql("CAST($ref AS TIMESTAMP) + INTERVAL 1 DAY"),
            {"ref": self.reference_date},
        )
        r = self.report
        r.persons = con.execute("SELECT count(*) FROM persons").fetchall()[0][0]
        r.events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        r.duplicate_events_collapsed = accepted - r.events
        r.events_by_type = dict(
            con.execute(
                "SELECT CAST(event_type AS VARCHAR), count(*) FROM events "
                "GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        )
