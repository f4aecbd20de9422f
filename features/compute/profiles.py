"""Clear-cut persons written as histories, and their features built by the one feature spec.

A task's minimum-function check asks whether a model ranks a person any caseworker would call
high risk above one any caseworker would call low risk. Such a person used to be a handful of
feature values set by hand on an otherwise median row, which made impossible people (three
contacts with known users in 90 days and none in the year, a dropout with no dropout date),
and a model could rank them either way. Written as events, a clear case is a person the
registry could hold, and every window, count and date of it agrees.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from features.compute.builder import FeatureBuilder
from features.storage.store import Store
from features.tasks import ClearCase

AS_OF = dt.date(2025, 1, 1)  # any date: a clear case is written relative to it


def case_features(cases: Sequence[ClearCase], as_of: dt.date = AS_OF) -> pd.DataFrame:
    """One row of the spec's features per case, on `as_of`, from a registry of those cases
    alone that passes the data contract like any other."""
    ids = [f"CASE{i}" for i in range(len(cases))]

    def years_before(years: float) -> dt.date:
        return as_of - dt.timedelta(days=round(365.25 * years))

    persons = pd.DataFrame(
        {
            "person_id": ids,
            "birth_date": [years_before(c.age_years) for c in cases],
            # unknown: audit attributes are never model features, and all cases share them
            "sex": None,
            "district": None,
            "ethnicity": None,
            "registration_date": [
                None
                if c.registered_years_before is None
                else years_before(c.registered_years_before)
                for c in cases
            ],
            "primary_substance": [c.primary_substance for c in cases],
        }
    )
    start = pd.Timestamp(as_of)
    events = pd.DataFrame(
        [
            {
                "person_id": pid,
                "event_time": start - pd.Timedelta(days=e.days_before, hours=12),
                "event_type": e.event_type,
                "value": e.value,
                "detail": e.detail,
            }
            for pid, case in zip(ids, cases, strict=True)
            for e in case.events
        ],
        columns=["person_id", "event_time", "event_type", "value", "detail"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        persons.to_parquet(folder / "persons.parquet", index=False)
        events.to_parquet(folder / "events.parquet", index=False)
        store = Store(folder, reference_date=as_of)
        spine = pd.DataFrame({"person_id": ids, "as_of": as_of})
        return FeatureBuilder(store).build(spine)
