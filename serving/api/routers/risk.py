"""A person's risk from the event store: `GET /v1/persons/{person_id}/risk`.

Access is decided before anything about the person is looked at, so no answer tells a caller
more than their role allows: a task's scope is checked for every person alike (403), and a
person outside a caseworker's districts gets the same 404 as an unknown one.

The route is the one every caseworker's screen asks for, so a plain request to it (`Direct`)
skips FastAPI's routing, dependency resolution and response validation, which cost more CPU
than the answer itself; anything else (a value the validator must judge, no bearer token)
goes through FastAPI. Both run `person_risk`: the same checks and the same answer.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param

from features.contract.checks import PERSON_ID, as_of_problem
from features.core.errors import RegistryError
from features.tasks import Task
from serving.access.roles import User
from serving.api.deps import (
    Services,
    asked_entry,
    authenticate,
    current_user,
    error,
    scored_entry,
    services,
    task_of,
)
from serving.api.middleware import header
from serving.api.schemas import MAX_FACTORS, ModelRef, RiskResponse, refusals
from serving.scoring.cohort_policy import not_in_cohort, out_of_cohort_warning
from serving.scoring.scorer import DEFAULT_TOP, score_encoded

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

router = APIRouter(tags=["risk"])
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SMALL = re.compile(r"\d{1,3}")
BOOLEAN = {"true": True, "false": False, "1": True, "0": False}


def model_ref(facts: dict) -> ModelRef:
    return ModelRef(name=facts["name"], version=str(facts["version"]), run_id=facts["run_id"])


def champion(svc: Services, task: Task):
    try:
        return svc.state.loaded.model(task.name)
    except RegistryError as exc:
        raise error(503, str(exc)) from None


@router.get(
    "/v1/persons/{person_id}/risk",
    response_model=RiskResponse,
    responses=refusals(401, 403, 404, 409, 503),
)
async def person_risk(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    user: Annotated[User, Depends(current_user)],
    person_id: Annotated[str, PathParam(max_length=64, pattern=f"^{PERSON_ID.pattern}$")],
    task_name: Annotated[str, Query(alias="task", description="the task")] = "relapse",
    as_of: Annotated[
        dt.date | None, Query(description="default: the data's reference date")
    ] = None,
    explain: Annotated[int, Query(ge=0, le=MAX_FACTORS, description="top factors")] = DEFAULT_TOP,
    allow_out_of_cohort: Annotated[
        bool, Query(description="analysts: score a person outside the cohort anyway")
    ] = False,
) -> RiskResponse:
    """A person's risk, its reasons and suggested support, from the event store.

    Today's answer is a slice of the precomputed feature matrix and a fraction of a
    millisecond of model time, so it is computed on the event loop, not handed to a thread;
    another day's builds features from the store, which takes longer, so a thread does it."""
    args = (request, svc, user, person_id, task_name, as_of, explain, allow_out_of_cohort)
    if as_of is None or as_of == svc.state.as_of:
        return _person_risk(*args)
    return await run_in_threadpool(_person_risk, *args)


