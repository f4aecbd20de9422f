"""Coded assessments in the data contract: a dataset's codebook declares its items, and every
answer is checked against it like the rest of the contract, each bad row named."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import ev, write_dataset

from features.contract.codebook import read_codebook
from features.core.errors import ConfigError, ContractError
from features.spec import codebook_features, register
from features.storage.store import Store
from training.model_card import untranslated

CODEBOOK = """code,label_en,label_zh,kind,min,max,values,direction
k6_total,Kessler-6 distress score,凯斯勒心理困扰量表总分,numeric,0,24,,+1
family_conflict,family conflict (0 none to 3 severe),家庭冲突程度,ordinal,0,3,,+1
smokes,smokes,吸烟,categorical,,,1=yes;2=no,
"""


def dataset(tmp_path, events, codebook: str | None = CODEBOOK):
    root = write_dataset(tmp_path / "d", [{"person_id": "P1"}], events)
    if codebook is not None:
        (root / "codebook.csv").write_text(codebook, encoding="utf-8")
    return root


def test_answers_are_checked_against_their_items(tmp_path):
    root = dataset(
        tmp_path,
        [
            ev("P1", "2026-01-01", "assessment", 3, "k6_total"),
            ev("P1", "2026-01-02", "assessment", 30, "k6_total"),
            ev("P1", "2026-01-03", "assessment", 2.5, "family_conflict"),
            ev("P1", "2026-01-04", "assessment", 1, "smokes"),
            ev("P1", "2026-01-05", "assessment", 7, "smokes"),
            ev("P1", "2026-01-06", "assessment", 1, "shoe_size"),
            ev("P1", "2026-01-07", "assessment", None, "k6_total"),
            ev("P1", "2026-01-08", "assessment", 2, None),
        ],
    )
    with pytest.raises(ContractError) as info:
        Store(root)
    assert [(p.row, p.column, p.reason) for p in info.value.problems] == [
        (2, "value", "30.0 outside 0..24 for item k6_total"),
        (3, "value", "2.5 is not a level of the ordinal item family_conflict"),
        (5, "value", "7.0 is not an answer to item smokes (allowed: 1, 2)"),
        (6, "detail", "unknown item shoe_size (not in the codebook)"),
        (7, "value", "missing, required for assessment"),
        (8, "detail", "missing, the item code of an assessment"),
    ]
    store = Store(root, lenient=True)  # the good ones are kept, the others set aside
    kept = store.con.execute(
        "SELECT detail, value FROM events WHERE event_type = 'assessment' ORDER BY event_time"
    ).fetchall()
    assert kept == [("k6_total", 3.0), ("smokes", 1.0)]
    assert store.report.rejected_events == 6
    assert [i.code for i in store.codebook.items] == ["k6_total", "family_conflict", "smokes"]


def test_without_a_codebook_every_answer_is_an_unknown_item(tmp_path):
    root = dataset(tmp_path, [ev("P1", "2026-01-01", "assessment", 3, "k6_total")], None)
    with pytest.raises(ContractError) as info:
        Store(root)
    assert info.value.problems[0].reason == "unknown item k6_total (not in the codebook)"


def test_codebook_rows_are_checked_and_named(tmp_path):
    path = tmp_path / "codebook.csv"
    path.write_text(
        "code,label_en,label_zh,kind,min,max,values,direction\n"
        "k6_total,distress,困扰,numeric,0,24,,+1\n"
        "k6_total,again,再次,numeric,0,24,,\n"
        "Bad Code,x,x,free text,,,,2\n"
        "level,,,ordinal,5,1,,\n"
        "yesno,x,x,categorical,,,yes;2=,\n",
        encoding="utf-8",
    )
    with pytest.raises(ContractError) as info:
        read_codebook(path)
    assert [(p.row, p.column) for p in info.value.problems] == [
        (2, "code"),  # duplicate
        (3, "code"),
        (3, "kind"),
        (3, "direction"),
        (4, "label_en"),  # the English label is required; the Chinese may fall back to it
        (4, "min"),
        (5, "values"),
        (5, "values"),
    ]
    good = tmp_path / "good.csv"
    good.write_text(CODEBOOK, encoding="utf-8")
    book = read_codebook(good)
    smokes = book.items[2]
    assert smokes.answers == {1.0: "yes", 2.0: "no"} and smokes.direction == 0
    assert book.items[0].direction == 1 and book.items[0].label_zh == "凯斯勒心理困扰量表总分"
    english_only = tmp_path / "english.csv"
    english_only.write_text(
        "code,label_en,label_zh,kind,min,max,values,direction\n"
        "sleep,hours of sleep,,numeric,0,24,,\n",
        encoding="utf-8",
    )
    (item,) = read_codebook(english_only).items
    assert item.label_zh == "hours of sleep"  # shown as the English, and named in the card
    features = codebook_features(read_codebook(english_only))
    register(features)
    assert "1 codebook item(s) have no Chinese label" in untranslated([f.name for f in features])
    assert "sleep." in untranslated([f.name for f in features])
    chinese = codebook_features(book)
    register(chinese)
    assert untranslated([f.name for f in chinese] + ["age_years"]) == ""


def test_codebook_features_by_hand(tmp_path):
    import datetime as dt

    import pandas as pd

    from features.compute.builder import FeatureBuilder

    root = dataset(
        tmp_path,
        [
            ev("P1", "2025-01-01", "assessment", 10, "k6_total"),
            ev("P1", "2026-05-01", "assessment", 3, "k6_total"),
            ev("P1", "2026-06-01", "assessment", 5, "k6_total"),
            ev("P1", "2026-07-02", "assessment", 24, "k6_total"),  # after both as_of dates
            ev("P1", "2026-01-04", "assessment", 1, "smokes"),
            ev("P1", "2026-03-05", "assessment", 2, "smokes"),
        ],
    )
    store = Store(root, reference_date=dt.date(2026, 7, 31))
    spine = pd.DataFrame(
        {"person_id": ["P1", "P1"], "as_of": [dt.date(2026, 6, 30), dt.date(2026, 3, 1)]}
    )
    f = FeatureBuilder(store).build(spine)
    # as of 2026-06-30: 10 (545 days before), 3 (60), 5 (29); the 24 comes later
    assert f.loc[0, "item__k6_total__last"] == 5
    assert f.loc[0, "item__k6_total__mean_90d"] == 4 and f.loc[0, "item__k6_total__max_90d"] == 5
    assert f.loc[0, "item__k6_total__mean_all"] == 6 and f.loc[0, "item__k6_total__max_all"] == 10
    # as of 2026-03-01: only the 10, 424 days before
    assert f.loc[1, "item__k6_total__last"] == 10 and pd.isna(f.loc[1, "item__k6_total__mean_365d"])
    assert list(f["item__smokes__last"]) == ["no", "yes"]  # a category, by its label
    assert "item__smokes__mean_90d" not in f.columns  # no mean of a categorical answer


def test_a_model_learns_from_a_codebook_item_and_carries_it(served, tmp_path):
    """Outcomes driven by a distress score the fixed vocabulary has no name for: the model
    finds it, explains with the codebook's labels, and a new process that loads the model
    alone knows the feature."""
    import json
    import shutil
    import subprocess
    import sys

    import numpy as np
    import pandas as pd
    from conftest import use_mlflow

    from features.compute.builder import FeatureBuilder
    from models.training_run import run_training
    from training.config import load_config

    use_mlflow(served)
    city = tmp_path / "city"
    shutil.copytree(served / "city", city)
    persons = pd.read_parquet(city / "persons.parquet").person_id
    rng = np.random.default_rng(3)
    score = rng.integers(0, 25, len(persons))
    events = pd.read_parquet(city / "events.parquet")
    answers = pd.DataFrame(
        {
            "person_id": persons,
            "event_time": pd.Timestamp("2025-03-01"),
            "event_type": "assessment",
            "value": score.astype(float),
            "detail": "k6_total",
        }
    )
    pd.concat([events, answers], ignore_index=True).to_parquet(city / "events.parquet")
    (city / "codebook.csv").write_text(CODEBOOK, encoding="utf-8")
    labels = tmp_path / "labels.csv"
    noisy = (score > 12) ^ (rng.random(len(score)) < 0.1)
    pd.DataFrame({"person_id": persons, "as_of": "2025-06-30", "label": noisy.astype(int)}).to_csv(
        labels, index=False
    )
    config = tmp_path / "cv.yaml"
    config.write_text(
        "task: relapse\nsplit: {mode: cv, folds: 3, test_share: 0.2}\n"
        "lightgbm: {num_leaves: 7, n_estimators: 60, early_stopping_rounds: 15}\n"
    )
    store = Store(city)
    result, _, run_id = run_training(
        store,
        load_config("relapse", config),
        labels,
        experiment="codebook-test",
        register_model=False,
    )
    assert "item__k6_total__last" in result.features
    top = result.importance.iloc[0]
    assert top["feature"].startswith("item__k6_total") and result.metrics["auroc"] > 0.8
    assert top["label_zh"].startswith("凯斯勒心理困扰量表总分")
    from mlflow.tracking import MlflowClient

    logged = json.loads(
        Path(MlflowClient().download_artifacts(run_id, "feature_spec.json")).read_text(
            encoding="utf-8"
        )
    )
    items = {f["name"]: f for f in logged if f["item"]}
    assert (
        items["item__k6_total__last"]["label_zh"]
        == "凯斯勒心理困扰量表总分\uff08最近一次回答\uff09"
    )
    model_dir = result.model.save(tmp_path / "model")
    assert json.loads((model_dir / "risk_model.json").read_text())["codebook_features"]
    frame = FeatureBuilder(store).build(
        pd.DataFrame({"person_id": persons[:50], "as_of": pd.Timestamp("2025-06-30").date()})
    )
    frame.to_parquet(tmp_path / "rows.parquet")
    expected = result.model.score(frame).probability
    script = (
        "import sys, json, pandas as pd\n"
        "from models.risk_model import RiskModel\n"
        f"m = RiskModel.load({str(model_dir)!r})\n"
        f"s = m.score(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}), explain=1)\n"
        "from features.spec import FEATURES_BY_NAME\n"
        "print(json.dumps({'p': list(map(float, s.probability)),"
        " 'label': FEATURES_BY_NAME['item__k6_total__last'].label_zh}))\n"
    )
    project = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": project}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert np.allclose(got["p"], expected, atol=1e-9)
    assert got["label"] == "凯斯勒心理困扰量表总分\uff08最近一次回答\uff09"


def test_score_records_answer_the_served_registrys_codebook(tmp_path):
    """A score call's events are checked against, and built from, the codebook of the registry
    the service serves, as the registry's own events are."""
    import datetime as dt

    from fastapi import HTTPException

    from features.tasks import get_task
    from serving.api.records import records_frame
    from serving.api.schemas import RecordIn

    registry = Store(dataset(tmp_path, [])).codebook
    record = RecordIn.model_validate(
        {
            "person": {
                "person_id": "X1",
                "birth_date": "1990-01-01",
                "sex": "M",
                "district": "huaxi",
            },
            "events": [
                {
                    "event_time": "2026-06-01",
                    "event_type": "assessment",
                    "value": 20,
                    "detail": "k6_total",
                }
            ],
        }
    )
    names = ["item__k6_total__last", "item__k6_total__max_90d"]
    built = records_frame([record], names, get_task("relapse"), dt.date(2026, 6, 30), registry)
    assert built.frame.loc[0, names].tolist() == [20.0, 20.0]
    wrong = record.model_copy(
        update={"events": [record.events[0].model_copy(update={"value": 99})]}
    )
    with pytest.raises(HTTPException) as info:
        records_frame([wrong], names, get_task("relapse"), dt.date(2026, 6, 30), registry)
    assert info.value.status_code == 422
    assert info.value.detail == [
        {"record": 0, "field": "events[0].value", "reason": "99 outside 0..24 for item k6_total"}
    ]


