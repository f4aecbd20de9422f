"""The programme's monthly indicators and district ranking: `GET /v1/indicators`.

Analysts and admins see every district and the city; a caseworker sees the districts they
work in, and asking for another is refused for what it is (403), since a district is no secret.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from features.contract.vocabulary import DISTRICTS
from features.core.errors import InputError
from features.core.months import add_months, last_complete_month, month_range, parse_month
from features.indicators.inputs import CITY
from serving.access.roles import User
from serving.api.deps import Services, error, require, services
from serving.api.schemas import IndicatorRow, Indicators, refusals

router = APIRouter(tags=["programme"])
MAX_MONTHS = 60
MONTH_PATTERN = r"^\d{4}-\d{2}$"


def _month(text: str | None, field: str) -> str | None:
    try:
        return parse_month(text, field) if text else None
    except InputError:
        raise error(
            422, [{"field": field, "reason": f"{text!r} is not a month (YYYY-MM)"}]
        ) from None


@router.get("/v1/indicators", response_model=Indicators, responses=refusals(401, 403))
def indicators(
    svc: Annotated[Services, Depends(services)],
    user: Annotated[User, Depends(require("analyst", "admin", "caseworker"))],
    first: Annotated[
        str | None, Query(alias="from", pattern=MONTH_PATTERN, description="YYYY-MM")
    ] = None,
    last: Annotated[
        str | None,
        Query(alias="to", pattern=MONTH_PATTERN, description="YYYY-MM; default the latest"),
    ] = None,
    district: Annotated[
        str | None, Query(description=f"one of {', '.join(DISTRICTS)} or {CITY}")
    ] = None,
) -> Indicators:
    """Each indicator by district and month, with numerator, denominator, the value's 95%
    interval, the district against the city's funnel, the rank with its 95% range, and the
    change (default: the last 12 complete months). Counts of fewer persons than
    `suppress_below` are withheld, with what would give them back."""
    if district is not None and district not in (*DISTRICTS, CITY):
        raise error(422, [{"field": "district", "reason": f"unknown district {district!r}"}])
    if user.role == "caseworker" and district is not None and not user.may_read(district):
        raise error(403, f"district {district} is not one of yours")
    source = svc.state.indicators
    if source is None:
        raise error(503, "the service was started without programme indicators")
    start, end = _month(first, "from"), _month(last, "to")
    try:
        months = month_range(start, end, svc.state.as_of, default=12)
    except InputError as exc:
        field = "to" if str(exc).startswith("to ") else "from"
        raise error(422, [{"field": field, "reason": str(exc)}]) from None
    # the service answers for the last MAX_MONTHS months only: all a caller can make it
    # compute is that many months, once (older ones: `sunshine indicators`)
    oldest = add_months(last_complete_month(svc.state.as_of), -(MAX_MONTHS - 1))
    if months[0] < oldest:
        reason = f"the service keeps the last {MAX_MONTHS} months, from {oldest}"
        raise error(422, [{"field": "from", "reason": reason}])
    table = source.table(months)
    if district is not None:
        table = table[table["district"] == district]
    elif user.role == "caseworker":
        table = table[table["district"].isin(user.districts)]
    clean = table.astype(object).where(table.notna(), None)
    rows = [IndicatorRow(**r) for r in clean.to_dict(orient="records")]
    threshold = source.config.suppress_below
    return Indicators(
        **{"from": months[0], "to": months[-1], "suppress_below": threshold, "rows": rows}
    )
