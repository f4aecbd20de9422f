"""Programme indicators, each computed by hand on a small registry written here."""

from __future__ import annotations

import getpass
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import ev, sunshine, write_dataset

from features.contract.vocabulary import DISTRICTS
from features.core.errors import ConfigError, ContractError
from features.core.months import month_range
from features.indicators.inputs import (
    IndicatorConfig,
    load_indicator_config,
    read_external,
    read_population,
    residents_under,
)
from features.indicators.monthly import compute
from features.indicators.ranking import publish
from features.storage.store import Store

PERSONS = [
    {"person_id": "Y1", "birth_date": "2000-01-01", "district": "nanming"},
    {"person_id": "Y2", "birth_date": "1980-01-01", "district": "huaxi"},
    {"person_id": "Y3", "birth_date": "2005-01-01", "district": "huaxi"},
    # registered in January in nanming, moves to yunyan in March
    {
        "person_id": "Y4",
        "birth_date": "2001-01-01",
        "district": "nanming",
        "registration_date": "2026-01-15",
        "primary_substance": "methamphetamine",
    },
    {"person_id": "A1", "birth_date": "1970-01-01", "district": "wudang"},
    {"person_id": "A2", "birth_date": "1970-01-01", "district": "wudang"},
    {"person_id": "R1", "birth_date": "1970-01-01", "district": "baiyun"},
    {"person_id": "R2", "birth_date": "1970-01-01", "district": "baiyun"},
    {"person_id": "R3", "birth_date": "1970-01-01", "district": "baiyun"},
    {"person_id": "U1", "birth_date": "1999-01-01", "district": None},
]
EVENTS = [
    ev("Y1", "2026-03-10 09:00", "urine_test", 1, "methamphetamine", recorded_time="2026-03-11"),
    ev("Y2", "2026-03-05 10:00", "drug_arrest"),
    # happened in February, recorded in March: February's figures never see it
    ev("Y3", "2026-02-27 10:00", "urine_test", 1, "ketamine", recorded_time="2026-03-15"),
    ev("Y4", "2026-03-20 12:00", "district_move", detail="yunyan"),
    ev("Y4", "2026-03-25 08:00", "methadone_dose", 60),
    # discharged on the last day of January 2023: three years on at the end of January 2026
    ev("A1", "2021-06-01", "rehab_admission", detail="compulsory_isolation"),
    ev("A1", "2023-01-31 10:00", "rehab_discharge", detail="compulsory_isolation"),
    ev("A2", "2021-01-01", "rehab_admission", detail="compulsory_isolation"),
    ev("A2", "2022-05-10", "rehab_discharge", detail="compulsory_isolation"),
    ev("A2", "2024-02-01", "urine_test", 1, "heroin"),
    # the relapse cohort of 2025-03-01: three persons discharged in the year before
    ev("R1", "2023-10-01", "rehab_admission", detail="compulsory_isolation"),
    ev("R1", "2024-10-01", "rehab_discharge", detail="compulsory_isolation"),
    ev("R1", "2024-10-01", "rehab_admission", detail="community_recovery"),
    ev("R1", "2025-08-01", "urine_test", 1, "heroin"),
    ev("R2", "2024-06-15", "rehab_admission", detail="voluntary"),
    ev("R2", "2024-12-15", "rehab_discharge", detail="voluntary"),
    ev("R3", "2024-01-01", "rehab_admission", detail="compulsory_isolation"),
    ev("R3", "2024-11-01", "rehab_discharge", detail="compulsory_isolation"),
    ev("R3", "2026-03-10", "drug_arrest"),  # after the 365-day window of 2025-03-01
    ev("U1", "2026-03-02", "drug_arrest"),  # no district: counted in the city only
]


