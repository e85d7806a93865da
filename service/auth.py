"""API-key authentication (header ``X-API-Key`` by default) and roles, as ``Annotated`` dependencies.

401: no key, or a key that is malformed, unknown, wrong or revoked. 403: a valid key whose role may not
call the route. Every request checks its key against the database (one indexed lookup and one HMAC: see
``ecg_k.db.api_keys``); nothing is cached, so a revoked key is refused on its next request by every worker.

Failed authentications are counted per source address (:class:`service.limits.FailedAuthLimiter`); a
source that has spent them is refused before routing by :class:`service.limits.BlockedSourceMiddleware`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from ecg_k.db.api_keys import key_actor, verify_api_key
from ecg_k.db.models import Role
from ecg_k.db.session import session_scope
from ecg_k.settings import get_settings
from service.audit import audit_failure
from service.deps import RuntimeDep
from service.limits import enforce_rate_limit, source_of


@dataclass(frozen=True)
class Principal:
    """The caller: an active API key's id and role."""

    key_id: int
    role: Role

    @property
    def actor(self) -> str:
        return key_actor(self.key_id)


api_key_scheme = APIKeyHeader(name=get_settings().api_key_header, auto_error=False,
                              description="API key (`ecgk keys create --role client|reviewer|admin`).")


def _verify(database_url: str, api_key: str, server_key: bytes) -> Principal | None:
    """The principal of ``api_key`` from the database (blocking I/O: run it off the event loop)."""
    with session_scope(database_url) as session:
        key = verify_api_key(session, api_key, server_key)
        return None if key is None else Principal(key.id, key.role)


async def _refuse(request: Request, database_url: str, resource: str, status_code: int, message: str,
                  detail: dict[str, str] | None = None) -> NoReturn:
    """Audit the refusal (in a worker thread: it writes to the database), then raise it."""
    await run_in_threadpool(audit_failure, request, database_url, "auth", resource, status_code, detail)
    raise HTTPException(status_code, message)


async def authenticate(
    request: Request, runtime: RuntimeDep, api_key: Annotated[str | None, Depends(api_key_scheme)]
) -> Principal:
    """The caller of this request, rate-limited per key; 401 (audited) without a valid key."""
    database_url = runtime.settings.database_url
    source = source_of(request)
    if not api_key:
        runtime.auth_failures.failed(source)
        await _refuse(request, database_url, "api_key", status.HTTP_401_UNAUTHORIZED,
                      f"missing API key header {api_key_scheme.model.name}")
    principal = await run_in_threadpool(_verify, database_url, api_key, runtime.server_key)
    if principal is None:
        runtime.auth_failures.failed(source, api_key)
        await _refuse(request, database_url, "api_key", status.HTTP_401_UNAUTHORIZED,
                      "invalid or revoked API key")
    runtime.auth_failures.succeeded(api_key)
    request.state.actor = principal.actor
    await enforce_rate_limit(request, runtime, principal.key_id)
    return principal


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits only keys with one of ``roles`` (403, audited, for the others)."""
    allowed = ", ".join(role.value for role in roles)

    async def dependency(request: Request, runtime: RuntimeDep,
                         principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            await _refuse(request, runtime.settings.database_url, request.url.path, status.HTTP_403_FORBIDDEN,
                          f"role {principal.role.value} may not call this route (needs {allowed})",
                          {"role": principal.role.value})
        return principal

    return dependency


Caller = Annotated[Principal, Depends(authenticate)]
Client = Annotated[Principal, Depends(require_roles(Role.CLIENT))]
Reviewer = Annotated[Principal, Depends(require_roles(Role.REVIEWER))]
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
