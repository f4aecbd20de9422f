"""Overload: one worker under 4x the concurrency it can serve, with its in-flight bound and
without one, side by side in one run (`python -m benchmarks.overload_bench`).

Reported per server: the unloaded p99 of a risk answer (one client), the share shed of a load
at half the capacity measured (requests arriving at random, as a normal day's do: a bound
that sheds those is too tight), the p99 of the answers given under 4x load and its ratio to
the unloaded one (target <= 3), the share shed there (503), the client timeouts (target 0),
and the p99 of /healthz probed beside the load (target < 50 ms).
Every loop is bounded in time and count, and everything listens on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import random
import statistics
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from benchmarks.common import arguments
from benchmarks.serve_bench import BIN, analyst_over
from benchmarks.servers import free_port, server_process
from serving.api.admission import LEAST, MOST

TIMEOUT_S = 5.0  # a client gives up on an answer after this
PACERS = 8  # threads sending the half-capacity load: up to 8 requests can overlap


def hammer(url: str, paths: list[str], headers: dict, clients: int, seconds: float) -> dict:
    """`clients` threads asking in a loop for `seconds` (at most 20,000 requests in all),
    with a /healthz prober beside them; latencies of the answers and of the probes."""
    stop = time.monotonic() + seconds
    budget = threading.Semaphore(20_000)
    answered: list[float] = []
    shed, timeouts, probes = [0], [0], []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(timeout=TIMEOUT_S) as c:
            i = k
            while time.monotonic() < stop and budget.acquire(blocking=False):
                t = time.perf_counter()
                try:
                    r = c.get(url + paths[i % len(paths)], headers=headers)
                except httpx.TimeoutException:
                    with lock:
                        timeouts[0] += 1
                    continue
                took = time.perf_counter() - t
                with lock:
                    if r.status_code == 200:
                        answered.append(took)
                    elif r.status_code == 503:
                        shed[0] += 1
                if r.status_code == 503:
                    time.sleep(float(r.headers.get("retry-after", 1)) / 10)  # a polite client
                i += clients

    def prober() -> None:
        with httpx.Client(timeout=TIMEOUT_S) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                c.get(url + "/healthz")
                probes.append(time.perf_counter() - t)
                time.sleep(0.1)

    with cf.ThreadPoolExecutor(clients + 1) as pool:
        list(pool.map(lambda f: f(), [prober, *[lambda k=k: client(k) for k in range(clients)]]))
    total = len(answered) + shed[0] + timeouts[0]
    return {
        "answered": len(answered),
        "per_s": len(answered) / seconds,
        "p99_ms": float(np.percentile(answered, 99) * 1000) if answered else float("nan"),
        "shed_pct": 100 * shed[0] / max(total, 1),
        "timeouts": timeouts[0],
        "healthz_p99_ms": float(np.percentile(probes, 99) * 1000) if probes else float("nan"),
    }


def paced(url: str, paths: list[str], headers: dict, rate: float, seconds: float) -> float:
    """Requests arriving at random (exponential gaps) at `rate` a second for `seconds`, from
    PACERS threads: the percentage shed."""
    stop = time.monotonic() + seconds
    counts = [0, 0]  # answered, shed
    lock = threading.Lock()

    def pacer(k: int) -> None:
        rng, due = random.Random(k), time.monotonic()
        with httpx.Client(timeout=TIMEOUT_S) as c:
            i = k
            while (due := due + rng.expovariate(rate / PACERS)) < stop:
                time.sleep(max(0.0, due - time.monotonic()))
                r = c.get(url + paths[i % len(paths)], headers=headers)
                with lock:
                    counts[r.status_code == 503] += 1
                i += PACERS

    with cf.ThreadPoolExecutor(PACERS) as pool:
        list(pool.map(pacer, range(PACERS)))
    return 100 * counts[1] / max(sum(counts), 1)


def measure(work: Path, env: dict, token: str, bound: str, clients: int, seconds: float) -> dict:
    """One server with the bound `MOST/LEAST` (`--max-in-flight MOST --min-in-flight LEAST`):
    unloaded, at half its capacity, then under `clients` at once."""
    most, _, least = bound.partition("/")
    port = free_port()
    cmd = [
        BIN / "sunshine", "serve", "--data", "city", "--port", port, "--refresh-seconds", 0,
        "--max-in-flight", most, "--audit-db", work / f"overload-{bound.replace('/', '-')}.db",
    ]  # fmt: skip
    if least:
        cmd += ["--min-in-flight", least]
    ids = pd.read_parquet(work / "city" / "persons.parquet").person_id
    paths = [
        f"/v1/persons/{p}/risk?task=relapse&allow_out_of_cohort=true"
        for p in ids.sample(2000, random_state=0)
    ]
    headers = {"Authorization": f"Bearer {token}"}
    with server_process(cmd, port, "/readyz", cwd=work, env=env, timeout=600) as url:
        hammer(url, paths, headers, 2, 2)  # warm
        alone = hammer(url, paths, headers, 1, seconds / 2)
        best = hammer(url, paths, headers, clients // 4, seconds / 2)
        half_shed = paced(url, paths, headers, best["per_s"] / 2, seconds)
        loaded = hammer(url, paths, headers, clients, seconds)
    return {
        "unloaded_p99_ms": alone["p99_ms"],
        "capacity_per_s": best["per_s"],
        "half_shed_pct": half_shed,
        **loaded,
    }


def main() -> None:
    ap = arguments(persons=20_000, work="bench-out/serve", repeats=2)
    ap.add_argument("--seconds", type=float, default=15, help="load per run")
    ap.add_argument("--capacity", type=int, default=4, help="clients one worker serves at once")
    ap.add_argument(
        "--bounds",
        nargs="+",
        default=[f"{MOST}/{LEAST}", f"{MOST}/{MOST}", f"{LEAST}/{LEAST}", "0"],
        help="each server's bound compared: MOST/LEAST requests in hand while idle time "
        "remains / once saturated (the default first); 0: no bound",
    )
    args = ap.parse_args()
    work = args.work.resolve()
    env, token = analyst_over(work, args.persons)
    clients = 4 * args.capacity
    default = f"{MOST}/{LEAST}"
    servers = {
        (f"bound {b}" if b != "0" else "no bound") + (" (default)" if b == default else ""): b
        for b in args.bounds
    }
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    for _ in range(args.repeats):  # alternated, so the machine's noise hits both alike
        for name, bound in servers.items():
            runs[name].append(measure(work, env, token, bound, clients, args.seconds))
            print(name, json.dumps(runs[name][-1]), flush=True)
    print(f"\npersons {args.persons:,}; {clients} clients for {args.seconds:.0f} s; medians")
    print(
        "| server | half load shed % | unloaded p99 ms | loaded p99 ms | ratio | shed % "
        "| timeouts | healthz p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(
            f"| {name} | {med['half_shed_pct']:.1f} | {med['unloaded_p99_ms']:.1f} | "
            f"{med['p99_ms']:.1f} | "
            f"{med['p99_ms'] / med['unloaded_p99_ms']:.1f}x | {med['shed_pct']:.0f} | "
            f"{med['timeouts']:.0f} | {med['healthz_p99_ms']:.1f} |"
        )
    (work / "overload_bench.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
