"""Administration: the loaded models, and reloading the registry's champions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from serving.access.roles import User
from serving.api.deps import Services, require, services
from serving.api.schemas import ModelInfo, refusals

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
    """Swap in the registry's current champions, here and, within seconds, in every other
    worker and host that shares the service's database; in-flight requests finish on the old
    ones."""
    reason = svc.reload()
    if reason is not None:
        return JSONResponse({"status": "degraded", "reason": reason}, status_code=503)
    svc.reload_seen = svc.web.request_reload()
    return {
        "status": "reloaded",
        "models": {t: str(f["version"]) for t, (_, f) in svc.state.loaded.models.items()},
    }
