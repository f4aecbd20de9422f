"""Throughput of `sunshine serve --workers N` on a large city, 1 worker against 2, and the
memory each worker holds.

    python benchmarks/workers_bench.py --persons 1000000 --repeats 3 --seconds 15

Load: `GET /v1/persons/{id}/risk` with the top 5 explanations, as an analyst (any registry
person, `allow_out_of_cohort=true`), from 8 keep-alive connections of wrk (Debian's `wrk`, a
C load generator: a Python client would take a core of this 2-core machine for itself), over
random persons. The state is materialized into WORK/workers-state by `sunshine materialize`
(the first run pays for it, a later run over the same city and champions reuses it; its time
is reported apart) and reused by every server started after. Servers with 1 and 2
workers are started and measured alternately, run by run; medians are reported.

CPU per answer, from the thread times of the workers and /proc/stat around each run: the
workers' event loops, their other threads, and the rest of the machine. One worker is bound
by its event loop and two by the two cores, so the ratio is at most twice the loop's share of
the machine's CPU per answer: the benchmark prints that bound beside the ratio.

Memory, per worker, after its load: the high-water RSS (VmHWM), and the proportional set size
(PSS: pages shared with the other worker, the mapped matrices and registry, count half).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.common import THROUGHPUT, arguments
from benchmarks.programme_bench import city
from benchmarks.servers import create_token, every_worker, free_port, listening, server_process
from benchmarks.web_bench import champions

BIN = Path(sys.executable).parent
LUA = """
local ids = {%s}
local n = 0
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/persons/" .. ids[(n %% #ids) + 1] ..
    "/risk?task=relapse&allow_out_of_cohort=true")
end
"""


def workers_of(url: str) -> list[psutil.Process]:
    """The server's worker processes: the children of the process that answers on the port."""
    parent = listening(int(url.rsplit(":", 1)[1]))
    while parent.parent() and "sunshine" in " ".join(parent.parent().cmdline()):
        parent = parent.parent()
    return [p for p in parent.children() if "spawn" in " ".join(p.cmdline())]


def every_worker_ready(url: str, n: int, timeout: float = 600) -> None:
    """Wait until each of the n workers answers. The first one ready makes /readyz answer,
    and the parent hands connections only to a worker that is ready: a load started before
    then would put every keep-alive connection on the first worker for the whole run."""
    deadline = time.time() + timeout
    while len(seen := every_worker(url, 4 * n)) < n:
        if time.time() > deadline:
            raise SystemExit(f"only {len(seen)} of {n} workers answered in {timeout:.0f} s")
        time.sleep(0.3)


def high_water_mib(proc: psutil.Process) -> float:
    text = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024


def thread_seconds(procs: list[psutil.Process]) -> tuple[float, float]:
    """CPU seconds of the workers' main threads (their event loops) and of their other
    threads (the audit writer, the thread pool)."""
    loops = others = 0.0
    for proc in procs:
        for thread in proc.threads():
            spent = thread.user_time + thread.system_time
            if thread.id == proc.pid:
                loops += spent
            else:
                others += spent
    return loops, others


