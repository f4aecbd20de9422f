"""The events no feature can see: those at or after their person's as-of date.

A feature as of a date reads only what happened before it (an event on the as-of date itself
happened "today", after the snapshot), which is right and must not be silent: answers dated
on the label date, or a registry whose events carry tomorrow's date, would otherwise vanish
without a word. `validate` reports them against the data's reference date, `train` against
each person's last as-of date in its frame.
"""

from __future__ import annotations

import pandas as pd

from features.storage.store import Store


def unused_events(store: Store, last_as_of: pd.DataFrame) -> dict[str, int]:
    """Per event type, the events at or after their person's `as_of` (`last_as_of`: one row
    per person_id, its latest as-of date), of the persons listed; largest first."""
    con = store.cursor()
    con.register("last_as_of", last_as_of[["person_id", "as_of"]])
    rows = con.execute(
        """
        SELECT CAST(e.event_type AS VARCHAR) AS event_type, count(*) AS n
        FROM events e JOIN persons p USING (pk) JOIN last_as_of l USING (person_id)
        WHERE e.event_time >= CAST(l.as_of AS TIMESTAMP)
        GROUP BY 1 ORDER BY 2 DESC, 1
        """
    ).fetchall()
    return {t: int(n) for t, n in rows}


def said(unused: dict[str, int], against: str) -> str | None:
    """One line for a user: how many events no feature sees, and of which types."""
    if not unused:
        return None
    total = sum(unused.values())
    kinds = ", ".join(f"{t} {n:,}" for t, n in unused.items())
    return (
        f"{total:,} event(s) fall at or after {against} and no feature sees them (a "
        f"feature as of a date reads what came before it): {kinds}"
    )
