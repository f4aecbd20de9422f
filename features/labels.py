"""Cohorts and labels for the two tasks, and the spine builder.

Time convention: an as_of date stands for 00:00 of that day. Features see events strictly before
it; a label window is (as_of, as_of + 365 days]. A date-only value (registration_date) counts as
00:00 of its day. Cohort membership and labels are facts about the person, so they use
`event_time`; only features are further limited to what had been recorded before as_of.

relapse
    Cohort: persons in community follow-up at as_of, i.e. whose last residential rehab event
    (compulsory isolation or voluntary) before as_of is a discharge within the previous 365 days;
    everyone discharged from residential rehab is placed under community recovery.
    Label: a positive urine test or a drug-use arrest in (as_of, as_of + 365 days].

youth_uptake
    Cohort: aged 12-24 at as_of (12th birthday on or before it, 25th after it), with no drug
    record (positive test, drug-use arrest or registration) at or before as_of.
    Label: the first drug record falls in (as_of, as_of + 365 days].

Rows whose label window would end after the data's reference date are not built.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from features.store import DataError, Problem, Store
from features.vocabulary import RESIDENTIAL_REHAB

TASKS = ("relapse", "youth_uptake")
LABEL_DAYS = 365

_RESIDENTIAL = ", ".join(f"'{k}'" for k in RESIDENTIAL_REHAB)
_RECORD = "((event_type = 'urine_test' AND value = 1) OR event_type = 'drug_arrest')"

_COHORT_SQL = {
    "relapse": f"""
        WITH res AS (
            SELECT d.as_of, e.pk,
                   arg_max(CAST(e.event_type AS VARCHAR), (e.event_time, e.event_type))
                       AS last_kind,
                   max(e.event_time) AS last_time
            FROM dates d JOIN events e ON e.event_time < d.as_of_ts
            WHERE e.event_type IN ('rehab_admission', 'rehab_discharge')
              AND e.detail IN ({_RESIDENTIAL})
            GROUP BY ALL
        )
        SELECT pk, as_of FROM res
        WHERE last_kind = 'rehab_discharge'
          AND last_time >= CAST(as_of AS TIMESTAMP) - INTERVAL 365 DAY
    """,
    "youth_uptake": f"""
        SELECT p.pk, d.as_of FROM persons p CROSS JOIN dates d
        WHERE p.birth_date + INTERVAL 12 YEAR <= d.as_of
          AND d.as_of < p.birth_date + INTERVAL 25 YEAR
          AND (p.registration_date IS NULL OR p.registration_date > d.as_of)
          AND NOT EXISTS (
              SELECT 1 FROM events e WHERE e.pk = p.pk AND e.event_time <= d.as_of_ts
              AND {_RECORD.replace("event_type", "e.event_type").replace("value", "e.value")}
          )
    """,
}

_LABEL_SQL = {
    "relapse": f"""
        SELECT c.pk, c.as_of, max(CASE WHEN e.pk IS NOT NULL THEN 1 ELSE 0 END) AS label
        FROM cohort c LEFT JOIN (SELECT * FROM events WHERE {_RECORD}) e
          ON e.pk = c.pk AND e.event_time > CAST(c.as_of AS TIMESTAMP)
         AND e.event_time <= CAST(c.as_of AS TIMESTAMP) + INTERVAL 365 DAY
        GROUP BY ALL
    """,
    "youth_uptake": f"""
        SELECT c.pk, c.as_of, CASE WHEN EXISTS (
            SELECT 1 FROM events e WHERE e.pk = c.pk AND {_RECORD}
            AND e.event_time > CAST(c.as_of AS TIMESTAMP)
            AND e.event_time <= CAST(c.as_of AS TIMESTAMP) + INTERVAL 365 DAY
        ) OR (
            p.registration_date > c.as_of
            AND p.registration_date <= c.as_of + INTERVAL 365 DAY
        ) THEN 1 ELSE 0 END AS label
        FROM cohort c JOIN persons p USING (pk)
    """,
}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise DataError(f"unknown task {task!r} (allowed: {', '.join(TASKS)})")
    return task


def quarterly_dates(store: Store) -> list[dt.date]:
    """Quarter starts from a year after the first event to the last with a complete label window."""
    first = store.con.execute("SELECT min(event_time) FROM events").fetchall()[0][0]
    if first is None:
        return []
    start = (first.date() + dt.timedelta(days=365)).replace(day=1)
    last = store.reference_date - dt.timedelta(days=LABEL_DAYS)
    dates = []
    y, m = start.year, start.month
    m = ((m - 1) // 3 + 1) * 3 + 1 if (m - 1) % 3 else m
    y, m = (y + 1, m - 12) if m > 12 else (y, m)
    while dt.date(y, m, 1) <= last:
        dates.append(dt.date(y, m, 1))
        y, m = (y + 1, m - 9) if m > 9 else (y, m + 3)
    return dates


def _cohort_table(store: Store, task: str, dates: list[dt.date]) -> None:
    """Temp tables `dates` and `cohort` (pk, as_of) on the store's connection."""
    con = store.con
    con.register(
        "dates_in", pd.DataFrame({"as_of": pd.to_datetime(pd.Series(dates, dtype=object))})
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dates AS SELECT CAST(as_of AS DATE) AS as_of, "
        "CAST(as_of AS TIMESTAMP) AS as_of_ts FROM dates_in"
    )
    con.unregister("dates_in")
    con.execute(f"CREATE OR REPLACE TEMP TABLE cohort AS {_COHORT_SQL[task]}")