def cpu_times() -> list[int]:
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq,
    steal), from /proc/stat."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def wrk(url: str, script: Path, seconds: int) -> dict[str, float]:
    """The load, with where the machine's two cores went meanwhile: idle, and stolen by the
    host (a virtual machine's neighbours; the runs' spread follows it)."""
    before = cpu_times()
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors under load:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    spent = [b - a for a, b in zip(before, cpu_times(), strict=True)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    busy = sum(spent) - spent[3] - spent[4] - spent[7]  # idle, iowait, steal
    return {
        "rps": rps,
        "busy_ms": round(1000 * busy / os.sysconf("SC_CLK_TCK") / (rps * seconds), 3),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "idle_pct": round(100 * (spent[3] + spent[4]) / sum(spent), 1),
        "steal_pct": round(100 * spent[7] / sum(spent), 1),
    }


def main() -> None:
    ap = arguments(persons=1_000_000, work="bench-out")
    ap.add_argument("--seconds", type=int, default=15, help="load per run")
    ap.add_argument(
        "--against",
        type=Path,
        help="another checkout of the project (`git archive REF | tar -x -C DIR`) whose "
        "servers are measured too, alternately with this one's, over the same state",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk: sudo apt-get install wrk")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = city(work, args.persons)
    champions(work)
    env = {
        **os.environ,
        "SUNSHINE_TOKENS_FILE": str(work / "workers-tokens.json"),
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
    }
    token = create_token(env, "--user", "bench", "--role", "analyst", cwd=work)
    import pandas as pd

    ids = pd.read_parquet(data / "persons.parquet", columns=["person_id"]).person_id
    sample = ids.sample(5000, random_state=0).tolist()
    script = Path(tempfile.mkdtemp()) / "risk.lua"
    script.write_text(LUA % (",".join(f'"{i}"' for i in sample), token))

    state = work / "workers-state"
    started = time.perf_counter()
    subprocess.run(
        [BIN / "sunshine", "materialize", "--data", data, "--out", state], env=env, check=True
    )
    materialize_s = time.perf_counter() - started

    codes = {"this": env}
    if args.against:
        codes[str(args.against)] = {**env, "PYTHONPATH": str(args.against.resolve())}
    runs: dict[tuple[str, int], list[dict]] = {(c, n): [] for c in codes for n in (1, 2)}
    for _ in range(args.repeats):
        for code, n in runs:
            result = measure(work, data, state, n, script, args.seconds, codes[code])
            runs[code, n].append(result)
            print(code, n, json.dumps(result), flush=True)
    report_runs(runs, args, materialize_s)


def report_runs(
    runs: dict[tuple[str, int], list[dict]], args: argparse.Namespace, materialize_s: float
) -> None:
    """The runs as Markdown tables (throughput and memory; CPU per answer) and the 2/1 ratio
    of each code with the bound its one-worker costs set."""
    codes = sorted({code for code, _ in runs}, key=[c for c, _ in runs].index)
    print(
        f"\npersons {args.persons:,}; materialize {materialize_s:.1f} s (or its reuse); "
        f"{args.repeats} runs of {args.seconds} s per server; medians"
    )
    print(
        "| code | workers | requests/s (runs) | p50 ms | p99 ms | ready s "
        "| peak RSS per worker MiB | PSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rps = {}
    for (code, n), rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms")}
        rps[code, n] = med["rps"]
        each = ", ".join(f"{r['rps']:.0f}" for r in rs)
        print(
            f"| {code} | {n} | {med['rps']:.0f} ({each}) | {med['p50_ms']:.1f} | "
            f"{med['p99_ms']:.1f} | {statistics.median(r['ready_s'] for r in rs):.1f} | "
            f"{max(max(r['hwm_mib']) for r in rs):.0f} | "
            f"{max(max(r['pss_mib']) for r in rs):.0f} |"
        )
    print(
        "\nCPU per answer, ms (medians): the workers' event loops, their other threads (audit "
        "writer, thread pool), and the rest of the machine (wrk, the kernel's loopback TCP)"
    )
    print("| code | workers | event loops | other threads | rest | machine |")
    print("|---|---|---|---|---|---|")
    for (code, n), rs in runs.items():
        cpu = {k: statistics.median(r[k] for r in rs) for k in ("loop_ms", "threads_ms", "busy_ms")}
        rest = cpu["busy_ms"] - cpu["loop_ms"] - cpu["threads_ms"]
        print(
            f"| {code} | {n} | {cpu['loop_ms']:.2f} | {cpu['threads_ms']:.2f} | {rest:.2f} "
            f"| {cpu['busy_ms']:.2f} |"
        )
    for code in codes:
        ratios = [b["rps"] / a["rps"] for a, b in zip(runs[code, 1], runs[code, 2], strict=True)]
        # one worker is bound by its event loop, two by the machine's two cores: at most
        # 2 / (machine CPU per answer) against 1 / (loop CPU per answer)
        one = runs[code, 1]
        bound = (
            2
            * statistics.median(r["loop_ms"] for r in one)
            / statistics.median(r["busy_ms"] for r in one)
        )
        print(
            f"{code}: 2 workers / 1: {rps[code, 2] / rps[code, 1]:.2f}x (runs "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f"; target >= 1.7; at most {bound:.2f}x while the one-worker costs hold); "
            f"1 worker {rps[code, 1]:.0f} requests/s (target >= 400)"
        )


def measure(
    work: Path, data: Path, state: Path, n: int, script: Path, seconds: int, env: dict
) -> dict:
    """One server with n workers over the materialized state, under wrk's load."""
    port = free_port()
    cmd = [
        BIN / "sunshine", "serve", "--data", data, "--port", port, "--workers", n,
        "--max-in-flight", THROUGHPUT,
        "--state-dir", state, "--refresh-seconds", 0,
        "--audit-db", work / f"workers-audit-{n}.db",
        "--service-db", work / f"workers-service-{n}.db",
    ]  # fmt: skip
    t0 = time.perf_counter()
    with server_process(cmd, port, "/readyz", cwd=work, env=env, timeout=900) as url:
        every_worker_ready(url, n)
        ready_s = time.perf_counter() - t0
        wrk(url, script, 3)  # warm: the pages of the persons asked for
        procs = workers_of(url)
        before = thread_seconds(procs)
        result = wrk(url, script, seconds)
        loops, others = (b - a for a, b in zip(before, thread_seconds(procs), strict=True))
        answers = result["rps"] * seconds
        result["loop_ms"] = round(1000 * loops / answers, 3)
        result["threads_ms"] = round(1000 * others / answers, 3)
        result["ready_s"] = ready_s
        result["hwm_mib"] = [round(high_water_mib(p), 1) for p in procs]
        result["pss_mib"] = [round(p.memory_full_info().pss / 2**20, 1) for p in procs]
    return result


if __name__ == "__main__":
    main()
