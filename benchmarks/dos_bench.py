"""Does a hostile client slow the service for everyone else?

Starts a real `sunshine serve` on loopback over a trained city, then measures `/healthz`
latency (p50, p99) and the server's memory, first at rest and then while two attacks run
beside it: a 600 MB chunked body, and analysts' maximum-size requests (1.3 million `{}`
records in 3.9 MB, just under the body limit). Targets: p99 under 50 ms, memory growth under
50 MB. Every request goes to 127.0.0.1; every loop is bounded in count and time.

    python benchmarks/dos_bench.py [--persons 4000] [--probes 400]
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmarks.common import arguments
from benchmarks.servers import create_token, free_port, server_process

ROOT = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent
HUGE_BYTES = 600 * 1024 * 1024


def prepare(work: Path, persons: int) -> None:
    """A city with a trained, promoted relapse model, reused when present."""
    if (work / "mlflow.db").exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for args in (
        ["synth", "--persons", str(persons), "--out", "city"],
        ["train", "--task", "relapse", "--data", "city"],
        ["promote", "--task", "relapse", "--force", "--reason", "benchmark"],
    ):
        subprocess.run(
            [BIN / "sunshine", *args], cwd=work, env=env, check=True, capture_output=True
        )


def probe(url: str, count: int) -> list[float]:
    out = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            t = time.perf_counter()
            client.get(f"{url}/healthz")
            out.append(time.perf_counter() - t)
            time.sleep(0.005)
    return out


def huge_body(url: str, token: str, stop: threading.Event) -> None:
    def chunks():
        sent = 0
        while sent < HUGE_BYTES and not stop.is_set():
            sent += 1 << 20
            yield b"x" * (1 << 20)

    while not stop.is_set():
        # the server may close the connection once it has refused the body
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{url}/v1/score/relapse",
                content=chunks(),
                headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
                timeout=30,
            )


def max_request(url: str, token: str, stop: threading.Event, refused: list[int]) -> None:
    body = b'{"records": [' + b",".join([b"{}"] * 1_300_000) + b"]}"
    with httpx.Client(timeout=30) as client:
        for _ in range(50):  # bounded
            if stop.is_set():
                return
            r = client.post(
                f"{url}/v1/score/relapse",
                content=body,
                headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
            )
            refused.append(r.status_code)


def summary(latencies: list[float]) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    return {
        "p50_ms": round(float(np.median(ms)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def main() -> None:
    ap = arguments(persons=4000, work="bench-out/dos", repeats=1)
    ap.add_argument("--probes", type=int, default=400)
    args = ap.parse_args()
    work = args.work.resolve()
    prepare(work, args.persons)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["SUNSHINE_TOKENS_FILE"] = str(work / "tokens.json")
    token = create_token(env, "--user", "bench", "--role", "analyst")
    port = free_port()
    cmd = [BIN / "sunshine", "serve", "--data", "city", "--port", port, "--audit-db", "audit.db"]
    with server_process(cmd, port, "/healthz", cwd=work, env=env, timeout=300) as url:
        server = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "serve" in p.info["cmdline"] and str(port) in p.info["cmdline"]
        )
        at_rest = summary(probe(url, args.probes))
        rss0 = server.memory_info().rss
        stop, refused = threading.Event(), []
        attackers = [
            threading.Thread(target=huge_body, args=(url, token, stop)),
            threading.Thread(target=max_request, args=(url, token, stop, refused)),
        ]
        for t in attackers:
            t.start()
        peak = rss0
        latencies = []
        deadline = time.monotonic() + 120
        while len(latencies) < args.probes and time.monotonic() < deadline:
            latencies += probe(url, 20)
            peak = max(peak, server.memory_info().rss)
        stop.set()
        for t in attackers:
            t.join(timeout=60)
        result = {
            "at_rest": at_rest,
            "under_attack": summary(latencies),
            "max_requests_refused": sorted(set(refused)),
            "rss_growth_mb": round((peak - rss0) / 2**20, 1),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
