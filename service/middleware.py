"""Request ids (``X-Request-Id`` echoed when safe, else generated), per-route metrics and access logs that
carry no identifiers (patient, API key, client address), query strings or signal values: method, route
template, status, latency, request id and the model version that served it (JSON fields: service.logs)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.limits import CLIENT_CLOSED_REQUEST, DISCONNECTED
from service.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ROUTE = "unmatched"

logger = logging.getLogger("service.access")


class RequestContextMiddleware:
    """Give each request an id, time it, count it by route template and status, and log one line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"")
        request_id = incoming.decode() if _SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (REQUEST_ID_HEADER.lower().encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["state"].get(DISCONNECTED):
                status = CLIENT_CLOSED_REQUEST
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            model_version = scope["state"].get("model_version")
            latency_ms = round(elapsed * 1e3, 1)
            logger.info("%s %s %d %.1fms request_id=%s model=%s", method, route, status, latency_ms,
                        request_id, model_version,
                        extra={"request_id": request_id, "method": method, "route": route, "status": status,
                               "latency_ms": latency_ms, "model_version": model_version})
