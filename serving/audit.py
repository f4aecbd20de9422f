"""The append-only audit trail of every risk request and score call, refused ones included.

SQLite by default; triggers refuse UPDATE and DELETE, so rows can only be added. Only the
pseudonymous person_id is stored, never other personal data.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DEFAULT_AUDIT_DB = "audit.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    user TEXT,
    role TEXT,
    route TEXT NOT NULL,
    person_id TEXT,
    task TEXT,
    model_version TEXT,
    probability REAL,
    tier TEXT,
    request_id TEXT NOT NULL,
    client TEXT,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_person ON audit (person_id);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

COLUMNS = (
    "time",
    "user",
    "role",
    "route",
    "person_id",
    "task",
    "model_version",
    "probability",
    "tier",
    "request_id",
    "client",
    "status",
)


@dataclass
class Entry:
    route: str
    request_id: str
    status: int
    user: str | None = None
    role: str | None = None
    person_id: str | None = None
    task: str | None = None
    model_version: str | None = None
    probability: float | None = None
    tier: str | None = None
    client: str | None = None


class AuditLog:
    def __init__(self, path: Path | str = DEFAULT_AUDIT_DB) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        con = self._connect()
        try:
            con.execute("PRAGMA journal_mode=WAL")  # once: the mode is stored in the file
            con.executescript(SCHEMA)
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def append(self, entries: list[Entry]) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        rows = [
            (
                now,
                e.user,
                e.role,
                e.route,
                e.person_id,
                e.task,
                e.model_version,
                e.probability,
                e.tier,
                e.request_id,
                e.client,
                e.status,
            )
            for e in entries
        ]
        marks = ", ".join("?" * len(COLUMNS))
        with self._lock:
            con = self._connect()
            try:
                with con:  # one transaction, committed or rolled back
                    con.executemany(
                        f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({marks})", rows
                    )
            finally:
                con.close()

    def query(
        self, person: str | None = None, user: str | None = None, since: dt.date | None = None
    ) -> pd.DataFrame:
        where, args = [], []
        if person:
            where.append("person_id = ?")
            args.append(person)
        if user:
            where.append("user = ?")
            args.append(user)
        if since:
            where.append("time >= ?")
            args.append(since.isoformat())
        sql = "SELECT id, " + ", ".join(COLUMNS) + " FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        con = self._connect()
        try:
            return pd.read_sql_query(sql + " ORDER BY id", con, params=args)
        finally:
            con.close()
