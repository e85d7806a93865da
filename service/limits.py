"""Limits (OWASP API4): a per-key token-bucket rate limit (429 with Retry-After) and a request body size
limit (413), checked on ``Content-Length`` and again on the bytes actually streamed."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.audit import audit_failure

if TYPE_CHECKING:
    from service.runtime import Runtime


class RateLimiter:
    """Token buckets per key: ``burst`` tokens, refilled at ``rate_per_s``; one token per request."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: int) -> float:
        """Take a token for ``key_id``: 0 when granted, else the seconds until one is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self._rate


async def enforce_rate_limit(request: Request, runtime: Runtime, key_id: int) -> None:
    """429 (audited, from a worker thread) with ``Retry-After`` when ``key_id`` has no token left."""
    wait_s = runtime.rate_limiter.acquire(key_id)
    if wait_s > 0:
        await run_in_threadpool(audit_failure, request, runtime.settings.database_url, "rate_limit",
                                f"api_key:{key_id}", status.HTTP_429_TOO_MANY_REQUESTS)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded for this API key",
                            headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


class BodyTooLarge(Exception):
    """The streamed body passed the limit."""


class BodySizeLimitMiddleware:
    """413 for a body over ``max_bytes``: at once on ``Content-Length``, else when the stream passes it.

    The body is buffered (up to the limit) before the app runs, so the app never sees a partial body.
    ``on_reject(connection, status)`` records the refusal (the audit event).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[HTTPConnection, int], None]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        try:
            if declared is not None and int(declared) > self.max_bytes:
                raise BodyTooLarge
            messages = await self._read_body(receive)
        except BodyTooLarge:
            await self._reject(scope, send)
            return
        except ValueError:
            messages = None  # a malformed Content-Length: the server rejects it itself
        if messages is None:
            await self.app(scope, receive, send)
            return
        pending = list(messages)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> list[Message]:
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise BodyTooLarge
            if not message.get("more_body", False):
                return messages

    async def _reject(self, scope: Scope, send: Send) -> None:
        await run_in_threadpool(self.on_reject, HTTPConnection(scope), status.HTTP_413_CONTENT_TOO_LARGE)
        body = json.dumps({"detail": f"request body exceeds the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": status.HTTP_413_CONTENT_TOO_LARGE,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
