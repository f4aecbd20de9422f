"""Events no feature can see (at or after their person's as-of date) are counted and said,
not silently dropped: by `validate` against the reference date, by `train` against each
person's last as-of date."""

from __future__ import annotations

import pandas as pd
from conftest import ev, sunshine, write_dataset

from features.compute.unused import said, unused_events
from features.storage.store import Store


def test_events_on_or_after_the_as_of_date_are_counted_by_type(tmp_path):
    root = write_dataset(
        tmp_path / "data",
        [{"person_id": "P1"}, {"person_id": "P2"}],
        [
            ev("P1", "2026-03-01", "urine_test", 0),
            ev("P1", "2026-06-30", "urine_test", 1, "heroin"),  # on the reference date
            ev("P1", "2026-06-30 09:00", "checkin_missed"),  # the same day, later
            ev("P2", "2026-05-31", "checkin_missed"),  # on P2's as-of date below
            ev("P2", "2026-05-30", "checkin_attended"),
        ],
    )
    store = Store(root)
    everyone = pd.DataFrame({"person_id": ["P1", "P2"], "as_of": pd.Timestamp("2026-06-30")})
    assert unused_events(store, everyone) == {"checkin_missed": 1, "urine_test": 1}
    earlier = pd.DataFrame(
        {
            "person_id": ["P1", "P2"],
            "as_of": [pd.Timestamp("2026-06-30"), pd.Timestamp("2026-05-31")],
        }
    )
    assert unused_events(store, earlier) == {"checkin_missed": 2, "urine_test": 1}
    assert said({}, "x") is None
    assert said({"urine_test": 2, "school_absence": 1}, "the reference date 2026-06-30") == (
        "3 event(s) fall at or after the reference date 2026-06-30 and no feature sees them "
        "(a feature as of a date reads what came before it): urine_test 2, school_absence 1"
    )
    r = sunshine(tmp_path, "validate", "--data", root)
    assert "2 event(s) fall at or after the reference date 2026-06-30" in " ".join(r.stdout.split())
