"""Coded assessments in the data contract: a dataset's codebook declares its items, and every
answer is checked against it like the rest of the contract, each bad row named."""

from __future__ import annotations

import pytest
from conftest import ev, write_dataset

from features.codebook import read_codebook
from features.errors import ContractError
from features.store import Store

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
        "level,x,,ordinal,5,1,,\n"
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
        (4, "label_zh"),
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
