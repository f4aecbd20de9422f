"""The risk API: FastAPI over the registry's champions, with access control and an audit trail.

Explanations are LightGBM's exact TreeSHAP contributions on the log-odds scale: `base_value`
plus the sum of all contributions equals `raw_score`, and the calibrator maps `raw_score` to
`probability` (a monotone map, so a factor that raises the raw score never lowers the
probability). The top factors shown are the largest contributions by magnitude.
"""

import datetime as dt
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from features.builder import FeatureBuilder
from features.errors import ContractError, RegistryError
from features.labels import TASKS
from features.store import Store
from models.deployable import FeatureInputError, RiskModel
from serving.audit import AuditLog, Entry
from serving.auth import TokenStore, User
from serving.scoring import DEFAULT_TOP, Intervention, score_frame
from serving.state import Loaded, ServiceState, load_champions

MAX_RECORDS = 1000
MAX_FACTORS = 300  # enough for every feature: base_value + all contributions = raw_score
MAX_BODY_BYTES = 4 * 1024 * 1024
PERSON_ID = re.compile(r"^[A-Za-z0-9_\-.\u4e00-\u9fff]{1,64}$")
AUDITED = ("/v1/persons/", "/v1/score/")

RISK_EXAMPLE = {
    "person_id": "P0000042",
    "task": "relapse",
    "as_of": "2026-06-30",
    "probability": 0.41,
    "tier": "high",
    "percentile": 93.2,
    "raw_score": -0.37,
    "base_value": -0.62,
    "history": "events",
    "factors": [
        {
            "feature": "checkin_missed__count_90d",
            "label_en": "check-ins missed, last 90 days",
            "label_zh": "未按时报到次数(近90天)",
            "value": 3.0,
            "contribution": 0.31,
            "direction": "raises",
        }
    ],
    "support": [
        {
            "en": "Social-worker home visit",
            "zh": "禁毒社工上门走访",
            "because": "checkin_missed__count_90d",
        }
    ],
    "model": {"name": "sunshine-relapse", "version": "3", "run_id": "8f1c..."},
    "request_id": "2f6b3c0e9d6f4b7a8e1d2c3b4a5f6e7d",
}


class Factor(BaseModel):
    feature: str
    label_en: str
    label_zh: str
    value: float | str | None
    contribution: float = Field(description="log-odds contribution of this feature")
    direction: str = Field(description="raises or lowers the risk")


class Support(BaseModel):
    en: str
    zh: str
    because: str


class ModelRef(BaseModel):
    name: str
    version: str
    run_id: str


class RiskResult(BaseModel):
    probability: float = Field(description="calibrated probability of the outcome within 12 months")
    tier: str = Field(description="low, medium or high, by the reference cohort's capacity shares")
    percentile: float | None = Field(description="percent of the reference cohort scoring lower")
    raw_score: float = Field(description="log-odds score: base_value + sum of all contributions")
    base_value: float | None = None
    factors: list[Factor] | None = None
    support: list[Support] | None = None


class RiskResponse(RiskResult):
    model_config = ConfigDict(json_schema_extra={"examples": [RISK_EXAMPLE]})
    person_id: str
    task: str
    as_of: dt.date
    history: str = Field(description="'none' when nothing was recorded before as_of")
    model: ModelRef
    request_id: str


class EventIn(BaseModel):
    event_time: str
    event_type: str
    value: float | None = None
    detail: str | None = None


class PersonIn(BaseModel):
    person_id: str
    birth_date: str
    sex: str | None = None
    district: str | None = None
    registration_date: str | None = None
    primary_substance: str | None = None


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="the caller's own reference, echoed back")
    features: dict[str, float | str | None] | None = Field(
        None, description="every model feature by name (null = not observed)"
    )
    person: PersonIn | None = None
    events: list[EventIn] | None = None
    as_of: dt.date | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "id": "roster-17",
                            "person": {
                                "person_id": "X1",
                                "birth_date": "1990-05-01",
                                "sex": "M",
                                "district": "huaxi",
                            },
                            "events": [
                                {
                                    "event_time": "2026-01-10 09:00",
                                    "event_type": "rehab_discharge",
                                    "detail": "compulsory_isolation",
                                },
                                {"event_time": "2026-03-02 10:00", "event_type": "checkin_missed"},
                            ],
                            "as_of": "2026-06-30",
                        }
                    ]
                }
            ]
        }
    )
    records: list[RecordIn]


class ScoredRecord(RiskResult):
    record: int
    id: str | None = None
    history: str


class ScoreResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "relapse",
                    "model": RISK_EXAMPLE["model"],
                    "results": [
                        {
                            "record": 0,
                            "id": "roster-17",
                            "history": "events",
                            **{
                                k: RISK_EXAMPLE[k]
                                for k in (
                                    "probability",
                                    "tier",
                                    "percentile",
                                    "raw_score",
                                    "base_value",
                                    "factors",
                                    "support",
                                )
                            },
                        }
                    ],
                    "request_id": RISK_EXAMPLE["request_id"],
                }
            ]
        }
    )
    task: str
    model: ModelRef
    results: list[ScoredRecord]
    request_id: str


class ModelInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "relapse",
                    "name": "sunshine-relapse",
                    "version": "3",
                    "run_id": "8f1c...",
                    "trained_at": "2026-11-29T01:00:00+00:00",
                    "test_metrics": {"auroc": 0.72, "ece": 0.02},
                }
            ]
        }
    )
    task: str
    name: str
    version: str
    run_id: str
    trained_at: str | None
    test_metrics: dict[str, float]


def scored_entry(
    request: Request, person_id: str | None, task: str, facts: dict, result: dict
) -> Entry:
    """The audit entry of one scored person; the middleware adds who, where and the status."""
    return Entry(
        "",
        request.state.request_id,
        200,
        person_id=person_id,
        task=task,
        model_version=str(facts["version"]),
        probability=result["probability"],
        tier=result["tier"],
    )


def error(status: int, detail: Any) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def champion(loaded: Loaded, task: str) -> tuple[RiskModel, dict]:
    try:
        return loaded.model(task)
    except RegistryError as exc:
        raise error(503, str(exc)) from None


