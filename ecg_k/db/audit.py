"""Audit events (IHE BALP-like): who did what to which resource, with what outcome, for which request.

The ``audit_events`` table is append-only in the database itself: the Alembic migration installs triggers
that refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL, INSERT OR REPLACE on SQLite), so neither the ORM
nor raw SQL can alter a recorded event.

An event is written in the caller's transaction, so it commits or rolls back with the action it records;
to audit a failed action, record the failure in a session of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ecg_k.db.models import AuditEvent, AuditOutcome, json_object


def record_audit(
    session: Session,
    actor: str,
    action: str,
    resource: str,
    outcome: AuditOutcome | str,
    request_id: str | None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit event to ``session`` (flushed, so its id is set) and return it.

    ``actor`` names the agent (e.g. ``api_key:3``, ``cli:alice``); ``action`` is a dotted verb
    (``model.promote``); ``resource`` names the object (``model_version:ecg-k-net1d/v2``). ``detail`` is a
    small JSON object and must never hold raw waveforms or direct patient identifiers.
    """
    for field, value in (("actor", actor), ("action", action), ("resource", resource)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"audit {field} must be a non-empty string, got {value!r}")
    try:
        outcome = AuditOutcome(outcome)
    except ValueError:
        allowed = ", ".join(member.value for member in AuditOutcome)
        raise ValueError(f"audit outcome must be one of {allowed}, got {outcome!r}") from None
    if detail is not None:
        json_object(detail, "audit detail")
    event = AuditEvent(
        actor=actor, action=action, resource=resource, outcome=outcome, request_id=request_id, detail=detail
    )
    session.add(event)
    session.flush()
    return event
