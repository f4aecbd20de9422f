"""Administration: the loaded models, and reloading the registry's champions."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from features.errors import RegistryError
from serving.auth import User
from serving.deps import Services, require, services
from serving.schemas import ModelInfo, refusals
from serving.state import load_champions

router = APIRouter(tags=["admin"])


@router.get("/v1/models", response_model=list[ModelInfo], responses=refusals(401, 403))
def list_models(
    svc: Annotated[Services, Depends(services)], user: Annotated[User, Depends(require("admin"))]
) -> list[ModelInfo]:
    """The loaded champions with their versions, training dates and key test metrics."""
    return [
        ModelInfo(
            task=task,
            name=facts["name"],
            version=str(facts["version"]),
            run_id=facts["run_id"],
            trained_at=model.metadata.get("trained_at"),
            test_metrics=model.metadata.get("test_metrics", {}),
            monitoring=svc.state.loaded.monitoring.get(task),
        )
        for task, (model, facts) in svc.state.loaded.models.items()
    ]


@router.post(
    "/v1/admin/reload",
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
        **refusals(401, 403),
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
def reload(
    svc: Annotated[Services, Depends(services)], user: Annotated[User, Depends(require("admin"))]
) -> dict:
    """Swap in the registry's current champions; in-flight requests finish on the old ones."""
    state = svc.state
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
    state.refresh_caseloads()
    svc.metrics.observe_monitoring(new.monitoring)
    return {
        "status": "reloaded",
        "models": {t: str(f["version"]) for t, (_, f) in new.models.items()},
    }
