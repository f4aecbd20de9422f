"""What every route depends on: the service's parts, the caller's identity and role, the
task asked for, and the audit entries a route leaves for the middleware to write."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from features.core.errors import RegistryError
from features.tasks import Task, get_task, task_names
from serving.access.audit import AuditLog
from serving.access.audit_chain import Entry
from serving.access.roles import User
from serving.access.tokens import TokenStore
from serving.api.metrics import Metrics
from serving.scoring.interventions import Interventions
from serving.state.champions import load_champions
from serving.state.heap import freeze_heap
from serving.state.service import ServiceState
from serving.storage.web_records import WebStore


@dataclass
class Services:
    state: ServiceState
    tokens: TokenStore
    audit: AuditLog
    interventions: Interventions
    metrics: Metrics
    web: WebStore
    # the last reload counter this service acted on (see WebStore.request_reload)
    reload_seen: int = 0
    # what keeps the service from being fully ready, by where it came from ("reload",
    # "data", "follow", "generation"): each source sets its reason and clears it once it
    # works again, so readiness says how things are now, not how they once were
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def degraded(self) -> str | None:
        return "; ".join(self.problems.values()) or None

    def swap(self, state: ServiceState) -> None:
        """Serve `state` from now on; a request that began on the old one finishes on it."""
        self.state = state
        freeze_heap()

    def reload(self) -> str | None:
        """Swap in the registry's current champions (in-flight requests finish on the old
        ones); when that fails, the reason, and the old models go on serving."""
        state = self.state
        try:
            new = load_champions()
            lost = [t for t in state.loaded.models if t not in new.models]
            if lost:  # a served task never silently loses its model
                raise RegistryError(f"no champion for {', '.join(lost)} any more")
        except Exception as exc:  # registry down or no champion: keep serving what we have
            when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self.problems["reload"] = reason = f"reload failed at {when}: {exc}"
            return reason
        state.loaded = new
        self.problems.pop("reload", None)
        state.refresh_caseloads()
        self.metrics.observe_monitoring(new.monitoring)
        return None


def error(status: int, detail: Any) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


# The API's dependencies are coroutines: FastAPI runs a plain function in a thread, and two
# thread hops cost more than the one-row risk answer itself.
async def services(request: Request) -> Services:
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    user = await authenticate(svc, cred.credentials if cred else None)
    request.state.user = user
    return user


async def authenticate(svc: Services, token: str | None) -> User:
    """The caller a bearer token names; 401 when there is none or it is not valid."""
    if svc.tokens.due():  # the token list is re-read now and then: off the event loop
        await run_in_threadpool(svc.tokens.follow)
    user = svc.tokens.authenticate(token) if token else None
    if user is None:
        raise HTTPException(
            401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def require(*roles: str):
    async def dep(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise error(403, f"role {user.role} may not use this endpoint")
        return user

    return dep


def task_of(task: str) -> Task:
    """The task named in the path or query; 404 with the allowed ones when unknown."""
    if task not in task_names():
        raise error(404, {"message": f"unknown task {task!r}", "allowed": list(task_names())})
    return get_task(task)


def asked_entry(request: Request, person_id: str | None, task: str, as_of: Any = None) -> Entry:
    """The audit entry of a question about one person (a score, a refusal after the person was
    looked up, a follow-up); the middleware adds who, where and the status."""
    return Entry(
        "",
        request.state.request_id,
        200,
        person_id=person_id,
        task=task,
        as_of=None if as_of is None else str(as_of),
    )


def scored_entry(
    request: Request,
    person_id: str | None,
    task: str,
    facts: dict,
    result: dict,
    as_of: Any = None,
) -> Entry:
    """The audit entry of one scored person, with the model and what it said."""
    entry = asked_entry(request, person_id, task, as_of)
    entry.model_version = str(facts["version"])
    entry.probability = result.get("probability")
    entry.tier = result.get("tier")
    return entry
