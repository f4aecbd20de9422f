"""Serving benchmark on loopback: our risk API against `mlflow models serve`, side by side.

    python benchmarks/serve_bench.py --persons 20000 --requests 1500 --repeats 3

Ours: GET /v1/persons/{id}/risk, features from the event store and the top 5 explanations.
MLflow: POST /invocations with one row of precomputed features, no explanations, on the same
registered model. One worker each; 1 and 8 concurrent clients; the two servers are measured
alternately, run by run, and medians are reported.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from benchmarks.common import THROUGHPUT, arguments
from benchmarks.servers import create_token, free_port, server_process

BIN = Path(sys.executable).parent


def prepare(work: Path, persons: int) -> None:
    """A registry with both tasks trained and promoted, reused once complete. A small city's
    model may not beat its baselines, which the gate rightly refuses: the benchmark measures
    serving, not the model, so it then promotes with the reason said."""
    if (work / "prepared").exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    # what an interrupted preparation left
    shutil.rmtree(work / "city", ignore_errors=True)
    shutil.rmtree(work / "mlruns", ignore_errors=True)
    (work / "mlflow.db").unlink(missing_ok=True)
    run = {"cwd": work, "env": {**os.environ, "MLFLOW_TRACKING_URI": ""}}
    subprocess.run(
        [BIN / "sunshine", "synth", "--persons", str(persons), "--out", "city"], **run, check=True
    )
    for task in ("relapse", "youth_uptake"):  # the service serves both tasks' champions
        subprocess.run(
            [BIN / "sunshine", "train", "--task", task, "--data", "city"], **run, check=True
        )
        promote = [BIN / "sunshine", "promote", "--task", task]
        if subprocess.run(promote, **run).returncode:
            force = ["--force", "--reason", "a benchmark city; serving is measured, not the model"]
            subprocess.run([*promote, *force], **run, check=True)
    (work / "prepared").touch()


def analyst_over(work: Path, persons: int) -> tuple[dict, str]:
    """The prepared city in `work`, the environment its servers run in, and an analyst's
    token."""
    prepare(work, persons)
    env = {
        **os.environ,
        "SUNSHINE_TOKENS_FILE": str(work / "tokens.json"),
        "MLFLOW_TRACKING_URI": "",
    }
    return env, create_token(env, "--user", "bench", "--role", "analyst", cwd=work)


def load(send, n: int, clients: int) -> dict[str, float]:
    """n requests from `clients` threads, each with its own keep-alive connection."""
    per = n // clients

    def worker(k: int) -> list[float]:
        out = []
        with httpx.Client(timeout=30) as c:
            for i in range(per):
                t = time.perf_counter()
                r = send(c, k * per + i)
                out.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise SystemExit(f"HTTP {r.status_code}: {r.text[:300]}")
        return out

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        lat = np.concatenate(list(pool.map(worker, range(clients))))
    wall = time.perf_counter() - start
    return {
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p95_ms": float(np.percentile(lat, 95) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
        "rps": len(lat) / wall,
    }


def mlflow_rows(work: Path, ids: list[str]) -> list[str]:
    """MLflow's request bodies for the same persons: their features as the project builds
    them, one row a request (MLflow serving takes features, not a person id)."""
    from features.compute.builder import FeatureBuilder
    from features.storage.store import Store
    from training.config import load_config

    names = load_config("relapse").model_features()

    store = Store(work / "city")
    feats = FeatureBuilder(store).build(
        pd.DataFrame({"person_id": ids, "as_of": store.reference_date})
    )[names]
    return [
        json.dumps(
            {
                "dataframe_split": {
                    "columns": names,
                    "data": [
                        [None if pd.isna(v) else (v if isinstance(v, str) else float(v)) for v in r]
                    ],
                }
            }
        )
        for r in feats.astype(object).itertuples(index=False)
    ]


def summarize(results: dict[str, list], args: argparse.Namespace) -> list[dict]:
    """Medians per server and client count, printed with the ratios the targets are on."""
    table = []
    for key, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        name, clients = key.split("_")
        table.append(
            {
                "server": name,
                "clients": int(clients),
                **{k: round(v, 2) for k, v in med.items()},
            }
        )
    out = pd.DataFrame(table)
    print(
        f"persons {args.persons:,}; {args.requests} requests per run; {args.repeats} runs; medians"
    )
    print(out.to_string(index=False))
    for clients in (1, 8):
        o = out[(out.server == "ours") & (out.clients == clients)].iloc[0]
        m = out[(out.server == "mlflow") & (out.clients == clients)].iloc[0]
        print(
            f"{clients} client(s): p99 ratio ours/mlflow {o.p99_ms / m.p99_ms:.2f} "
            "(target <= 0.5), "
            f"throughput ratio {o.rps / m.rps:.2f} (target >= 3)"
        )
    return table


def main() -> None:
    ap = arguments(persons=20_000, work="bench-out/serve")
    ap.add_argument("--requests", type=int, default=1500)
    args = ap.parse_args()
    work = args.work.resolve()
    env, token = analyst_over(work, args.persons)
    ours_port, ml_port = free_port(), free_port()
    ml_env = {
        **env,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # it starts `uvicorn` by name
    }
    ours_cmd = [
        BIN / "sunshine",
        "serve",
        "--data",
        "city",
        "--port",
        ours_port,
        "--audit-db",
        work / "audit.db",
        "--max-in-flight",
        THROUGHPUT,
    ]
    ml_cmd = [
        BIN / "mlflow",
        "models",
        "serve",
        "-m",
        "models:/sunshine-relapse@champion",
        "--env-manager",
        "local",
        "-p",
        ml_port,
        "-h",
        "127.0.0.1",
        "--workers",
        "1",
    ]
    with (
        server_process(ours_cmd, ours_port, "/readyz", cwd=work, env=env, timeout=300),
        server_process(ml_cmd, ml_port, "/ping", cwd=work, env=ml_env, timeout=300),
    ):
        frame = pd.read_parquet(work / "city" / "persons.parquet")
        ids = frame.person_id.sample(args.requests, replace=True, random_state=0).tolist()
        rows = mlflow_rows(work, ids[:200])
        headers = {"Authorization": f"Bearer {token}"}

        def ours_send(c: httpx.Client, i: int):
            return c.get(
                f"http://127.0.0.1:{ours_port}/v1/persons/{ids[i]}/risk",
                # any registry person, as MLflow scores any row: an analyst may ask for
                # persons outside the cohort
                params={"task": "relapse", "allow_out_of_cohort": "true"},
                headers=headers,
            )

        def mlflow_send(c: httpx.Client, i: int):
            return c.post(
                f"http://127.0.0.1:{ml_port}/invocations",
                content=rows[i % len(rows)],
                headers={"content-type": "application/json"},
            )

        for send in (ours_send, mlflow_send):  # warm up
            load(send, min(50, args.requests), 1)
        results: dict[str, list] = {}
        for _ in range(args.repeats):
            for clients in (1, 8):
                for name, send in (("ours", ours_send), ("mlflow", mlflow_send)):
                    results.setdefault(f"{name}_{clients}", []).append(
                        load(send, args.requests, clients)
                    )
        table = summarize(results, args)
        (work / "serve_bench.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
