"""API-key authentication (header ``X-API-Key`` by default) and roles, as ``Annotated`` dependencies.

401: no key, or a key that is malformed, unknown, wrong or revoked. 403: a valid key whose role may not
call the route. Verified keys are trusted for ``api_key_cache_s`` (scrypt costs ~80 ms), keyed by a sha256
of the key so the plaintext is never kept; a revocation therefore takes effect within that time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from ecg_k.db.api_keys import verify_api_key
from ecg_k.db.models import Role
from ecg_k.db.session import session_scope
from ecg_k.settings import get_settings
from service.audit import audit_failure
from service.auth_cache import Principal
from service.deps import RuntimeDep
from service.limits import enforce_rate_limit


api_key_scheme = APIKeyHeader(name=get_settings().api_key_header, auto_error=False,
                              description="API key (`ecgk keys create --role client|reviewer|admin`).")


def authenticate(
    request: Request, runtime: RuntimeDep, api_key: Annotated[str | None, Depends(api_key_scheme)]
) -> Principal:
    """The caller of this request, rate-limited per key; 401 (audited) without a valid key."""
    database_url = runtime.settings.database_url
    if not api_key:
        audit_failure(request, database_url, "auth", "api_key", status.HTTP_401_UNAUTHORIZED)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing API key header {api_key_scheme.model.name}")
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    principal = runtime.key_cache.get(digest)
    if principal is None:
        with session_scope(database_url) as session:
            key = verify_api_key(session, api_key)
            if key is not None:
                principal = Principal(key.id, key.role)
        if principal is None:
            audit_failure(request, database_url, "auth", "api_key", status.HTTP_401_UNAUTHORIZED)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key")
        runtime.key_cache.put(digest, principal)
    request.state.actor = principal.actor
    enforce_rate_limit(request, runtime, principal.key_id)
    return principal


def require_roles(*roles: Role) -> Callable[..., Principal]:
    """A dependency that admits only keys with one of ``roles`` (403, audited, for the others)."""
    allowed = ", ".join(role.value for role in roles)

    def dependency(request: Request, runtime: RuntimeDep,
                   principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            audit_failure(request, runtime.settings.database_url, "auth", request.url.path,
                          status.HTTP_403_FORBIDDEN, {"role": principal.role.value})
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {principal.role.value} may not call this route (needs {allowed})")
        return principal

    return dependency


Caller = Annotated[Principal, Depends(authenticate)]
Client = Annotated[Principal, Depends(require_roles(Role.CLIENT))]
Reviewer = Annotated[Principal, Depends(require_roles(Role.REVIEWER))]
