"""Labels and features on small hand-built histories, with expectations worked out by hand."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from conftest import ev

from features.compute.builder import build_features
from features.compute.labels import build_spine
from features.compute.plan import FeaturePlan, domain_types
from features.core.errors import SunshineError
from features.spec import FEATURES, Feature
from features.storage.store import Store

AS_OF = dt.date(2024, 7, 1)

PERSONS = [
    {
        "person_id": "A",
        "birth_date": "1985-06-15",
        "registration_date": "2019-03-01",
        "primary_substance": "heroin",
    },
    {"person_id": "B", "registration_date": "2018-01-01", "primary_substance": "methamphetamine"},
    {"person_id": "C", "registration_date": "2018-01-01", "primary_substance": "ketamine"},
    {"person_id": "D", "registration_date": "2018-01-01", "primary_substance": "ketamine"},
    {"person_id": "Y1", "birth_date": "2012-07-01"},
    {"person_id": "Y2", "birth_date": "2012-07-02"},
    {"person_id": "Y3", "birth_date": "1999-07-02"},
    {"person_id": "Y4", "birth_date": "1999-07-01"},
    {"person_id": "Y5", "birth_date": "2008-01-01"},
    {
        "person_id": "Y6",
        "birth_date": "2008-01-01",
        "registration_date": "2025-03-01",
        "primary_substance": "methamphetamine",
    },
    {"person_id": "Y7", "birth_date": "2008-01-01"},
    {
        "person_id": "Y8",
        "birth_date": "2008-01-01",
        "registration_date": "2024-07-01",
        "primary_substance": "ketamine",
    },
    {"person_id": "Y9", "birth_date": "2008-01-01"},
]

EVENTS = [
    # A: discharged from compulsory isolation, then mixed signals in community follow-up
    ev("A", "2023-01-10 09:00", "rehab_admission", detail="compulsory_isolation"),
    ev("A", "2024-02-20 10:00", "rehab_discharge", detail="compulsory_isolation"),
    ev("A", "2024-03-05 10:00", "checkin_attended"),
    ev("A", "2024-03-20 10:00", "checkin_missed"),
    ev("A", "2024-04-02 10:00", "urine_test", 0),
    ev("A", "2024-05-10 10:00", "urine_test", 1, "heroin"),
    ev("A", "2024-05-28 10:00", "urine_test", 0),
    ev("A", "2024-06-03 10:00", "urine_test", 0),
    ev("A", "2024-06-10 10:00", "employment_start", detail="catering"),
    # happened before as_of but recorded after it: invisible to the as_of features
    ev("A", "2024-06-25 10:00", "urine_test", 1, "heroin", recorded_time="2024-07-15 09:00"),
    ev("A", "2024-06-29 10:00", "checkin_missed"),
    ev("A", "2024-06-30 23:59:59", "checkin_attended"),
    ev("A", "2024-07-01 00:00:00", "checkin_missed"),  # at as_of: not a feature
    ev("A", "2025-06-30 10:00", "drug_arrest"),
    # B: discharged, then back in residential rehab at as_of
    ev("B", "2024-01-01 10:00", "rehab_discharge", detail="voluntary"),
    ev("B", "2024-05-01 10:00", "rehab_admission", detail="compulsory_isolation"),
    # C: discharged a month before; a positive test one second after the label window
    ev("C", "2024-06-01 10:00", "rehab_discharge", detail="compulsory_isolation"),
    ev("C", "2025-07-01 00:00:01", "urine_test", 1, "ketamine"),
    # D: community rehab only, never residential
    ev("D", "2024-01-01 10:00", "rehab_admission", detail="community_rehab"),
    ev("Y5", "2024-03-01 10:00", "urine_test", 1, "ketamine"),
    ev("Y6", "2022-01-01 10:00", "left_behind_status", 1, "both parents"),
    ev("Y6", "2023-12-01 10:00", "school_absence", 10),
    ev("Y6", "2024-02-01 10:00", "left_behind_status", 0),
    ev("Y6", "2024-03-01 10:00", "urine_test", 0),
    ev("Y6", "2024-05-01 10:00", "school_absence", 3),
    ev("Y6", "2024-06-15 10:00", "school_absence", 5),
    ev("Y7", "2025-07-02 10:00", "drug_arrest"),
    ev("Y9", "2024-07-01 08:00", "urine_test", 1, "ketamine"),
]


@pytest.fixture
def store(dataset) -> Store:
    return Store(dataset(PERSONS, EVENTS))


def labels(spine) -> dict:
    return {(r.person_id, r.as_of): r.label for r in spine.itertuples()}


def test_relapse_cohort_and_labels(store):
    dates = [AS_OF, dt.date(2025, 1, 1), dt.date(2025, 4, 1)]
    got = labels(build_spine(store, "relapse", dates))
    assert got == {
        ("A", AS_OF): 1,  # arrest 2025-06-30 in (as_of, as_of + 365d]
        ("A", dt.date(2025, 1, 1)): 1,  # discharge 316 days before; same arrest
        ("C", AS_OF): 0,  # positive test one second after the window
        ("C", dt.date(2025, 1, 1)): 1,  # ... which is inside this window
        # B is back in rehab; D was never in residential rehab; on 2025-04-01 A's and C's
        # discharges are 405 and 304 days old: A drops out, C stays
        ("C", dt.date(2025, 4, 1)): 1,
    }


def test_youth_cohort_and_labels(store):
    got = labels(build_spine(store, "youth_uptake", [AS_OF]))
    assert got == {
        ("Y1", AS_OF): 0,  # 12th birthday on as_of: in
        ("Y3", AS_OF): 0,  # 25th birthday the day after: in
        ("Y6", AS_OF): 1,  # registered 2025-03-01
        ("Y7", AS_OF): 0,  # first record a day after the window
        ("Y9", AS_OF): 1,  # positive test at 08:00 on the as_of day
    }
    # Y2 is 11, Y4 turns 25 on as_of, Y5 had a positive test, Y8 registered on as_of (00:00)


def test_as_of_whose_label_window_passes_the_reference_date_is_refused(store):
    with pytest.raises(SunshineError, match="latest usable as_of is 2025-06-30"):
        build_spine(store, "relapse", [dt.date(2025, 7, 1)])


def test_relapse_features_worked_by_hand(store):
    spine = build_spine(store, "relapse", [AS_OF])
    f = build_features(store, spine).set_index("person_id").loc["A"]
    # day ages at 2024-07-01: 06-30 -> 1, 06-29 -> 2, 06-10 -> 21, 06-03 -> 28, 05-28 -> 34,
    # 05-10 -> 52, 04-02 -> 90, 03-20 -> 103, 03-05 -> 118, 02-20 -> 132, 2023-01-10 -> 538
    expected = {
        "checkin_missed__count_30d": 1,
        "checkin_missed__count_90d": 1,
        "checkin_missed__count_180d": 2,
        "checkin_missed__count_all": 2,
        "checkin_missed__days_since": 2,
        "checkin_attended__count_30d": 1,
        "checkin_attended__count_180d": 2,
        "checkin_attended__days_since": 1,
        "urine_test__count_30d": 1,  # the late-recorded positive is not visible
        "urine_test__count_90d": 4,
        "urine_test__mean_30d": 0.0,
        "urine_test__mean_90d": 0.25,
        "urine_test__max_90d": 1.0,
        "urine_test__last": 0.0,
        "urine_test__days_since": 28,
        "days_since_positive_test": 52,
        "longest_negative_run": 2,  # neg | pos | neg, neg
        "employed_now": 1,
        "employment_start__days_since": 21,
        "days_since_residential_discharge": 132,
        "rehab_admission__count_365d": 0,
        "rehab_admission__count_all": 1,
        "checkin_adherence_90d": 1 / 2,  # attended 06-30, missed 06-29
        "checkin_adherence_365d": 2 / 4,
        "drug_arrest__count_all": 0,
        "age_years": (AS_OF - dt.date(1985, 6, 15)).days / 365.25,
        "years_since_registration": (AS_OF - dt.date(2019, 3, 1)).days / 365.25,
    }
    for name, want in expected.items():
        assert f[name] == pytest.approx(want, rel=1e-6), name
    assert math.isnan(f["drug_arrest__days_since"])
    assert math.isnan(f["methadone_adherence_90d"])  # no doses scheduled: unknown, not 0
    assert f["primary_substance"] == "heroin" and f["sex"] == "M" and f["district"] == "nanming"


def test_youth_features_worked_by_hand_and_future_registration_is_masked(store):
    spine = build_spine(store, "youth_uptake", [AS_OF])
    f = build_features(store, spine).set_index("person_id").loc["Y6"]
    # school absence: 06-15 (16 days, 5), 05-01 (61 days, 3), 2023-12-01 (213 days, 10)
    assert f["school_absence__count_30d"] == 1
    assert f["school_absence__mean_90d"] == pytest.approx(4.0)
    assert f["school_absence__max_all"] == 10
    assert f["school_absence__mean_all"] == pytest.approx(6.0)
    assert f["school_absence__last"] == 5
    assert f["left_behind_status__last"] == 0
    assert f["left_behind_status__max_all"] == 1
    assert f["longest_negative_run"] == 1
    assert math.isnan(f["years_since_registration"])  # registered after as_of
    assert str(f["primary_substance"]) == "nan"
    assert "ethnicity" not in f.index


def test_spine_with_unknown_person_is_a_clear_error(store):
    import pandas as pd

    spine = pd.DataFrame({"person_id": ["A", "nobody"], "as_of": [AS_OF, AS_OF]})
    with pytest.raises(SunshineError, match="row 2: nobody"):
        build_features(store, spine)


def test_output_keeps_spine_order_across_chunks(store):
    import pandas as pd

    from features.compute.builder import FeatureBuilder

    spine = pd.DataFrame(
        {
            "person_id": ["Y6", "A", "Y6", "A"],
            "as_of": [AS_OF, AS_OF, dt.date(2024, 6, 1), dt.date(2024, 6, 1)],
        }
    )
    out = FeatureBuilder(store).build(spine, chunk_rows=1)
    assert list(out.person_id) == ["Y6", "A", "Y6", "A"]
    assert list(out.checkin_missed__count_all) == [0, 2, 0, 1]


def test_cohort_mask_on_any_date_up_to_the_reference_date(store):
    from features.compute.labels import cohort_mask
    from features.tasks import get_task

    ids = store.con.execute("SELECT person_id FROM persons ORDER BY pk").df().person_id

    def members(task: str, day: dt.date) -> set[str]:
        mask = cohort_mask(store, get_task(task), day)
        assert mask.shape == (len(ids),)
        return set(ids[mask])

    assert members("relapse", AS_OF) == {"A", "C"}
    # C's discharge (2024-06-01) is 334 days before 2025-05-01; A's is 436
    assert members("relapse", dt.date(2025, 5, 1)) == {"C"}
    # past the last usable label date the cohort is still defined: Y6 registered in 2025
    youth = members("youth_uptake", dt.date(2026, 6, 30))
    assert "Y6" not in youth and "Y1" in youth


def test_domain_features_of_a_person_without_their_event_types_are_their_fills(store):
    """The domain pass reads only the event types its features name (plan.domain_sql): a
    person with events of other types only (D: a community rehab admission) gets each
    domain feature's fill, as a person with no events before as_of (Y7) does."""
    spine = pd.DataFrame({"person_id": ["D", "Y7", "A"], "as_of": AS_OF})
    f = build_features(store, spine).set_index("person_id")
    domain = [x for x in FEATURES if x.kind == "domain"]
    assert (
        "WHERE event_type IN ('employment_end', 'employment_start'"
        in FeaturePlan(tuple(domain)).domain_sql()
    )
    for x in domain:
        want = math.nan if x.fill is None else x.fill
        for pid in ("D", "Y7"):
            assert f.at[pid, x.name] == pytest.approx(want, nan_ok=True), (pid, x.name)
    assert f.at["A", "opioid_positive_tests_all"] == 1  # and A's are counted


def test_a_domain_feature_naming_no_event_type_reads_every_type():
    named = [x for x in FEATURES if x.kind == "domain" and x.sql]
    anything = Feature("n_events", "events", "事件数", "domain", sql="count(*)", fill=0.0)
    assert domain_types(named) == sorted(
        {"urine_test", "rehab_discharge", "employment_start", "employment_end"}
        | {"self_reported_use", "medication_start"}
    )
    assert domain_types([*named, anything]) is None
    assert "FROM j GROUP BY" in FeaturePlan((*named, anything)).domain_sql()
