"""Scoring records an analyst sends: `POST /v1/score/{task}`.

The body is parsed here, not by FastAPI: records are counted while they are parsed (the
1,001st ends it with 413, however many follow), and parsing, validation and scoring run off
the event loop, so a large request never stalls the other requests the server is answering.
"""

from __future__ import annotations

from typing import Annotated, Any

import ijson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from features.tasks import Task
from models.risk_model import FeatureInputError
from serving.access.roles import User
from serving.api.body_shape import shape_problem
from serving.api.deps import Services, error, require, scored_entry, services, task_of
from serving.api.records import records_frame
from serving.api.routers.risk import champion, model_ref
from serving.api.schemas import MAX_FACTORS, RecordIn, ScoredRecord, ScoreResponse, refusals
from serving.scoring.cohort_policy import NOT_IN_COHORT, not_in_cohort, out_of_cohort_warning
from serving.scoring.scorer import DEFAULT_TOP, score_frame

MAX_RECORDS = 1000

router = APIRouter(tags=["risk"])


# the body's schema, documented though FastAPI does not parse it (see serving.api.docs)
BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
    }
}


def parse_records(raw: bytes) -> list[RecordIn]:
    """The body's records, counted as they are parsed; each invalid field named. A body of
    a shape no request has is refused before the parser sees it (serving.api.body_shape)."""
    if why := shape_problem(raw):
        raise error(413, f"body refused: {why}")
    items: list[Any] = []
    try:
        for item in ijson.items(raw, "records.item", use_float=True):
            if len(items) == MAX_RECORDS:
                raise error(413, f"more than {MAX_RECORDS} records; at most {MAX_RECORDS} per call")
            items.append(item)
    except ijson.JSONError as exc:
        raise error(422, [{"field": "body", "reason": f"not valid JSON ({exc})"}]) from None
    if not items:
        raise error(422, [{"field": "records", "reason": "no records"}])
    records, problems = [], []
    for i, item in enumerate(items):
        try:
            records.append(RecordIn.model_validate(item))
        except ValidationError as exc:
            problems += [
                {"field": ".".join(map(str, ["records", i, *e["loc"]])), "reason": e["msg"]}
                for e in exc.errors()
            ]
    if problems:
        raise error(422, problems)
    return records


@router.post(
    "/v1/score/{task}",
    response_model=ScoreResponse,
    openapi_extra=BODY,
    responses=refusals(401, 403, 404, 413, 503),
)
async def score(
    request: Request,
    task: str,
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
    records = await run_in_threadpool(parse_records, await request.body())
    return await run_in_threadpool(
        _score, request, svc, declared, records, explain, allow_out_of_cohort
    )


def _score(
    request: Request,
    svc: Services,
    declared: Task,
    records: list[RecordIn],
    explain: int,
    allow_out_of_cohort: bool,
) -> ScoreResponse:
    task = declared.name
    model, facts = champion(svc, declared)
    reference = svc.state.as_of
    built = records_frame(records, model.features, declared, reference, svc.state.store.codebook)
    scored_rows = [
        i for i, m in enumerate(built.in_cohort) if m is not False or allow_out_of_cohort
    ]
    try:
        results = (
            score_frame(
                model,
                built.frame.iloc[scored_rows],
                svc.interventions[task],
                explain,
                svc.state.loaded.effects_for(task),
            )
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
    for i, rec in enumerate(records):
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
