"""Scoring records an analyst sends: `POST /v1/score/{task}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from models.deployable import FeatureInputError
from serving.auth import User
from serving.deps import Services, error, require, scored_entry, services, task_of
from serving.records import records_frame
from serving.routers.risk import champion, model_ref
from serving.schemas import MAX_FACTORS, ScoredRecord, ScoreRequest, ScoreResponse
from serving.scoring import (
    DEFAULT_TOP,
    NOT_IN_COHORT,
    not_in_cohort,
    out_of_cohort_warning,
    score_frame,
)

MAX_RECORDS = 1000

router = APIRouter(tags=["risk"])


@router.post(
    "/v1/score/{task}",
    response_model=ScoreResponse,
    responses={413: {"description": "over 1,000 records or the body size limit"}},
)
def score(
    request: Request,
    task: str,
    body: ScoreRequest,
    svc: Annotated[Services, Depends(services)],
    user: Annotated[User, Depends(require("analyst"))],
    explain: Annotated[
        int, Query(ge=0, le=MAX_FACTORS, description="top factors per record")
    ] = DEFAULT_TOP,
    allow_out_of_cohort: Annotated[
        bool, Query(description="score records outside the task's cohort anyway")
    ] = False,
) -> ScoreResponse:
    """Score records sent in the body: feature values, or a person's attributes and events.
    A person outside the task's cohort on as_of is not scored unless asked for."""
    declared = task_of(task)
    if len(body.records) > MAX_RECORDS:
        raise error(413, f"{len(body.records)} records; at most {MAX_RECORDS} per call")
    if not body.records:
        raise error(422, [{"field": "records", "reason": "no records"}])
    model, facts = champion(svc, declared)
    reference = svc.state.as_of
    built = records_frame(body.records, model.features, declared, reference)
    scored_rows = [
        i for i, m in enumerate(built.in_cohort) if m is not False or allow_out_of_cohort
    ]
    try:
        results = (
            score_frame(model, built.frame.iloc[scored_rows], svc.interventions[task], explain)
            if scored_rows
            else []
        )
    except FeatureInputError as exc:
        raise error(
            422,
            [{"record": scored_rows[r], "field": f, "reason": why} for r, f, why in exc.problems],
        ) from None
    by_row = dict(zip(scored_rows, results, strict=True))
    out, entries = [], []
    for i, rec in enumerate(body.records):
        as_of = rec.as_of or reference
        member = built.in_cohort[i]
        common = {"record": i, "id": rec.id, "history": built.history[i], "in_cohort": member}
        pid = rec.person.person_id if rec.person else rec.id
        if i not in by_row:
            out.append(
                ScoredRecord(**common, status=NOT_IN_COHORT, reason=not_in_cohort(declared, as_of))
            )
            entries.append(scored_entry(request, pid, task, facts, {}, as_of))
            continue
        res = by_row[i]
        svc.metrics.scores.labels(task).observe(res["probability"])
        entries.append(scored_entry(request, pid, task, facts, res, as_of))
        warning = out_of_cohort_warning(declared, as_of) if member is False else None
        out.append(ScoredRecord(**common, status="ok", warning=warning, **res))
    request.state.audit = entries
    return ScoreResponse(
        task=task, model=model_ref(facts), results=out, request_id=request.state.request_id
    )