def create_app(
    state: ServiceState, tokens: TokenStore, audit: AuditLog, interventions: list[Intervention]
) -> FastAPI:
    app = FastAPI(
        title="Sunshine Risk",
        description=__doc__ + "\n\nScores support planning by trained staff with human review; "
        "never enforcement, sanctions or exclusion.",
        version="1.0",
    )
    app.state.service = state
    registry = CollectorRegistry()
    requests = Counter(
        "sunshine_requests_total", "requests", ["route", "status"], registry=registry
    )
    latency = Histogram(
        "sunshine_request_seconds",
        "request latency",
        ["route"],
        registry=registry,
        buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    )
    scores = Histogram(
        "sunshine_score",
        "returned probabilities",
        ["task"],
        registry=registry,
        buckets=tuple(i / 10 for i in range(1, 11)),
    )
    bearer = HTTPBearer(auto_error=False)

    def user_of(
        request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> User:
        user = tokens.authenticate(cred.credentials) if cred else None
        if user is None:
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        request.state.user = user
        return user

    def require(*roles: str):
        def dep(user: Annotated[User, Depends(user_of)]) -> User:
            if user.role not in roles:
                raise error(403, f"role {user.role} may not use this endpoint")
            return user

        return dep

    def check_task(task: str) -> str:
        if task not in TASKS:
            raise error(404, {"message": f"unknown task {task!r}", "allowed": list(TASKS)})
        return task

    @app.middleware("http")
    async def observe(request: Request, call_next):
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
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
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - start)
        response.headers["x-request-id"] = request.state.request_id
        if request.url.path.startswith(AUDITED):
            # SQLite may wait on a lock: keep that off the event loop
            await run_in_threadpool(_audit, request, response.status_code, path)
        return response

    def _audit(request: Request, status: int, path: str) -> None:
        user: User | None = getattr(request.state, "user", None)
        entries = request.state.audit or [Entry(path, request.state.request_id, status)]
        params = request.path_params
        for e in entries:
            e.status = status if status >= 400 else e.status
            e.route = path
            e.user = user.user if user else None
            e.role = user.role if user else None
            e.client = request.client.host if request.client else None
            e.person_id = e.person_id or params.get("person_id")
            e.task = e.task or request.query_params.get("task") or params.get("task")
        audit.append(entries)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
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

    def model_ref(facts: dict) -> ModelRef:
        return ModelRef(name=facts["name"], version=str(facts["version"]), run_id=facts["run_id"])

    @app.get(
        "/v1/persons/{person_id}/risk",
        response_model=RiskResponse,
        tags=["risk"],
        responses={404: {"description": "unknown task, or unknown or not visible person"}},
    )
    def person_risk(
        request: Request,
        user: Annotated[User, Depends(user_of)],
        person_id: Annotated[str, PathParam(max_length=64)],
        task: Annotated[str, Query(description="relapse or youth_uptake")] = "relapse",
        as_of: Annotated[
            dt.date | None, Query(description="default: the data's reference date")
        ] = None,
        explain: Annotated[
            int, Query(ge=0, le=MAX_FACTORS, description="top factors")
        ] = DEFAULT_TOP,
    ) -> RiskResponse:
        """A person's risk, its reasons and suggested support, from the event store."""
        loaded = state.loaded  # one snapshot for the whole request
        check_task(task)
        if not PERSON_ID.match(person_id):
            raise error(422, [{"field": "person_id", "reason": "malformed person id"}])
        as_of = as_of or state.as_of
        if as_of > state.as_of:
            raise error(
                422,
                [{"field": "as_of", "reason": f"after the data's reference date {state.as_of}"}],
            )
        if person_id not in state.persons.index or not user.may_read(
            state.persons.at[person_id, "district"], task
        ):
            raise error(404, f"no person {person_id}")
        model, facts = champion(loaded, task)
        frame = state.features(person_id, as_of)
        result = score_frame(model, frame, interventions, explain)[0]
        scores.labels(task).observe(result["probability"])
        request.state.audit = [scored_entry(request, person_id, task, facts, result)]
        return RiskResponse(
            person_id=person_id,
            task=task,
            as_of=as_of,
            history="events" if state.history(person_id, as_of) else "none",
            model=model_ref(facts),
            request_id=request.state.request_id,
            **result,
        )

    @app.post(
        "/v1/score/{task}",
        response_model=ScoreResponse,
        tags=["risk"],
        responses={413: {"description": "over 1,000 records or the body size limit"}},
    )
    def score(
        request: Request,
        task: str,
        body: ScoreRequest,
        user: Annotated[User, Depends(require("analyst"))],
        explain: Annotated[
            int, Query(ge=0, le=MAX_FACTORS, description="top factors per record")
        ] = DEFAULT_TOP,
    ) -> ScoreResponse:
        """Score records sent in the body: feature values, or a person's attributes and events."""
        loaded = state.loaded
        check_task(task)
        if len(body.records) > MAX_RECORDS:
            raise error(413, f"{len(body.records)} records; at most {MAX_RECORDS} per call")
        if not body.records:
            raise error(422, [{"field": "records", "reason": "no records"}])
        model, facts = champion(loaded, task)
        frame, history = _records_frame(body.records, model.features, state)
        try:
            results = score_frame(model, frame, interventions, explain)
        except FeatureInputError as exc:
            raise error(
                422, [{"record": r, "field": f, "reason": why} for r, f, why in exc.problems]
            ) from None
        out = []
        entries = []
        for i, (rec, res) in enumerate(zip(body.records, results, strict=True)):
            scores.labels(task).observe(res["probability"])
            pid = rec.person.person_id if rec.person else rec.id
            entries.append(scored_entry(request, pid, task, facts, res))
            out.append(ScoredRecord(record=i, id=rec.id, history=history[i], **res))
        request.state.audit = entries
        return ScoreResponse(
            task=task, model=model_ref(facts), results=out, request_id=request.state.request_id
        )

    @app.get("/v1/models", response_model=list[ModelInfo], tags=["admin"])
    def list_models(user: Annotated[User, Depends(require("admin"))]) -> list[ModelInfo]:
        """The loaded champions with their versions, training dates and key test metrics."""
        return [
            ModelInfo(
                task=task,
                name=facts["name"],
                version=str(facts["version"]),
                run_id=facts["run_id"],
                trained_at=model.metadata.get("trained_at"),
                test_metrics=model.metadata.get("test_metrics", {}),
            )
            for task, (model, facts) in state.loaded.models.items()
        ]

    @app.post(
        "/v1/admin/reload",
        tags=["admin"],
        responses={
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "status": "reloaded",
                            "models": {"relapse": "4", "youth_uptake": "2"},
                        }
                    }
                }
            },
            503: {
                "description": "registry unreachable; still serving the old models",
                "content": {
                    "application/json": {
                        "example": {"status": "degraded", "reason": "reload failed at ...: ..."}
                    }
                },
            },
        },
    )
    def reload(user: Annotated[User, Depends(require("admin"))]) -> dict:
        """Swap in the registry's current champions; in-flight requests finish on the old ones."""
        try:
            new = load_champions()
            lost = [t for t in state.loaded.models if t not in new.models]
            if lost:  # a served task never silently loses its model
                raise RegistryError(f"no champion for {', '.join(lost)} any more")
        except Exception as exc:  # registry down or no champion: keep serving what we have
            state.degraded = (
                f"reload failed at {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: {exc}"
            )
            return JSONResponse({"status": "degraded", "reason": state.degraded}, status_code=503)
        state.loaded = new
        state.degraded = None
        return {
            "status": "reloaded",
            "models": {t: str(f["version"]) for t, (_, f) in new.models.items()},
        }

    @app.get(
        "/healthz",
        tags=["health"],
        responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
    )
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={
            200: {
                "content": {
                    "application/json": {
                        "example": {
                            "status": "ready",
                            "models": {"relapse": "4", "youth_uptake": "2"},
                        }
                    }
                }
            },
            503: {"content": {"application/json": {"example": {"status": "not ready"}}}},
        },
    )
    def readyz() -> JSONResponse:
        """Readiness: models loaded; 'degraded' with the reason after a failed reload."""
        if not state.loaded.models:
            return JSONResponse({"status": "not ready"}, status_code=503)
        body = (
            {"status": "degraded", "reason": state.degraded}
            if state.degraded
            else {"status": "ready"}
        )
        body["models"] = {t: str(f["version"]) for t, (_, f) in state.loaded.models.items()}
        if state.loaded.missing:
            body["without_champion"] = state.loaded.missing
        return JSONResponse(body)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "content": {
                    "text/plain": {
                        "example": (
                            'sunshine_requests_total{route="/v1/persons/{person_id}/risk",'
                            'status="200"} 42.0\n'
                            'sunshine_score_bucket{le="0.5",task="relapse"} 30.0\n'
                        )
                    }
                }
            }
        },
    )
    def metrics() -> PlainTextResponse:
        """Prometheus metrics: requests and latency by route and status, scores by task."""
        return PlainTextResponse(
            generate_latest(registry).decode(), media_type="text/plain; version=0.0.4"
        )

    return app