def population_file(path: Path) -> Path:
    rows = [(d, band, n) for d in DISTRICTS for band, n in (("0-34", 10_000), ("35+", 5_000))]
    pd.DataFrame(rows, columns=["district", "age_band", "count"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("indicators")
    write_dataset(root / "data", PERSONS, EVENTS)
    population_file(root / "population.csv")
    return root


@pytest.fixture(scope="module")
def table(registry) -> pd.DataFrame:
    store = Store(registry / "data")
    config = load_indicator_config()
    months = month_range("2025-12", "2026-03", store.reference_date)
    raw = compute(store, months, config, read_population(registry / "population.csv"))
    return publish(raw, months, config, suppress=False)


def cell(table: pd.DataFrame, month: str, district: str, indicator: str) -> tuple:
    row = table[
        (table.month == month) & (table.district == district) & (table.indicator == indicator)
    ]
    assert len(row) == 1, (month, district, indicator)
    r = row.iloc[0]
    return (r.numerator, r.denominator, r.value)


def test_youth_new_user_rate_by_hand(table):
    # Y1: first record in March, aged 26, nanming; 10,000 residents under 35 per district
    assert cell(table, "2026-03", "nanming", "youth_new_user_rate") == (1, 10_000, 1.0)
    # Y2 is 46; Y3's February test was recorded in March, so it is no new record of March
    assert cell(table, "2026-03", "huaxi", "youth_new_user_rate") == (0, 10_000, 0.0)
    assert cell(table, "2026-02", "huaxi", "youth_new_user_rate") == (0, 10_000, 0.0)
    # Y4's registration in January counts where Y4 lived then, before the move
    assert cell(table, "2026-01", "nanming", "youth_new_user_rate") == (1, 10_000, 1.0)
    assert cell(table, "2026-01", "yunyan", "youth_new_user_rate")[0] == 0
    # the city: Y1 (U1 is 27 and has no district, but the city counts U1 too)
    assert cell(table, "2026-03", "city", "youth_new_user_rate") == (2, 100_000, 0.2)


def test_intake_control_rate_by_hand(table):
    # a person who moves: Y4 (registered in January) counts in nanming in February, not
    # controlled; in yunyan in March, controlled by a methadone dose
    assert cell(table, "2026-02", "nanming", "intake_control_rate") == (0, 1, 0.0)
    assert cell(table, "2026-03", "yunyan", "intake_control_rate") == (1, 1, 100.0)
    # nanming in March: Y1 only (a positive test, no measure)
    assert cell(table, "2026-03", "nanming", "intake_control_rate") == (0, 1, 0.0)
    # baiyun in March: R1 (tested positive 2025-08, under a community recovery order since
    # 2024-10) and R3 (arrested in March, under no measure)
    assert cell(table, "2026-03", "baiyun", "intake_control_rate") == (1, 2, 50.0)
    # huaxi in March: Y2 (arrest) and Y3 (the late-recorded February test), neither controlled
    assert cell(table, "2026-03", "huaxi", "intake_control_rate") == (0, 2, 0.0)
    # in February huaxi had no record it knew of: no denominator, no rate
    n, d, v = cell(table, "2026-02", "huaxi", "intake_control_rate")
    assert (n, d) == (0, 0) and math.isnan(v)
    num, den, value = cell(table, "2026-03", "city", "intake_control_rate")
    assert (num, den) == (2, 7)  # Y1 Y2 Y3 Y4 R1 R3 U1; Y4 and R1 controlled
    assert value == pytest.approx(200 / 7)


def test_abstinence_consolidation_rate_by_hand(table):
    # December 2025 ends 2026-01-01: A2 (discharged 2022-05-10) is in, positive since
    assert cell(table, "2025-12", "wudang", "abstinence_consolidation_rate") == (0, 1, 0.0)
    # January 2026 ends 2026-02-01: A1, discharged on 2023-01-31, joins, with no record since
    assert cell(table, "2026-01", "wudang", "abstinence_consolidation_rate") == (1, 2, 50.0)


def test_relapse_rate_is_the_relapse_label(table):
    # March 2026: the cohort of 2025-03-01 (R1, R2, R3); R1 tested positive within 365 days
    num, den, value = cell(table, "2026-03", "baiyun", "relapse_rate")
    assert (num, den) == (1, 3)
    assert value == pytest.approx(100 / 3)
    # February 2026: the cohort of 2025-02-01 is the same three
    assert cell(table, "2026-02", "baiyun", "relapse_rate")[:2] == (1, 3)


def test_a_late_record_never_changes_a_past_month(registry, tmp_path):
    """February's figures from today's registry equal those from the registry as it was
    extracted at February's end (everything recorded later cut away)."""
    config = load_indicator_config()
    population = read_population(registry / "population.csv")
    cut = pd.Timestamp("2026-03-01")
    early = [e for e in EVENTS if pd.Timestamp(e.get("recorded_time") or e["event_time"]) < cut]
    persons = [
        p if p["person_id"] != "Y4" else {**p, "registration_date": "2026-01-15"} for p in PERSONS
    ]
    old = Store(write_dataset(tmp_path / "feb", persons, early, reference_date="2026-02-28"))
    now = Store(registry / "data")
    months = ["2026-01", "2026-02"]
    a = compute(old, months, config, population)
    b = compute(now, months, config, population)
    key = ["month", "district", "indicator"]
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    )


def test_ranking_and_changes_by_hand(table):
    relapse = table[(table.month == "2026-03") & (table.indicator == "relapse_rate")]
    # baiyun is the only district with a relapse cohort: rank 1, the others have no figure
    ranked = relapse.dropna(subset=["rank"])
    assert list(ranked.district) == ["baiyun"] and ranked["rank"].iat[0] == 1
    intake = table[(table.month == "2026-03") & (table.indicator == "intake_control_rate")]
    ranks = dict(zip(intake.district, intake["rank"], strict=True))
    # yunyan 100% > baiyun 50% > nanming 0% = huaxi 0% (ties share the better rank)
    assert (ranks["yunyan"], ranks["baiyun"], ranks["nanming"], ranks["huaxi"]) == (1, 2, 3, 3)
    assert pd.isna(ranks["city"])
    # yunyan's intake rank moved up: no figure in February, so no change to report
    feb_to_mar = intake.set_index("district")
    assert pd.isna(feb_to_mar.loc["yunyan", "rank_change"])
    # nanming: 0% in February, second behind baiyun (R1, 100%), and 0% in March, third:
    # down one place, value unchanged
    assert feb_to_mar.loc["nanming", "rank_change"] == -1
    assert feb_to_mar.loc["nanming", "change"] == 0


def test_composite_weighs_the_scores(registry):
    store = Store(registry / "data")
    config = IndicatorConfig(weights={"intake_control_rate": 3.0, "youth_new_user_rate": 1.0})
    months = ["2026-03"]
    raw = compute(store, months, config, read_population(registry / "population.csv"))
    out = publish(raw, months, config, suppress=False)
    comp = out[out.indicator == "composite"].set_index("district")["value"]
    # youth: nanming is worst of 10 (1 new user; the rest 0, tied best): score 0, others 100
    # intake: yunyan 100 (score 100), baiyun 50 (2nd of 4: 66.7), nanming and huaxi 0 (33.3)
    assert comp["yunyan"] == pytest.approx((3 * 100 + 100) / 4)
    assert comp["baiyun"] == pytest.approx((3 * 200 / 3 + 100) / 4)
    assert comp["nanming"] == pytest.approx((3 * 100 / 3 + 0) / 4)
    assert comp["wudang"] == pytest.approx(100.0)  # youth only: no intake figure
    assert "city" not in comp.index


def test_population_and_age_bound(tmp_path):
    pop = read_population(population_file(tmp_path / "p.csv"))
    assert residents_under(pop, 35).to_dict() == dict.fromkeys(DISTRICTS, 10_000)
    with pytest.raises(ConfigError, match="falls inside the band 0-34"):
        residents_under(pop, 30)
    shipped = read_population()
    assert residents_under(shipped, 35).sum() == pytest.approx(5_987_000 * 0.515, rel=1e-3)
    bad = tmp_path / "bad.csv"
    bad.write_text("district,age_band,count\nnanming,0-34,ten\natlantis,35+,5\nnanming,0-34,1\n")
    with pytest.raises(ContractError) as err:
        read_population(bad)
    text = str(err.value)
    assert "bad.csv: row 1: count: 'ten' is not a whole number" in text
    assert "bad.csv: row 2: district: unknown district 'atlantis'" in text
    assert "bad.csv: row 3: age_band: duplicate of row 1" in text


def test_external_indicators_validated_and_ranked(registry, tmp_path):
    config = load_indicator_config()
    bad = tmp_path / "ext.csv"
    bad.write_text(
        "district,month,indicator,value\n"
        "huaxi,2026-03,satisfaction,91.5\n"
        "huaxi,2026-13,satisfaction,90\n"
        "huaxi,2026-03,price,3\n"
        "huaxi,2026-03,satisfaction,NaN\n"
        "huaxi,2026-07,drug_price,400\n"
    )
    with pytest.raises(ContractError) as err:
        read_external(bad, config, "2026-06")
    text = str(err.value)
    for expected in (
        "row 2: month: '2026-13' is not a month",
        "row 3: indicator: unknown indicator 'price'",
        "row 4: value: 'NaN' is not a finite number",
        "row 4: indicator: duplicate of row 1",
        "row 5: month: 2026-07 is after the data (2026-06)",
    ):
        assert expected in text
    good = tmp_path / "good.xlsx"
    pd.DataFrame(
        {
            "district": ["huaxi", "nanming", "city"],
            "month": ["2026-03"] * 3,
            "indicator": ["satisfaction"] * 3,
            "value": [91.5, 88.0, 90.0],
        }
    ).to_excel(good, index=False)
    ext = read_external(good, config, "2026-06")
    store = Store(registry / "data")
    raw = compute(store, ["2026-03"], config, read_population(registry / "population.csv"), ext)
    out = publish(raw, ["2026-03"], config, suppress=False)
    sat = out[out.indicator == "satisfaction"].set_index("district")
    assert sat.loc["huaxi", "rank"] == 1 and sat.loc["nanming", "rank"] == 2
    assert sat.loc["city", "value"] == 90.0 and pd.isna(sat.loc["city", "rank"])


def test_formula_in_external_workbook_refused(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["district", "month", "indicator", "value"])
    sheet.append(["huaxi", "2026-03", "satisfaction", "=1+1"])
    book.save(tmp_path / "f.xlsx")
    from features.core.errors import InputError

    with pytest.raises(InputError, match="cell D2 holds a formula"):
        read_external(tmp_path / "f.xlsx", load_indicator_config(), "2026-06")


def test_indicators_command_writes_excel_parquet_and_html(registry, tmp_path):
    out = tmp_path / "report" / "indicators.xlsx"
    audit = tmp_path / "audit.db"
    args = ["--from", "2026-01", "--to", "2026-03", "--population", "population.csv"]
    r = sunshine(
        registry,
        "indicators",
        "--data",
        "data",
        *args,
        "--out",
        out,
        "--no-suppression",
        "--audit-db",
        audit,
    )
    assert "ranking 2026-03" in r.stdout and "audit trail" in " ".join(r.stderr.split())
    sheets = pd.read_excel(out, sheet_name=None)
    assert list(sheets)[0] == "排名 ranking"
    assert {"收戒管控率 intake_control_rate", "复吸率 relapse_rate"} <= set(sheets)
    intake = sheets["收戒管控率 intake_control_rate"]
    assert list(intake.columns[:3]) == ["月份 month", "区县代码 district", "区县 name"]
    row = intake[(intake["月份 month"] == "2026-03") & (intake["区县代码 district"] == "baiyun")]
    assert row["数值 value"].iat[0] == 50.0 and row["排名 rank"].iat[0] == 2
    assert row["95%区间下限 lower"].iat[0] < 50 < row["95%区间上限 upper"].iat[0]
    html = out.with_suffix(".html").read_text(encoding="utf-8")
    # per registry indicator: the city's trend, the funnel (where the city has a figure) and
    # one trend per district; and the external-free composite is not charted
    assert html.count("<svg") >= 4 * (1 + len(DISTRICTS)) and "收戒管控率" in html
    assert "漏斗图" in html and "区间重叠的区县之间没有可靠的先后" in html
    # the raw export is in the audit trail, with who ran it
    trail = sunshine(registry, "audit", "--audit-db", audit, "--format", "json")
    assert "--no-suppression" in trail.stdout and getpass.getuser() in trail.stdout
    # published by default: no count of one to four persons, in any of the outputs
    published = tmp_path / "published.xlsx"
    sunshine(
        registry, "indicators", "--data", "data", *args, "--out", published, "--audit-db", audit
    )
    intake = pd.read_excel(published, sheet_name="收戒管控率 intake_control_rate", dtype=str)
    row = intake[(intake["月份 month"] == "2026-03") & (intake["区县代码 district"] == "baiyun")]
    assert row["分子 numerator"].iat[0] == "<5" and pd.isna(row["数值 value"].iat[0])
    assert "&lt;5" in published.with_suffix(".html").read_text(encoding="utf-8")
    parquet = tmp_path / "indicators.parquet"
    sunshine(registry, "indicators", "--data", "data", "--to", "2026-03", "--out", parquet)
    frame = pd.read_parquet(parquet)
    assert frame.month.nunique() == 24 and frame.month.max() == "2026-03"
    assert not frame.numerator_shown.isin(["1", "2", "3", "4"]).any()
    assert frame.numerator.dropna().isin([0]).all()  # this registry's counts are all small
    assert not list(tmp_path.glob("**/*.part"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "2026-07"], "latest complete month is 2026-06"),
        (["--from", "2026-05", "--to", "2026-02"], "from 2026-05 is after to 2026-02"),
        (["--from", "March"], "'March' is not a month"),
        (["--out", "x.csv"], "unsupported output format"),
        (["--external", "nowhere.csv"], "no such external indicators file"),
    ],
)
def test_indicators_command_user_errors(registry, tmp_path, args, message):
    out = ["--out", str(tmp_path / "o.xlsx")] if "--out" not in args else []
    r = sunshine(registry, "indicators", "--data", "data", *out, *args, check=False)
    assert r.returncode == 2
    assert message in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr


def test_district_on_each_rows_date(registry):
    """Where a person lived at the start of each row's as_of: Y4 moved on 2026-03-20 at noon."""
    from features.residence import districts_on

    store = Store(registry / "data")
    rows = pd.DataFrame(
        {
            "person_id": ["Y4", "Y4", "U1", "Y1"],
            "as_of": pd.to_datetime(["2026-03-20", "2026-03-21", "2026-03-21", "2026-03-21"]),
        },
        index=[10, 11, 12, 13],
    )
    got = districts_on(store.con, rows)
    assert got.tolist() == ["nanming", "yunyan", None, "nanming"]
    assert got.index.tolist() == [10, 11, 12, 13]
    # the store's table of where everyone lives now agrees
    now = dict(
        store.con.execute(
            "SELECT p.person_id, r.district FROM residence r JOIN persons p USING (pk)"
        ).fetchall()
    )
    assert now["Y4"] == "yunyan" and now["U1"] is None
