"""`sunshine serve` as a process: over a socket, on a taken port, with no champion or one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from conftest import use_mlflow

from benchmarks.servers import create_token, free_port, server_process


def test_sunshine_serve_process_over_a_socket(served_registry, tmp_path):
    root = served_registry
    env = {**os.environ, "SUNSHINE_TOKENS_FILE": str(tmp_path / "tokens.json")}
    sunshine = str(Path(sys.executable).with_name("sunshine"))
    token = create_token(env, "--user", "li", "--role", "analyst")
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert token not in (tmp_path / "tokens.json").read_text()
    port = free_port()
    cmd = [
        sunshine,
        "serve",
        "--data",
        root / "city",
        "--port",
        port,
        "--audit-db",
        tmp_path / "audit.db",
    ]
    with server_process(cmd, port, "/healthz", cwd=root, env=env) as url:
        pid = pd.read_parquet(root / "city" / "persons.parquet").person_id.iloc[0]
        r = httpx.get(
            f"{url}/v1/persons/{pid}/risk",
            params={"task": "relapse", "allow_out_of_cohort": "true"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["person_id"] == pid
    audit = subprocess.run(
        [sunshine, "audit", "--audit-db", str(tmp_path / "audit.db"), "--person", pid],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    assert audit.returncode == 0 and pid in audit.stdout
    # piped at 80 columns: every format shows whole identifiers, and no "nan" for empty cells
    for fmt in ("table", "csv", "json"):
        out = subprocess.run(
            [sunshine, "audit", "--audit-db", str(tmp_path / "audit.db"), "--format", fmt],
            capture_output=True,
            text=True,
            env={**env, "COLUMNS": "80"},
        )
        assert out.returncode == 0, out.stderr
        assert "nan" not in out.stdout and "…" not in out.stdout
        assert pid in out.stdout and "/v1/persons/{person_id}/risk" in out.stdout
    rows = json.loads(
        subprocess.run(
            [sunshine, "audit", "--audit-db", str(tmp_path / "audit.db"), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )
    assert rows[0]["person_id"] == pid and rows[0]["tier"] in ("low", "medium", "high")


def test_serve_on_a_taken_port_is_a_short_error(served_registry, tmp_path):
    import socket

    sunshine = str(Path(sys.executable).with_name("sunshine"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sunshine, "serve", "--data", str(served_registry / "city"), "--port", str(port)],
            cwd=served_registry,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            timeout=60,
        )
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and "serving" not in r.stdout


def test_serve_without_champion_says_how_to_get_one(tmp_path, served):
    sunshine = str(Path(sys.executable).with_name("sunshine"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    r = subprocess.run(
        [sunshine, "serve", "--data", str(served / "city")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )
    assert r.returncode == 2
    assert "sunshine train --task" in r.stderr and "sunshine promote" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_with_one_champion_answers_503_for_the_other_until_reload(tmp_path, served):
    """A programme may start with one model: the other task says how to get one, and a reload
    after its promotion brings it in without a restart."""
    import shutil

    from models.registry import model_name

    sunshine = str(Path(sys.executable).with_name("sunshine"))
    # a copy of the served registry (its model files stay where they are, read only) in
    # which the youth model is registered but not yet champion
    shutil.copy(served / "mlflow.db", tmp_path / "mlflow.db")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env["SUNSHINE_TOKENS_FILE"] = str(tmp_path / "tokens.json")
    use_mlflow(tmp_path)
    client = mlflow.MlflowClient()
    youth = model_name("youth_uptake")
    version = client.get_model_version_by_alias(youth, "champion").version
    client.delete_registered_model_alias(youth, "champion")

    def token(role: str) -> str:
        cmd = [sunshine, "tokens", "create", "--user", role, "--role", role]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout

    try:
        analyst = {"Authorization": f"Bearer {token('analyst').strip()}"}
        admin = {"Authorization": f"Bearer {token('admin').strip()}"}
        port = free_port()
        cmd = [sunshine, "serve", "--data", served / "city", "--port", port]
        with server_process(cmd, port, "/healthz", cwd=tmp_path, env=env) as url:
            pid = pd.read_parquet(served / "city" / "persons.parquet").person_id.iloc[0]

            def risk(task: str) -> httpx.Response:
                params = {"task": task, "allow_out_of_cohort": "true"}
                path = f"{url}/v1/persons/{pid}/risk"
                return httpx.get(path, params=params, headers=analyst, timeout=30)

            assert risk("relapse").status_code == 200
            r = risk("youth_uptake")
            assert r.status_code == 503
            assert "no champion model for youth_uptake" in r.json()["detail"]
            ready = httpx.get(f"{url}/readyz").json()
            assert ready["status"] == "ready" and ready["without_champion"] == ["youth_uptake"]

            client.set_registered_model_alias(youth, "champion", version)  # promoted
            r = httpx.post(f"{url}/v1/admin/reload", headers=admin, timeout=60)
            assert r.status_code == 200 and set(r.json()["models"]) == {
                "relapse",
                "youth_uptake",
            }
            assert risk("youth_uptake").status_code == 200
            assert "without_champion" not in httpx.get(f"{url}/readyz").json()
    finally:
        use_mlflow(served)
