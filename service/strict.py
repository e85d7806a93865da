"""Strict request bodies: what a route reads is exactly what the sender meant, or the request is refused.

- JSON routes take ``application/json`` only (415 otherwise): a form or a text body is never read as JSON.
- No ``Content-Encoding`` but ``identity`` (415, :class:`service.limits.BodySizeLimitMiddleware`, before any
  route reads the body): a gzip body is never read as if it were plain.
- No JSON object may repeat a key (422): ``{"sampling_rate": -1, "sampling_rate": 500}`` has no single
  meaning, and parsers disagree on which one wins.

:data:`JsonBody` runs after authentication (so a refusal is audited under its key) and before the body is
validated.
"""

from __future__ import annotations

import json
import re

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from service.audit import audit_failure
from service.auth import Caller
from service.deps import RuntimeDep

JSON_MEDIA_TYPE = "application/json"
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')
"""Strings and structural characters of a JSON text; numbers and literals (the bulk of an ECG) are skipped."""


def duplicate_keys(body: bytes) -> list[str]:
    """Keys that repeat within one JSON object of ``body`` (after unescaping, so ``"\\u0049"`` repeats
    ``"I"``). Scans structure only (about 1 ms for a 12-lead 10 s ECG, against ~50 ms for ``json.loads``);
    a body that is not well-formed is left for the parser to refuse."""
    objects: list[set[str] | None] = []  # one entry per open container: a key set for objects, None for arrays
    repeated: list[str] = []
    pending: bytes | None = None
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token == b":":
            if pending is not None and objects and objects[-1] is not None:
                try:
                    key = json.loads(pending)
                except ValueError:
                    return repeated
                if key in objects[-1]:
                    repeated.append(key)
                objects[-1].add(key)
            pending = None
            continue
        pending = token if token.startswith(b'"') else None
        if token in (b"{", b"["):
            objects.append(set() if token == b"{" else None)
        elif token in (b"}", b"]"):
            if not objects:
                return repeated
            objects.pop()
    return repeated


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _refuse(request: Request, runtime: RuntimeDep, status_code: int, reason: str, message: str) -> None:
    """Audit the refusal under the caller's key (in a worker thread), then raise it with its reason."""
    await run_in_threadpool(audit_failure, request, runtime.settings.database_url, "request.body",
                            request.url.path, status_code, {"reason": reason})
    raise HTTPException(status_code, {"reason": reason, "message": message})


async def json_body(request: Request, runtime: RuntimeDep, principal: Caller) -> None:
    """415 unless the body is ``application/json``; 422 ``duplicate_key`` when an object repeats a key."""
    media_type = _media_type(request)
    if media_type != JSON_MEDIA_TYPE:
        await _refuse(request, runtime, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                      f"Content-Type must be {JSON_MEDIA_TYPE}, got {media_type[:60]!r}")
    repeated = duplicate_keys(await request.body())
    if repeated:
        await _refuse(request, runtime, status.HTTP_422_UNPROCESSABLE_CONTENT, "duplicate_key",
                      f"JSON object keys repeat: {sorted(set(repeated))[:5]!r:.200}")


JsonBody = Depends(json_body)
