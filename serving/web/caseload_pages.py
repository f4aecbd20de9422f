"""My caseload: the persons of my districts in a task's cohort today, ranked by risk, with
filters, pages and an Excel export of the filtered list."""

from __future__ import annotations

import io
import math
from typing import Annotated
from urllib.parse import urlencode

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from features.contract.vocabulary import DISTRICTS
from features.core.errors import RegistryError
from features.core.io import defuse
from features.tasks import Task, get_task, task_names
from models.risk_model import TIERS
from serving.access.audit_chain import Entry
from serving.api.deps import Services, services
from serving.state.caseload import Caseload, Filters, page_of, select
from serving.web.i18n import N_, Texts
from serving.web.render import render, secure
from serving.web.session import PageError, WebUser, signed_in

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
SEARCH_CHARS = 64
COLUMNS = {
    "rank": N_("Rank"),
    "person_id": N_("Person"),
    "district": N_("District"),
    "tier": N_("Risk tier"),
    "percentile": N_("Percentile"),
    "probability": N_("Probability"),
    "change": N_("Change since last month"),
    "reason": N_("Top reason"),
    "last_contact": N_("Last social-worker contact"),
}


def allowed_tasks(svc: Services, web: WebUser) -> list[Task]:
    """The tasks this user may see that have a model serving them."""
    return [
        get_task(n)
        for n in task_names()
        if n in svc.state.loaded.models and web.user.has_scope(get_task(n).scope)
    ]


def chosen_task(svc: Services, web: WebUser, name: str | None) -> Task:
    tasks = allowed_tasks(svc, web)
    if name is None:
        if not tasks:
            raise PageError(503, "No model is serving a task you may see yet.")
        return tasks[0]
    if name not in task_names():
        raise PageError(404, "Unknown task.")
    task = get_task(name)
    if not web.user.has_scope(task.scope):
        raise PageError(403, "This task needs a scope your account does not have.")
    if task not in tasks:
        raise PageError(503, "No model is serving this task yet.")
    return task


def caseload_of(svc: Services, task: Task) -> Caseload:
    try:
        return svc.state.caseload(task)
    except RegistryError:
        raise PageError(503, "No model is serving this task yet.") from None


