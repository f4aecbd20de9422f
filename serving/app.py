"""The risk API: FastAPI over the registry's champions, with access control and an audit trail.

Explanations are LightGBM's exact TreeSHAP contributions on the log-odds scale: `base_value`
plus the sum of all contributions equals `raw_score`, and the calibrator maps `raw_score` to
`probability` (a monotone map, so a factor that raises the raw score never lowers the
probability). The top factors shown are the largest contributions by magnitude.

This module assembles the app: the routes live in `serving.api.routers`, what they depend on in
`serving.api.deps`, their bodies in `serving.api.schemas`, and what wraps every request (its id,
the body limit, metrics, the audit trail) in `serving.api.middleware`.
"""

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from features.core.settings import SERVICE_DB
from serving.access.audit import AuditLog
from serving.access.tokens import TokenStore
from serving.api.admission import DEFAULT, Bound
from serving.api.deps import Services
from serving.api.docs import add_docs
from serving.api.metrics import Metrics
from serving.api.middleware import Observe
from serving.api.routers import admin, health, indicators, risk, score
from serving.api.schemas import ScoreRequest
from serving.scoring.interventions import Interventions
from serving.state.service import ServiceState
from serving.storage.web_records import WebStore
from serving.web import account, caseload_pages, person_pages, programme_pages, signin_pages
from serving.web.render import HERE


def create_app(
    state: ServiceState,
    tokens: TokenStore,
    audit: AuditLog,
    interventions: Interventions,
    web: WebStore | None = None,
    in_flight: Bound = DEFAULT,
) -> FastAPI:
    """The API and the web pages over one state. `web` keeps sessions and follow-ups; by
    default a `service.db` beside the audit trail. Past `in_flight` requests in hand, the
    excess is answered 503 at once (serving.api.admission)."""
    app = FastAPI(
        title="Sunshine Risk",
        description=__doc__ + "\n\nScores support planning by trained staff with human review; "
        "never enforcement, sanctions or exclusion.",
        version="1.0",
        docs_url=None,  # served from the package (serving.api.docs), never from a CDN
        redoc_url=None,
    )
    add_docs(app, bodies=(ScoreRequest,))
    web = web or WebStore(audit.path.with_name(SERVICE_DB))
    svc = Services(state, tokens, audit, interventions, Metrics(), web, web.reload_generation())
    svc.metrics.observe_monitoring(state.loaded.monitoring)
    app.state.services = svc
    for module in (risk, score, admin, health, indicators):
        app.include_router(module.router)
    for page in (account, signin_pages, caseload_pages, person_pages, programme_pages):
        app.include_router(page.router)
    account.install(app)
    app.mount("/app/static", StaticFiles(directory=HERE / "static"), name="static")

    app.add_middleware(Observe, svc=svc, in_flight=in_flight, direct=risk.Direct(svc))

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
