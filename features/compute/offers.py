"""Who was offered which support option in the month after each as_of: the treatment an effect
estimate compares (`training.effects`). An offer made after as_of is no feature of the row (no
look-ahead); it is what happened next, as the label is. And for whom an option accepted in
the year before as_of may still act: such a row cannot show what offering it would change."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from features.storage.store import Store

OFFER_DAYS = 31  # an offer counts for an as_of when made on it or in the 31 days after it
ACTING_DAYS = 365  # an option accepted this long before as_of may still act


class Offers(NamedTuple):
    offered: dict[str, np.ndarray]  # offered in [as_of, as_of + 31 days), accepted or not
    acting: dict[str, np.ndarray]  # accepted in the year before as_of


def offered(store: Store, spine: pd.DataFrame, codes: list[str]) -> Offers:
    """For each option code and spine row (`person_id`, `as_of`): whether the person was
    offered it in [as_of, as_of + 31 days), accepted or not (an offer is the caseworker's
    act), and whether they accepted it in the year before as_of."""
    rows = pd.DataFrame(
        {
            "row": np.arange(len(spine)),
            "person_id": spine["person_id"].to_numpy(),
            "as_of": pd.to_datetime(spine["as_of"]).to_numpy(),
        }
    )
    store.con.register("offer_spine", rows)
    try:
        hits = store.con.execute(
            f"""
            SELECT DISTINCT s.row, e.detail AS code, e.event_time >= s.as_of AS now
            FROM offer_spine s JOIN persons p USING (person_id) JOIN events e ON e.pk = p.pk
            WHERE e.event_type = 'support_offered'
              AND ((e.event_time >= s.as_of AND e.event_time < s.as_of + INTERVAL {OFFER_DAYS} DAY)
                OR (e.value = 1 AND e.event_time < s.as_of
                    AND e.event_time >= s.as_of - INTERVAL {ACTING_DAYS} DAY))
            """
        ).df()
    finally:
        store.con.unregister("offer_spine")
    out = Offers({}, {})
    for code in codes:
        for part, now in ((out.offered, True), (out.acting, False)):
            mark = np.zeros(len(spine), bool)
            mark[hits.loc[(hits["code"] == code) & (hits["now"] == now), "row"].to_numpy(int)] = (
                True
            )
            part[code] = mark
    return out
