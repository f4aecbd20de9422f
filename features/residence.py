"""Where a person lives on a date: the district of their first registration, moved by each
`district_move` event before that date.

A person's district is a fact with a history. Indicators count a person in the district they
lived in at the time (a past month's figure does not move when they move later), and a
caseworker sees the persons who live in their districts now.
"""

from __future__ import annotations


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
