"""One audit event per request that touches data: in the action's own transaction when it succeeds, in a
session of its own when it fails (so a rolled-back transaction never takes its audit row with it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import HTTPException
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from ecg_k.db.audit import record_audit
from ecg_k.db.group_commit import group_committer
from ecg_k.db.models import AuditOutcome
from ecg_k.db.session import session_scope

ANONYMOUS = "anonymous"
T = TypeVar("T")

logger = logging.getLogger(__name__)


def request_id_of(connection: HTTPConnection) -> str | None:
    """The request id the middleware gave this request."""
    return getattr(connection.state, "request_id", None)


def actor_of(connection: HTTPConnection) -> str:
    """``api_key:<id>`` once authenticated, else ``anonymous``."""
    return getattr(connection.state, "actor", ANONYMOUS)


def outcome_of(status_code: int) -> AuditOutcome:
    """401/403/404/413/429 are refusals; other errors are failures."""
    return AuditOutcome.DENIED if status_code in (401, 403, 404, 413, 429) else AuditOutcome.FAILURE


def audit_failure(
    connection: HTTPConnection, database_url: str, action: str, resource: str, status_code: int,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a refused or failed request in a transaction of its own."""
    with session_scope(database_url) as session:
        record_audit(session, actor_of(connection), action, resource, outcome_of(status_code),
                     request_id_of(connection), {"status": status_code, **(detail or {})})


@dataclass
class AuditScope:
    """A transaction plus the audit event it will commit with; the route may refine resource and detail."""

    session: Session
    resource: str
    detail: dict[str, Any] = field(default_factory=dict)


@contextmanager
def audit_failures(connection: HTTPConnection, database_url: str, action: str,
                   resource: Callable[[], str]) -> Iterator[None]:
    """Record an error of the block (the HTTP status and the 422 reason, if any, else a 500) in a transaction
    of its own, on ``resource()`` as it stands then, and re-raise it."""
    try:
        yield
    except HTTPException as err:
        reason = err.detail.get("reason") if isinstance(err.detail, dict) else None
        audit_failure(connection, database_url, action, resource(), err.status_code,
                      {"reason": reason} if reason else None)
        raise
    except Exception as err:
        audit_failure(connection, database_url, action, resource(), 500, {"error": type(err).__name__})
        raise


@contextmanager
def audited(connection: HTTPConnection, database_url: str, action: str, resource: str) -> Iterator[AuditScope]:
    """Run the block in one transaction that ends with a success event; on an error, roll back and record
    the failure (with the HTTP status and the 422 reason, if any) in a separate transaction."""
    scope: AuditScope | None = None
    with audit_failures(connection, database_url, action, lambda: scope.resource if scope else resource):
        with session_scope(database_url) as session:
            scope = AuditScope(session, resource)
            yield scope
            record_audit(session, actor_of(connection), action, scope.resource, AuditOutcome.SUCCESS,
                         request_id_of(connection), scope.detail or None)


def commit_audited(connection: HTTPConnection, database_url: str, action: str, resource: str,
                   work: Callable[[AuditScope], T]) -> T:
    """``work``'s writes and their success event, group-committed (:mod:`ecg_k.db.group_commit`) with those of
    concurrent requests; returns ``work``'s result once the transaction is committed. Wrap the call in
    :func:`audit_failures` so that an error is audited as in :func:`audited`."""
    actor, request_id = actor_of(connection), request_id_of(connection)

    def unit(session: Session) -> T:
        scope = AuditScope(session, resource)
        result = work(scope)
        record_audit(session, actor, action, scope.resource, AuditOutcome.SUCCESS, request_id, scope.detail or None)
        return result

    return group_committer(database_url).run(unit)
