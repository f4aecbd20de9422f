"""The audit trail's chain and its writer: tampering named, two writers taking turns, group
commit, the disk synced outside the turn, and waiters told of every outcome."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import until

from serving.access.audit import AuditLog

SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


def _tamper(db: Path, sql: list[str]) -> None:
    con = sqlite3.connect(db)
    try:
        for statement in sql:
            con.execute(statement)
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("attack", "found"),
    [
        (
            [
                "INSERT INTO audit (id, time, route, request_id, status, prev_hash, hash) "
                "VALUES (6, 't', '/v1/models', 'r', 200, 'x', 'y')"
            ],
            "does not link to the row before it (inserted)",
        ),
        (
            ["DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE id = 2"],
            "rows 2 to 2 are missing (deleted)",
        ),
        (
            ["DROP TRIGGER audit_no_update", "UPDATE audit SET user = 'someone' WHERE id = 3"],
            "its fields do not match its seal (altered)",
        ),
    ],
)
def test_audit_verify_names_the_first_broken_link(tmp_path, attack, found):
    from serving.access.audit_chain import Entry

    db = tmp_path / "audit.db"
    log = AuditLog(db)
    for i in range(5):
        log.append([Entry("/v1/models", f"req{i}", 200, user="root", role="admin")])
    verify = [SUNSHINE, "audit", "verify", "--audit-db", str(db)]
    ok = subprocess.run(verify, capture_output=True, text=True)
    assert ok.returncode == 0 and "5 entries, every link holds" in ok.stdout
    _tamper(db, attack)
    broken = subprocess.run(
        verify, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert broken.returncode == 1 and found in " ".join(broken.stderr.split())
    assert "Traceback" not in broken.stderr


def test_two_writers_of_one_sqlite_trail_take_turns_and_keep_one_chain(tmp_path):
    """Two AuditLog objects on one file, as two workers hold: their writers take turns
    through the side lock file (owner-only, as the trail is) and the chain never forks."""
    import concurrent.futures as cf

    from serving.access.audit_chain import Entry

    db = tmp_path / "audit.db"
    workers = [AuditLog(db), AuditLog(db)]

    def write(k: int) -> None:
        workers[k % 2].append([Entry("/v1/x", f"r{k}-{i}", 200) for i in range(3)])

    with cf.ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(40)))
    verdict = workers[1].verify()
    assert verdict.intact and verdict.rows == 120
    assert stat.S_IMODE(Path(f"{db}.lock").stat().st_mode) == 0o600


def _held_turn(db: Path):
    """The trail's turn lock taken from outside, as another worker holds it while it writes."""
    import fcntl

    fd = os.open(f"{db}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_the_writer_commits_what_queued_while_it_waited_in_one_transaction(tmp_path):
    """Group commit: while another worker holds the turn, ten more callers queue up behind
    the entry the writer holds; when the turn comes, all eleven go in one transaction, and
    no caller hears back before its entry is on disk."""
    from serving.access.audit_chain import Entry

    db = tmp_path / "audit.db"
    log = AuditLog(db)
    write, transactions = log._write, []
    log._write = lambda entries: (transactions.append(len(entries)), write(entries))[1]
    fd = _held_turn(db)
    first = log.writer.submit([Entry("/v1/x", "first", 200)])
    until(lambda: log.writer.queue.empty())  # the writer has it and waits for its turn
    later = [log.writer.submit([Entry("/v1/x", f"r{i}", 200)]) for i in range(10)]
    time.sleep(0.2)
    assert not any(f.done() for f in [first, *later]) and log.query().empty
    os.close(fd)  # the other worker is done
    for f in [first, *later]:
        f.result(timeout=10)
    assert transactions == [11]
    assert log.query().request_id.tolist() == ["first", *(f"r{i}" for i in range(10))]
    assert log.verify().intact


def test_a_writer_waits_for_the_disk_after_letting_go_of_the_turn(tmp_path, monkeypatch):
    """Each commit is synced to disk (the SQLite file's log) before its caller hears back,
    but outside the turn: while one worker's writer waits for a slow disk, another worker's
    writer commits."""
    import threading

    from serving.access.audit_chain import Entry

    db = tmp_path / "audit.db"
    slow, other = AuditLog(db), AuditLog(db)
    waiting, disk_done = threading.Event(), threading.Event()
    synced: list[str] = []
    fdatasync = os.fdatasync

    def disk(fd: int) -> None:
        if (path := os.readlink(f"/proc/self/fd/{fd}")).startswith(str(tmp_path)):
            synced.append(path)  # this test's writers, not another test's server
        if threading.current_thread() is slow.writer.thread:
            waiting.set()
            assert disk_done.wait(10)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", disk)
    first = slow.writer.submit([Entry("/v1/x", "slow", 200)])
    assert waiting.wait(10)  # committed, and waiting for the disk
    other.append([Entry("/v1/x", "other", 200)])  # the turn is free meanwhile
    assert not first.done()  # no answer before its own sync
    disk_done.set()
    first.result(timeout=10)
    assert synced == [f"{db}-wal", f"{db}-wal"]
    assert other.query().request_id.tolist() == ["slow", "other"]
    assert other.verify().intact


def test_the_writer_waits_a_moment_for_entries_still_coming(tmp_path, monkeypatch):
    """While requests of its process are still being answered, the writer waits (briefly) for
    their entries to join its commit; with none coming it commits at once."""
    from serving.access import audit_writer
    from serving.access.audit_chain import Entry

    monkeypatch.setattr(audit_writer, "GATHER_SECONDS", 30.0)  # a long moment, to see it
    log = AuditLog(tmp_path / "audit.db")
    write, transactions = log._write, []
    log._write = lambda entries: (transactions.append(len(entries)), write(entries))[1]
    log.coming = 1
    first = log.writer.submit([Entry("/v1/x", "first", 200)])
    until(lambda: log.writer.queue.empty())  # the writer has it, and waits for the one coming
    time.sleep(0.2)
    assert not first.done()
    log.coming = 0
    log.append([Entry("/v1/x", "second", 200)])
    first.result(timeout=10)
    started = time.monotonic()
    log.append([Entry("/v1/x", "alone", 200)])  # nothing coming: no wait
    assert time.monotonic() - started < 10
    assert transactions == [2, 1]
    assert log.query().request_id.tolist() == ["first", "second", "alone"]


def test_a_waiter_that_gives_up_still_has_its_entry_written(tmp_path):
    """A request cancelled while its entry waits (a client gone): the entry is written all
    the same, and the writer goes on for the next."""
    from serving.access.audit_chain import Entry

    db = tmp_path / "audit.db"
    log = AuditLog(db)
    fd = _held_turn(db)
    first = log.writer.submit([Entry("/v1/x", "first", 200)])
    until(lambda: log.writer.queue.empty())
    gone = log.writer.submit([Entry("/v1/x", "gone", 200)])
    assert gone.cancel()
    os.close(fd)
    first.result(timeout=10)
    log.append([Entry("/v1/x", "next", 200)])
    assert log.query().request_id.tolist() == ["first", "gone", "next"]
    assert log.verify().intact


def test_a_failed_write_reaches_its_callers_and_the_writer_goes_on(tmp_path):
    from serving.access.audit_chain import Entry

    log = AuditLog(tmp_path / "audit.db")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        log.append([Entry("/v1/x", "broken", None)])  # type: ignore[arg-type]
    log.append([Entry("/v1/x", "next", 200)])
    assert log.query().request_id.tolist() == ["next"]
    assert log.verify().intact


def _entries(log: AuditLog, n: int, start: int = 0) -> None:
    from serving.access.audit_chain import Entry

    for i in range(start, start + n):
        log.append([Entry("/v1/models", f"req{i}", 200, user="root", role="admin")])


def _reseal(db: Path, key: tuple[str, bytes] | None, delete_after: int | None = None) -> None:
    """What whoever owns the database can do: drop the triggers, change, delete and renumber
    rows, and seal them all again (with the key, when it was stolen too)."""
    from serving.access.audit_chain import COLUMNS, GENESIS, NAMES, row_hash

    con = sqlite3.connect(db)
    try:
        con.execute("DROP TRIGGER audit_no_update")
        con.execute("DROP TRIGGER audit_no_delete")
        if delete_after is not None:
            con.execute("DELETE FROM audit WHERE id > ?", [delete_after])
        con.execute("UPDATE audit SET user = 'nobody' WHERE id = 2")
        prev = GENESIS
        for row in con.execute(f"SELECT id, {NAMES} FROM audit ORDER BY id").fetchall():
            sealed = row_hash(prev, row[0], tuple(row[1:]), key)
            con.execute(
                "UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", [prev, sealed, row[0]]
            )
            prev = sealed
        assert len(COLUMNS) == len(row) - 1
        con.commit()
    finally:
        con.close()


def _verify(db: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SUNSHINE, "audit", "verify", "--audit-db", str(db), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_chain_rewritten_and_sealed_again_without_the_key_does_not_verify(tmp_path):
    """The database's owner dropped the triggers, edited a row and sealed every row again:
    with plain SHA-256 that passed verify. The seals are HMACs of a key kept outside the
    database (owner-only), so neither plain nor home-made seals hold."""
    import json
    import secrets

    db = tmp_path / "audit.db"
    _entries(AuditLog(db), 6)
    ring = tmp_path / "audit-keys.json"
    assert stat.S_IMODE(ring.stat().st_mode) == 0o600
    assert json.loads(ring.read_text())["keyed_from"] == 1
    _reseal(db, None)
    broken = _verify(db)
    assert broken.returncode == 1
    assert "row 1: sealed without a key, though rows from 1 on are keyed" in broken.stderr
    _reseal(db, ("k1", secrets.token_bytes(32)))  # a key of its own, named as the real one
    broken = _verify(db)
    assert broken.returncode == 1 and "row 1: its fields do not match its seal" in broken.stderr


def test_kept_heads_find_a_chain_cut_short_even_by_whoever_has_the_key(tmp_path, monkeypatch):
    """With the key stolen too, 11 rows deleted and the rest sealed again verify as a chain;
    the heads kept outside the database (the writer's heads file, or one `verify` printed)
    do not hold, and verify says which."""
    import json

    from serving.access import audit

    monkeypatch.setattr(audit, "HEAD_SECONDS", 0.0)  # a head at every commit, to see them
    db = tmp_path / "audit.db"
    _entries(AuditLog(db), 20)
    heads = tmp_path / "audit-heads.log"
    assert stat.S_IMODE(heads.stat().st_mode) == 0o600
    assert len(heads.read_text().splitlines()) == 20
    printed = _verify(db)
    assert printed.returncode == 0 and "20 entries, every link holds; head 20:k1:" in printed.stdout
    head = printed.stdout.split("head ")[1].strip()
    assert _verify(db, "--expect-head", head, "--heads", str(heads)).returncode == 0
    ring = json.loads((tmp_path / "audit-keys.json").read_text())
    key = ("k1", bytes.fromhex(ring["keys"][0]["secret"]))
    _reseal(db, key, delete_after=9)
    assert _verify(db).returncode == 0  # as a chain it holds: the key was stolen
    cut = _verify(db, "--expect-head", head)
    assert cut.returncode == 1 and "row 20, a head kept earlier, is gone" in cut.stderr
    logged = _verify(db, "--heads", str(heads))
    assert logged.returncode == 1 and "(19 of 20 kept heads do not hold)" in logged.stderr
    assert "row 2 is sealed" in logged.stderr  # rewritten from row 2 on


def test_a_rotated_key_seals_new_rows_and_older_rows_still_verify(tmp_path):
    """A trail written before keys existed keeps its plain seals; the ring made at its next
    write seals every row after; a rotation seals the rows from then on with a new key."""
    from serving.access.audit_chain import GENESIS, row_hash

    db = tmp_path / "audit.db"
    log = AuditLog(db)
    con = sqlite3.connect(db)  # two rows as a trail from before keys has them
    prev = GENESIS
    for row_id in (1, 2):
        values = ("t", "root", "admin", None, "/v1/models", None, None, None, None, None,
                  None, f"old{row_id}", None, None, 200)  # fmt: skip
        sealed = row_hash(prev, row_id, values)
        con.execute(
            "INSERT INTO audit VALUES (" + ", ".join("?" * 18) + ")",
            [row_id, *values, prev, sealed],
        )
        prev = sealed
    con.commit()
    con.close()
    _entries(log, 2)
    rotated = subprocess.run(
        [SUNSHINE, "audit", "rotate-key", "--audit-db", str(db)], capture_output=True, text=True
    )
    assert rotated.returncode == 0 and "sealed with key k2" in rotated.stdout
    _entries(log, 2, start=2)  # the running writer takes the new key at its next commit
    seals = [r[0] for r in sqlite3.connect(db).execute("SELECT hash FROM audit ORDER BY id")]
    assert [s.split(":")[0] if ":" in s else "plain" for s in seals] == [
        "plain", "plain", "k1", "k1", "k2", "k2"
    ]  # fmt: skip
    ok = _verify(db)
    assert ok.returncode == 0 and "6 entries, every link holds; head 6:k2:" in ok.stdout