def _person_risk(
    request: Request,
    svc: Services,
    user: User,
    person_id: str,
    task_name: str,
    as_of: dt.date | None,
    explain: int,
    allow_out_of_cohort: bool,
) -> RiskResponse:
    state = svc.state
    task = task_of(task_name)
    if not user.has_scope(task.scope):
        raise error(403, f"task {task.name} needs the scope {task.scope!r}")
    if allow_out_of_cohort and user.role != "analyst":
        raise error(403, "only analysts may ask for a score outside the task's cohort")
    if not PERSON_ID.fullmatch(person_id):
        raise error(422, [{"field": "person_id", "reason": "malformed person id"}])
    as_of = as_of or state.as_of
    if why := as_of_problem(as_of, state.as_of):
        raise error(422, [{"field": "as_of", "reason": why}])
    # a refusal from here on (no such person, not in the cohort) is audited with the task
    # and date asked about, the defaulted ones too; a score replaces this entry
    request.state.audit = [asked_entry(request, person_id, task.name, as_of)]
    if not state.known(person_id) or not user.may_read(state.district(person_id)):
        raise error(404, f"no person {person_id}")
    model, facts = champion(svc, task)
    member = state.in_cohort(task, person_id, as_of)
    if not member and not allow_out_of_cohort:
        raise error(409, not_in_cohort(task, as_of))
    X = state.encoded(person_id, as_of, model)
    effects = state.loaded.effects_for(task.name)
    version = str(facts["version"])
    today = member and as_of == state.as_of  # the caseload's own day: its scores hold
    known = state.kept_score(task, model, version, person_id, X, explain) if today else None
    result = score_encoded(model, X, svc.interventions[task.name], explain, effects, known)[0]
    svc.metrics.scores.labels(task.name).observe(result["probability"])
    request.state.audit = [scored_entry(request, person_id, task.name, facts, result, as_of)]
    return RiskResponse(
        person_id=person_id,
        task=task.name,
        as_of=as_of,
        in_cohort=member,
        warning=None if member else out_of_cohort_warning(task, as_of),
        history="events" if state.history(person_id, as_of) else "none",
        model=model_ref(facts),
        request_id=request.state.request_id,
        **result,
    )


class Direct:
    """`GET /v1/persons/{person_id}/risk` answered without FastAPI's machinery when the request
    is plain: a well-formed person id, a bearer token, and query values in their one obvious
    spelling, each given once. Called by the middleware (serving.api.middleware) inside its
    request id, bound, metrics and audit; says False, having done nothing, for FastAPI to
    answer anything else (its refusals are the validator's)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        # the route as FastAPI would have found it: the metrics and the audit name it
        self.route = next(
            r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is person_risk
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        if scope["method"] != "GET" or scope.get("root_path"):
            return False
        found = self.route.path_regex.match(scope["path"])
        person_id = found["person_id"] if found else ""
        args = _plain_query(scope["query_string"])
        token = _bearer_token(scope)
        if len(person_id) > 64 or not PERSON_ID.fullmatch(person_id) or args is None or not token:
            return False
        scope["route"], scope["path_params"] = self.route, {"person_id": person_id}
        request = Request(scope, receive)
        response: Response
        try:
            request.state.user = user = await authenticate(self.svc, token)
            answer = await person_risk(request, self.svc, user, person_id, **args)
            response = Response(answer.model_dump_json(), media_type="application/json")
        except HTTPException as exc:  # as FastAPI's own handler says it
            response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        await response(scope, receive, send)
        return True


def _plain_query(raw: bytes) -> dict[str, Any] | None:
    """The route's query arguments, or None when one needs the validator's judgement."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    given = dict(pairs)
    if len(given) < len(pairs):
        return None
    args: dict[str, Any] = {}
    if "task" in given:
        args["task_name"] = given["task"]
    if "as_of" in given:
        if not DATE.fullmatch(given["as_of"]):
            return None
        try:
            args["as_of"] = dt.date.fromisoformat(given["as_of"])
        except ValueError:
            return None
    if "explain" in given:
        if not SMALL.fullmatch(given["explain"]) or int(given["explain"]) > MAX_FACTORS:
            return None
        args["explain"] = int(given["explain"])
    if "allow_out_of_cohort" in given:
        if given["allow_out_of_cohort"] not in BOOLEAN:
            return None
        args["allow_out_of_cohort"] = BOOLEAN[given["allow_out_of_cohort"]]
    return args


def _bearer_token(scope: Scope) -> str:
    """The token of an `Authorization: Bearer ...` header, read as FastAPI's HTTPBearer reads
    it; "" for none."""
    scheme, token = get_authorization_scheme_param(header(scope, b"authorization"))
    return token if scheme.lower() == "bearer" else ""