def _records_frame(
    records: list[RecordIn], features: list[str], state: ServiceState
) -> tuple[pd.DataFrame, list[str]]:
    """The feature rows for a score call; each bad record and field gives a 422."""
    problems: list[dict] = []
    rows: list[dict | None] = []
    event_records = []
    for i, rec in enumerate(records):
        if rec.features is not None and (rec.person or rec.events):
            problems.append(
                {
                    "record": i,
                    "field": "features",
                    "reason": "send features or person and events, not both",
                }
            )
        elif rec.features is not None:
            unknown = sorted(set(rec.features) - set(features))
            missing = sorted(set(features) - set(rec.features))
            for f in unknown:
                problems.append({"record": i, "field": f, "reason": "unknown feature"})
            for f in missing:
                problems.append(
                    {
                        "record": i,
                        "field": f,
                        "reason": "missing feature (send null if not observed)",
                    }
                )
            rows.append(rec.features)
            continue
        elif rec.person is None:
            problems.append(
                {"record": i, "field": "person", "reason": "send features, or a person with events"}
            )
        else:
            event_records.append(i)
        rows.append(None)
    if problems:
        raise error(422, problems)
    history = ["events"] * len(records)
    if event_records:
        built = _from_events([records[i] for i in event_records], event_records, state)
        for j, i in enumerate(event_records):
            rows[i] = built.iloc[j][features].to_dict()
            history[i] = "events" if records[i].events else "none"
    for i, rec in enumerate(records):
        if rec.features is not None:
            history[i] = "features"
    return pd.DataFrame(rows, columns=features), history


def _from_events(records: list[RecordIn], index: list[int], state: ServiceState) -> pd.DataFrame:
    """Validate and build features for records carrying a person and events, via a small store."""
    persons, events, owner = [], [], []
    for rec, i in zip(records, index, strict=True):
        persons.append({**rec.person.model_dump(), "ethnicity": None})
        for k, e in enumerate(rec.events or []):
            events.append({"person_id": rec.person.person_id, **e.model_dump()})
            owner.append((i, k))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pd.DataFrame(persons).to_csv(d / "persons.csv", index=False)
        cols = ["person_id", "event_time", "event_type", "value", "detail"]
        pd.DataFrame(events, columns=cols).to_csv(d / "events.csv", index=False)
        try:
            store = Store(d, reference_date=state.as_of)
        except ContractError as exc:
            problems = []
            for p in exc.problems:
                if p.file.startswith("persons"):
                    where = {"record": index[p.row - 1], "field": f"person.{p.column}"}
                else:
                    record, k = owner[p.row - 1]
                    where = {"record": record, "field": f"events[{k}].{p.column}"}
                problems.append({**where, "reason": p.reason})
            raise error(422, problems or [{"field": "records", "reason": str(exc)}]) from None
        spine = pd.DataFrame(
            {
                "person_id": [r.person.person_id for r in records],
                "as_of": [r.as_of or state.as_of for r in records],
            }
        )
        return FeatureBuilder(store).build(spine)
