"""A person's page: the risk in words, its reasons, the last year month by month, the events
behind it, suggested support, and the follow-ups recorded against it.

Access is decided as the API decides it: an unknown person and one outside the user's
districts get the same "not found" page (404), and every view is in the audit trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from features.contract.checks import PERSON_ID
from features.tasks import Task
from serving.api.deps import Services, asked_entry, scored_entry, services
from serving.scoring.scorer import score_encoded
from serving.state.history import risk_history, timeline
from serving.storage.web_records import NOTE_CHARS, OUTCOMES, Followup
from serving.web.caseload_pages import allowed_tasks, arrow, chosen_task, percent
from serving.web.charts import bar, history
from serving.web.i18n import N_
from serving.web.render import redirect, render
from serving.web.session import PageError, WebUser, check_csrf, signed_in

router = APIRouter(prefix="/app", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
PersonId = Annotated[str, PathParam(max_length=64)]
REASONS = 8


def readable_person(svc: Services, web: WebUser, person_id: str) -> None:
    """404 for a malformed, unknown or out-of-district person alike."""
    state = svc.state
    if (
        not PERSON_ID.fullmatch(person_id)
        or not state.known(person_id)
        or not web.user.may_read(state.district(person_id))
    ):
        raise PageError(404, "Person not found.")


def person_task(svc: Services, web: WebUser, person_id: str, name: str | None) -> Task:
    """The task asked for, else the first the person is in the cohort of today."""
    if name is not None:
        return chosen_task(svc, web, name)
    for task in allowed_tasks(svc, web):
        if svc.state.in_cohort(task, person_id, svc.state.as_of):
            return task
    return chosen_task(svc, web, None)


@router.get("/persons/{person_id}")
def person_page(
    request: Request,
    svc: Svc,
    person_id: PersonId,
    task: Annotated[str | None, Query(max_length=32)] = None,
    saved: Annotated[bool, Query()] = False,
) -> Response:
    web = signed_in(request, svc, "caseworker", "analyst")
    readable_person(svc, web, person_id)
    chosen = person_task(svc, web, person_id, task)
    context = person_context(request, svc, web, person_id, chosen)
    return render(request, "person.html", web, saved=saved, **context)


def person_context(
    request: Request, svc: Services, web: WebUser, person_id: str, task: Task
) -> dict[str, Any]:
    state = svc.state
    as_of = state.as_of
    model, facts = state.loaded.model(task.name)
    member = state.in_cohort(task, person_id, as_of)
    context: dict[str, Any] = {
        "person_id": person_id,
        "district": state.district(person_id),
        "task": task,
        "tasks": allowed_tasks(svc, web),
        "as_of": as_of,
        "model_version": str(facts["version"]),
        "member": member,
        "events": list(timeline(state, person_id, as_of).itertuples()),
        "followups": svc.web.followups(person_id),
        "outcomes": OUTCOMES,
        "today": dt.date.today().isoformat(),
        "note_chars": NOTE_CHARS,
        "percent": percent,
        "arrow": arrow,
        "can_follow_up": web.user.role == "caseworker",
        "options": svc.interventions[task.name],
        "options_by_code": {o.code: o for opts in svc.interventions.values() for o in opts},
    }
    if not member:
        request.state.audit = [asked_entry(request, person_id, task.name)]
        return context
    options = svc.interventions[task.name]
    X = state.encoded(person_id, state.as_of, model)
    effects = state.loaded.effects_for(task.name)
    result = score_encoded(model, X, options, REASONS, effects)[0]
    request.state.audit = [scored_entry(request, person_id, task.name, facts, result, as_of)]
    past = risk_history(state, model, task, person_id, as_of)
    largest = max((abs(f["contribution"]) for f in result["factors"]), default=0.0)
    reasons = [
        {**f, "bar": bar(f["contribution"], largest)}
        for f in sorted(result["factors"], key=lambda f: f["contribution"] <= 0)
    ]
    caseload = state.caseload(task)
    row = caseload.frame.loc[person_id]
    suggested = {s["en"] for s in result["support"]}
    texts = web.texts
    context.update(
        result=result,
        change=row["change"],
        previous=state.previous,
        average=caseload.average,
        shares=caseload.tier_shares,
        actionable=[f for f in reasons if not f["background"]],
        background=[f for f in reasons if f["background"]],
        history=list(past.itertuples()),
        chart=history(
            [texts.month(d) for d in past["as_of"]],
            past["probability"].tolist(),
            past["in_cohort"].tolist(),
            texts(N_("Risk over the last 12 months")),
            texts(N_("Probability")),
        ),
        # the suggested options first, then the task's others
        options=sorted(svc.interventions[task.name], key=lambda o: o.en not in suggested),
    )
    return context


@router.post("/persons/{person_id}/followups")
def record_followup(
    request: Request,
    svc: Svc,
    person_id: PersonId,
    task: Annotated[str, Form(max_length=32)],
    option: Annotated[str, Form(max_length=100)],
    outcome: Annotated[str, Form(max_length=16)],
    day: Annotated[str, Form(max_length=10)],
    note: Annotated[str, Form(max_length=NOTE_CHARS)] = "",
    csrf: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    web = signed_in(request, svc, "caseworker")
    check_csrf(web.session.csrf, csrf)
    readable_person(svc, web, person_id)
    chosen = chosen_task(svc, web, task)
    codes = {o.code for o in svc.interventions[chosen.name]}
    problem = _followup_problem(option, codes, outcome, day)
    if problem:
        context = person_context(request, svc, web, person_id, chosen)
        return render(request, "person.html", web, 422, form_error=problem, **context)
    _, facts = svc.state.loaded.model(chosen.name)
    svc.web.add_followup(
        Followup(
            person_id,
            chosen.name,
            option,
            outcome,
            dt.date.fromisoformat(day),
            " ".join(note.split()),  # one line: no control characters reach an export
            web.user.user,
            str(facts["version"]),
        )
    )
    request.state.audit = [asked_entry(request, person_id, chosen.name)]
    return redirect(f"/app/persons/{person_id}?task={chosen.name}&saved=1#followups")


def _followup_problem(option: str, codes: set[str], outcome: str, day: str) -> str | None:
    if option not in codes:
        return N_("Pick one of the support options listed.")
    if outcome not in OUTCOMES:
        return N_("Pick whether the support was offered, accepted or declined.")
    try:
        when = dt.date.fromisoformat(day)
    except ValueError:
        return N_("The date must be a date (YYYY-MM-DD).")
    if when > dt.date.today() or when < dt.date.today() - dt.timedelta(days=366):
        return N_("The date must be within the last year, and not in the future.")
    return None
