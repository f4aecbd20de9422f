"""Commands that work from any folder: the stores' home (features.core.settings), found as git
finds its repository, named when nothing is there; and listings a person and a program can
both read (the audit trail a request a line, JSON without NaN or infinity, help at 80 columns)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import sunshine

from features.core.settings import home, settings

SUNSHINE = str(Path(sys.executable).with_name("sunshine"))


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SUNSHINE_HOME")
    }
    return subprocess.run(
        [SUNSHINE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "80", **env},
        timeout=120,
    )


def strict_json(text: str):
    """JSON as a browser reads it: NaN and Infinity are not JSON."""

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_the_home_is_the_nearest_folder_upward_that_holds_a_store(tmp_path, monkeypatch):
    for name in ("SUNSHINE_HOME", "SUNSHINE_TOKENS_FILE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    deep = tmp_path / "project" / "rosters" / "2026"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert home() == deep  # nothing anywhere above: the current folder
    (tmp_path / "project" / "tokens.json").write_text("{}")
    assert home() == tmp_path / "project"
    assert settings().tokens_file == tmp_path / "project" / "tokens.json"
    assert settings().mlflow_uri == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}"
    (deep / "mlflow.db").touch()  # a nearer store wins, as a nested repository does in git
    assert home() == deep
    monkeypatch.setenv("SUNSHINE_HOME", str(tmp_path))
    assert home() == tmp_path and settings().tokens_file == tmp_path / "tokens.json"


def test_a_command_finds_the_models_from_below_its_home_or_by_sunshine_home(served, tmp_path):
    below = served / "city"  # a folder inside the home
    listed = run("models", "list", "--format", "json", cwd=below)
    assert listed.returncode == 0, listed.stderr
    names = {row["model"] for row in strict_json(listed.stdout)}
    assert names == {"sunshine-relapse", "sunshine-youth_uptake"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_env = run("models", "list", "--format", "json", cwd=elsewhere, SUNSHINE_HOME=str(served))
    assert by_env.returncode == 0 and strict_json(by_env.stdout) == strict_json(listed.stdout)


def test_a_reading_command_with_no_store_names_it_and_creates_nothing(served, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("person_id\nP1\n")
    for args in (
        ("models", "list"),
        ("promote", "--task", "relapse"),
        (
            "score-roster",
            "roster.csv",
            "--task",
            "relapse",
            "--out",
            "o.csv",
            "--data",
            str(served / "city"),
        ),
    ):
        r = run(*args, cwd=tmp_path)
        message = " ".join(r.stderr.split())
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"no model registry at {tmp_path / 'mlflow.db'}" in message, message
        assert "SUNSHINE_HOME" in message and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster.csv"]


def test_a_missing_champion_is_said_without_a_stray_article(served_registry, tmp_path):
    from models.registry import load_model

    with pytest.raises(Exception, match="sunshine-relapse has no rescue in the model registry at "):
        load_model("relapse", alias="rescue")


def test_the_audit_listing_is_a_request_a_line_newest_first(tmp_path):
    from serving.access.audit import AuditLog
    from serving.access.audit_chain import Entry

    log = AuditLog(tmp_path / "audit.db")
    page = [
        Entry("/app/caseload/relapse", "req-page", 200, "wang", "caseworker", person_id=f"P{i}")
        for i in range(25)
    ]
    singles = [
        Entry("/v1/persons/{id}/risk", f"req-{n}", 200, "li", "analyst", person_id=f"Q{n}")
        for n in range(3)
    ]
    log.append(singles[:1])
    log.append(page)
    log.append(singles[1:])
    everything = sunshine(tmp_path, "audit", "--limit", "0", "--format", "csv")
    assert len(pd.read_csv(io.StringIO(everything.stdout))) == 28
    table = sunshine(tmp_path, "audit", "--limit", "3").stdout
    assert "audit: 27 entries of 3 requests (the latest 3)" in table
    assert "(25 persons)" in table and "Q2" in table and "Q1" in table and "Q0" not in table
    assert table.index("Q2") < table.index("Q1") < table.index("(25 persons)")
    oldest = sunshine(tmp_path, "audit", "--limit", "2", "--oldest-first", "--format", "json")
    rows = strict_json(oldest.stdout)
    assert [r["person_id"] for r in rows] == ["Q1", "Q2"]  # the latest two, in written order
    assert "(25 persons)" not in oldest.stdout


def test_json_listings_are_valid_json_with_a_reason_for_a_missing_number(capsys):
    from features.core.cli import show_frame

    frame = pd.DataFrame(
        {"model": ["a", "b", "c"], "worst_disparity": [1.5, float("inf"), float("nan")]}
    )
    show_frame(frame, "json", "t")
    rows = strict_json(capsys.readouterr().out)
    assert [r["worst_disparity"] for r in rows] == [1.5, None, None]


def test_help_shows_every_flag_whole_at_80_columns(tmp_path):
    out = run("score-roster", "--help", cwd=tmp_path).stdout
    assert "--include-out-of-cohort" in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_the_demo_names_a_person_its_caseworker_may_read(served):
    from features.compute.labels import cohort_spine
    from features.storage.store import Store
    from features.tasks import get_task
    from serving.cli.demo import DEMO_DISTRICTS, demo_person

    store = Store(served / "city")
    person = demo_person(store)
    cohort = cohort_spine(store, get_task("relapse"), store.reference_date)
    assert person in set(cohort.person_id)
    lives = store.cursor().execute(
        "SELECT h.district FROM persons p JOIN residence h USING (pk) WHERE p.person_id = ?",
        [person],
    )
    assert lives.fetchall()[0][0] in DEMO_DISTRICTS


def test_a_mistake_is_one_line_that_keeps_the_users_own_text_whole(tmp_path):
    """A message quotes what the user gave (here a folder name with brackets, which rich would
    read as markup): it comes out as given, on one line the terminal wraps, never a traceback."""
    odd = "city [/x] [bold]"
    r = run("validate", "--data", odd, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"error: {odd}: no such data directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
