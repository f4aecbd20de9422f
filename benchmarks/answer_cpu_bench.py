"""The CPU one risk answer costs: `GET /v1/persons/{id}/risk` with its top-5 explanations and
its audit entry, measured as the server's own CPU time (every process and thread it runs)
over a fixed number of requests, so the figure does not depend on the load generator sharing
the cores. This checkout's server and, with --baseline REV, the same server at another
revision (a git worktree run by the same interpreter), side by side, run by run.

    python -m benchmarks.answer_cpu_bench --persons 20000 --requests 3000 --baseline 20434e7
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import psutil

from benchmarks.common import arguments
from benchmarks.serve_bench import analyst_over
from benchmarks.servers import free_port, server_process

HERE = Path(__file__).resolve().parents[1]
CLIENTS = 2  # keep-alive connections asking in turn
WARM = 300  # requests before each measurement: imports, caches and the allocator settle


def worktree(work: Path, rev: str) -> Path:
    """A checkout of `rev` beside the city, made once."""
    where = work / f"baseline-{rev}"
    if not where.exists():
        subprocess.run(
            ["git", "-C", str(HERE), "worktree", "add", "--detach", str(where), rev], check=True
        )
    return where


def server_cpu(pid: int) -> float:
    """CPU seconds of a server process and every process it started."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def ask(url: str, paths: list[str], headers: dict) -> None:
    """Every path once, from CLIENTS keep-alive connections; any answer but 200 stops it."""

    def client(k: int) -> None:
        with httpx.Client(timeout=30, headers=headers) as c:
            for path in paths[k::CLIENTS]:
                r = c.get(url + path)
                if r.status_code != 200:
                    raise SystemExit(f"HTTP {r.status_code}: {r.text[:300]}")

    with cf.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))


def measure(code: Path, work: Path, env: dict, token: str, paths: list[str], name: str) -> float:
    """Milliseconds of server CPU per answer, for the server whose code is at `code`."""
    port = free_port()
    # no --max-in-flight: two clients never reach even the saturated bound of 2, and an
    # older revision may not take 0
    cmd = [
        sys.executable, "-c", "from serving.cli.main import app; app()",
        "serve", "--data", "city", "--port", port,
        "--audit-db", work / f"cpu-audit-{name}.db", "--refresh-seconds", 0,
    ]  # fmt: skip
    run_env = {**env, "PYTHONPATH": str(code)}
    with server_process(cmd, port, "/readyz", cwd=work, env=run_env, timeout=600) as url:
        pid = _listener(port)
        headers = {"Authorization": f"Bearer {token}"}
        ask(url, paths[:WARM], headers)
        before = server_cpu(pid)
        ask(url, paths[WARM:], headers)
        return 1000 * (server_cpu(pid) - before) / (len(paths) - WARM)


def _listener(port: int) -> int:
    """The process listening on `port` (the server, whatever started it)."""
    for c in psutil.net_connections("tcp"):
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
            return c.pid
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    ap = arguments(persons=20_000, work="bench-out/serve")
    ap.add_argument("--requests", type=int, default=3000, help="measured, after the warm-up")
    ap.add_argument("--baseline", help="a git revision to compare with, run by run")
    args = ap.parse_args()
    work = args.work.resolve()
    env, token = analyst_over(work, args.persons)
    ids = pd.read_parquet(work / "city" / "persons.parquet").person_id
    paths = [
        # any registry person, as an analyst may ask: the cohort check runs all the same
        f"/v1/persons/{p}/risk?task=relapse&allow_out_of_cohort=true&explain=5"
        for p in ids.sample(WARM + args.requests, replace=True, random_state=0)
    ]
    servers = {"this checkout": HERE}
    if args.baseline:
        servers[f"at {args.baseline}"] = worktree(work, args.baseline)
    runs: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(args.repeats):  # alternated, so the machine's noise hits both alike
        for name, code in servers.items():
            tag = name.replace(" ", "-")
            runs[name].append(measure(code, work, env, token, paths, tag))
            print(name, f"{runs[name][-1]:.3f} ms CPU per answer", flush=True)
    print(f"\npersons {args.persons:,}; {args.requests} answers a run; {args.repeats} runs")
    print("| server | CPU ms per answer (median) | runs |")
    print("|---|---|---|")
    for name, values in runs.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {name} | {statistics.median(values):.3f} | {shown} |")
    (work / "answer_cpu_bench.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
