"""Shared FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime; 503 while the model is not loaded and warmed up (async: no thread-pool hop)."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the model is not loaded yet")
    card = runtime.model.card
    request.state.model_version = f"{card.name}/{card.version}"  # the access log's: the model that served it
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
