"""The risk API: FastAPI over the registry's champions, with access control and an audit trail.

Explanations are LightGBM's exact TreeSHAP contributions on the log-odds scale: `base_value`
plus the sum of all contributions equals `raw_score`, and the calibrator maps `raw_score` to
`probability` (a monotone map, so a factor that raises the raw score never lowers the
probability). The top factors shown are the largest contributions by magnitude.

This module assembles the app: the routes live in `serving.routers`, what they depend on in
`serving.deps`, and their bodies in `serving.schemas`.
"""

import datetime as dt
import re
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from serving.audit import AuditLog, Entry
from serving.auth import TokenStore, User
from serving.deps import Services
from serving.docs import add_docs
from serving.metrics import Metrics
from serving.routers import admin, health, indicators, risk, score
from serving.schemas import ScoreRequest
from serving.scoring import Interventions
from serving.state import ServiceState
from serving.web import account, caseload_pages, person_pages, programme_pages
from serving.web.render import HERE
from serving.web_store import DEFAULT_SERVICE_DB, WebStore

# counted on the bytes received (FastAPI's own limit, not the Content-Length header), before
# any route, authentication or parsing reads them
MAX_BODY_BYTES = 4 * 1024 * 1024
# every API call and web page, refused ones and admin calls included (not the style sheet)
AUDITED = ("/v1/", "/app")
NOT_AUDITED = "/app/static/"
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def create_app(
    state: ServiceState,
    tokens: TokenStore,
    audit: AuditLog,
    interventions: Interventions,
    web: WebStore | None = None,
) -> FastAPI:
    """The API and the web pages over one state. `web` keeps sessions and follow-ups; by
    default a `service.db` beside the audit trail."""
    app = FastAPI(
        title="Sunshine Risk",
        description=__doc__ + "\n\nScores support planning by trained staff with human review; "
        "never enforcement, sanctions or exclusion.",
        version="1.0",
        max_body_size=MAX_BODY_BYTES,
        docs_url=None,  # served from the package (serving.docs), never from a CDN
        redoc_url=None,
    )
    add_docs(app, bodies=(ScoreRequest,))
    web = web or WebStore(audit.path.with_name(DEFAULT_SERVICE_DB))
    svc = Services(state, tokens, audit, interventions, Metrics(), web, web.reload_generation())
    svc.metrics.observe_monitoring(state.loaded.monitoring)
    app.state.services = svc
    for module in (risk, score, admin, health, indicators):
        app.include_router(module.router)
    for page in (account, caseload_pages, person_pages, programme_pages):
        app.include_router(page.router)
    account.install(app)
    app.mount("/app/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def observe(request: Request, call_next):
        # the server's own id: a client's is kept apart, and only if it is a plausible one
        request.state.request_id = uuid.uuid4().hex
        offered = request.headers.get("x-request-id", "")
        request.state.client_request_id = offered if CLIENT_REQUEST_ID.fullmatch(offered) else None
        request.state.audit = []
        start = time.perf_counter()
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY_BYTES:
            response = JSONResponse(
                {"detail": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        svc.metrics.requests.labels(path, str(response.status_code)).inc()
        svc.metrics.latency.labels(path).observe(time.perf_counter() - start)
        response.headers["x-request-id"] = request.state.request_id
        if request.url.path.startswith(AUDITED) and not request.url.path.startswith(NOT_AUDITED):
            # SQLite may wait on a lock: keep that off the event loop
            await run_in_threadpool(_audit, svc.audit, request, response.status_code, path)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        if request.url.path.startswith("/app"):  # a page, in the user's language
            return await run_in_threadpool(account.refusal_page, request, 422, account.INVALID)
        fields = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": fields}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return JSONResponse(
            {"detail": "internal error", "request_id": request.state.request_id}, status_code=500
        )

    return app


def _audit(audit: AuditLog, request: Request, status: int, path: str) -> None:
    """Write the request's audit entries (or one for a refused request), with who and where."""
    user: User | None = getattr(request.state, "user", None)
    entries = request.state.audit or [Entry(path, request.state.request_id, status)]
    params = request.path_params
    for e in entries:
        e.status = status if status >= 400 else e.status
        e.route = path
        e.user = user.user if user else None
        e.role = user.role if user else None
        e.token_id = user.token_id if user else None
        e.client = request.client.host if request.client else None
        e.client_request_id = request.state.client_request_id
        e.person_id = e.person_id or _bounded(params.get("person_id"))
        e.task = e.task or _bounded(request.query_params.get("task") or params.get("task"))
        e.as_of = e.as_of or _date_or_none(request.query_params.get("as_of"))
    audit.append(entries)


def _bounded(value: str | None, limit: int = 64) -> str | None:
    """What a client sent, as the audit trail keeps it: at most `limit` characters."""
    return None if value is None else value[:limit]


def _date_or_none(value: str | None) -> str | None:
    try:
        return dt.date.fromisoformat(value).isoformat() if value else None
    except ValueError:
        return "invalid"
