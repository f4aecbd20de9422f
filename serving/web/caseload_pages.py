"""My caseload: the persons of my districts in a task's cohort today, ranked by risk, with
the to-follow-up view, filters, sorting, pages and an Excel export of the filtered list.

A follow-up saved on a person's page is a contact: the caseload reads the service's
follow-ups on every request, so the person's last contact changes, and they leave the
to-follow-up view, the moment it is saved."""

from __future__ import annotations

import datetime as dt
import io
import math
from dataclasses import replace
from typing import Annotated
from urllib.parse import urlencode

import numpy as np
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
from serving.state.caseload import SORTS, Caseload, Filters, page_of, select
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
    "percentile": N_("Rank among comparable persons"),
    "probability": N_("Probability"),
    "change": N_("Change since last month"),
    "reason": N_("Top reason"),
    "last_contact": N_("Last social-worker contact"),
}


# how the workbook shows its fractions: 0.323 as 32.3%, a change of 0.032 as +3.2%; a
# probability under 0.05% as "<0.1%", never as 0.0% ("no risk", which no model can say)
PERCENT_FORMATS = {"probability": '[<0.0005]"<0.1%";0.0%', "change": "+0.0%;-0.0%;0.0%"}


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
        view: Annotated[str | None, Query(max_length=8)] = None,
        sort: Annotated[str | None, Query(max_length=8)] = None,
    ) -> None:
        self.task, self.page = task, page
        self.filters = Filters(
            tier if tier in TIERS else None,
            district or None,
            rising,
            (q or "").strip() or None,
            todo=view == "todo",
            sort=sort if sort in SORTS else "risk",
        )


FilterQuery = Annotated[CaseloadQuery, Depends()]


# what a caseload sorted by expected benefit says first, per task's outcome
BENEFIT_NOTES = {
    "relapse": N_(
        "Contact these first: offering them support is expected to prevent the most relapses."
    ),
    "youth_uptake": N_(
        "Contact these first: offering them support is expected to prevent the most new drug use."
    ),
}


def benefits_of(svc: Services, task: Task, f: Filters) -> pd.DataFrame | None:
    """The members' most helpful options, when the caseload is sorted by them and an effects
    model serves the task."""
    if f.sort != "benefit":
        return None
    return svc.state.benefits(task, svc.interventions[task.name])


def visible(
    svc: Services, web: WebUser, query: CaseloadQuery, contacts: dict[str, dt.date]
) -> tuple[Task, Caseload, pd.DataFrame]:
    task = chosen_task(svc, web, query.task)
    caseload = caseload_of(svc, task)
    mine = mine_of(web)
    if query.filters.district and mine is not None and query.filters.district not in mine:
        raise PageError(403, "That district is not one of yours.")
    benefits = benefits_of(svc, task, query.filters)
    return task, caseload, select(caseload, mine, query.filters, contacts, benefits)


def capacity_view(svc: Services, task: Task, rows: pd.DataFrame) -> dict | None:
    """For a list sorted by expected benefit: how many the programme's capacity reaches (the
    effects model's share of the list, at least one) and the outcomes offering support to
    them is expected to prevent over the label's window; marks those rows `first`."""
    effects = svc.state.loaded.effects_for(task.name)
    if effects is None or "benefit_change" not in rows or rows.empty:
        return None
    k = max(1, math.ceil(effects.capacity * len(rows)))
    lowers = -np.minimum(rows["benefit_change"].to_numpy(float)[:k], 0.0)
    return {
        "k": k,
        "share": round(100 * effects.capacity),
        "prevented": float(np.nansum(lowers)),
        "note": BENEFIT_NOTES[task.name],
    }


