"""The programme page: the monthly district indicators and ranking, each rank with the range
chance allows, the districts in a funnel around the city, the city's trend over a year with
its interval, and each model's monitoring verdict (analysts and admins). Small counts arrive
withheld (`features.indicators.disclosure`) and are shown as "<5"."""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from features.contract.vocabulary import DISTRICTS
from features.core.months import last_complete_month, month_range
from features.indicators.inputs import CITY
from features.indicators.ranking import (
    COMPOSITE,
    DIRECTIONS,
    PUBLIC_DENOMINATORS,
    funnel_curve,
    funnel_points,
    standing,
)
from features.tasks import get_task
from serving.access.audit_chain import Entry
from serving.api.deps import Services, services
from serving.web.charts import funnel_chart, trend
from serving.web.i18n import N_, Texts
from serving.web.render import render
from serving.web.session import PageError, signed_in

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
MONTHS = 12
UNITS = {"per 10,000 residents": N_("per 10,000 residents"), "%": "%", "": ""}
BETTER = {1: N_("higher is better"), -1: N_("lower is better")}
# a district outside the 99.8% limits, said as better or worse than the city
STANDING = {
    "better": N_("clearly better than the city"),
    "worse": N_("clearly worse than the city"),
}


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
        ranking=ranking(table, month, _),
        funnels=funnels(table, month, _),
        trends=trends(table, months, _, labels),
        suppress_below=source.config.suppress_below,
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


def ranking(table: pd.DataFrame, month: str, _: Texts) -> list[dict[str, Any]]:
    """One row per district, best composite rank first, then the city; each figure as shown
    (its value, or "<5" where withheld), its rank's range, and its call against the city."""
    rows = table[table["month"] == month]
    out: list[dict[str, Any]] = []
    for district in (*DISTRICTS, CITY):
        own = rows[rows["district"] == district].set_index("indicator")
        out.append(
            {
                "district": district,
                "order": own["rank"].get(COMPOSITE),
                "figures": {str(i): _figure(i, r, _) for i, r in own.iterrows()},
            }
        )
    return sorted(out, key=lambda d: (d["district"] == CITY, _nan_last(d["order"])))


def _figure(indicator: object, row: pd.Series, _: Texts) -> dict[str, Any]:
    """One cell of the ranking: the value (or why there is none), the rank's range, and the
    district against the city when it lies outside the funnel."""
    withheld = pd.isna(row["value"]) and row["numerator_shown"] not in ("", None)
    tone = standing(str(indicator), row["versus_city"])
    return {
        "value": row["value"],
        "withheld": row["numerator_shown"] if withheld else "",
        "rank": _.rank_range(row["rank_lo"], row["rank_hi"]),
        "tone": tone,
        "versus": _(STANDING[tone]) if tone else "",
    }


def _nan_last(rank: float | None) -> float:
    return math.inf if rank is None or math.isnan(rank) else rank


def funnels(table: pd.DataFrame, month: str, _: Texts) -> list[dict[str, Any]]:
    """For each registry indicator, its districts in the month's funnel around the city, and
    which of them lie outside it, or that none does."""
    rows = table[table["month"] == month]
    out = []
    for code, grp in rows.groupby("indicator", sort=False):
        curve = funnel_curve(grp, str(code))
        if curve is None:
            continue
        placed = funnel_points(grp)
        points = [(_.district(d), n, v, s) for d, n, v, s in placed]
        calls = [
            (_.district(d), tone, _(STANDING[tone]))
            for d, _n, _v, s in placed
            if (tone := standing(str(code), s))
        ]
        unplaced = set(grp["district"]) - {d for d, *_rest in placed}
        withheld = [_.district(d) for d in DISTRICTS if d in unplaced]
        title = _.both(grp["indicator_en"].iloc[0], grp["indicator_zh"].iloc[0])
        unit = _(UNITS.get(grp["unit"].iloc[0], grp["unit"].iloc[0])) or title
        out.append(
            {
                "title": title,
                "chart": funnel_chart(
                    points,
                    curve,
                    curve["target"],
                    (_("residents") if code in PUBLIC_DENOMINATORS else _("persons"), unit),
                    functools.partial(value_text, unit=grp["unit"].iloc[0]),
                    title,
                ),
                "calls": calls,
                "withheld": withheld,
            }
        )
    return out


def trends(
    table: pd.DataFrame, months: list[str], _: Texts, labels: dict[str, str]
) -> list[dict[str, str]]:
    """The city's value of each registry indicator over the months with its 95% interval as
    a band, each a chart with its axis, its unit, the months as the page writes them
    (`labels`), and which way is better."""
    city = table[table["district"] == CITY]
    ticks = [labels[m] for m in months]
    out = []
    for code, grp in city.groupby("indicator", sort=False):
        by_month = grp.set_index("month").reindex(months)
        series = by_month["value"].astype(float).tolist()
        band = (by_month["lower"].astype(float).tolist(), by_month["upper"].astype(float).tolist())
        title = _.both(grp["indicator_en"].iloc[0], grp["indicator_zh"].iloc[0])
        unit = grp["unit"].iloc[0] if isinstance(grp["unit"].iloc[0], str) else ""
        way = DIRECTIONS.get(str(code), 0)
        out.append(
            {
                "title": title,
                "chart": trend(ticks, series, title, _(UNITS.get(unit, unit)) or title, band),
                "better": _(BETTER[way]) if way else "",
                "arrow": "↑" if way > 0 else "↓" if way < 0 else "",
            }
        )
    return out


def value_text(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.1f}" if unit != "per 10,000 residents" else f"{value:.2f}"
