"""The service's own records in the production database: PostgreSQL migrated by `sunshine db
upgrade`, used by the web pages for sessions, languages and follow-ups, and exported from."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pandas as pd
import psycopg
import pytest
from conftest import sunshine, use_mlflow
from pg import fresh_database

from benchmarks.servers import ServerThread
from features.core.errors import ConfigError
from features.storage.store import Store
from features.tasks import get_task
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.app import create_app
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.service import build_state
from serving.storage.service_db import head
from serving.storage.web_records import Followup, WebStore


def test_the_web_pages_keep_their_records_in_postgresql(served, tmp_path):
    with fresh_database() as url:
        with pytest.raises(ConfigError, match="run `sunshine db upgrade` first"):
            WebStore(url=url)
        done = sunshine(tmp_path, "db", "upgrade", env={"SUNSHINE_DATABASE_URL": url})
        assert f"schema at {head()}" in done.stdout and head() == "0005"
        store = WebStore(url=url)
        store.set_lang("wang", "en")
        store.set_lang("wang", "zh")  # an upsert, not a second row
        assert store.lang("wang") == "zh"

        use_mlflow(served)
        tokens = TokenStore([])
        token = tokens.create("wang", "caseworker", ["huaxi"])
        state = build_state(Store(served / "city"), load_champions())
        app = create_app(
            state, tokens, AuditLog(tmp_path / "audit.db"), load_interventions(), store
        )
        frame = state.caseload(get_task("relapse")).frame
        pid = frame[frame["district"] == "huaxi"].index[0]
        with ServerThread(app) as server:
            client = httpx.Client(base_url=server.url, timeout=60)
            nonce = re.search(
                r'name="nonce" value="([^"]+)"', client.get("/app/signin").text
            ).group(1)
            assert (
                client.post("/app/signin", data={"token": token, "nonce": nonce}).status_code == 303
            )
            page = client.get(f"/app/persons/{pid}", params={"task": "relapse"})
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            form = {
                "task": "relapse",
                "option": "social_worker_home_visit",
                "outcome": "declined",
                "day": dt.date.today().isoformat(),
                "note": "in PostgreSQL",
                "csrf": csrf,
            }
            assert client.post(f"/app/persons/{pid}/followups", data=form).status_code == 303
            assert "in PostgreSQL" in client.get(f"/app/persons/{pid}").text
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as con:
            rows = con.execute(
                "SELECT person_id, outcome, user_name, note FROM followups"
            ).fetchall()
            sessions = con.execute("SELECT count(*) FROM sessions").fetchone()[0]
        assert rows == [(pid, "declined", "wang", "in PostgreSQL")] and sessions == 1

        store.add_followup(
            Followup(
                pid, "relapse", "mental_health_referral", "accepted", dt.date.today(), "", "wang"
            )
        )
        out = tmp_path / "followups.parquet"
        sunshine(tmp_path, "followups", "export", "--out", out, env={"SUNSHINE_DATABASE_URL": url})
        events = pd.read_parquet(out)
        assert events["value"].tolist()[:1] == [0.0] and events["value"].iloc[1] == 1.0
        assert list(events["detail"]) == ["social_worker_home_visit", "mental_health_referral"]


def test_tokens_in_postgresql_reach_every_worker_and_their_revocation_too(tmp_path, monkeypatch):
    import time

    from serving.access.tokens import TokenStore

    with fresh_database() as url:
        env = {"SUNSHINE_DATABASE_URL": url}
        sunshine(tmp_path, "db", "upgrade", env=env)
        made = sunshine(
            tmp_path,
            "tokens",
            "create",
            "--user",
            "wang",
            "--role",
            "caseworker",
            "--districts",
            "huaxi",
            env=env,
        )
        secret = made.stdout.strip().splitlines()[-1]
        assert "saved as a hash in the service's database" in made.stderr
        with monkeypatch.context() as m:
            m.setenv("SUNSHINE_DATABASE_URL", url)  # what each worker's environment says
            workers = [TokenStore.load(), TokenStore.load()]
        assert all(w.authenticate(secret).user == "wang" for w in workers)
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as con:
            stored = con.execute("SELECT sha256, user_name FROM tokens").fetchall()
        assert len(stored) == 1 and secret not in stored[0][0]  # only the hash
        listed = sunshine(tmp_path, "tokens", "list", env=env)
        assert "wang" in listed.stdout and secret not in listed.stdout
        sunshine(tmp_path, "tokens", "revoke", "--user", "wang", env=env)
        deadline = time.time() + 10
        while any(w.authenticate(secret) for w in workers):
            assert time.time() < deadline, "a worker still accepts a revoked token"
            time.sleep(0.2)


def test_the_audit_trail_in_postgresql_is_one_append_only_chain(tmp_path):
    import concurrent.futures as cf
    import uuid

    from pg import admin_connection

    from serving.access.audit import AuditLog
    from serving.access.audit_chain import Entry

    with fresh_database() as url:
        sunshine(tmp_path, "db", "upgrade", env={"SUNSHINE_DATABASE_URL": url})
        # two processes' worth of writers; their key ring beside the file path (unused on PG)
        here = tmp_path / "audit.db"
        workers = [AuditLog(here, url=url), AuditLog(here, url=url)]

        def write(k: int) -> None:
            log = workers[k % 2]
            log.append(
                [
                    Entry("/v1/x", f"r{k}-{i}", 200, user=f"u{k % 3}", probability=0.25)
                    for i in range(3)
                ]
            )

        with cf.ThreadPoolExecutor(6) as pool:
            list(pool.map(write, range(30)))
        verdict = workers[0].verify()
        assert verdict.intact and verdict.rows == 90  # one chain, never forked
        assert len(workers[1].query(user="u1")) == 30
        dsn = url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(dsn, autocommit=True) as con:
            for sql in ("UPDATE audit SET status = 500", "DELETE FROM audit"):
                with pytest.raises(psycopg.Error, match="append-only"):
                    con.execute(sql)
            # the service's role may only append and read
            role = f"sunshine_service_{uuid.uuid4().hex[:8]}"
            con.execute(f"CREATE ROLE {role} LOGIN")
            con.execute(f"GRANT SELECT, INSERT ON audit TO {role}")
            con.execute(f"GRANT SELECT ON alembic_version TO {role}")
        try:
            as_service = dsn.replace("postgres@", f"{role}@")
            AuditLog(here, url=url.replace("postgres@", f"{role}@")).append(
                [Entry("/v1/y", "as-the-service", 200)]
            )
            with psycopg.connect(as_service, autocommit=True) as con:
                for sql in (
                    "UPDATE audit SET status = 500",
                    "DELETE FROM audit",
                    "TRUNCATE audit",
                    "ALTER TABLE audit DISABLE TRIGGER audit_no_change",
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        con.execute(sql)
            # a superuser who switches the guard off is still caught by the chain
            with psycopg.connect(dsn, autocommit=True) as con:
                con.execute("ALTER TABLE audit DISABLE TRIGGER audit_no_change")
                con.execute("UPDATE audit SET status = 404 WHERE id = 42")
            broken = workers[0].verify()
            assert broken.broken_at == 42 and "altered" in broken.reason
            assert broken.rows == 41
            # and sealing the rows again, without the key kept outside the database, is too
            from serving.access.audit_chain import COLUMNS, NAMES, row_hash

            with psycopg.connect(dsn, autocommit=True) as con:
                prev = con.execute("SELECT hash FROM audit WHERE id = 41").fetchone()[0]
                values = con.execute(f"SELECT {NAMES} FROM audit WHERE id = 42").fetchone()
                assert len(values) == len(COLUMNS)
                con.execute(
                    "UPDATE audit SET hash = %s WHERE id = 42",
                    [row_hash(prev, 42, tuple(values))],
                )
            resealed = workers[0].verify()
            assert resealed.broken_at == 42 and "sealed without a key" in resealed.reason
        finally:
            with admin_connection() as con:
                name = url.rsplit("/", 1)[1]
                con.execute(f'REVOKE ALL ON DATABASE "{name}" FROM {role}')
            with psycopg.connect(dsn, autocommit=True) as con:
                con.execute(f"DROP OWNED BY {role}")
            with admin_connection() as con:
                con.execute(f"DROP ROLE {role}")


def test_the_audit_writer_replaces_a_connection_the_database_dropped(tmp_path):
    """The database restarted (or dropped the writer's idle connection): the next entries are
    written on a new connection, not refused."""
    from pg import admin_connection

    from serving.access.audit_chain import Entry

    with fresh_database() as url:
        sunshine(tmp_path, "db", "upgrade", env={"SUNSHINE_DATABASE_URL": url})
        log = AuditLog(tmp_path / "audit.db", url=url)
        log.append([Entry("/v1/x", "before", 200)])
        with admin_connection() as con:
            dropped = con.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (url.rsplit("/", 1)[1],),
            ).fetchall()
        assert dropped and all(ok for (ok,) in dropped)  # the writer's kept one among them
        log.append([Entry("/v1/x", "after", 200)])
        assert log.query().request_id.tolist() == ["before", "after"]
        assert log.verify().intact


def test_readiness_says_how_things_are_now_after_the_database_drops_its_connections(
    served, tmp_path
):
    """The service's database drops every connection and refuses new ones for a moment (a
    restart, a failover): readiness says degraded, naming why, while that lasts, and ready
    again once the database answers, without a restart. It used to stay degraded for ever."""
    import time

    from pg import admin_connection

    from serving.processes.refresh import Follower

    with fresh_database() as url:
        sunshine(tmp_path, "db", "upgrade", env={"SUNSHINE_DATABASE_URL": url})
        name = url.rsplit("/", 1)[1]
        use_mlflow(served)
        state = build_state(Store(served / "city"), load_champions())
        app = create_app(
            state, TokenStore([]), AuditLog(tmp_path / "audit.db"), load_interventions(),
            WebStore(url=url),
        )  # fmt: skip
        follower = Follower(app.state.services, 0.1, say=lambda _: None).start()

        def status(server) -> dict:
            return httpx.get(server.url + "/readyz", timeout=30).json()

        def until(check) -> dict:
            deadline = time.monotonic() + 30
            while not check(now := status(server)):
                assert time.monotonic() < deadline, now
                time.sleep(0.1)
            return now

        try:
            with ServerThread(app) as server:
                until(lambda s: s["status"] == "ready")
                with admin_connection() as con:
                    con.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                    con.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        [name],
                    )
                down = until(lambda s: s["status"] == "degraded")
                assert "could not follow the other workers" in down["reason"]
                with admin_connection() as con:
                    con.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                assert "reason" not in until(lambda s: s["status"] == "ready")
        finally:
            follower.stop()