@router.get("/caseload")
def caseload_page(request: Request, svc: Svc, query: FilterQuery) -> Response:
    web = signed_in(request, svc, "caseworker", "analyst")
    contacts = svc.web.last_followups()
    task, caseload, rows = visible(svc, web, query, contacts)
    capacity = capacity_view(svc, task, rows)
    if capacity is not None:
        rows = rows.assign(first=np.arange(len(rows)) < capacity["k"])
    shown, pages = page_of(rows, query.page)
    request.state.audit = shown_entries(request, caseload, shown)
    f = query.filters
    params = query_of(task, f)
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
        view_urls={
            v: "/app/caseload?" + urlencode(query_of(task, replace(f, todo=v == "todo")))
            for v in ("all", "todo")
        },
        todo_count=len(select(caseload, mine_of(web), Filters(todo=True), contacts)),
        sorts=sorts_for(svc, task),
        capacity=capacity,
        options_by_code={o.code: o for o in svc.interventions[task.name]},
        model_version=caseload.version,
        average=caseload.average,
        shares=caseload.tier_shares,
        arrow=arrow,
        percent=percent,
    )


def sorts_for(svc: Services, task: Task) -> tuple[str, ...]:
    """The orders a caseload can be sorted in: by expected benefit only where an effects
    model serves the task."""
    effects = svc.state.loaded.effects_for(task.name)
    served = effects is not None and bool(effects.served)
    return tuple(s for s in SORTS if s != "benefit" or served)


def query_of(task: Task, f: Filters) -> dict[str, str]:
    """The query string that asks for this task with these filters."""
    asked = {"task": task.name, "tier": f.tier, "district": f.district, "q": f.search}
    params = {k: v for k, v in asked.items() if v}
    if f.rising:
        params["rising"] = "true"
    if f.todo:
        params["view"] = "todo"
    if f.sort != "risk":
        params["sort"] = f.sort
    return params


def mine_of(web: WebUser) -> tuple[str, ...] | None:
    """The districts a user may see: a caseworker's own, everyone's for an analyst."""
    return web.user.districts if web.user.role == "caseworker" else None


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
    task, caseload, rows = visible(svc, web, query, svc.web.last_followups())
    request.state.audit = shown_entries(request, caseload, rows)
    sheet = web.texts(N_("My caseload")) + " " + web.texts.task(task)
    body = workbook_bytes(workbook(rows, web.texts), web.texts, sheet)
    name = f"caseload-{task.name}-{caseload.as_of}.xlsx"
    return secure(
        Response(
            body,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )


def workbook_bytes(frame: pd.DataFrame, _: Texts, sheet: str) -> bytes:
    """`frame` as an .xlsx workbook of one sheet, its fractions shown as percentages."""
    body = io.BytesIO()
    sheet = sheet[:31]  # Excel's longest sheet name
    with pd.ExcelWriter(body, engine="openpyxl") as book:
        frame.to_excel(book, index=False, sheet_name=sheet)
        cells = book.sheets[sheet]
        for key, shown in PERCENT_FORMATS.items():
            column = frame.columns.get_loc(_(COLUMNS[key])) + 1
            for (cell,) in cells.iter_rows(min_row=2, min_col=column, max_col=column):
                cell.number_format = shown
    return body.getvalue()


def workbook(rows: pd.DataFrame, _: Texts) -> pd.DataFrame:
    """The caseload as the page shows it, in the page's language: ranks, tiers, the share
    of comparable persons above ("前3%"), probabilities and changes as percentages, the
    reason with its value and effect, and dates."""
    reason = rows["reason_zh"] if _.lang == "zh" else rows["reason_en"]
    frame = pd.DataFrame(
        {
            "rank": rows["rank"].to_numpy(),
            # ids passed the contract's rules; defused all the same, as every text a
            # spreadsheet shows
            "person_id": [defuse(p) for p in rows.index],
            "district": [_.district(d) for d in rows["district"]],
            "tier": [_.tier(t) for t in rows["tier"]],
            "percentile": [_.top_share(p) for p in rows["percentile"]],
            # numbers a spreadsheet can sort, shown as percentages (PERCENT_FORMATS)
            "probability": rows["probability"].to_numpy(float),
            "change": rows["change"].to_numpy(float),
            "reason": [defuse(r) if isinstance(r, str) else "" for r in reason],
            "last_contact": [
                _.date(d.date()) if not pd.isna(d) else _("none recorded")
                for d in pd.to_datetime(rows["last_contact"])
            ],
        }
    )
    return frame.rename(columns={k: _(v) for k, v in COLUMNS.items()})
