"""The append-only audit trail of every risk request and score call, refused ones included.

SQLite by default; triggers refuse UPDATE and DELETE, so rows can only be added through the
service. Against someone with write access to the file itself, triggers are no protection
(they can be dropped), so each row also carries a seal over its own fields and the previous
row's seal, an HMAC under a key kept outside the database (serving.access.audit_keys):
deleting, inserting or altering any row breaks the chain from there on, and `sunshine audit
verify` names the first broken link; heads kept outside it find a chain cut short. Only the
pseudonymous person_id is stored, never other personal data. The file is created readable by
its owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from features.core.errors import ConfigError, InputError
from features.core.settings import (
    AUDIT_DB,
    AUDIT_HEADS,
    AUDIT_KEYS,
    home,
    settings,
)
from serving.access.audit_chain import COLUMNS, GENESIS, NAMES, Entry, Verdict, key_of, row_hash
from serving.access.audit_keys import KeyRing
from serving.access.audit_writer import GroupCommit
from serving.storage.service_db import open_database
from serving.storage.sqlite_file import TurnLock, connect, open_private

# how often the chain's head is written down outside the database
HEAD_SECONDS = 60.0
HEAD_LOG = logging.getLogger("sunshine.audit")
CHAIN_LOCK = 0x5375_6E73  # PostgreSQL advisory lock key of the chain's end

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    user TEXT,
    role TEXT,
    token_id TEXT,
    route TEXT NOT NULL,
    person_id TEXT,
    task TEXT,
    as_of TEXT,
    model_version TEXT,
    probability REAL,
    tier TEXT,
    request_id TEXT NOT NULL,
    client_request_id TEXT,
    client TEXT,
    status INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_person ON audit (person_id);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def open_audit(path: Path | str | None = None) -> AuditLog:
    """The trail: in the service's database when SUNSHINE_DATABASE_URL names one (PostgreSQL),
    else in its SQLite file (by default the home's `audit.db`)."""
    url = settings().database_url
    return AuditLog(path, url) if url and not url.startswith("sqlite") else AuditLog(path)


class AuditLog:
    """The trail in its SQLite file, or in the PostgreSQL database `url` names (migrated by
    `sunshine db upgrade`), where every worker and host appends to one chain."""

    def __init__(self, path: Path | str | None = None, url: str | None = None) -> None:
        self.path = Path(path) if path else home() / AUDIT_DB
        self.url = url
        given = settings()
        self.keys_path = given.audit_keys or self.path.with_name(AUDIT_KEYS)
        self.heads_path = given.audit_heads or self.path.with_name(AUDIT_HEADS)
        self._keys: KeyRing | None = None  # opened, or made, by the first write
        self.head: tuple[int, str] | None = None  # the last row this process wrote
        self._head_noted = -HEAD_SECONDS
        self.writer = GroupCommit(self)
        self._writer: Any = None
        self._wal: int | None = None  # the writer's descriptor of the SQLite file's log
        # requests begun in this process whose entries are not submitted yet (counted by
        # the service's middleware); read by the writer as a hint, so no lock
        self.coming = 0
        self._turn: contextlib.AbstractContextManager = contextlib.nullcontext()
        if url is not None:
            open_database(url).dispose()  # reachable, and at the service's schema
            return
        if "hash" not in open_private(self.path, SCHEMA):
            raise ConfigError(
                f"{self.path}: an audit log from before the hash chain; keep it as it is "
                "(archive it read-only) and start a new one with --audit-db"
            )
        self._turn = TurnLock(self.path)  # several workers' writers take turns at once

    def _connect(self) -> Any:
        """A DB-API connection in autocommit mode: transactions are begun explicitly."""
        if self.url is None:
            return connect(self.path)
        import psycopg

        return psycopg.connect(
            self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )

    def _sql(self, sql: str) -> str:
        return sql if self.url is None else sql.replace("?", "%s")

    def _begin(self, cur: Any) -> None:
        """Hold the trail's write lock for the transaction, so two writers (threads,
        processes or hosts) can never fork the chain."""
        if self.url is None:
            cur.execute("BEGIN IMMEDIATE")
        else:
            cur.execute("BEGIN")
            # an advisory lock, not LOCK TABLE: the service's role may only insert and read
            cur.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK})")

    def append(self, entries: list[Entry]) -> None:
        """Add entries to the chain; returns once they are committed."""
        self.writer.submit(entries).result()

    async def record(self, entries: list[Entry]) -> None:
        """`append` for the event loop: it waits for the commit without holding a thread."""
        await asyncio.wrap_future(self.writer.submit(entries))

    def _write(self, entries: list[Entry]) -> None:
        """Commit the entries, on the writer thread's own connection, kept open.

        A kept PostgreSQL connection that turns out broken before the commit (the database
        restarted, or dropped it while the writer was idle) is replaced and the entries
        written on the new one. One lost during the commit is not: the commit may have been
        made, and its callers hear of the failure."""
        while True:
            kept = self._writer is not None
            try:
                cur = self._prepare(entries)
                break
            except BaseException:
                # once at most: the connection opened to replace a broken one is not kept
                if not (self._close() and kept):
                    raise
        try:
            cur.execute("COMMIT")
        except BaseException:
            self._close()
            raise

    def _prepare(self, entries: list[Entry]) -> Any:
        """A transaction that holds the write lock while it reads the chain's end, with the
        entries inserted after it; returns its cursor, for the commit."""
        if self._writer is None:
            self._writer = self._connect()
            if self.url is None:
                # the commit writes the log without waiting for the disk: `_flush` does
                # that after the turn is let go (SQLite's own wait would hold the turn)
                self._writer.execute("PRAGMA synchronous=NORMAL")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        marks = ", ".join("?" * (len(COLUMNS) + 3))
        cur = self._writer.cursor()
        self._begin(cur)
        cur.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
        last = cur.fetchone()
        row_id, prev = last if last else (0, GENESIS)
        if self._keys is None:  # rows from the next one on are sealed with a key
            self._keys = KeyRing.open(self.keys_path, row_id + 1)
        self._keys = self._keys.refreshed()
        key = self._keys.newest
        rows = []
        for e in entries:
            row_id += 1
            values = (now, *(getattr(e, c) for c in COLUMNS[1:]))
            sealed = row_hash(prev, row_id, values, key)
            rows.append((row_id, *values, prev, sealed))
            prev = sealed
        self.head = (row_id, prev)
        cur.executemany(
            self._sql(f"INSERT INTO audit (id, {NAMES}, prev_hash, hash) VALUES ({marks})"), rows
        )
        return cur

    def _close(self) -> bool:
        """Roll back what is left open and close the writer's connection; returns whether the
        connection had been broken (by the database or the network)."""
        broken = bool(getattr(self._writer, "broken", False))
        if self._writer is not None:  # None: it could not be opened
            # SQLite would keep the write lock of a connection closed mid-transaction
            with contextlib.suppress(Exception):
                self._writer.rollback()
            self._writer.close()
            self._writer = None
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None
        return broken

    def _flush(self) -> None:
        """Put the commit on disk before any waiter hears back, outside the turn.

        In WAL mode SQLite appends a commit to the file's write-ahead log; with
        synchronous=FULL it waits for the disk while it still holds the write lock, so the
        other workers' writers wait for this one's disk too. With synchronous=NORMAL it does
        not wait, and the writer syncs the log itself, as SQLite would (fdatasync), once its
        turn is let go, while the next worker commits. A sync of the log puts on disk every
        frame written to it so far, this commit's and those before it; a checkpoint that
        moved them into the database first has synced both files itself. The log is neither
        removed nor replaced while this writer's connection is open, so its descriptor is
        kept as long as the connection.
        """
        if self.url is not None:
            return  # PostgreSQL's COMMIT has waited for its log on disk
        if self._wal is None:
            self._wal = os.open(f"{self.path}-wal", os.O_RDONLY)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the log's name: the file may be new
            finally:
                os.close(directory)
        os.fdatasync(self._wal)

    def note_head(self) -> None:
        """Every HEAD_SECONDS, the chain's head (the last row's id and seal) appended to the
        heads file, owner-only and append-only, and logged: kept where the database's owner
        does not write, `audit verify --heads` then finds a rewritten or cut chain."""
        if self.head is None or time.monotonic() - self._head_noted < HEAD_SECONDS:
            return
        row_id, sealed = self.head
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            fd = os.open(self.heads_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{now} {row_id} {sealed}\n".encode())
            finally:
                os.close(fd)
        except OSError as exc:  # the entries are on disk; their callers go on
            HEAD_LOG.error("could not write the audit head to %s: %s", self.heads_path, exc)
            return
        HEAD_LOG.info("audit head %s %s", row_id, sealed)
        self._head_noted = time.monotonic()

    def missing_heads(self, kept: list[tuple[int, str]]) -> list[str]:
        """Of heads kept earlier (row id, seal), those the chain no longer holds, said."""
        con = self._connect()
        try:
            cursor = con.cursor()
            lost = []
            for row_id, sealed in kept:
                cursor.execute(self._sql("SELECT hash FROM audit WHERE id = ?"), [row_id])
                found = cursor.fetchone()
                if found is None:
                    lost.append(f"row {row_id}, a head kept earlier, is gone (the chain was cut)")
                elif found[0] != sealed:
                    lost.append(
                        f"row {row_id} is sealed {found[0][:16]}..., not {sealed[:16]}... as "
                        "kept earlier (the chain was rewritten)"
                    )
            return lost
        finally:
            con.close()

    def query(
        self,
        person: str | None = None,
        user: str | None = None,
        since: dt.date | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> pd.DataFrame:
        """The entries that match, in the order written (or newest first); with `limit`, those
        of the latest `limit` requests only (a caseload page is one request of many entries)."""
        where: list[str] = []
        args: list = []
        if person:
            where.append("person_id = ?")
            args.append(person)
        if user:
            where.append('"user" = ?')
            args.append(user)
        if since:
            where.append("time >= ?")
            args.append(since.isoformat())
        sql = f"SELECT id, {NAMES} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            latest = (
                "SELECT request_id FROM audit"
                + (" WHERE " + " AND ".join(where) if where else "")
                + f" GROUP BY request_id ORDER BY max(id) DESC LIMIT {int(limit)}"
            )
            sql += (" AND" if where else " WHERE") + f" request_id IN ({latest})"
            args = args * 2
        sql += " ORDER BY id" + (" DESC" if newest_first else "")
        con = self._connect()
        try:
            cur = con.cursor()
            cur.execute(self._sql(sql), args)
            return pd.DataFrame(cur.fetchall(), columns=["id", *COLUMNS])
        finally:
            con.close()

    def last_used(self) -> dict[str, str]:
        """When each token was last used: the time of its latest entry."""
        con = self._connect()
        try:
            cur = con.cursor()
            cur.execute(
                "SELECT token_id, max(time) FROM audit WHERE token_id IS NOT NULL GROUP BY 1"
            )
            return dict(cur.fetchall())
        finally:
            con.close()

    def verify(self) -> Verdict:
        """Walk the chain from the first row: ids must run 1, 2, 3, ... (a gap is a deleted
        row), each row must link to the seal before it (an insertion breaks that) and its own
        seal must match its fields (an alteration breaks that). From the key ring's
        `keyed_from` on, every seal is an HMAC of a key in the ring: without the ring's keys,
        a row rewritten and sealed again does not verify."""
        ring = KeyRing.read(self.keys_path) if self.keys_path.exists() else None
        keyed_from = ring.keyed_from if ring is not None else None
        con = self._connect()
        try:
            cursor = con.cursor()
            cursor.execute(f"SELECT id, {NAMES}, prev_hash, hash FROM audit ORDER BY id")
            expected_id, prev, rows = 1, GENESIS, 0
            for row in cursor:
                row_id, values, link, sealed = row[0], row[1:-2], row[-2], row[-1]
                if row_id != expected_id:
                    return Verdict(
                        rows, row_id, f"rows {expected_id} to {row_id - 1} are missing (deleted)"
                    )
                if link != prev:
                    return Verdict(rows, row_id, "does not link to the row before it (inserted)")
                if why := _seal_problem(ring, keyed_from, row_id, tuple(values), prev, sealed):
                    return Verdict(rows, row_id, why)
                expected_id, prev, rows = row_id + 1, sealed, rows + 1
            return Verdict(rows, None, "every link holds", (rows, prev) if rows else None)
        finally:
            con.close()


def _seal_problem(
    ring: KeyRing | None,
    keyed_from: int | None,
    row_id: int,
    values: tuple,
    prev: str,
    sealed: str,
) -> str | None:
    """Why a row's seal does not hold, or None."""
    key_id = key_of(sealed)
    if key_id is None:
        if keyed_from is not None and row_id >= keyed_from:
            return f"sealed without a key, though rows from {keyed_from} on are keyed (rewritten)"
        return None if row_hash(prev, row_id, values) == sealed else _ALTERED
    if ring is None:
        return f"sealed with key {key_id}, and there is no key ring to check it against"
    if key_id not in ring.keys:
        return f"sealed with key {key_id}, which the key ring does not hold (forged)"
    if row_hash(prev, row_id, values, (key_id, ring.keys[key_id])) != sealed:
        return _ALTERED
    return None


_ALTERED = "its fields do not match its seal (altered)"


def parse_head(text: str, where: str) -> tuple[int, str]:
    """A head as `audit verify` prints it: ID:SEAL (a keyed seal holds a colon of its own)."""
    row, _, sealed = text.strip().partition(":")
    if not row.isdigit() or not sealed:
        raise InputError(f"{where}: {text!r} is not a head (ID:SEAL, as audit verify prints it)")
    return int(row), sealed


def read_heads(path: Path) -> list[tuple[int, str]]:
    """The heads of a heads file: one a line, `TIME ID SEAL`."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the heads file ({exc.strerror})") from None
    heads = []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise InputError(f"{path}: line {n} is not a head (TIME ID SEAL)")
        heads.append((int(parts[1]), parts[2]))
    return heads
