"""A registry kept in PostgreSQL: loaded from a data folder by `sunshine load-registry`, read
back through ADBC by every command that takes --data, validated by the same contract, and
polled by the serving process for new rows."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import psycopg
import pytest
from conftest import ev, sunshine, use_mlflow, write_dataset
from pg import fresh_database

from features.core.errors import ContractError
from features.storage.store import Store
from features.tasks import get_task
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.app import create_app
from serving.processes.refresh import watch_in_place
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.service import build_state


def registry_url(database_url: str, schema: str = "city") -> str:
    """The --data form of a test database: libpq's URL with the registry's schema."""
    return database_url.replace("postgresql+psycopg://", "postgresql://") + f"?schema={schema}"


def execute(database_url: str, *statements: str) -> None:
    with psycopg.connect(registry_url(database_url).split("?")[0], autocommit=True) as con:
        for sql in statements:
            con.execute(sql)


def test_a_loaded_registry_gives_the_same_features_as_its_folder(served, tmp_path):
    city = served / "city"
    with fresh_database() as db:
        url = registry_url(db)
        r = sunshine(tmp_path, "load-registry", "--data", city, "--to", url)
        assert "loaded 4,000 persons" in r.stdout
        assert "@" not in r.stdout  # the registry is named without its user (or password)

        folder, database = Store(city), Store(url)
        assert database.reference_date == folder.reference_date
        assert (database.report.persons, database.report.events) == (
            folder.report.persons,
            folder.report.events,
        )
        assert database.report.events_by_type == folder.report.events_by_type

        # the same command, one --data each: byte-for-byte the same features
        as_of = str(folder.reference_date.replace(year=folder.reference_date.year - 1))
        for task in ("relapse", "youth_uptake"):
            for name, data in (("folder", city), ("database", url)):
                sunshine(
                    tmp_path, "features", "--data", data, "--task", task, "--as-of", as_of,
                    "--out", tmp_path / f"{task}-{name}.parquet",
                )  # fmt: skip
            a = pd.read_parquet(tmp_path / f"{task}-folder.parquet")
            b = pd.read_parquet(tmp_path / f"{task}-database.parquet")
            assert len(a) > 100
            pd.testing.assert_frame_equal(a, b)

        # a second load does not pile rows on the first
        again = sunshine(tmp_path, "load-registry", "--data", city, "--to", url, check=False)
        assert again.returncode == 2
        assert "already holds" in again.stderr and "--replace" in again.stderr
        sunshine(tmp_path, "load-registry", "--data", city, "--to", url, "--replace")
        assert Store(url).report.events == folder.report.events


def test_the_databases_rows_pass_the_same_contract_named_by_row_id(tmp_path):
    data = write_dataset(
        tmp_path / "small",
        [{"person_id": "p1"}, {"person_id": "p2"}],
        [
            ev("p1", "2025-03-01", "urine_test", 1, "heroin"),
            ev("p2", "2025-03-02", "checkin_missed"),
        ],
    )
    with fresh_database() as db:
        url = registry_url(db)
        sunshine(tmp_path, "load-registry", "--data", data, "--to", url)
        execute(
            db,
            "INSERT INTO city.events (person_id, event_time, event_type) "
            "VALUES ('p2', '2025-03-05', 'teleportation')",
        )
        with pytest.raises(ContractError) as info:
            Store(url)
        assert [str(p) for p in info.value.problems] == [
            "city.events: row 3: event_type: unknown event type teleportation"
        ]

        r = sunshine(
            tmp_path, "validate", "--data", url, "--lenient", "--rejects", tmp_path / "r.csv"
        )
        assert "events rejected" in r.stdout
        rejects = pd.read_csv(tmp_path / "r.csv")
        assert rejects[["file", "row", "event_type"]].values.tolist() == [
            ["city.events", 3, "teleportation"]
        ]

        # a column whose database type cannot be the contract's is refused by name, up front
        execute(
            db,
            "CREATE SCHEMA typo",
            "CREATE TABLE typo.dataset (reference_date date)",
            "INSERT INTO typo.dataset VALUES ('2025-06-30')",
            "CREATE TABLE typo.persons AS SELECT person_id, birth_date, sex, district, "
            "ethnicity, registration_date, primary_substance FROM city.persons",
            "CREATE TABLE typo.events (person_id text, event_time text, event_type text, "
            "value double precision, detail text)",
        )
        r = sunshine(tmp_path, "validate", "--data", registry_url(db, "typo"), check=False)
        assert r.returncode == 2
        assert "typo.events" in r.stderr and "event_time is text, expected timestamp" in r.stderr


def test_an_unreachable_registry_is_a_clear_error_that_keeps_its_password(tmp_path):
    r = sunshine(
        tmp_path, "validate", "--data", "postgresql://clerk:s3cret@127.0.0.1:1/city", check=False
    )
    assert r.returncode == 2
    assert "cannot connect" in r.stderr and "postgresql://127.0.0.1:1/city" in r.stderr
    assert "s3cret" not in r.stderr + r.stdout
    r = sunshine(
        tmp_path, "validate", "--data", "postgresql://h/db?schema=Robert'); DROP", check=False
    )
    assert r.returncode == 2 and "schema must be a plain lower-case name" in r.stderr


def test_the_service_polls_the_registry_and_serves_new_rows_without_a_restart(served, tmp_path):
    with fresh_database() as db:
        url = registry_url(db)
        sunshine(tmp_path, "load-registry", "--data", served / "city", "--to", url)
        use_mlflow(served)
        state = build_state(Store(url), load_champions())
        app = create_app(
            state, TokenStore([]), AuditLog(tmp_path / "audit.db"), load_interventions()
        )
        svc = app.state.services
        task = get_task("relapse")
        pid = state.caseload(task).frame.index[-1]  # the lowest risk: room to rise
        # the raw score, strictly ordered (a step calibrator may give two scores one probability)
        before = state.caseload(task).frame.at[pid, "raw_score"]
        watcher = watch_in_place(svc, 0.2, lenient=False, say=lambda _: None).start()
        try:
            ref = dt.datetime.combine(state.as_of, dt.time())
            execute(
                db,
                *(
                    "INSERT INTO city.events (person_id, event_time, event_type, value, detail, "
                    f"recorded_time) VALUES ('{pid}', '{ref - dt.timedelta(days=d)}', "
                    f"'urine_test', 1, 'heroin', '{ref - dt.timedelta(days=1)}')"
                    for d in (3, 10, 17, 24)
                ),
            )
            deadline = time.time() + 90
            while svc.state is state:
                assert time.time() < deadline, "the new rows were not noticed"
                time.sleep(0.2)
            after = svc.state.caseload(task).frame.at[pid, "raw_score"]
            assert after > before  # four recent positive tests raise the risk
            assert svc.state.store.report.events == state.store.report.events + 4
        finally:
            watcher.stop()
