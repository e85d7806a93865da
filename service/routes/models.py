"""``/v1/models``: the registered model versions, which one this process serves, and (admin) a reload."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from ecg_k.db.models import ModelVersion
from ecg_k.db.registry import list_versions
from service.audit import audited
from service.auth import Admin, Caller
from service.deps import RuntimeDep
from service.runtime import ChampionWatcher, ModelRefusedError
from service.schemas import ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])


def _model_out(version: ModelVersion, serving_id: int) -> ModelOut:
    return ModelOut(name=version.name, version=version.version, sha256=version.sha256, status=version.status.value,
                    serving=version.id == serving_id, created_at=version.created_at)


@router.get("")
def list_models(request: Request, runtime: RuntimeDep, principal: Caller) -> list[ModelOut]:
    """Every registered version, oldest first."""
    with audited(request, runtime.settings.database_url, "model.list", "model_versions") as scope:
        return [_model_out(v, runtime.model_version_id) for v in list_versions(scope.session)]


@router.post("/reload", responses={409: {"description": "Pinned with --model, or the champion was refused."}})
def reload_champion(request: Request, runtime: RuntimeDep, principal: Admin) -> ModelOut:
    """Serve the registry's champion now instead of at the next poll (admin); returns the served version.

    409 when the process is pinned to a model file, or when the champion cannot be served (the reason is
    given; the previous model keeps serving). A refused champion is retried here, not by the poller.
    """
    with audited(request, runtime.settings.database_url, "model.reload", "model_versions") as scope:
        watcher: ChampionWatcher | None = request.app.state.watcher
        if watcher is None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                "this process serves a model pinned with --model; restart it to change the model")
        try:
            serving = watcher.check(retry_refused=True)
        except ModelRefusedError as err:
            raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
        version = scope.session.get(ModelVersion, serving.model_version_id)
        assert version is not None
        scope.resource = f"model_version:{version.name}/{version.version}"
        return _model_out(version, serving.model_version_id)
