"""A task declared only here, in the test, runs through every layer: features, training, the
registry, the API and a roster. Nothing else in the project names it."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import trained_city, workspace_at
from typer.testing import CliRunner

from benchmarks.servers import ServerThread
from features.compute.labels import build_spine
from features.storage.store import Store
from features.tasks import ClearCase, Event, SupportOption, Task, get_task, register, unregister
from models.registry import promote
from models.training_run import train_task
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.app import create_app
from serving.cli.main import app as cli
from serving.scoring.interventions import load_interventions
from serving.state.champions import load_champions
from serving.state.service import build_state

OUTREACH = SupportOption(
    ("methadone_missed", "methadone_adherence"), "Methadone clinic outreach", "美沙酮门诊外展随访"
)

DROPOUT = Task(
    name="methadone_dropout",
    title_en="methadone drop-out risk",
    title_zh="美沙酮脱失风险",
    description_en="the chance of no methadone dose in days 91-180 after as_of, for persons "
    "dosed in the 30 days before it",
    description_zh="评估日前30天内服药的人员在评估日后第91至180天内未再服药的概率",
    cohort_sql="""
        SELECT DISTINCT e.pk, d.as_of FROM dates d JOIN events e
          ON e.event_time < d.as_of_ts AND e.event_time >= d.as_of_ts - INTERVAL 30 DAY
        WHERE e.event_type = 'methadone_dose'
    """,
    label_sql="""
        SELECT c.pk, c.as_of, CASE WHEN EXISTS (
            SELECT 1 FROM events e WHERE e.pk = c.pk AND e.event_type = 'methadone_dose'
            AND e.event_time > CAST(c.as_of AS TIMESTAMP) + INTERVAL 90 DAY
            AND e.event_time <= CAST(c.as_of AS TIMESTAMP) + INTERVAL {days} DAY
        ) THEN 0 ELSE 1 END AS label
        FROM cohort c
    """,
    not_in_cohort_en="not in methadone maintenance: no dose in the 30 days before as_of",
    not_in_cohort_zh="未在美沙酮维持治疗中:评估日前30天内无服药记录",
    baseline=lambda f: f["methadone_missed__count_90d"].astype(float).fillna(0).to_numpy(),
    baseline_en="missed methadone visits in the last 90 days",
    clear_cases=(  # dosed 25 days ago after twelve missed visits; or dosed every week
        ClearCase(
            40,
            (
                Event("methadone_dose", 25, 60.0),
                *(Event("methadone_missed", d) for d in range(28, 90, 5)),
            ),
            8,
            "heroin",
        ),
        ClearCase(
            40, tuple(Event("methadone_dose", d, 60.0) for d in range(2, 90, 7)), 8, "heroin"
        ),
    ),
    support=(OUTREACH,),
    training=dict(
        as_of={"first": "2022-01-01", "last": "2025-10-01"},
        split={
            "valid_start": "2024-07-01",
            "test_start": "2025-04-01",
            "rolling_test_starts": ["2025-04-01"],
        },
        lightgbm={
            "learning_rate": 0.1,
            "num_leaves": 7,
            "max_depth": 4,
            "min_child_samples": 20,
            "n_estimators": 60,
            "early_stopping_rounds": 15,
        },
    ),
    label_days=180,
)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    register(DROPOUT)
    try:
        with workspace_at(trained_city(tmp_path_factory, "third-task")) as root:
            yield root
    finally:
        unregister(DROPOUT.name)


def test_a_task_declared_in_a_test_runs_through_every_layer(city, tmp_path):
    store = Store(city / "city")
    # features: its cohort, its 180-day label window and its cadence
    spine = build_spine(store, "methadone_dropout")
    assert len(spine) > 200 and 0 < spine.label.mean() < 1
    assert spine.as_of.max() <= store.reference_date - pd.Timedelta(days=180)
    out = tmp_path / "features.parquet"
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "features",
            "--data",
            str(city / "city"),
            "--task",
            "methadone_dropout",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(out)) == len(spine)

    # training and the registry
    version = train_task(city / "city", "methadone_dropout")
    decision = promote("methadone_dropout", version=str(version), force=True, reason="test task")
    assert decision.promoted

    # the API: scored for a member, refused in the task's own words for anyone else
    state = build_state(store, load_champions())
    assert "methadone_dropout" in state.loaded.models
    tokens = TokenStore([])
    analyst = tokens.create("li", "analyst")
    dropout = get_task("methadone_dropout")
    inside = [p for p in state.persons.index if state.in_cohort(dropout, p, state.as_of)]
    outside = next(p for p in state.persons.index if not state.in_cohort(dropout, p, state.as_of))
    assert inside
    app = create_app(state, tokens, AuditLog(tmp_path / "audit.db"), load_interventions())
    with ServerThread(app) as server:

        def risk(pid: str) -> httpx.Response:
            return httpx.get(
                f"{server.url}/v1/persons/{pid}/risk",
                params={"task": "methadone_dropout", "explain": 20},
                headers={"Authorization": f"Bearer {analyst}"},
                timeout=30,
            )

        answers = [risk(p) for p in inside[:10]]
        assert {a.status_code for a in answers} == {200}
        assert {s["en"] for a in answers for s in a.json()["support"]} <= {OUTREACH.en}
        refused = risk(outside)
        assert refused.status_code == 409
        assert refused.json()["detail"]["message_en"] == dropout.not_in_cohort_en

    # a roster, through the same scoring path
    roster = tmp_path / "roster.csv"
    pd.DataFrame({"person_id": [*inside[:5], outside]}).to_csv(roster, index=False)
    scored = tmp_path / "scored.csv"
    r = runner.invoke(
        cli,
        [
            "score-roster",
            str(roster),
            "--task",
            "methadone_dropout",
            "--out",
            str(scored),
            "--data",
            str(city / "city"),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = pd.read_csv(scored, encoding="utf-8-sig")
    assert list(rows.status) == ["ok"] * 5 + ["not_in_cohort"]
    first = answers[0].json()
    assert rows.probability.iloc[0] == pytest.approx(first["probability"], abs=1e-9)
    assert np.isnan(rows.probability.iloc[5])
