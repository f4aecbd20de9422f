"""`sunshine serve --workers 2`: real worker processes behind one socket, over one state
materialized once; an admin reload, a token revocation and new registry data reach both."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from conftest import add_positive_tests, sunshine, use_mlflow

from benchmarks.servers import create_token, every_worker, free_port, server_process
from serving.access.audit import AuditLog
from serving.state.materialize import CURRENT, current, manifest

BIN = Path(sys.executable).parent


def until(check, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.3)


def test_workers_share_one_state_and_all_follow_reloads_revocations_and_data(
    served, service, tmp_path
):
    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{served / 'mlflow.db'}",
        "SUNSHINE_TOKENS_FILE": str(tmp_path / "tokens.json"),
    }
    analyst = create_token(env, "--user", "li", "--role", "analyst", cwd=tmp_path)
    admin = create_token(env, "--user", "root", "--role", "admin", cwd=tmp_path)
    steady = create_token(env, "--user", "zhao", "--role", "analyst", cwd=tmp_path)

    # materialized once by the command, then reused by the server: same generation
    r = sunshine(tmp_path, "materialize", "--data", city, "--out", tmp_path / "state", env=env)
    use_mlflow(served)
    first = current(tmp_path / "state")
    assert first is not None and "materialized the service state" in r.stdout
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"

    port = free_port()
    cmd = [
        BIN / "sunshine", "serve", "--data", city, "--port", port, "--workers", 2,
        "--state-dir", tmp_path / "state", "--refresh-seconds", 1,
        "--audit-db", tmp_path / "audit.db", "--service-db", tmp_path / "service.db",
        "--max-in-flight", 6, "--min-in-flight", 3,
    ]  # fmt: skip
    with server_process(cmd, port, "/readyz", cwd=tmp_path, env=env, timeout=180) as url:
        assert current(tmp_path / "state") == first  # not rebuilt: same data, same champions
        # the bound reaches the workers (their configuration goes to them as JSON)
        assert "sunshine_in_flight_bound 6.0" in httpx.get(url + "/metrics", timeout=10).text
        until(lambda: len(every_worker(url)) == 2, "both workers answer")  # one may be loading
        workers = every_worker(url)

        # eight keep-alive connections, as a proxy's pool or a load generator holds: the
        # parent hands them out in turn, four each (the kernel's hash of SO_REUSEPORT put
        # five, six, seven or all eight on one worker in 30 of 40 tries)
        assert sorted(Counter(keep_alive_workers(url, 8)).values()) == [4, 4]

        # each answers as the one-process service does, from the shared matrices
        sample = list(service["state"].persons.index[:: len(service["state"].persons) // 12])
        for pid in sample:
            params = {"task": "relapse", "allow_out_of_cohort": "true"}
            ours = httpx.get(
                f"{url}/v1/persons/{pid}/risk",
                params=params,
                headers={"Authorization": f"Bearer {analyst}", "Connection": "close"},
                timeout=30,
            ).json()
            theirs = httpx.get(
                f"{service['url']}/v1/persons/{pid}/risk",
                params=params,
                headers={"Authorization": f"Bearer {service['tokens']['analyst']}"},
                timeout=30,
            ).json()
            assert ours["probability"] == theirs["probability"]
            assert ours["factors"] == theirs["factors"]

        # an admin's reload, asked of one worker, reaches the other too
        before = {pid: w["worker"]["models_loaded_at"] for pid, w in workers.items()}
        time.sleep(1.1)  # loaded_at has one-second resolution
        reload = httpx.post(
            f"{url}/v1/admin/reload", headers={"Authorization": f"Bearer {admin}"}, timeout=60
        )
        assert reload.status_code == 200, reload.text

        def all_reloaded() -> bool:
            now = every_worker(url, 20)
            return len(now) == 2 and all(
                w["worker"]["models_loaded_at"] > before[pid] for pid, w in now.items()
            )

        until(all_reloaded, "every worker reloads")

        # a revoked token is refused by every worker within seconds
        subprocess.run(
            [BIN / "sunshine", "tokens", "revoke", "--user", "li"], env=env, check=True,
            capture_output=True,
        )  # fmt: skip

        def refused() -> bool:
            codes = {
                httpx.get(
                    f"{url}/v1/persons/{sample[0]}/risk",
                    params={"allow_out_of_cohort": "true"},
                    headers={"Authorization": f"Bearer {analyst}", "Connection": "close"},
                    timeout=30,
                ).status_code
                for _ in range(12)
            }
            return codes == {401}

        until(refused, "every worker refuses the revoked token")

        # new registry data: the parent materializes it, both workers swap it in
        add_positive_tests(city, sample[-1], service["state"].as_of)

        def all_moved() -> bool:
            gen = current(tmp_path / "state")
            now = every_worker(url, 20)
            return (
                gen != first
                and len(now) == 2
                and all(w["data"]["loaded_at"] == manifest(gen)["built_at"] for w in now.values())
            )

        until(all_moved, "both workers serve the new generation", timeout=120)
        assert (tmp_path / "state" / CURRENT).read_text().strip() != first.name
        survivors = [p for p in (tmp_path / "state").iterdir() if p.is_dir()]
        assert len(survivors) <= 2  # old generations are swept

        # a worker killed under load: its slot starts another, which is handed connections
        # once ready, and every answer given meanwhile has its entry in an unbroken trail
        answered: list[int] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        r = client.get(
                            f"{url}/v1/persons/{sample[1]}/risk",
                            params={"task": "relapse", "allow_out_of_cohort": "true"},
                            headers={"Authorization": f"Bearer {steady}"},
                        )
                        answered.append(r.status_code)
                    except httpx.TransportError:  # a connection the killed worker held
                        pass

        clients = [threading.Thread(target=load) for _ in range(2)]
        for c in clients:
            c.start()
        until(lambda: len(answered) > 20, "the load is under way")
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            try:
                now = every_worker(url, 20)
            except httpx.TransportError:  # a connection the dead worker held: reset, as ever
                return False
            return len(now) == 2 and victim not in now

        until(replaced, "a new worker takes the killed one's place", timeout=120)
        stop.set()
        for c in clients:
            c.join()
        assert sorted(Counter(keep_alive_workers(url, 8)).values()) == [4, 4]
    verdict = AuditLog(tmp_path / "audit.db").verify()
    assert verdict.intact, verdict.reason
    entries = AuditLog(tmp_path / "audit.db").query(user="zhao")
    assert set(answered) == {200}
    assert (entries.status == 200).sum() >= len(answered) > 20

    # the matrices are the one-process service's features, to the bit
    today = np.load(first / "today.npy", mmap_mode="r")
    state = service["state"]
    assert np.array_equal(np.asarray(today), state.today.values, equal_nan=True)


def keep_alive_workers(url: str, n: int) -> list[int]:
    """The worker that answers each of `n` connections held open together."""
    port = int(url.rsplit(":", 1)[1])
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(n)]
    try:
        for c in conns:
            c.connect()
        pids = []
        for c in conns:
            c.request("GET", "/readyz")
            pids.append(json.loads(c.getresponse().read())["worker"]["pid"])
        return pids
    finally:
        for c in conns:
            c.close()


def test_materialize_keeps_an_up_to_date_state_and_builds_when_what_it_was_built_for_changes(
    served, tmp_path
):
    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{served / 'mlflow.db'}"}
    state = tmp_path / "state"

    def materialize(*extra, check=True):
        r = sunshine(
            tmp_path, "materialize", "--data", city, "--out", state, *extra, env=env, check=check
        )
        use_mlflow(served)
        return r

    def built(*extra) -> Path:
        r = materialize(*extra)
        assert "materialized the service state" in r.stdout, r.stdout
        gen = current(state)
        assert gen is not None
        return gen

    first = built()
    reference_date = manifest(first)["reference_date"]  # the generation is swept later
    again = materialize()
    assert "reusing the materialized state" in again.stdout and current(state) == first
    # another --rising is other caseload figures; --force builds whatever the state
    rising = built("--rising", "0.3")
    assert rising != first and manifest(rising)["rising"] == 0.3
    assert built("--rising", "0.3", "--force") != rising
    # new events: built again
    persons = pd.read_parquet(city / "persons.parquet")
    add_positive_tests(city, persons.person_id.iloc[0], reference_date)
    newer = built()
    assert newer not in (first, rising) and manifest(newer)["report"]["rejected_events"] == 0
    # built leniently around a bad row: a strict run does not reuse it, it refuses the row
    events = pd.read_parquet(city / "events.parquet")
    bad = events.iloc[[0]].assign(event_type="no_such_type")
    pd.concat([events, bad], ignore_index=True).to_parquet(city / "events.parquet", index=False)
    lenient = built("--lenient")
    assert manifest(lenient)["report"]["rejected_events"] == 1
    assert "reusing" in materialize("--lenient").stdout
    strict = materialize(check=False)
    assert strict.returncode == 2 and "no_such_type" in strict.stderr + strict.stdout
    assert current(state) == lenient
