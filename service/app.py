"""The FastAPI app: ``create_app`` builds it; its lifespan migrates the database, loads and warms up the
model, and only then reports ready; unless a model is pinned (``--model``), a background task then checks the
registry every ``model_poll_s`` seconds and hot-swaps a new champion in (:class:`service.runtime.ChampionWatcher`).
Run with ``ecgk serve`` (which adds the request-head cap and deadline of :mod:`service.server`); a bare
``uvicorn service.app:create_app --factory`` runs without them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from ecg_k import __version__
from ecg_k.db.migrate import upgrade
from ecg_k.db.session import dispose_engines
from ecg_k.settings import Settings, get_settings
from service.audit import audit_failure
from service.limits import BlockedSourceMiddleware, BodySizeLimitMiddleware
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.routes import fhir, health, inference_v2, labs, metrics, models, predictions
from service.runtime import ChampionWatcher, ModelRefusedError, Runtime, load_runtime

logger = logging.getLogger(__name__)

DESCRIPTION = """K+ (mmol/L) estimated from the ECG, with a prediction interval, a hypo/hyperkalemia flag, the
shot region of the estimate and a FHIR R4 Observation. Send the API key in the `X-API-Key` header.
An estimate is not a laboratory measurement."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app for ``settings`` (default: the process settings from ``ECGK_*``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade, settings.database_url)
        runtime = await run_in_threadpool(load_runtime, settings)
        publish_model(runtime)
        app.state.runtime = runtime
        app.state.watcher = None if settings.model_path is not None else ChampionWatcher(app.state, publish_model)
        poller = None
        if app.state.watcher is not None and settings.model_poll_s > 0:
            poller = asyncio.create_task(watch_champion(app.state.watcher, settings.model_poll_s))
        try:
            yield
        finally:
            app.state.runtime.ready = False
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            dispose_engines()

    def publish_model(runtime: Runtime) -> None:
        """The served model in the Prometheus ``ecgk_model_info``."""
        card = runtime.model.card
        app_metrics.model.info({"name": card.name, "version": card.version, "sha256": card.onnx.sha256,
                                "providers": ",".join(runtime.model.providers)})

    app = FastAPI(title="ecg-k inference API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app_metrics = Metrics()
    app.state.metrics = app_metrics
    for module in (predictions, fhir, labs, models, health, metrics, inference_v2):
        app.include_router(module.router)

    def reject_body(connection: HTTPConnection, status_code: int) -> None:
        audit_failure(connection, settings.database_url, "request.body", connection.url.path, status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 for a request that fails the schema, audited when it reached an authenticated route."""
        if getattr(request.state, "actor", None) is not None:
            await run_in_threadpool(audit_failure, request, settings.database_url, "request.validate",
                                    request.url.path, 422)
        errors = [{key: error[key] for key in ("type", "loc", "msg") if key in error} for error in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """HTTP errors as FastAPI answers them; a 400 (a body the parser refuses, such as a malformed multipart
        form) is raised before any route runs, so it is audited here. Routes audit their own errors."""
        if exc.status_code == status.HTTP_400_BAD_REQUEST:
            await run_in_threadpool(audit_failure, request, settings.database_url, "request.parse",
                                    request.url.path, exc.status_code)
        if inference_v2.is_protocol_path(request.url.path):
            return inference_v2.protocol_error(exc.status_code, exc.detail, exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    @app.exception_handler(sa.exc.TimeoutError)
    async def database_unavailable(request: Request, exc: sa.exc.SQLAlchemyError) -> JSONResponse:
        """503 while the database cannot be reached (or no connection frees up in time): the request's
        transaction did not commit, so nothing was stored (and its audit event could not be written either;
        the log line says so)."""
        orig = getattr(exc, "orig", None)
        logger.error("database unavailable during %s %s: %s", request.method, request.url.path,
                     type(orig).__name__ if orig is not None else type(exc).__name__)
        return JSONResponse({"detail": "database unavailable: nothing was stored; retry later"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, on_reject=reject_body,
                       timeout_s=settings.body_timeout_s)
    app.add_middleware(BlockedSourceMiddleware, runtime=lambda: getattr(app.state, "runtime", None),
                       api_key_header=settings.api_key_header, delay_s=settings.auth_blocked_delay_s)
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics)
    return app


async def watch_champion(watcher: ChampionWatcher, interval_s: float) -> None:
    """Check the registry's champion every ``interval_s`` seconds, in a worker thread, until cancelled.

    Nothing here may end the loop: a refused model was logged by the watcher, an unreachable database is
    retried at the next tick, and anything else is logged with its traceback.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(watcher.check)
        except ModelRefusedError:
            pass
        except sa.exc.SQLAlchemyError as err:
            logger.warning("champion check skipped: database unavailable (%s)", type(err).__name__)
        except Exception:
            logger.exception("champion check failed; the served model is unchanged")
