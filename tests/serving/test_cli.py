"""End to end through the real `sunshine` console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([SUNSHINE, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_synth_validate_features_end_to_end(tmp_path):
    assert (
        run("synth", "--persons", "1500", "--seed", "5", "--out", "city", cwd=tmp_path).returncode
        == 0
    )
    v = run("validate", "--data", "city", cwd=tmp_path)
    assert v.returncode == 0, v.stderr
    assert "persons accepted" in v.stdout and "1,500" in v.stdout
    f = run(
        "features",
        "--data",
        "city",
        "--task",
        "relapse",
        "--out",
        "rel.parquet",
        "--as-of",
        "2023-01-01",
        "--as-of",
        "2024-01-01",
        cwd=tmp_path,
    )
    assert f.returncode == 0, f.stderr
    out = pd.read_parquet(tmp_path / "rel.parquet")
    assert set(out.as_of.astype(str)) == {"2023-01-01", "2024-01-01"}
    assert len(out) > 0 and {"person_id", "label", "checkin_missed__count_90d"} <= set(out.columns)
    assert f"{len(out):,} rows" in f.stdout
    c = run(
        "features",
        "--data",
        "city",
        "--task",
        "youth_uptake",
        "--out",
        "y.csv",
        "--as-of",
        "2023-01-01",
        cwd=tmp_path,
    )
    assert c.returncode == 0, c.stderr
    assert len(pd.read_csv(tmp_path / "y.csv")) > 0
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


def test_user_errors_exit_2_with_a_message_and_no_traceback(tmp_path):
    cases = [
        (
            ("features", "--data", "nowhere", "--task", "relapse", "--out", "x.parquet"),
            "nowhere: no such data directory",
        ),
        (
            ("features", "--data", ".", "--task", "burglary", "--out", "x.parquet"),
            "unknown task 'burglary' (allowed: relapse, youth_uptake)",
        ),
        (
            (
                "features",
                "--data",
                ".",
                "--task",
                "relapse",
                "--out",
                "x.parquet",
                "--as-of",
                "2024-13-01",
            ),
            "--as-of: '2024-13-01' is not a date",
        ),
    ]
    for args, message in cases:
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in " ".join(r.stderr.split()), r.stderr
        assert "Traceback" not in r.stderr + r.stdout


def test_strict_validation_failure_lists_problems_and_writes_nothing(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "dataset.json").write_text('{"reference_date": "2026-06-30"}')
    pd.DataFrame(
        {
            "person_id": ["A"],
            "birth_date": ["2000-01-01"],
            "sex": ["M"],
            "district": ["huaxi"],
            "ethnicity": ["han"],
            "registration_date": [None],
            "primary_substance": [None],
        }
    ).to_csv(data / "persons.csv", index=False)
    pd.DataFrame(
        {
            "person_id": ["A", "B"],
            "event_time": ["2024-01-01", "2024-01-02"],
            "event_type": ["checkin_missed", "checkin_missed"],
            "value": [None, None],
            "detail": [None, None],
        }
    ).to_csv(data / "events.csv", index=False)
    r = run("features", "--data", "d", "--task", "relapse", "--out", "f.parquet", cwd=tmp_path)
    assert r.returncode == 2
    assert "events.csv: row 2: person_id: unknown person B" in " ".join(r.stderr.split())
    assert not (tmp_path / "f.parquet").exists()
    ok = run("validate", "--data", "d", "--lenient", cwd=tmp_path)
    assert ok.returncode == 0
    assert pd.read_csv(data / "rejects.csv").row.tolist() == [2]


def test_help_lists_every_subcommand(tmp_path):
    out = run("--help", cwd=tmp_path).stdout
    for cmd in ("synth", "validate", "features", "demo"):
        assert cmd in out