class CaseloadQuery:
    """The caseload's filters as the page's query string carries them."""

    def __init__(
        self,
        task: Annotated[str | None, Query(max_length=32)] = None,
        tier: Annotated[str | None, Query(max_length=16)] = None,
        district: Annotated[str | None, Query(max_length=32)] = None,
        rising: Annotated[bool, Query()] = False,
        q: Annotated[str | None, Query(max_length=SEARCH_CHARS)] = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> None:
        self.task, self.page = task, page
        self.filters = Filters(
            tier if tier in TIERS else None, district or None, rising, (q or "").strip() or None
        )


FilterQuery = Annotated[CaseloadQuery, Depends()]


def visible(
    svc: Services, web: WebUser, query: CaseloadQuery
) -> tuple[Task, Caseload, pd.DataFrame]:
    task = chosen_task(svc, web, query.task)
    caseload = caseload_of(svc, task)
    mine = web.user.districts if web.user.role == "caseworker" else None
    if query.filters.district and mine is not None and query.filters.district not in mine:
        raise PageError(403, "That district is not one of yours.")
    return task, caseload, select(caseload, mine, query.filters)


@router.get("/caseload")
def caseload_page(request: Request, svc: Svc, query: FilterQuery) -> Response:
    web = signed_in(request, svc, "caseworker", "analyst")
    task, caseload, rows = visible(svc, web, query)
    shown, pages = page_of(rows, query.page)
    request.state.audit = shown_entries(request, caseload, shown)
    f = query.filters
    asked = {"task": task.name, "tier": f.tier, "district": f.district, "q": f.search}
    params = {k: v for k, v in asked.items() if v} | ({"rising": "true"} if f.rising else {})
    page = min(query.page, pages)
    return render(
        request,
        "caseload.html",
        web,
        tasks=allowed_tasks(svc, web),
        task=task,
        caseload=caseload,
        rows=list(shown.itertuples()),
        total=len(rows),
        page=page,
        pages=pages,
        filters=f,
        tiers=TIERS,
        districts=web.user.districts if web.user.role == "caseworker" else DISTRICTS,
        query=urlencode(params),
        prev_url=_page_url(params, page - 1) if page > 1 else None,
        next_url=_page_url(params, page + 1) if page < pages else None,
        export_url="/app/caseload.xlsx?" + urlencode(params),
        model_version=caseload.version,
        arrow=arrow,
        percent=percent,
    )


def shown_entries(request: Request, caseload: Caseload, rows: pd.DataFrame) -> list[Entry]:
    """One audit entry for each person a page or an export shows, with the figures shown
    (one for the view itself when it shows nobody)."""
    rid = request.state.request_id
    if rows.empty:
        return [Entry("", rid, 200, task=caseload.task)]
    return [
        Entry(
            "",
            rid,
            200,
            person_id=str(pid),
            task=caseload.task,
            as_of=str(caseload.as_of),
            model_version=caseload.version,
            probability=float(p),
            tier=str(t),
        )
        for pid, p, t in zip(rows.index, rows["probability"], rows["tier"], strict=True)
    ]


def _page_url(params: dict, page: int) -> str:
    return "/app/caseload?" + urlencode({**params, "page": page})


def arrow(change: float) -> str:
    """↑ for a rise of at least half a point, ↓ for such a fall, → between."""
    if change is None or math.isnan(change):
        return ""
    return "↑" if change >= 0.005 else "↓" if change <= -0.005 else "→"


def percent(p: float | None, digits: int = 1, signed: bool = False) -> str:
    """A probability as a caseworker reads it. One that rounds to 0% or 100% but is neither
    is shown as under or over the smallest step ("<0.1%"): a printed 0.0% reads as "no
    risk", which no model can say of a person."""
    if p is None or math.isnan(p):
        return "—"
    if signed:
        return f"{p * 100:+.{digits}f}"
    shown = f"{p * 100:.{digits}f}"
    step = 10.0**-digits
    if p > 0 and float(shown) == 0:
        return f"<{step:.{digits}f}%"
    if p < 1 and float(shown) == 100:
        return f">{100 - step:.{digits}f}%"
    return f"{shown}%"


@router.get("/caseload.xlsx")
def caseload_export(request: Request, svc: Svc, query: FilterQuery) -> Response:
    """Every row that passes the filters (all pages), as a workbook in the user's language."""
    web = signed_in(request, svc, "caseworker", "analyst")
    task, caseload, rows = visible(svc, web, query)
    request.state.audit = shown_entries(request, caseload, rows)
    body = io.BytesIO()
    workbook(rows, web.texts).to_excel(body, index=False, sheet_name=task.name[:31])
    name = f"caseload-{task.name}-{caseload.as_of}.xlsx"
    return secure(
        Response(
            body.getvalue(),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )


def workbook(rows: pd.DataFrame, _: Texts) -> pd.DataFrame:
    reason = rows["reason_zh"] if _.lang == "zh" else rows["reason_en"]
    frame = pd.DataFrame(
        {
            "rank": rows["rank"].to_numpy(),
            # ids passed the contract's rules; defused all the same, as every text a
            # spreadsheet shows
            "person_id": [defuse(p) for p in rows.index],
            "district": [_.district(d) for d in rows["district"]],
            "tier": [_.tier(t) for t in rows["tier"]],
            "percentile": rows["percentile"].round(1).to_numpy(),
            # four significant digits, not decimals: a small probability is never written as 0
            "probability": [float(f"{v:.4g}") for v in rows["probability"]],
            "change": rows["change"].round(4).to_numpy(),
            "reason": reason.to_numpy(),
            "last_contact": pd.to_datetime(rows["last_contact"]).dt.date.to_numpy(),
        }
    )
    return frame.rename(columns={k: _(v) for k, v in COLUMNS.items()})
