"""The web pages on a large city: a district's caseload page and a person page with its
12-month history, timed request by request on loopback.

    python benchmarks/web_bench.py --persons 1000000 --requests 300

The city is synthesized once into WORK/registry-N-1 (shared with programme_bench.py); the
relapse and youth models are trained once on a 20,000-person city of the same generator and
promoted in WORK/web-mlflow.db (a model's size does not depend on the city it scores). The
service state is built in this process as `sunshine serve` builds it (today's features of
every person, each caseload and its month-earlier scores), then a real uvicorn server answers
signed-in caseworkers: one per district. Each request's time is measured by the client over
loopback, so it bounds the server's time from above. The first person pages compute the
cohort of each of the 12 monthly dates once for the whole city (kept afterwards); they are
reported apart as the cold start. Medians, 95th percentiles and peak RSS are reported.

Side by side, in the same run: what a caseload page would cost if "the change since last month"
were computed per request (the district's cohort built and scored as of a month earlier),
which is what the service does once at load instead.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import THROUGHPUT, Meter, arguments, peak_rss_mib
from benchmarks.programme_bench import city
from benchmarks.servers import ServerThread

ROOT = Path(__file__).resolve().parents[1]

COLD = 3  # person pages that pay for the monthly cohorts, measured apart


def champions(work: Path) -> None:
    """Both tasks trained on a 20,000-person city and promoted, in a store of their own."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{(work / 'web-mlflow.db').resolve()}"
    from features.core.errors import RegistryError
    from models.registry import load_model, promote
    from models.training_run import train_task

    for task in ("relapse", "youth_uptake"):
        try:
            load_model(task)
        except RegistryError:
            train_task(city(work, 20_000), task)
            decision = promote(task, force=True, reason="benchmark model")
            assert decision.promoted, decision.reasons


def signin(url: str, token: str) -> httpx.Client:
    import re

    client = httpx.Client(base_url=url, timeout=120)
    page = client.get("/app/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    assert client.post("/app/signin", data={"token": token, "nonce": nonce}).status_code == 303
    return client


def timed(client: httpx.Client, path: str, params: dict) -> float:
    start = time.perf_counter()
    r = client.get(path, params=params)
    took = time.perf_counter() - start
    if r.status_code != 200:
        raise SystemExit(f"{path} {params}: HTTP {r.status_code}: {r.text[:300]}")
    return took * 1000


def summary(name: str, ms: list[float]) -> str:
    p95 = float(np.percentile(ms, 95))
    return (
        f"  {name}: {len(ms)} requests, median {statistics.median(ms):.0f} ms, "
        f"p95 {p95:.0f} ms, max {max(ms):.0f} ms"
    )


def per_request_change(state, districts) -> list[float]:
    """The competitor: a district's month-earlier features built and scored on request."""
    import pandas as pd

    from features.compute.builder import FeatureBuilder
    from features.tasks import get_task

    task = get_task("relapse")
    model, _ = state.loaded.model(task.name)
    frame = state.caseload(task).frame
    earlier = state.cohort(task, state.previous)
    out = []
    for district in districts:
        start = time.perf_counter()
        ids = frame.index[frame["district"] == district]
        ids = ids[earlier[state.persons.loc[ids, "pk"].to_numpy() - 1]]
        spine = pd.DataFrame({"person_id": ids, "as_of": state.previous})
        model.score(FeatureBuilder(state.store).build(spine))
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    ap = arguments(1_000_000, "bench-out", repeats=1)
    ap.add_argument("--requests", type=int, default=300, help="requests of each page")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = city(args.work, args.persons)
    champions(args.work)

    from features.contract.vocabulary import DISTRICTS
    from features.storage.store import Store
    from features.tasks import get_task
    from serving.access.audit import AuditLog
    from serving.access.tokens import TokenStore
    from serving.app import create_app
    from serving.scoring.interventions import load_interventions
    from serving.state.champions import load_champions
    from serving.state.service import build_state
    from serving.storage.web_records import WebStore

    with Meter() as load:
        store = Store(data)
    with Meter() as build:
        state = build_state(store, load_champions())
    cohort = state.caseload(get_task("relapse")).frame
    print(
        f"{args.persons:,} persons: registry loaded in {load.wall:.1f} s; service state "
        f"(today's features, caseloads and last month's scores) built in {build.wall:.1f} s "
        f"({build.cpu:.1f} s CPU); relapse cohort {len(cohort):,}"
    )
    tokens = TokenStore([])
    token = {d: tokens.create(f"cw_{d}", "caseworker", [d], ["youth"]) for d in DISTRICTS}
    (args.work / "web-audit.db").unlink(missing_ok=True)
    app = create_app(
        state,
        tokens,
        AuditLog(args.work / "web-audit.db"),
        load_interventions(),
        WebStore(args.work / "web-service.db"),
        THROUGHPUT,
    )
    rng = np.random.default_rng(1)
    with ServerThread(app) as server:
        clients = {d: signin(server.url, t) for d, t in token.items()}
        caseload = []
        for i in range(args.requests):
            district = DISTRICTS[i % len(DISTRICTS)]
            params: dict[str, object] = {"page": 1 + (i // len(DISTRICTS)) % 3}
            # in turn: everyone, rising only, the to-follow-up view, by last contact
            params |= ({}, {"rising": "true"}, {"view": "todo"}, {"sort": "contact"})[i % 4]
            caseload.append(timed(clients[district], "/app/caseload", params))
        cohort = cohort[cohort["district"].notna()]  # no caseworker has the district-less
        picks = rng.choice(len(cohort), size=args.requests + COLD, replace=False)
        person = []
        for k in picks:
            pid = cohort.index[k]
            district = cohort["district"].iloc[k]
            person.append(timed(clients[district], f"/app/persons/{pid}", {"task": "relapse"}))
    rebuild = per_request_change(state, DISTRICTS[:5])
    print(summary("caseload page (a district, 25 rows: filters, to follow up, sorted)", caseload))
    print(summary("the change since last month rebuilt per request instead", rebuild))
    print(f"  person page, cold start: {[round(x) for x in person[:COLD]]} ms")
    print(summary("person page (with the 12-month history)", person[COLD:]))
    print(f"  peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
