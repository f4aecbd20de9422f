"""Clear-cut persons written as histories get their features from the one spec, and pass the
data contract like any registry."""

from __future__ import annotations

import pytest

from features.compute.profiles import case_features
from features.core.errors import ContractError
from features.tasks import ClearCase, Event, get_task


def test_a_case_history_becomes_features_whose_windows_agree():
    case = ClearCase(
        17,
        (
            *(Event("contact_known_user", d, None, "internet cafe") for d in (5, 30, 60)),
            Event("left_behind_status", 400, 1.0, "both parents"),
        ),
    )
    f = case_features([case, ClearCase(20, ())]).set_index("person_id")
    high, empty = f.loc["CASE0"], f.loc["CASE1"]
    # 5 days before as_of is in the 30-day window; 30 and 60 days before are not, but are in 90
    assert high["contact_known_user__count_30d"] == 1
    assert [high[f"contact_known_user__count_{w}"] for w in ("90d", "180d", "365d", "all")] == [
        3
    ] * 4
    assert high["left_behind_status__count_365d"] == 0 and high["left_behind_status__last"] == 1
    assert high["age_years"] == pytest.approx(17, abs=0.01)
    # a person with no events: zero counts, no days since
    assert empty["contact_known_user__count_all"] == 0
    assert empty["contact_known_user__days_since"] != empty["contact_known_user__days_since"]


def test_every_built_in_clear_case_passes_the_contract_and_ranks_by_its_story():
    for task in ("relapse", "youth_uptake"):
        high, low = case_features(get_task(task).clear_cases).to_dict("records")
        assert high["contact_known_user__count_90d"] == 3
        assert low["contact_known_user__count_90d"] == 0
        assert high["family_support_contact__count_90d"] == 0
        assert low["family_support_contact__count_90d"] == 3


def test_a_case_the_contract_refuses_names_the_problem():
    with pytest.raises(ContractError, match="no_such_event"):
        case_features([ClearCase(30, (Event("no_such_event", 3),))])
