"""The synthetic registry: deterministic, valid under the contract, with documented base rates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from features.compute.labels import build_spine
from features.contract.vocabulary import EVENT_TYPES
from features.storage.store import Store
from features.synth.city import synthesize, write_population


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = synthesize(1500, 3), synthesize(1500, 3), synthesize(1500, 4)
    assert a.persons.equals(b.persons) and a.events.equals(b.events)
    assert not a.events.equals(c.events)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("city")
    pop = synthesize(20_000, 11)
    write_population(pop, out, 11)
    return pop, Store(out)


def test_population_passes_the_contract_with_its_warts(city):
    pop, store = city
    r = store.report
    assert r.rejected_persons == 0 and r.rejected_events == 0
    assert r.persons == 20_000
    # the duplicates the generator added are exactly the ones collapsed
    assert r.duplicate_events_collapsed == pop.n_duplicates > 0
    assert pop.n_late > 0
    values = pop.events.filter(pc.equal(pop.events["event_type"], "methadone_dose"))["value"]
    assert values.null_count > 0  # missing doses, a wart on purpose
    # no negative zero among the values (a PHQ-9 score of -0.0 once came of rounding first)
    signs = pc.is_in(pc.cast(pop.events["value"], "string"), pa.array(["-0"]))
    assert not pc.any(signs).as_py()
    # every registry type (support_offered too: the caseworkers' offers at their quarterly
    # reviews), and none of the clinical records of treatment trials
    assert set(r.events_by_type) == {e.name for e in EVENT_TYPES if e.group != "clinical"}


def test_drug_mix_moves_from_heroin_to_new_type_drugs(city):
    persons = city[0].persons.to_pandas().dropna(subset=["registration_date"])
    year = persons.registration_date.map(lambda d: d.year)
    early = persons[year <= 2014].primary_substance.value_counts(normalize=True)
    late = persons[year >= 2023].primary_substance.value_counts(normalize=True)
    assert early["heroin"] > 0.45 and late["heroin"] < 0.15
    assert late["methamphetamine"] > early["methamphetamine"]
    assert late["new_psychoactive"] > early.get("new_psychoactive", 0)


def test_base_rates_fall_in_the_documented_ranges(city):
    _, store = city
    relapse = build_spine(store, "relapse").label.mean()
    uptake = build_spine(store, "youth_uptake").label.mean()
    assert 0.30 <= relapse <= 0.60, relapse
    assert 0.01 <= uptake <= 0.06, uptake


def test_all_ten_districts_and_protected_attribute_present(city):
    persons = city[0].persons.to_pandas()
    assert persons.district.nunique() == 10
    assert persons.ethnicity.isna().mean() < 0.05
    assert set(np.unique(persons.ethnicity.dropna())) >= {"han", "miao", "buyi"}


def test_drift_scenario_is_a_twin_of_the_same_seed(tmp_path):
    """The drifted city loses the district's check-ins from the start date and doubles school
    absence; the rest of its events before any uptake it changes are the clean city's, and
    its duplicates are counted as the store collapses them."""
    import datetime as dt

    import pandas as pd

    from features.synth.city import Drift

    drift = Drift(dt.date(2025, 1, 1), "huaxi")
    clean, drifted = synthesize(3000, 5), synthesize(3000, 5, drift)
    a, b = clean.events.to_pandas(), drifted.events.to_pandas()
    district = clean.persons.to_pandas().set_index("person_id")["district"]
    checkins = ("checkin_attended", "checkin_missed")

    def lost(e: pd.DataFrame) -> pd.Series:
        return (
            e.event_type.isin(checkins)
            & (e.person_id.map(district) == "huaxi")
            & (e.event_time >= pd.Timestamp("2025-01-01"))
        )

    assert lost(a).sum() > 0 and lost(b).sum() == 0
    before = pd.Timestamp("2025-01-01")
    same = [e[(e.event_time < before) & (e.event_type != "school_absence")] for e in (a, b)]
    pd.testing.assert_frame_equal(same[0].reset_index(drop=True), same[1].reset_index(drop=True))
    absent = [e[(e.event_type == "school_absence") & (e.event_time >= before)] for e in (a, b)]
    assert absent[1].value.mean() > 1.5 * absent[0].value.mean()
    write_population(drifted, tmp_path / "d", 5, drift)
    store = Store(tmp_path / "d")
    assert store.report.duplicate_events_collapsed == drifted.n_duplicates