def test_extra_persons_columns_are_declared_answers_or_refused(tmp_path):
    declared = dataset(tmp_path, [])
    persons = (declared / "persons.csv").read_text().splitlines()
    header, row = persons[0], persons[1]
    assert "registration_date" in header
    (declared / "persons.csv").write_text(
        f"{header},k6_total,smokes\n" + row.replace(",,", ",2024-02-02,", 1) + ",12,1\n",
        encoding="utf-8",
    )
    store = Store(declared)
    answers = store.con.execute(
        "SELECT CAST(event_time AS DATE), detail, value FROM events "
        "WHERE event_type = 'assessment' ORDER BY detail"
    ).fetchall()
    assert answers == [
        (dt.date(2024, 2, 2), "k6_total", 12.0),
        (dt.date(2024, 2, 2), "smokes", 1.0),
    ]

    (declared / "persons.csv").write_text(
        f"{header},k6_total,shoe_size\n" + row + ",12,42\n", encoding="utf-8"
    )
    with pytest.raises(
        ContractError, match="column.s. shoe_size are not part of the data contract"
    ):
        Store(declared)
    (declared / "persons.csv").write_text(
        f"{header},k6_total,smokes\n" + row + ",40,3\n", encoding="utf-8"
    )
    with pytest.raises(ContractError) as info:
        Store(declared)
    assert [(p.column, p.reason) for p in info.value.problems] == [
        (
            "k6_total",
            "an answer needs its date: answers_date (no such column) or registration_date",
        ),
        ("k6_total", "40 outside 0..24 for item k6_total"),
        ("smokes", "an answer needs its date: answers_date (no such column) or registration_date"),
        ("smokes", "3 is not an answer to item smokes (allowed: 1, 2)"),
    ]
    # a young person's answers, never registered as a drug user: dated by their own column
    (declared / "persons.csv").write_text(
        f"{header},answers_date,k6_total\n" + row + ",2025-09-01,7\n", encoding="utf-8"
    )
    answers = (
        Store(declared)
        .con.execute(
            "SELECT CAST(event_time AS DATE), detail, value FROM events "
            "WHERE event_type = 'assessment'"
        )
        .fetchall()
    )
    assert answers == [(dt.date(2025, 9, 1), "k6_total", 7.0)]
    for day, reason in (
        ("", "an answer needs its date: answers_date (empty here) or registration_date"),
        ("someday", "cannot parse someday as a date"),
        ("2027-01-01", "after the reference date 2026-06-30"),
    ):
        (declared / "persons.csv").write_text(
            f"{header},answers_date,k6_total\n" + row + f",{day},7\n", encoding="utf-8"
        )
        with pytest.raises(ContractError) as info:
            Store(declared)
        assert reason in " ".join(p.reason for p in info.value.problems), day


def test_a_group_split_holds_out_any_persons_column_or_an_items_first_answer(tmp_path):
    from training.trainer import _groups

    root = write_dataset(
        tmp_path / "g",
        [
            {"person_id": "P1", "ethnicity": "miao"},
            {"person_id": "P2", "ethnicity": None},
            {"person_id": "P3"},
        ],
        [
            ev("P1", "2025-01-01", "assessment", 1, "smokes"),
            ev("P1", "2025-06-01", "assessment", 2, "smokes"),  # later: the first one counts
            ev("P3", "2025-02-01", "assessment", 2, "smokes"),
        ],
    )
    (root / "codebook.csv").write_text(CODEBOOK, encoding="utf-8")
    store = Store(root)
    frame = pd.DataFrame({"person_id": ["P1", "P2", "P3", "P1"]})
    assert list(_groups(store, frame, "item:smokes")) == ["1", "unknown", "2", "1"]
    assert list(_groups(store, frame, "ethnicity")) == ["miao", "unknown", "han", "miao"]
    with pytest.raises(ConfigError, match="not a column of the persons table"):
        _groups(store, frame, "shoe_size")
    with pytest.raises(ConfigError, match="no person has answered item k6_total"):
        _groups(store, frame, "item:k6_total")
