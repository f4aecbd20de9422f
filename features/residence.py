"""Where a person lives on a date: the district of their first registration, moved by each
`district_move` event before that date.

A person's district is a fact with a history. Indicators count a person in the district they
lived in at the time (a past month's figure does not move when they move later), and a
caseworker sees the persons who live in their districts now.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd


def districts_sql(before: str) -> str:
    """SELECT (pk, district) for every person, as of the instant `before` (a SQL expression;
    moves at or after it do not count). Reads `persons` and `events` as the connection sees
    them, so on a point-in-time cursor it sees only the moves recorded by then."""
    return f"""
        SELECT p.pk, coalesce(m.district, p.district) AS district
        FROM persons p LEFT JOIN (
            SELECT pk, arg_max(detail, (event_time, detail)) AS district FROM events
            WHERE event_type = 'district_move' AND event_time < {before}
            GROUP BY pk
        ) m USING (pk)
    """


def districts_on(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> pd.Series:
    """Each (person_id, as_of) row's district: where the person lived at the start of as_of,
    in the rows' order (None where unknown). One join for any number of dates."""
    con.register(
        "district_rows",
        pd.DataFrame(
            {
                "i": np.arange(len(rows)),
                "person_id": rows["person_id"].to_numpy(),
                "as_of": pd.to_datetime(rows["as_of"]).to_numpy(),
            }
        ),
    )
    try:
        found = con.execute(
            """
            SELECT r.i, coalesce(arg_max(m.detail, (m.event_time, m.detail)), p.district)
                AS district
            FROM district_rows r JOIN persons p USING (person_id)
            LEFT JOIN events m ON m.pk = p.pk AND m.event_type = 'district_move'
                AND m.event_time < r.as_of
            GROUP BY r.i, p.district
            """
        ).df()
    finally:
        con.unregister("district_rows")
    out = np.full(len(rows), None, object)
    district = found["district"].astype(object)
    out[found["i"].to_numpy()] = district.where(district.notna(), None).to_numpy()
    return pd.Series(out, index=rows.index, name="district", dtype=object)
