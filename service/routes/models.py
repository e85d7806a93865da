"""``GET /v1/models``: the registered model versions and which one this process serves."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ecg_k.db.registry import list_versions
from service.audit import audited
from service.auth import Caller
from service.deps import RuntimeDep
from service.schemas import ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(request: Request, runtime: RuntimeDep, principal: Caller) -> list[ModelOut]:
    """Every registered version, oldest first."""
    with audited(request, runtime.settings.database_url, "model.list", "model_versions") as scope:
        return [
            ModelOut(name=v.name, version=v.version, sha256=v.sha256, status=v.status.value,
                     serving=v.id == runtime.model_version_id, created_at=v.created_at)
            for v in list_versions(scope.session)
        ]
