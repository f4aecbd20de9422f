"""The commands against an MLflow tracking server whose backend store is PostgreSQL and whose
artifacts it serves itself (`mlflow server --serve-artifacts`), as a city deploys it: train,
promote, serve and score a roster through it, every process on loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pandas as pd
from conftest import small_config, sunshine
from pg import fresh_database

from benchmarks.servers import create_token, free_port, server_process
from models.risk_model import META_FILE

BIN = Path(sys.executable).parent


def test_train_promote_serve_and_score_through_an_mlflow_server_on_postgresql(served, tmp_path):
    city = served / "city"  # the registry only: the models go to the new server
    with fresh_database() as backend:
        port = free_port()
        server = [
            BIN / "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--serve-artifacts",
            "--artifacts-destination",
            tmp_path / "artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ]
        # as docs/deploy.md runs it: without MLflow 3's job runner, a pool of processes that
        # each import MLflow (more CPU than the server and the commands together)
        quiet = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with server_process(
            server, port, "/health", cwd=tmp_path, env=quiet, timeout=120
        ) as mlflow_url:
            env = {
                **os.environ,
                "MLFLOW_TRACKING_URI": mlflow_url,
                "SUNSHINE_TOKENS_FILE": str(tmp_path / "tokens.json"),
            }
            # the commands in this process (no interpreter start-up each), talking HTTP
            served_by = {"MLFLOW_TRACKING_URI": mlflow_url}
            (tmp_path / "relapse.yaml").write_text(small_config("relapse"))
            sunshine(
                tmp_path,
                "train",
                "--task",
                "relapse",
                "--data",
                city,
                "--config",
                "relapse.yaml",
                env=served_by,
            )
            promoted = sunshine(tmp_path, "promote", "--task", "relapse", env=served_by)
            assert "is now champion" in promoted.stdout
            # nothing was written beside the commands: the server holds runs and models
            assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
            # the model's files are in the server's artifact store, uploaded through it
            assert list((tmp_path / "artifacts").rglob(META_FILE))

            pid = pd.read_parquet(city / "persons.parquet").person_id.iloc[0]
            roster = tmp_path / "roster.csv"
            roster.write_text(f"person_id\n{pid}\n")
            sunshine(
                tmp_path,
                "score-roster",
                roster,
                "--task",
                "relapse",
                "--out",
                tmp_path / "out.csv",
                "--data",
                city,
                env=served_by,
            )
            out = pd.read_csv(tmp_path / "out.csv")
            assert list(out["person_id"]) == [pid] and out["model_version"].iloc[0] == 1

            analyst = create_token(env, "--user", "li", "--role", "analyst", cwd=tmp_path)
            serve_port = free_port()
            serve = [BIN / "sunshine", "serve", "--data", city, "--port", serve_port]
            with server_process(serve, serve_port, "/healthz", cwd=tmp_path, env=env) as url:
                r = httpx.get(
                    f"{url}/v1/persons/{pid}/risk",
                    params={"allow_out_of_cohort": "true"},
                    headers={"Authorization": f"Bearer {analyst}"},
                    timeout=60,
                )
                assert r.status_code == 200, r.text
                assert r.json()["model"]["version"] == "1"
