"""New registry files reach a running service without a restart and without a gap: a real
uvicorn server answers throughout while the watcher rebuilds and swaps its state."""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
import weakref

import httpx
import pandas as pd
import pytest
from conftest import add_positive_tests, use_mlflow

from benchmarks.servers import ServerThread
from features.core.errors import ContractError
from features.core.months import last_complete_month
from features.storage.store import Store
from features.tasks import get_task
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.app import create_app
from serving.processes.refresh import DataWatcher, rebuilt, watch_in_place
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.heap import freeze_heap
from serving.state.indicator_source import indicator_source
from serving.state.service import build_state


def replace_events(city, events: pd.DataFrame) -> None:
    """As an extract job would: write aside, then rename over the old file."""
    tmp = city / "events.parquet.new"
    events.to_parquet(tmp, index=False)
    os.replace(tmp, city / "events.parquet")


def wait_for(check, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError("not within the time allowed")
        time.sleep(0.2)


def test_new_events_are_served_without_a_restart_or_a_gap(served, tmp_path):
    use_mlflow(served)
    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    state = build_state(Store(city), load_champions())
    tokens = TokenStore([])
    analyst = tokens.create("li", "analyst")
    app = create_app(state, tokens, AuditLog(tmp_path / "audit.db"), load_interventions())
    svc = app.state.services
    task = get_task("relapse")
    pid = state.caseload(task).frame.index[-1]  # the lowest risk: room to rise
    as_of, swapped_out = state.as_of, weakref.ref(state)
    del state
    watcher = watch_in_place(svc, 0.2, lenient=False, say=lambda _: None).start()
    try:
        with ServerThread(app) as server:
            headers = {"Authorization": f"Bearer {analyst}"}

            def risk() -> httpx.Response:
                return httpx.get(f"{server.url}/v1/persons/{pid}/risk", headers=headers, timeout=60)

            def ready() -> dict:
                return httpx.get(f"{server.url}/readyz", timeout=30).json()

            was, first = risk().json(), ready()["data"]["loaded_at"]
            codes, stop = [], threading.Event()

            def hammer() -> None:
                while not stop.is_set():
                    codes.append(risk().status_code)

            worker = threading.Thread(target=hammer)
            worker.start()
            events = pd.read_parquet(city / "events.parquet")
            time.sleep(1)  # so the stamp's modification time moves
            add_positive_tests(city, pid, as_of)
            wait_for(lambda: ready()["data"]["loaded_at"] != first)
            time.sleep(0.5)
            stop.set()
            worker.join()
            now = risk().json()
            after = now["probability"]
            # four recent positive tests raise the risk: the score strictly; the calibrated
            # probability may stay on its step of the isotonic map
            assert now["raw_score"] > was["raw_score"] and after >= was["probability"]
            assert codes and set(codes) == {200}  # answered throughout, never a gap
            assert svc.state.caseload(task).frame.at[pid, "probability"] == pytest.approx(after)
            assert ready()["status"] == "ready"
            # the state swapped out is freed with the swap, though the live one is frozen
            assert swapped_out() is None and gc.get_freeze_count() > 0

            # a broken extract keeps the last good state serving, and says why
            broken = events.assign(event_type=events["event_type"].astype(str))
            broken.loc[0, "event_type"] = "teleportation"
            replace_events(city, broken)
            wait_for(lambda: ready()["status"] == "degraded")
            assert "data refresh failed" in ready()["reason"]
            assert risk().json()["probability"] == pytest.approx(after)
    finally:
        watcher.stop()
        gc.unfreeze()


def test_settling_freezes_what_is_held_and_frees_what_was_let_go():
    """The collector skips frozen objects, cycles included: a state let go after one
    freeze_heap is freed by the next, not kept frozen for ever."""

    class Part:
        pass

    held = Part()
    held.me = held  # a reference cycle, as pandas objects hold
    gone = weakref.ref(held)
    try:
        freeze_heap()
        assert gc.get_freeze_count() > 0
        del held
        gc.collect()
        assert gone() is not None  # frozen: a plain collection leaves it
        freeze_heap()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_a_refresh_reads_the_external_indicators_again(served, tmp_path):
    """The figures other agencies send (--external) are read again with the registry: a
    corrected figure is served after the refresh, not only after a restart; a broken file
    fails the refresh, naming its row, as broken registry data does."""
    use_mlflow(served)
    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    store = Store(city)
    month = last_complete_month(store.reference_date)
    external = tmp_path / "external.csv"

    def price(value: str) -> None:
        external.write_text(f"district,month,indicator,value\ncity,{month},drug_price,{value}\n")

    price("300")
    old = build_state(store, load_champions(), indicator_source(store, external=external))
    assert old.indicators.external["value"].tolist() == [300.0]
    price("320")
    new = rebuilt(old, lenient=False)
    assert new.indicators.external["value"].tolist() == [320.0]
    assert new.indicators.external_path == external
    price("lots")
    with pytest.raises(ContractError, match=r"(?s)external.csv.*row 1: value"):
        rebuilt(new, lenient=False)


def test_the_watcher_renews_when_an_input_beside_the_registry_changes(served, tmp_path):
    """The external indicators file is watched with the registry: a change to it alone
    renews the state, once it has held still for one more look."""
    external = tmp_path / "external.csv"
    external.write_text("district,month,indicator,value\n")
    renewed = []
    watcher = DataWatcher(
        served / "city", 60, lambda: renewed.append("renewed") or "", renewed.append,
        say=lambda _: None, inputs=(external,),
    )  # fmt: skip
    watcher.tick()
    assert renewed == []  # nothing changed
    external.write_text("district,month,indicator,value\ncity,2026-05,drug_price,300\n")
    watcher.tick()
    assert renewed == []  # changed: one more look, in case it is still being written
    watcher.tick()
    assert renewed == ["renewed"]
    watcher.tick()
    assert renewed == ["renewed"]  # the same file is not renewed twice


def test_a_file_written_beside_the_registry_is_not_its_data_until_renamed_over(served, tmp_path):
    """An extract job writes `events.parquet.new` and renames it over `events.parquet`. The
    half-written file counted as a change: a refresh that began then read the old file, and
    under load the test above saw the old score after the reload (-3.1553 > -3.1553 failed)."""
    from features.storage.store import registry_files, stamp_of

    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    before = stamp_of(city)
    (city / "events.parquet.new").write_bytes(b"PAR1 half written")
    (city / "notes.txt").write_text("not the registry's")
    assert stamp_of(city) == before
    assert [p.name for p in registry_files(city)] == [
        "dataset.json",
        "events.parquet",
        "persons.parquet",
    ]
    os.replace(city / "events.parquet.new", city / "events.parquet")
    assert stamp_of(city) != before
