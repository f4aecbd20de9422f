"""The programme page: the monthly district indicators and ranking, with the city's trend
over a year, and each model's monitoring verdict (analysts and admins)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from features.contract.vocabulary import DISTRICTS
from features.core.months import last_complete_month, month_range
from features.indicators.inputs import CITY
from features.indicators.monthly import COMPOSITE, REGISTRY_INDICATORS
from features.tasks import get_task
from serving.access.audit_chain import Entry
from serving.api.deps import Services, services
from serving.web.charts import trend
from serving.web.i18n import N_, Texts
from serving.web.render import render
from serving.web.session import PageError, signed_in

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
MONTHS = 12
UNITS = {"per 10,000 residents": N_("per 10,000 residents"), "%": "%", "": ""}
BETTER = {1: N_("higher is better"), -1: N_("lower is better")}


@router.get("/programme")
def programme_page(
    request: Request,
    svc: Svc,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> Response:
    web = signed_in(request, svc, "analyst", "admin")
    source = svc.state.indicators
    if source is None:
        raise PageError(503, "The service was started without programme indicators.")
    months = month_range(None, None, svc.state.as_of, default=MONTHS)
    month = month or last_complete_month(svc.state.as_of)
    if month not in months:
        raise PageError(422, "Pick one of the last 12 complete months.")
    table = source.table(months)
    request.state.audit = [Entry("", request.state.request_id, 200)]
    _ = web.texts
    labels = {m: _.month(dt.date.fromisoformat(m + "-01")) for m in months}
    return render(
        request,
        "programme.html",
        web,
        months=months,
        month=month,
        indicators=_indicators(table),
        ranking=ranking(table, month),
        trends=trends(table, months, _, labels),
        monitoring=[
            (get_task(t), str(facts["version"]), svc.state.loaded.monitoring.get(t) or {})
            for t, (_m, facts) in svc.state.loaded.models.items()
        ],
        value=value_text,
        month_label=labels.__getitem__,
        composite=COMPOSITE,
        city=CITY,
    )


def _indicators(table: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(code, English, Chinese, unit) of each indicator in the table, the composite (what
    the districts are ranked by) first."""
    first = table.drop_duplicates("indicator").set_index("indicator")
    codes = [COMPOSITE] + [i for i in first.index if i != COMPOSITE]
    return [
        (
            c,
            first.at[c, "indicator_en"],
            first.at[c, "indicator_zh"],
            first.at[c, "unit"] if isinstance(first.at[c, "unit"], str) else "",
        )
        for c in codes
        if c in first.index
    ]


def ranking(table: pd.DataFrame, month: str) -> list[dict[str, Any]]:
    """One row per district, best composite rank first, then the city."""
    rows = table[table["month"] == month]
    out: list[dict[str, Any]] = []
    for district in (*DISTRICTS, CITY):
        own = rows[rows["district"] == district].set_index("indicator")
        out.append(
            {
                "district": district,
                "figures": {
                    i: (r["value"], r["rank"], r["rank_change"]) for i, r in own.iterrows()
                },
            }
        )
    key = {d["district"]: d["figures"].get(COMPOSITE, (None, math.inf, None))[1] for d in out}
    return sorted(out, key=lambda d: (d["district"] == CITY, _nan_last(key[d["district"]])))


def _nan_last(rank: float | None) -> float:
    return math.inf if rank is None or math.isnan(rank) else rank


def trends(
    table: pd.DataFrame, months: list[str], _: Texts, labels: dict[str, str]
) -> list[dict[str, str]]:
    """The city's value of each registry indicator over the months, each a chart with its
    axis, its unit, the months as the page writes them (`labels`), and which way is better."""
    city = table[table["district"] == CITY]
    better = {i.name: i.direction for i in REGISTRY_INDICATORS}
    ticks = [labels[m] for m in months]
    out = []
    for code, grp in city.groupby("indicator", sort=False):
        series = grp.set_index("month")["value"].reindex(months).astype(float).tolist()
        title = _.both(grp["indicator_en"].iloc[0], grp["indicator_zh"].iloc[0])
        unit = grp["unit"].iloc[0] if isinstance(grp["unit"].iloc[0], str) else ""
        way = better.get(str(code), 0)
        out.append(
            {
                "title": title,
                "chart": trend(ticks, series, title, _(UNITS.get(unit, unit)) or title),
                "better": _(BETTER[way]) if way else "",
                "arrow": "↑" if way > 0 else "↓" if way < 0 else "",
            }
        )
    return out


def value_text(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.1f}" if unit != "per 10,000 residents" else f"{value:.2f}"
