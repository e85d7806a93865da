"""Limits (OWASP API4): a per-key token-bucket rate limit (429 with Retry-After), a per-source limit on
failed authentication (:class:`FailedAuthLimiter`), and the body guard (:class:`BodySizeLimitMiddleware`):
a size limit (413, checked on ``Content-Length`` and again on the bytes actually streamed), a deadline for
the whole body (408), no ``Content-Encoding`` (415), and a client that leaves mid-body recorded as 499."""

from __future__ import annotations

import asyncio
import hashlib
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


class FailedAuthLimiter:
    """Failed authentications per source address, so that refusing a stranger costs microseconds.

    A token bucket per source (``burst`` tokens, refilled at ``rate_per_s``): each failed authentication
    takes a token and is audited one by one. A source whose bucket is empty is *blocked*: its requests that
    would need a key check get 429 at once, with no key check and no database write; those refusals are
    counted and reported as one aggregated audit event per source, the first at once and then at most one
    per ``report_s``. At most ``max_sources`` sources are tracked (those whose bucket has refilled are
    forgotten first), so a flood of addresses cannot grow it without bound.
    """

    def __init__(self, rate_per_s: float, burst: int, report_s: float = 60.0, max_sources: int = 10_000) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._report_s = report_s
        self._max_sources = max_sources
        self._sources: dict[str, list[float]] = {}  # source -> [tokens, last refill, suppressed, last report]
        self._known: dict[str, None] = {}  # sha256 of keys that authenticated here, oldest first
        self._lock = threading.Lock()

    def _entry(self, source: str, now: float) -> list[float]:
        entry = self._sources.get(source)
        if entry is None:
            if len(self._sources) >= self._max_sources:
                self._forget_rested(now)
            entry = self._sources[source] = [self._burst, now, 0.0, -math.inf]
        entry[0] = min(self._burst, entry[0] + (now - entry[1]) * self._rate)
        entry[1] = now
        return entry

    def _forget_rested(self, now: float) -> None:
        """Drop the sources whose bucket has refilled and that owe no report; else the oldest half."""
        rested = [s for s, (tokens, last, suppressed, _) in self._sources.items()
                  if suppressed == 0 and tokens + (now - last) * self._rate >= self._burst]
        if not rested:
            rested = sorted(self._sources, key=lambda s: self._sources[s][1])[: len(self._sources) // 2]
        for source in rested:
            del self._sources[source]

    def blocked(self, source: str) -> float:
        """0 when ``source`` may try a key; else the seconds until it may again."""
        with self._lock:
            tokens = self._entry(source, time.monotonic())[0]
            return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def failed(self, source: str, api_key: str | None = None) -> None:
        """Count one failed authentication of ``source`` (and forget ``api_key`` as a known key)."""
        with self._lock:
            entry = self._entry(source, time.monotonic())
            entry[0] = max(0.0, entry[0] - 1)
            if api_key:
                self._known.pop(_digest(api_key), None)

    def succeeded(self, api_key: str) -> None:
        """Remember that ``api_key`` authenticated: a blocked source that sends it still reaches the key
        check (which verifies it again against the database, so a revocation still holds at once)."""
        with self._lock:
            self._known[_digest(api_key)] = None
            if len(self._known) > self._max_sources:
                del self._known[next(iter(self._known))]

    def known(self, api_key: str) -> bool:
        """Whether ``api_key`` has authenticated in this process (and not failed since)."""
        with self._lock:
            return _digest(api_key) in self._known

    def suppressed(self, source: str) -> int:
        """Count one blocked request; the number to report now (0 while the last report is recent)."""
        now = time.monotonic()
        with self._lock:
            entry = self._entry(source, now)
            entry[2] += 1
            if now - entry[3] < self._report_s:
                return 0
            count, entry[2], entry[3] = int(entry[2]), 0.0, now
            return count


def _digest(api_key: str) -> str:
    """What a known key is remembered by: its sha256 (the plaintext is never kept)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def source_of(connection: HTTPConnection) -> str:
    """The peer address of the connection (behind a proxy, the proxy's: run one limiter per proxy)."""
    return connection.client.host if connection.client is not None else "unknown"


class BlockedSourceMiddleware:
    """429 with ``Retry-After`` for an API request (``/v1/...``, ``/v2/...``) from a source that has spent its failed
    authentications (:class:`FailedAuthLimiter`) and carries no key that has authenticated in this process.

    Answered before routing, body reading or any dependency runs, so a refusal never takes a worker thread
    or a database connection; the refusals are audited as one aggregated ``auth.suppressed`` event per
    source per minute (with their count), not one row each. The answer is held back ``delay_s`` (a tarpit,
    costing the server only a timer): a sender that waits for its answers, as HTTP clients do, then sends at
    most one request per ``delay_s`` per connection, instead of as many as the server can parse.
    """

    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime | None], api_key_header: str,
                 delay_s: float) -> None:
        self.app = app
        self.runtime = runtime
        self.api_key_header = api_key_header.lower().encode()
        self.delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime() if scope["type"] == "http" and scope["path"].startswith(("/v1/", "/v2/")) else None
        if runtime is None or not runtime.ready:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        source = source_of(connection)
        wait_s = runtime.auth_failures.blocked(source)
        key = dict(scope["headers"]).get(self.api_key_header, b"")
        if wait_s <= 0 or (key and runtime.auth_failures.known(key.decode("latin-1"))):
            await self.app(scope, receive, send)
            return
        count = runtime.auth_failures.suppressed(source)
        if count:
            await run_in_threadpool(audit_failure, connection, runtime.settings.database_url, "auth.suppressed",
                                    "api_key", status.HTTP_429_TOO_MANY_REQUESTS,
                                    {"source": source, "refused_since_last_report": count})
        await asyncio.sleep(self.delay_s)
        body = b'{"detail":"too many failed authentications from this address"}'
        await send({"type": "http.response.start", "status": status.HTTP_429_TOO_MANY_REQUESTS,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(max(1, math.ceil(wait_s))).encode())]})
        await send({"type": "http.response.body", "body": body})


