"""The machine's PostgreSQL (127.0.0.1:5432, trust auth, database `test`) for the tests whose
subject it is: each gets a database of its own, dropped afterwards. Where no server answers
the tests are skipped saying so, except under CI=true, where that is a failure."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

HOST, PORT, USER, ADMIN_DB = "127.0.0.1", 5432, "postgres", "test"


def admin_connection():
    import psycopg

    return psycopg.connect(
        host=HOST, port=PORT, user=USER, dbname=ADMIN_DB, autocommit=True, connect_timeout=3
    )


def require_postgres() -> None:
    try:
        admin_connection().close()
    except Exception as exc:  # no server, no driver: the reason is what the skip says
        reason = f"PostgreSQL at {HOST}:{PORT} (database {ADMIN_DB}) is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database; yields its SQLAlchemy URL (psycopg 3 driver), then drops it."""
    require_postgres()
    name = f"sunshine_test_{uuid.uuid4().hex[:12]}"
    with admin_connection() as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{name}"
    finally:
        with admin_connection() as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
