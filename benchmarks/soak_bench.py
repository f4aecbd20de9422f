"""Soak: a service running for a long while at half its measured capacity, with a day's mix
(`python -m benchmarks.soak_bench --minutes 30`).

The mix, at a fixed rate: risk reads by an analyst, a caseworker's caseload and person pages
and follow-ups through the web pages (signed in), and every few minutes a roster scored in
batch beside the service, a token created and revoked, and new events renamed into the
registry (which the service swaps in without a restart). Every minute: the server's resident
memory, its open file descriptors, and the errors so far. At the end: growth after the first
five minutes (target <= 10%), errors (target 0), and whether every request was audited (the
distinct request ids of the trail against the requests sent) and the chain verifies.
Everything listens on 127.0.0.1; the load stops by itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil

from benchmarks.common import arguments
from benchmarks.serve_bench import BIN, prepare
from benchmarks.servers import create_token, free_port, server_process

EVERY_S = 60.0  # a sample of memory and descriptors
CHORES_S = 300.0  # a roster, a token revoked, new events: this often
CLIENTS = 4  # threads sending the mix, each at its share of the rate


class Day:
    """The requests of the mix, each counted; an answer that is neither what the request
    asks for nor a polite 503 is an error."""

    def __init__(self, url: str, analyst: str, caseworker: str, persons: list[str]) -> None:
        self.url, self.persons = url, persons
        self.api = httpx.Client(base_url=url, timeout=30)
        self.api.headers["Authorization"] = f"Bearer {analyst}"
        self.web = httpx.Client(base_url=url, timeout=30)
        nonce = re.search(r'name="nonce" value="([^"]+)"', self.web.get("/app/signin").text)
        signed = self.web.post("/app/signin", data={"token": caseworker, "nonce": nonce.group(1)})
        assert signed.status_code == 303, signed.text
        self.sent = self.errors = self.shed = 0
        self.lock = threading.Lock()

    def one(self, rng: random.Random) -> int:
        """One request of the mix (a follow-up is a page and a post); its status."""
        pid = rng.choice(self.persons)
        roll = rng.random()
        if roll < 0.70:
            r = self.api.get(f"/v1/persons/{pid}/risk", params={"task": "relapse"})
            ok = r.status_code in (200, 409)  # 409: not in the cohort today
        elif roll < 0.80:
            r = self.web.get("/app/caseload")
            ok = r.status_code == 200
        elif roll < 0.95:
            r = self.web.get(f"/app/persons/{pid}", params={"task": "relapse"})
            ok = r.status_code in (200, 404)  # 404: another district's person
        else:
            page = self.web.get(f"/app/persons/{pid}", params={"task": "relapse"})
            self.count(page.status_code in (200, 404), page.status_code)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            if page.status_code != 200 or csrf is None:
                return page.status_code
            form = {
                "task": "relapse",
                "option": "social_worker_home_visit",
                "outcome": "offered",
                "day": dt.date.today().isoformat(),
                "note": "soak",
                "csrf": csrf.group(1),
            }
            r = self.web.post(f"/app/persons/{pid}/followups", data=form)
            ok = r.status_code in (303, 422)  # 422: an option the person is not offered
        self.count(ok, r.status_code)
        return r.status_code

    def count(self, ok: bool, status: int) -> None:
        with self.lock:
            self.sent += 1
            self.shed += status == 503
            self.errors += not ok and status != 503


def capacity(day: Day, seconds: float = 10.0) -> tuple[float, int]:
    """Requests of the mix answered a second with four clients asking at once, and how many
    were sent. More than the worker takes while saturated: the excess is shed, counted out,
    and its client waits a tenth of Retry-After as the overload benchmark's do. The day's
    counts start afresh after it."""
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        rng = random.Random(1000 + k)
        while time.monotonic() < stop:
            if day.one(rng) == 503:
                time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered, sent = day.sent - day.shed, day.sent
    day.sent = day.errors = day.shed = 0
    return answered / seconds, sent


def chores(work: Path, env: dict, city: Path, round_: int) -> None:
    """A roster scored in batch, a token created and revoked, new events for the registry."""
    roster = work / "soak-roster.csv"
    pd.read_parquet(city / "persons.parquet").person_id.head(2000).to_frame().to_csv(
        roster, index=False
    )
    run = {"cwd": work, "env": env, "check": True, "capture_output": True}
    subprocess.run(
        [BIN / "sunshine", "score-roster", roster, "--task", "relapse", "--data", city,
         "--out", work / "soak-scores.csv", "--include-out-of-cohort"], **run,
    )  # fmt: skip
    create_token(env, "--user", f"temp{round_}", "--role", "analyst", cwd=work)
    subprocess.run([BIN / "sunshine", "tokens", "revoke", "--user", f"temp{round_}"], **run)
    events = pd.read_parquet(city / "events.parquet")
    today = pd.Timestamp(json.loads((city / "dataset.json").read_text())["reference_date"])
    new = events.sample(50, random_state=round_).assign(event_time=today)
    if "recorded_time" in new:  # recorded when they happened: never before
        new["recorded_time"] = today
    tmp = city / "events.parquet.new"
    pd.concat([events, new], ignore_index=True).to_parquet(tmp, index=False)
    os.replace(tmp, city / "events.parquet")


def sample(proc: psutil.Process) -> tuple[float, int]:
    """Resident memory (MiB) and open descriptors of the server and its children."""
    procs = [proc, *proc.children(recursive=True)]
    return (
        sum(p.memory_info().rss for p in procs) / 2**20,
        sum(p.num_fds() for p in procs),
    )


def soak(
    day: Day, proc: psutil.Process, work: Path, env: dict, city: Path, args: argparse.Namespace
) -> list[dict]:
    """The mix at `args.share` of the capacity for `args.minutes`, the chores every
    CHORES_S, a sample every EVERY_S."""
    most, sent = capacity(day)
    rate = args.share * most
    print(
        f"capacity {most:.0f} requests of the mix a second ({sent:,} sent); soaking at "
        f"{rate:.0f} a second"
    )
    rows, stop = [], time.monotonic() + 60 * args.minutes
    start, next_sample, next_chore, round_ = time.monotonic(), 0.0, 0.0, 0
    loads = [
        threading.Thread(target=_steady, args=(day, rate / CLIENTS, stop, k), daemon=True)
        for k in range(CLIENTS)
    ]
    for load in loads:
        load.start()
    while (now := time.monotonic()) < stop:
        if now - start >= next_chore:
            round_ += 1
            chores(work, env, city, round_)
            next_chore += CHORES_S
        if now - start >= next_sample:
            rss, fds = sample(proc)
            rows.append({"minute": round((now - start) / 60), "rss_mib": rss, "fds": fds,
                         "sent": day.sent, "errors": day.errors, "shed": day.shed})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            next_sample += EVERY_S
        time.sleep(0.5)
    for load in loads:
        load.join(timeout=60)
    return rows


def _steady(day: Day, rate: float, stop: float, seed: int) -> None:
    """Requests at `rate` a second from one of CLIENTS threads."""
    rng, gap, due = random.Random(seed), 1.0 / rate, time.monotonic()
    while due < stop:
        day.one(rng)
        due += gap
        time.sleep(max(0.0, due - time.monotonic()))


def main() -> None:
    ap = arguments(persons=20_000, work="bench-out/serve", repeats=1)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--share", type=float, default=0.5, help="of the measured capacity")
    args = ap.parse_args()
    work = args.work.resolve()
    prepare(work, args.persons)
    city = work / "soak-city"
    shutil.rmtree(city, ignore_errors=True)
    shutil.copytree(work / "city", city)
    for old in work.glob("soak-*.db*"):
        old.unlink()
    env = {
        **os.environ,
        "SUNSHINE_TOKENS_FILE": str(work / "soak-tokens.json"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "SUNSHINE_HOME": str(work),
    }
    analyst = create_token(env, "--user", "li", "--role", "analyst", cwd=work)
    caseworker = create_token(
        env, "--user", "wang", "--role", "caseworker", "--districts", "huaxi", "--districts",
        "nanming",
        "--scope", "youth", cwd=work,
    )  # fmt: skip
    persons = pd.read_parquet(city / "persons.parquet").person_id.sample(3000, random_state=0)
    port = free_port()
    audit = work / "soak-audit.db"
    cmd = [
        BIN / "sunshine", "serve", "--data", city, "--port", port, "--refresh-seconds", 5,
        "--audit-db", audit, "--service-db", work / "soak-service.db",
    ]  # fmt: skip
    with server_process(cmd, port, "/readyz", cwd=work, env=env, timeout=600) as url:
        server = psutil.Process(httpx.get(url + "/readyz", timeout=30).json()["worker"]["pid"])
        day = Day(url, analyst, caseworker, persons.tolist())
        rows = soak(day, server, work, env, city, args)
        time.sleep(2)  # the last entries committed
    report(rows, day, audit, work, env)


def report(rows: list[dict], day: Day, audit: Path, work: Path, env: dict) -> None:
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))
    settled = frame[frame.minute >= min(5, frame.minute.max())]  # a short run: from its end
    base = settled.iloc[0]
    growth = {k: 100 * (settled[k].max() - base[k]) / base[k] for k in ("rss_mib", "fds")}
    requests = (
        sqlite3.connect(audit)
        .execute("SELECT count(DISTINCT request_id) FROM audit WHERE route NOT LIKE '/app/static%'")
        .fetchone()[0]
    )
    verify = subprocess.run(
        [BIN / "sunshine", "audit", "verify", "--audit-db", audit],
        capture_output=True, text=True, env=env, cwd=work,
    )  # fmt: skip
    said = verify.stdout.strip() or verify.stderr.strip()
    print(
        f"after minute 5: RSS +{growth['rss_mib']:.1f}%, descriptors +{growth['fds']:.1f}% "
        f"(target <= 10%); {day.sent:,} requests, {day.errors} errors (target 0), "
        f"{day.shed} shed; audited requests {requests:,} (sign-in and the chores' own "
        f"included) for {day.sent:,} sent; audit verify: {said}"
    )
    (work / "soak_bench.json").write_text(
        json.dumps({"rows": rows, "growth_pct": growth, "errors": day.errors}, indent=1)
    )


if __name__ == "__main__":
    main()
