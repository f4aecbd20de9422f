"""Liveness, readiness and Prometheus metrics, open to anyone (they hold no personal data).

Answered on the event loop, never queued behind the work in threads, and never shed when the
service is busy: a probe with a short timeout must not restart a server for being busy."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from serving.api.deps import Services, services

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"status": "ready", "models": {"relapse": "4", "youth_uptake": "2"}}
                }
            }
        },
        503: {"content": {"application/json": {"example": {"status": "not ready"}}}},
    },
)
async def readyz(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """Readiness: models loaded; 'degraded' with the reasons while a reload, a data refresh
    or following the other workers fails, 'ready' again once they work."""
    state = svc.state
    if not state.loaded.models:
        return JSONResponse({"status": "not ready"}, status_code=503)
    reason = svc.degraded
    body = {"status": "degraded", "reason": reason} if reason else {"status": "ready"}
    body["models"] = {t: str(f["version"]) for t, (_, f) in state.loaded.models.items()}
    body["data"] = {"reference_date": str(state.as_of), "loaded_at": state.built_at}
    # which process answered, and since when its models: what tells workers apart
    body["worker"] = {"pid": os.getpid(), "models_loaded_at": state.loaded.loaded_at}
    if state.loaded.missing:
        body["without_champion"] = state.loaded.missing
    return JSONResponse(body)


@router.get(
    "/metrics",
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
def metrics(svc: Annotated[Services, Depends(services)]) -> PlainTextResponse:
    """Prometheus metrics: requests and latency by route and status, scores by task."""
    return PlainTextResponse(svc.metrics.text(), media_type="text/plain; version=0.0.4")