async def enforce_rate_limit(request: Request, runtime: Runtime, key_id: int) -> None:
    """429 (audited, from a worker thread) with ``Retry-After`` when ``key_id`` has no token left."""
    wait_s = runtime.rate_limiter.acquire(key_id)
    if wait_s > 0:
        await run_in_threadpool(audit_failure, request, runtime.settings.database_url, "rate_limit",
                                f"api_key:{key_id}", status.HTTP_429_TOO_MANY_REQUESTS)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded for this API key",
                            headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


CLIENT_CLOSED_REQUEST = 499
"""Status recorded (never sent) for a client that disconnected before its body was complete (nginx's code)."""
DISCONNECTED = "client_disconnected"
"""Key of ``scope["state"]`` set when the client left mid-body (the access log and metrics report 499)."""


class BodyRefused(Exception):
    """The body cannot be accepted: ``status`` and the message sent back."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class ClientLeft(Exception):
    """The client disconnected before its body was complete."""


class BodySizeLimitMiddleware:
    """The body guard: 413 for a body over ``max_bytes`` (at once on ``Content-Length``, else when the stream
    passes it), 415 for any ``Content-Encoding`` but identity, 408 when the body is not complete within
    ``timeout_s`` of the request head, and a client that disconnects mid-body ends the request as 499 (one
    access-log line, the metric, an audit event; never a 500).

    The body is buffered (up to the limit) before the app runs, so the app never sees a partial body.
    ``on_reject(connection, status)`` records the refusal (the audit event).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[HTTPConnection, int], None],
                 timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        try:
            if encoding not in (b"", b"identity"):
                raise BodyRefused(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                                  "Content-Encoding is not supported; send the body uncompressed")
            if declared is not None and int(declared) > self.max_bytes:
                raise BodyRefused(status.HTTP_413_CONTENT_TOO_LARGE,
                                  f"request body exceeds the limit of {self.max_bytes} bytes")
            async with asyncio.timeout(self.timeout_s):
                messages = await self._read_body(receive)
        except BodyRefused as refused:
            await self._reject(scope, send, refused.status_code, str(refused))
            return
        except TimeoutError:
            await self._reject(scope, send, status.HTTP_408_REQUEST_TIMEOUT,
                               f"the request body was not complete within {self.timeout_s:g} s")
            return
        except ClientLeft:
            scope["state"][DISCONNECTED] = True
            await run_in_threadpool(self.on_reject, HTTPConnection(scope), CLIENT_CLOSED_REQUEST)
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
            if message["type"] == "http.disconnect":
                raise ClientLeft
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise BodyRefused(status.HTTP_413_CONTENT_TOO_LARGE,
                                  f"request body exceeds the limit of {self.max_bytes} bytes")
            if not message.get("more_body", False):
                return messages

    async def _reject(self, scope: Scope, send: Send, status_code: int, message: str) -> None:
        await run_in_threadpool(self.on_reject, HTTPConnection(scope), status_code)
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": status_code,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
