"""Cohorts, labels and the spine builder, for any task of the registry (`features.tasks`).

Time convention: an as_of date stands for 00:00 of that day. Features see events strictly before
it; a label window is (as_of, as_of + the task's label days]. A date-only value
(registration_date) counts as 00:00 of its day. Cohort membership and labels are facts about the
person, so they use `event_time`; only features are further limited to what had been recorded
before as_of. Rows whose label window would end after the data's reference date are not built.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.core.errors import ContractError, InputError, Problem
from features.core.io import read_text_table
from features.storage.store import Store
from features.tasks import Task, get_task


def cadence_dates(first: dt.date, last: dt.date, months: int) -> list[dt.date]:
    """Month starts every `months` months (counted from January) from `first` to `last`."""
    index = first.year * 12 + first.month - 1
    if first.day != 1 or (first.month - 1) % months:
        index = (index // months + 1) * months
    dates = []
    while (d := dt.date(index // 12, index % 12 + 1, 1)) <= last:
        dates.append(d)
        index += months
    return dates


def default_dates(store: Store, task: Task) -> list[dt.date]:
    first = store.con.execute("SELECT min(event_time) FROM events").fetchall()[0][0]
    return task_dates(task, first, store.reference_date)


def task_dates(task: Task, first_event: dt.datetime | None, reference: dt.date) -> list[dt.date]:
    """The task's cadence from a year after the first event to the last date whose label
    window is complete: the as_of dates a task is trained on unless others are asked for."""
    if first_event is None:
        return []
    last = reference - dt.timedelta(days=task.label_days)
    start = (first_event.date() + dt.timedelta(days=365)).replace(day=1)
    return cadence_dates(start, last, task.cadence_months)


def check_label_window(task: Task, dates: list[dt.date], reference: dt.date) -> None:
    """Refuse an as_of whose label window is not over by the data's reference date."""
    limit = reference - dt.timedelta(days=task.label_days)
    late = [d for d in dates if d > limit]
    if late:
        raise InputError(
            f"as_of {late[0]}: its {task.label_days}-day label window ends after the reference "
            f"date {reference}; the latest usable as_of is {limit}"
        )


def _cohort_table(con: duckdb.DuckDBPyConnection, task: Task, dates: list[dt.date]) -> None:
    """Temp tables `dates` and `cohort` (pk, as_of) on a connection to the store."""
    con.register(
        "dates_in", pd.DataFrame({"as_of": pd.to_datetime(pd.Series(dates, dtype=object))})
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dates AS SELECT CAST(as_of AS DATE) AS as_of, "
        "CAST(as_of AS TIMESTAMP) AS as_of_ts FROM dates_in"
    )
    con.unregister("dates_in")
    con.execute(f"CREATE OR REPLACE TEMP TABLE cohort AS {task.cohort_sql}")


def _drop_cohort_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE cohort")
    con.execute("DROP TABLE dates")


def _query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    frame = con.execute(sql).df()
    _drop_cohort_table(con)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    return frame


def cohort_labels(con: duckdb.DuckDBPyConnection, task: Task, dates: list[dt.date]) -> pd.DataFrame:
    """(pk, as_of, label) of the task's cohort at each date, as the connection sees the
    events: on a point-in-time connection (`Store.known_at`), what was recorded by then."""
    _cohort_table(con, task, dates)
    return _query(con, task.label_query())


def cohort_spine(store: Store, task: Task, as_of: dt.date) -> pd.DataFrame:
    """(person_id, as_of) of the task's cohort on a date, without labels: who is scored then,
    on any date up to the reference date."""
    _cohort_table(store.con, task, [as_of])
    return _query(
        store.con,
        "SELECT p.person_id, c.as_of FROM cohort c JOIN persons p USING (pk) ORDER BY p.person_id",
    )


def cohort_mask(store: Store, task: Task, as_of: dt.date) -> np.ndarray:
    """Who is in the task's cohort on a date (no label, so any date up to the reference date),
    as a mask over the persons table in key order: batch scoring looks rows up by position,
    which costs far less than matching a million person ids."""
    _cohort_table(store.con, task, [as_of])
    keys = store.con.execute("SELECT pk FROM cohort").fetchnumpy()["pk"]
    _drop_cohort_table(store.con)
    ((n,),) = store.con.execute("SELECT count(*) FROM persons").fetchall()
    mask = np.zeros(n, bool)
    mask[np.asarray(keys, np.int64) - 1] = True  # pk numbers persons 1..n
    return mask


def cohort_members(
    store: Store,
    task: Task,
    days: np.ndarray,
    where: np.ndarray,
    masks: dict[dt.date, np.ndarray] | None = None,
) -> np.ndarray:
    """Whether each row's person (by position in the persons table, `where`) is in the
    task's cohort on the row's day. `masks` keeps each day's cohort between calls."""
    masks = {} if masks is None else masks
    member = np.zeros(len(days), bool)
    for day in pd.unique(days):
        if day not in masks:
            masks[day] = cohort_mask(store, task, day)
        on_day = days == day
        member[on_day] = masks[day][where[on_day]]
    return member


def build_spine(
    store: Store, task: Task | str, as_of_dates: list[dt.date] | None = None
) -> pd.DataFrame:
    """(person_id, as_of, label) for the task's cohort at each date, sorted by as_of, person_id."""
    task = get_task(task) if isinstance(task, str) else task
    dates = sorted(set(as_of_dates)) if as_of_dates else default_dates(store, task)
    check_label_window(task, dates, store.reference_date)
    _cohort_table(store.con, task, dates)
    return _query(
        store.con,
        f"SELECT p.person_id, l.as_of, CAST(l.label AS TINYINT) AS label "
        f"FROM ({task.label_query()}) l JOIN persons p USING (pk) ORDER BY l.as_of, p.person_id",
    )


def read_labels(path: Path, store: Store) -> pd.DataFrame:
    """A user's own outcome: person_id, as_of, label (0/1), from CSV or Parquet.

    Every bad row is reported with its row number and field, as for the data contract.
    """
    path = Path(path)
    raw = read_text_table(path, "labels", ("person_id", "as_of", "label"))
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
        raise ContractError(
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