def _drop_cohort_table(store: Store) -> None:
    store.con.execute("DROP TABLE cohort")
    store.con.execute("DROP TABLE dates")


def _query(store: Store, sql: str) -> pd.DataFrame:
    frame = store.con.execute(sql).df()
    _drop_cohort_table(store)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    return frame


def cohort_mask(store: Store, task: str, as_of: dt.date) -> np.ndarray:
    """Who is in the task's cohort on a date (no label, so any date up to the reference date),
    as a mask over the persons table in key order: batch scoring looks rows up by position,
    which costs far less than matching a million person ids."""
    check_task(task)
    _cohort_table(store, task, [as_of])
    keys = store.con.execute("SELECT pk FROM cohort").fetchnumpy()["pk"]
    _drop_cohort_table(store)
    ((n,),) = store.con.execute("SELECT count(*) FROM persons").fetchall()
    mask = np.zeros(n, bool)
    mask[np.asarray(keys, np.int64) - 1] = True  # pk numbers persons 1..n
    return mask


def build_spine(store: Store, task: str, as_of_dates: list[dt.date] | None = None) -> pd.DataFrame:
    """(person_id, as_of, label) for the task's cohort at each date, sorted by as_of, person_id."""
    check_task(task)
    dates = sorted(set(as_of_dates)) if as_of_dates else quarterly_dates(store)
    limit = store.reference_date - dt.timedelta(days=LABEL_DAYS)
    late = [d for d in dates if d > limit]
    if late:
        raise DataError(
            f"as_of {late[0]}: its {LABEL_DAYS}-day label window ends after the reference date "
            f"{store.reference_date}; the latest usable as_of is {limit}"
        )
    _cohort_table(store, task, dates)
    return _query(
        store,
        f"SELECT p.person_id, l.as_of, CAST(l.label AS TINYINT) AS label "
        f"FROM ({_LABEL_SQL[task]}) l JOIN persons p USING (pk) ORDER BY l.as_of, p.person_id",
    )


def read_labels(path: Path, store: Store) -> pd.DataFrame:
    """A user's own outcome: person_id, as_of, label (0/1), from CSV or Parquet.

    Every bad row is reported with its row number and field, as for the data contract.
    """
    path = Path(path)
    try:
        raw = (
            pd.read_parquet(path)
            if path.suffix == ".parquet"
            else pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        )
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read labels ({exc})") from None
    missing = [c for c in ("person_id", "as_of", "label") if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    known = set(store.con.execute("SELECT person_id FROM persons").df().person_id)
    as_of = pd.to_datetime(raw["as_of"].astype(str), errors="coerce", format="ISO8601")
    label = pd.to_numeric(raw["label"].astype(str), errors="coerce")
    problems: list[Problem] = []
    seen: dict[tuple[str, object], int] = {}
    for i, (pid, d, lab) in enumerate(zip(raw["person_id"].astype(str), as_of, label, strict=True)):
        row = i + 1
        if not pid or pid == "nan":
            problems.append(Problem(path.name, row, "person_id", "missing"))
        elif pid not in known:
            problems.append(Problem(path.name, row, "person_id", f"unknown person {pid}"))
        if pd.isna(d):
            problems.append(
                Problem(path.name, row, "as_of", f"cannot parse {raw['as_of'].iat[i]!r} as date")
            )
        elif d.date() > store.reference_date:
            problems.append(
                Problem(path.name, row, "as_of", f"after the reference date {store.reference_date}")
            )
        if lab not in (0, 1):
            problems.append(
                Problem(path.name, row, "label", f"{raw['label'].iat[i]!r} is not 0 or 1")
            )
        key = (pid, d)
        if key in seen:
            problems.append(Problem(path.name, row, "as_of", f"duplicate of row {seen[key]}"))
        seen.setdefault(key, row)
    if problems:
        raise DataError(
            f"{path}: {len({p.row for p in problems})} label row(s) are not usable:",
            problems[:20],
            len(problems),
        )
    return pd.DataFrame(
        {
            "person_id": raw["person_id"].astype(str),
            "as_of": as_of.dt.date,
            "label": label.astype("int8"),
        }
    )
