"""The CPU one risk answer costs: `GET /v1/persons/{id}/risk` with its top-5 explanations and
its audit entry, measured as the server's own CPU time (every process and thread it runs)
over a fixed number of requests, so the figure does not depend on the load generator sharing
the cores. This checkout's server and, with --baseline REV, the same server at another
revision (a git worktree run by the same interpreter), side by side, run by run.

Two questions, measured apart: a caseworker's, about a member of the relapse cohort today
(whose reasons the caseload computed when the service loaded), and an analyst's about anyone
in the registry with `allow_out_of_cohort=true` (most are not in the cohort: their TreeSHAP is
computed for the answer).

    python -m benchmarks.answer_cpu_bench --persons 20000 --requests 3000 --baseline 20434e7
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import psutil

from benchmarks.common import arguments
from benchmarks.serve_bench import analyst_over
from benchmarks.servers import free_port, listening, server_process
from features.compute.labels import cohort_mask
from features.storage.store import Store
from features.tasks import get_task

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


def server_cpu(proc: psutil.Process) -> float:
    """CPU seconds of a server process and every process it started."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def ask(url: str, paths: list[str], token: str) -> None:
    """Every path once, from CLIENTS keep-alive connections; any answer but 200 stops it.

    A bare HTTP/1.1 client on a socket, not httpx: the load generator shares the two cores,
    and with httpx (about 0.3 ms of CPU a request) the server found each client's next
    request still being made when it had answered, so two clients were never both in
    flight. This one costs a tenth of that."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    head = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"

    def client(k: int) -> None:
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answers = sock.makefile("rb")
            for path in paths[k::CLIENTS]:
                sock.sendall(f"GET {path} HTTP/1.1\r\n{head}".encode())
                status, length = answers.readline(), 0
                while (line := answers.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = answers.read(length)
                if status.split()[1:2] != [b"200"]:
                    raise SystemExit(f"{status.decode().strip()}: {body[:300].decode()}")

    with cf.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))


def measure(
    code: Path, work: Path, env: dict, token: str, asked: dict[str, list[str]], name: str
) -> dict[str, float]:
    """Milliseconds of server CPU per answer to each kind of question, for the server whose
    code is at `code`."""
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
        server = listening(port)
        cpu = {}
        for kind, paths in asked.items():
            ask(url, paths[:WARM], token)
            before = server_cpu(server)
            ask(url, paths[WARM:], token)
            cpu[kind] = 1000 * (server_cpu(server) - before) / (len(paths) - WARM)
        return cpu


def main() -> None:
    ap = arguments(persons=20_000, work="bench-out/serve")
    ap.add_argument("--requests", type=int, default=3000, help="measured, after the warm-up")
    ap.add_argument("--baseline", help="a git revision to compare with, run by run")
    args = ap.parse_args()
    work = args.work.resolve()
    env, token = analyst_over(work, args.persons)
    asked = questions(work / "city", WARM + args.requests)
    servers = {"this checkout": HERE}
    if args.baseline:
        servers[f"at {args.baseline}"] = worktree(work, args.baseline)
    runs = {(name, kind): [] for name in servers for kind in asked}
    for _ in range(args.repeats):  # alternated, so the machine's noise hits both alike
        for name, code in servers.items():
            cpu = measure(code, work, env, token, asked, name.replace(" ", "-"))
            for kind, ms in cpu.items():
                runs[name, kind].append(ms)
                print(name, kind, f"{ms:.3f} ms CPU per answer", flush=True)
    print(f"\npersons {args.persons:,}; {args.requests} answers a run; {args.repeats} runs")
    print("| server | question | CPU ms per answer (median) | runs |")
    print("|---|---|---|---|")
    for (name, kind), values in runs.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {name} | {kind} | {statistics.median(values):.3f} | {shown} |")
    (work / "answer_cpu_bench.json").write_text(
        json.dumps({f"{name}: {kind}": v for (name, kind), v in runs.items()}, indent=1)
    )


def questions(city: Path, n: int) -> dict[str, list[str]]:
    """n paths of each kind of question: about members of the relapse cohort today, and
    about anyone in the registry, asked by an analyst."""
    store = Store(city)
    members = (
        store.con.execute("SELECT person_id FROM persons ORDER BY pk")
        .df()
        .person_id[cohort_mask(store, get_task("relapse"), store.reference_date)]
    )
    anyone = pd.read_parquet(city / "persons.parquet").person_id
    return {
        "cohort member": [
            f"/v1/persons/{p}/risk?task=relapse&explain=5"
            for p in members.sample(n, replace=True, random_state=0)
        ],
        "anyone, analyst": [
            f"/v1/persons/{p}/risk?task=relapse&allow_out_of_cohort=true&explain=5"
            for p in anyone.sample(n, replace=True, random_state=0)
        ],
    }


if __name__ == "__main__":
    main()
