"""The synthetic city's support offers: recorded as events, confounded as in a real programme,
with a randomized pilot, heterogeneous true effects, and the truth kept apart."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import trained_city

from features.storage.store import Store
from features.synth.city import TRUTH_DIR
from features.synth.support import (
    ACCEPTED,
    PILOT_DISTRICT,
    PILOT_FROM,
    PILOT_OFFER,
    PILOT_TO,
    SUPPORT_EFFECTS,
    window_effects,
)
from features.tasks import get_task


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return trained_city(tmp_path_factory, "support") / "city"


def test_each_task_option_has_a_documented_true_effect():
    for task, effects in SUPPORT_EFFECTS.items():
        assert set(effects) == {o.code for o in get_task(task).support}
        # at least one option helps nobody, and at least one helps only some
        assert any(e.if_true == e.otherwise == 0 for e in effects.values())
        assert any(e.when and e.if_true != e.otherwise for e in effects.values())


def test_offers_are_support_offered_events_with_the_tasks_codes(city):
    events = pd.read_parquet(city / "events.parquet")
    offers = events[events["event_type"] == "support_offered"]
    codes = {c for effects in SUPPORT_EFFECTS.values() for c in effects}
    assert len(offers) > 1000
    assert set(offers["detail"].astype(str)) <= codes
    assert set(offers["value"].unique()) == {0.0, 1.0}
    assert offers["value"].mean() == pytest.approx(ACCEPTED, abs=0.03)
    # offers are made at the quarterly reviews, in their first 20 days
    when = pd.to_datetime(offers["event_time"])
    assert set(when.dt.month.unique()) <= {1, 4, 7, 10}
    assert when.dt.day.max() <= 21


def test_the_registry_never_reads_the_truth(city):
    store = Store(city)
    assert not any(
        "truth" in t or "support" in t for t in store.con.execute("SHOW TABLES").df()["name"]
    )
    persons = pd.read_parquet(city / "persons.parquet")
    assert store.report.persons == len(persons)
    assert (city / TRUTH_DIR / "support_relapse.parquet").is_file()
    assert (city / TRUTH_DIR / "support_youth_uptake.parquet").is_file()


def _reviews(city) -> pd.DataFrame:
    """The relapse caseload's review months: each at-risk person's chance of a skills offer
    with its log-odds of relapse, and their district."""
    truth = pd.read_parquet(city / TRUTH_DIR / "support_relapse.parquet")
    code = "skills_training_or_a_sunshine_project_job_placement"
    at_review = truth[pd.to_datetime(truth["month"]).dt.month.isin([1, 4, 7, 10])]
    persons = pd.read_parquet(city / "persons.parquet")[["person_id", "district"]]
    out = at_review.merge(persons, on="person_id")
    return out.assign(chance=out[f"offer_chance_{code}"], risk=out["p_without"])


def test_higher_risk_is_offered_more_except_in_the_randomized_pilot(city):
    r = _reviews(city)
    month = pd.to_datetime(r["month"]).dt.date
    pilot = (r["district"] == PILOT_DISTRICT) & (month >= PILOT_FROM) & (month <= PILOT_TO)
    usual = r[~pilot]
    high = usual["risk"] >= usual["risk"].quantile(0.8)
    low = usual["risk"] <= usual["risk"].quantile(0.2)
    assert usual.loc[high, "chance"].mean() > 1.5 * usual.loc[low, "chance"].mean()
    # in the pilot every option is offered with the same chance, whatever the risk
    assert pilot.sum() > 50
    assert np.isclose(r.loc[pilot, "chance"], PILOT_OFFER, atol=1e-3).all()  # kept as float16
    # districts differ in practice outside it
    by_district = usual.groupby("district")["chance"].mean()
    assert by_district.max() > 1.3 * by_district.min()


def test_true_effects_differ_between_persons_and_one_option_helps_nobody(city):
    truth = pd.read_parquet(city / TRUTH_DIR / "support_relapse.parquet")
    skills = truth["p_with_skills_training_or_a_sunshine_project_job_placement"]
    helps = skills < truth["p_without"] - 1e-9
    assert 0.2 < helps.mean() < 0.95  # the unemployed only
    nobody = truth["p_with_relapse_prevention_counselling"]
    assert np.allclose(nobody, truth["p_without"])


def test_an_effect_follows_the_situation_the_registry_shows_on_the_months_first_day(city):
    """Family visits act most (-1.5 in log-odds, else -0.3) for a person with no
    family-support contact in the 3 months before the month: what the registry's events show
    on its first day, when a caseworker reviews. A contact later that month changes nothing
    until the next month."""
    code = "family_committee_and_family_support_visits"
    truth = pd.read_parquet(city / TRUTH_DIR / "support_relapse.parquet")
    logit = lambda p: np.log(p.astype(float)) - np.log1p(-p.astype(float))  # noqa: E731
    effect = logit(truth[f"p_with_{code}"]) - logit(truth["p_without"])
    assert set(np.round(effect, 2)) == {-1.5, -0.3}
    events = pd.read_parquet(
        city / "events.parquet", columns=["person_id", "event_time", "event_type"]
    )
    contact = events[events["event_type"] == "family_support_contact"]
    contact = contact.assign(month=contact["event_time"].dt.to_period("M")).drop_duplicates(
        ["person_id", "month"]
    )
    month = pd.to_datetime(truth["month"]).dt.to_period("M")
    before = np.zeros(len(truth), bool)  # a contact in one of the 3 months before
    for back in (1, 2, 3):
        key = pd.DataFrame({"person_id": truth["person_id"], "month": month - back})
        before |= (
            key.merge(contact, how="left", on=["person_id", "month"], indicator=True)["_merge"]
            .eq("both")
            .to_numpy()
        )
    most = np.isclose(effect, -1.5, atol=0.01)
    assert most.any() and (~most).any()
    # the extract leaves out only the few contacts recorded after its reference date
    assert (most == ~before).mean() > 0.999


def _one_person(chance_at_3: float) -> pd.DataFrame:
    months = pd.date_range("2023-01-01", periods=12, freq="MS")
    chance = np.zeros(12)
    chance[3] = chance_at_3
    return pd.DataFrame(
        {
            "person_id": "P1",
            "month": months,
            "p_without": 0.1,
            "p_with_x": 0.05,
            "acting_x": False,
            "offer_chance_x": chance,
            "other_route": 0.0,
            "outcome": False,
        }
    )


def test_window_effect_by_hand():
    """Found the month after (detect 1), a relapse in months 0-10 gives the label: without the
    offer 1 - 0.9^11, with it (accepted) 1 - 0.95^11, three quarters accepting."""
    snap = pd.DataFrame({"person_id": ["P1"], "as_of": [pd.Timestamp("2023-01-01")]})
    got = window_effects(_one_person(0.0), snap, "x", detect=1.0)
    assert got[0] == pytest.approx(0.75 * (0.9**11 - 0.95**11), abs=1e-9)
    assert got[0] == pytest.approx(-0.191242, abs=1e-6)


def test_window_effect_counts_a_later_offer_to_those_not_offered_now():
    """Not offered now, the person may be offered it at the next review (chance 0.4, three
    quarters accepting): then it acts from month 3. By hand: offered 1 - 0.95^11 = 0.431200;
    not offered 0.3 * (1 - 0.9^3 * 0.95^8) + 0.7 * (1 - 0.9^11) = 0.635242."""
    snap = pd.DataFrame({"person_id": ["P1"], "as_of": [pd.Timestamp("2023-01-01")]})
    got = window_effects(_one_person(0.4), snap, "x", detect=1.0)
    later = 0.3 * (1 - 0.9**3 * 0.95**8) + 0.7 * (1 - 0.9**11)
    assert later == pytest.approx(0.635242, abs=1e-6)
    assert got[0] == pytest.approx(0.75 * ((1 - 0.95**11) - later), abs=1e-9)


def test_a_person_not_at_risk_when_offered_gains_nothing():
    truth = _one_person(0.0).iloc[2:]  # no row in the offer's month: already relapsed
    snap = pd.DataFrame({"person_id": ["P1"], "as_of": [pd.Timestamp("2023-01-01")]})
    assert window_effects(truth, snap, "x", detect=1.0)[0] == 0.0


def test_months_after_the_outcome_carry_its_chances_on():
    """Relapse in month 2 ends the rows; the counterfactual months go on at its chances, so
    the answer equals that of a person with all twelve months."""
    whole = _one_person(0.0)
    cut = whole.iloc[:3].copy()
    cut.loc[cut.index[2], "outcome"] = True
    snap = pd.DataFrame({"person_id": ["P1"], "as_of": [pd.Timestamp("2023-01-01")]})
    assert window_effects(cut, snap, "x", 1.0)[0] == pytest.approx(
        window_effects(whole, snap, "x", 1.0)[0]
    )
    assert not math.isnan(window_effects(cut, snap, "x", 0.3)[0])
