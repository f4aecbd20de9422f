"""The programme's monthly indicators (考核) by district, from the registry, point in time.

Each month's figures are computed from the registry as it stood at the end of that month: only
events recorded before the first instant of the next month count (`Store.known_at`), so a late
record never changes a past month's figure, and a person counts in the district they lived in
then (`features.residence`). The relapse rate is the relapse task's own cohort and label, so
the indicator and the model speak of the same thing. A person whose district is unknown counts
in the whole city's row only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from features.compute.labels import cohort_labels
from features.contract.vocabulary import (
    COMMUNITY_PROGRAMMES,
    DISTRICTS,
    RESIDENTIAL_REHAB,
)
from features.core.months import add_months, month_end, month_start
from features.indicators.inputs import CITY, IndicatorConfig, residents_under
from features.indicators.uncertainty import BINOMIAL, POISSON
from features.residence import districts_sql
from features.storage.store import Store
from features.tasks import DRUG_RECORD, get_task


@dataclass(frozen=True)
class Indicator:
    name: str
    en: str
    zh: str
    direction: int  # +1: higher is better; -1: lower is better
    per: int  # the rate is numerator / denominator * per
    unit: str
    family: str = BINOMIAL  # how its numerator varies by chance (see `uncertainty`)


REGISTRY_INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "youth_new_user_rate",
        "youth new-user rate",
        "青少年吸毒人员新增率",
        -1,
        10_000,
        "per 10,000 residents",
        POISSON,
    ),
    Indicator("intake_control_rate", "intake-and-control rate", "收戒管控率", +1, 100, "%"),
    Indicator(
        "abstinence_consolidation_rate", "abstinence consolidation rate", "戒断巩固率", +1, 100, "%"
    ),
    Indicator("relapse_rate", "relapse rate within 12 months", "复吸率", -1, 100, "%"),
)

_QUOTED = {
    k: ", ".join(f"'{v}'" for v in vals)
    for k, vals in {
        "residential": RESIDENTIAL_REHAB,
        "orders": RESIDENTIAL_REHAB + COMMUNITY_PROGRAMMES,
    }.items()
}
# every drug record of a person: a positive test, a drug-use arrest, or the registration itself
_RECORDS = f"""
    SELECT pk, event_time AS t FROM events e WHERE {DRUG_RECORD}
    UNION ALL
    SELECT pk, CAST(registration_date AS TIMESTAMP) FROM persons
    WHERE registration_date IS NOT NULL AND CAST(registration_date AS TIMESTAMP) < $end
"""


# -- the registry's indicators, one month at a time -----------------------------------------------
def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pd.DataFrame:
    """A query with the parameters it names (DuckDB refuses any it does not)."""
    return con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).df()


def _last_rehab_event(by: str, kinds: str) -> str:
    """Per `by`, the kind of the last admission or discharge among rehab `kinds`, and when."""
    return f"""
        SELECT {by}, arg_max(CAST(event_type AS VARCHAR), (event_time, event_type)) AS last_kind,
               max(event_time) AS last_time
        FROM events
        WHERE event_type IN ('rehab_admission', 'rehab_discharge') AND detail IN ({kinds})
        GROUP BY {by}
    """


def _youth_new_users(con: duckdb.DuckDBPyConnection, p: dict, bound: int) -> pd.DataFrame:
    """Persons whose first drug record falls in the month, younger than `bound` at it."""
    return _run(
        con,
        f"""
        WITH firsts AS (SELECT pk, min(t) AS t FROM ({_RECORDS}) GROUP BY pk)
        SELECT r.district, count(*) AS numerator
        FROM firsts f JOIN persons p USING (pk) JOIN ({districts_sql("$end")}) r USING (pk)
        WHERE f.t >= $start AND f.t < $end
          AND p.birth_date + INTERVAL {int(bound)} YEAR > CAST(f.t AS DATE)
        GROUP BY ALL
        """,
        p,
    )


def _intake_control(con: duckdb.DuckDBPyConnection, p: dict, c: IndicatorConfig) -> pd.DataFrame:
    """Of persons with a drug record in the lookback, those under a control or treatment
    measure at the month's end: in residential rehab, under a community rehab or recovery order
    (at most its legal term without a discharge record), or on methadone maintenance."""
    return _run(
        con,
        f"""
        WITH recent AS (
            SELECT DISTINCT pk FROM ({_RECORDS})
            WHERE t >= $end - INTERVAL {int(c.control_lookback_months)} MONTH AND t < $end
        ), episodes AS ({_last_rehab_event("pk, detail", _QUOTED["orders"])}
        ), controlled AS (
            SELECT pk FROM episodes WHERE last_kind = 'rehab_admission' AND (
                detail IN ({_QUOTED["residential"]})
                OR last_time >= $end - INTERVAL {int(c.community_order_days)} DAY)
            UNION
            SELECT pk FROM events WHERE event_type = 'methadone_dose'
              AND event_time >= $end - INTERVAL {int(c.methadone_active_days)} DAY
        )
        SELECT r.district, count(*) AS denominator, count(k.pk) AS numerator
        FROM recent JOIN ({districts_sql("$end")}) r USING (pk) LEFT JOIN controlled k USING (pk)
        GROUP BY ALL
        """,
        p,
    )


def _consolidation(con: duckdb.DuckDBPyConnection, p: dict, years: int) -> pd.DataFrame:
    """Of persons whose last residential rehab event is a discharge at least `years` before
    the month's end, those with no drug record since."""
    return _run(
        con,
        f"""
        WITH last_res AS ({_last_rehab_event("pk", _QUOTED["residential"])}
        ), base AS (
            SELECT pk, last_time AS t FROM last_res
            WHERE last_kind = 'rehab_discharge' AND last_time <= $end - INTERVAL {int(years)} YEAR
        )
        SELECT r.district, count(*) AS denominator,
               count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM events e WHERE e.pk = b.pk AND {DRUG_RECORD}
                   AND e.event_time > b.t)) AS numerator
        FROM base b JOIN ({districts_sql("$end")}) r USING (pk)
        GROUP BY ALL
        """,
        p,
    )


