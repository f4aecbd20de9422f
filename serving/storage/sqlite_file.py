"""The service's SQLite files (the audit trail, sessions and follow-ups): created readable by
their owner only from the first byte, in WAL mode so readers never wait on a writer."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def create_private(path: Path) -> None:
    """The file, readable by its owner only from its first byte, if it is not there yet (and
    its folder, owner-only, if that is not there either: a first command in a new home)."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


def open_private(path: Path, schema: str) -> list[str]:
    """Create the file owner-only if it is new and apply the schema; returns the columns of
    the schema's first table, so a caller can recognise a file from an older version."""
    create_private(path)
    con = connect(path)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # once: the mode is stored in the file
        con.executescript(schema)
        table = schema.split("CREATE TABLE IF NOT EXISTS ", 1)[1].split()[0]
        columns = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    finally:
        con.close()
    return columns


class TurnLock:
    """Writers of several processes to one SQLite file, in turn: a lock on a side file, which
    the kernel hands to the next waiter the moment it is let go. SQLite's own wait for its
    write lock polls, sleeping 1, 2, 5, 10 ms and longer between tries, so with several
    workers writing the audit trail a request could sleep through many other commits."""

    def __init__(self, path: Path) -> None:
        lock = Path(f"{path}.lock")
        create_private(lock)
        self.fd = os.open(lock, os.O_RDWR)

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
