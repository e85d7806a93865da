"""``/health/live`` (the process is up) and ``/health/ready`` (model warmed up and database reachable)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from service.runtime import Runtime
from service.schemas import Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> Health:
    """Always 200 while the process serves HTTP."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": Health, "description": "Not ready."}})
def ready(request: Request) -> JSONResponse:
    """200 once the model is loaded and warmed up and the database answers; 503 otherwise."""
    problem = readiness_problem(request)
    if problem is None:
        return JSONResponse(Health(status="ok").model_dump())
    return JSONResponse(Health(status="unavailable", detail=problem).model_dump(),
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def readiness_problem(request: Request) -> str | None:
    """Why this process cannot serve now (model not loaded, database unreachable), or ``None`` when it can."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        return "model not loaded"
    if not runtime.database_ok():
        return "database unreachable"
    return None