def _relapse(con: duckdb.DuckDBPyConnection, month: str, task_name: str) -> pd.DataFrame:
    """The relapse task's cohort at the start of the month 12 months earlier and its label,
    by the district each person lived in then."""
    as_of = month_start(add_months(month, -12))
    labels = cohort_labels(con, get_task(task_name), [as_of])
    where = con.execute(districts_sql("$t"), {"t": dt.datetime.combine(as_of, dt.time())}).df()
    joined = labels.merge(where, on="pk", how="left")
    return (
        joined.groupby("district", dropna=False)["label"]
        .agg(denominator="size", numerator="sum")
        .reset_index()
    )


def _by_district(frame: pd.DataFrame, month: str, indicator: str) -> pd.DataFrame:
    """Every district (none left out for having nothing) and the whole city, which also counts
    persons whose district is unknown."""
    cols = [c for c in ("numerator", "denominator") if c in frame]
    known = frame[frame["district"].isin(DISTRICTS)].groupby("district")[cols].sum()
    known = known.reindex(list(DISTRICTS), fill_value=0)
    known.loc[CITY] = frame[cols].sum()
    out = known.reset_index(names="district")
    out.insert(0, "month", month)
    out.insert(2, "indicator", indicator)
    return out


def registry_month(
    con: duckdb.DuckDBPyConnection, month: str, config: IndicatorConfig
) -> list[pd.DataFrame]:
    """The four registry indicators of one month, as the registry stood at its end; `con` is a
    point-in-time connection (`Store.known_at`)."""
    end = month_end(month)
    con.execute(f"SET VARIABLE known_before = TIMESTAMP '{end.isoformat(sep=' ')}'")
    p = {"start": dt.datetime.combine(month_start(month), dt.time()), "end": end}
    return [
        _by_district(
            _youth_new_users(con, p, config.youth_age_bound), month, REGISTRY_INDICATORS[0].name
        ),
        _by_district(_intake_control(con, p, config), month, REGISTRY_INDICATORS[1].name),
        _by_district(
            _consolidation(con, p, config.consolidation_years), month, REGISTRY_INDICATORS[2].name
        ),
        _by_district(_relapse(con, month, config.relapse_task), month, REGISTRY_INDICATORS[3].name),
    ]


def _rates(table: pd.DataFrame, residents: pd.Series) -> pd.DataFrame:
    """Values from numerators and denominators; the youth rate's denominator is residents."""
    youth = table["indicator"] == REGISTRY_INDICATORS[0].name
    per_district = residents.copy()
    per_district.loc[CITY] = residents.sum()
    table.loc[youth, "denominator"] = table.loc[youth, "district"].map(per_district).to_numpy()
    per = table["indicator"].map({i.name: i.per for i in REGISTRY_INDICATORS})
    den = table["denominator"].astype(float)
    table["value"] = np.where(den > 0, table["numerator"] / den.where(den > 0) * per, np.nan)
    return table


def compute(
    store: Store,
    months: list[str],
    config: IndicatorConfig,
    population: pd.DataFrame,
    external: pd.DataFrame | None = None,
    cache: dict[str, list[pd.DataFrame]] | None = None,
) -> pd.DataFrame:
    """Every indicator of every district and the city, for `months` and the month before
    the first (which the ranking's changes start from): month, district, indicator,
    numerator, denominator, value. A month's registry figures are taken from `cache` when
    there, and left there: they cannot change, since later records do not count for it."""
    residents = residents_under(population, config.youth_age_bound)
    cache = {} if cache is None else cache
    wanted = [add_months(months[0], -1), *months]
    todo = [m for m in wanted if m not in cache]
    if todo:
        con = store.known_at()
        try:
            for month in todo:
                cache[month] = registry_month(con, month, config)
        finally:
            con.close()
    parts = [part for month in wanted for part in cache[month]]
    table = _rates(pd.concat(parts, ignore_index=True), residents)
    if external is not None and len(external):
        table = pd.concat(
            [
                table,
                external[external["month"].isin(wanted)].assign(
                    numerator=np.nan, denominator=np.nan
                ),
            ]
        )
    return table.reset_index(drop=True)
