"""The audit trail is append-only in the database itself: UPDATE and DELETE fail through raw SQL and through
the ORM, on SQLite and PostgreSQL, and the recorded rows stay exactly as they were."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ecg_k.db.audit import record_audit
from ecg_k.db.models import AuditEvent, AuditOutcome
from ecg_k.db.session import get_engine, session_scope


def _seed(db_url: str) -> list[tuple[Any, ...]]:
    """Two recorded events; returns the rows as stored."""
    with session_scope(db_url) as session:
        record_audit(session, "api_key:1", "prediction.create", "prediction:1", AuditOutcome.SUCCESS, "req-1",
                     {"flag": "HH", "latency_ms": 12.5})
        record_audit(session, "api_key:2", "prediction.read", "prediction:1", "denied", "req-2")
    return _rows(db_url)


def _rows(db_url: str) -> list[tuple[Any, ...]]:
    with get_engine(db_url).connect() as connection:
        return [tuple(row) for row in connection.execute(sa.select(AuditEvent.__table__).order_by("id"))]


def test_record_audit_stores_an_event(db_url: str) -> None:
    rows = _seed(db_url)
    assert len(rows) == 2
    with session_scope(db_url) as session:
        first, second = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        assert (first.actor, first.action, first.resource, first.outcome, first.request_id) == (
            "api_key:1", "prediction.create", "prediction:1", AuditOutcome.SUCCESS, "req-1")
        assert first.detail == {"flag": "HH", "latency_ms": 12.5}
        assert second.outcome is AuditOutcome.DENIED and second.detail is None
        assert first.recorded_at <= second.recorded_at


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("", "a", "r", "success", None), "actor"),
        (("u", " ", "r", "success", None), "action"),
        (("u", "a", "", "success", None), "resource"),
        (("u", "a", "r", "fine", None), "outcome must be one of success, failure, denied"),
        (("u", "a", "r", "success", None, ["not", "a", "dict"]), "JSON object"),
        (("u", "a", "r", "success", None, {"x": float("nan")}), "not JSON-serialisable"),
        (("u", "a", "r", "success", None, {"x": object()}), "not JSON-serialisable"),
    ],
)
def test_record_audit_rejects_bad_input(db_url: str, arguments: tuple[Any, ...], message: str) -> None:
    with session_scope(db_url) as session, pytest.raises(ValueError, match=message):
        record_audit(session, *arguments)


RAW_TAMPERING = {
    "update": "UPDATE audit_events SET actor = 'someone else'",
    "update-one": "UPDATE audit_events SET outcome = 'success' WHERE outcome = 'denied'",
    "delete": "DELETE FROM audit_events",
    "delete-one": "DELETE FROM audit_events WHERE id = 1",
}


@pytest.mark.parametrize("statement", RAW_TAMPERING.values(), ids=RAW_TAMPERING.keys())
def test_raw_sql_cannot_update_or_delete(db_url: str, statement: str) -> None:
    before = _seed(db_url)
    with get_engine(db_url).connect() as connection:
        with pytest.raises(IntegrityError, match="append-only"):
            connection.exec_driver_sql(statement)
        connection.rollback()
    assert _rows(db_url) == before


def test_dialect_specific_bypasses_are_refused(db_url: str, dialect: str) -> None:
    before = _seed(db_url)
    row_one = "audit_events (id, actor, action, resource, outcome) VALUES (1, 'x', 'y', 'z', 'success')"
    upsert = f"INSERT INTO {row_one} ON CONFLICT (id) DO UPDATE SET actor = 'x'"
    attempts = {
        "sqlite": [f"INSERT OR REPLACE INTO {row_one}", f"REPLACE INTO {row_one}", upsert],
        "postgresql": ["TRUNCATE audit_events", upsert],
    }[dialect]
    with get_engine(db_url).connect() as connection:
        for statement in attempts:
            with pytest.raises(IntegrityError, match="append-only"):
                connection.exec_driver_sql(statement)
            connection.rollback()
    assert _rows(db_url) == before


def test_orm_cannot_update(db_url: str) -> None:
    before = _seed(db_url)
    with pytest.raises(IntegrityError, match="append-only"), session_scope(db_url) as session:
        event = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).first()
        event.outcome = AuditOutcome.FAILURE
    with pytest.raises(IntegrityError, match="append-only"), session_scope(db_url) as session:
        session.execute(sa.update(AuditEvent).values(detail=None))
    assert _rows(db_url) == before


def test_orm_cannot_delete(db_url: str) -> None:
    before = _seed(db_url)
    with pytest.raises(IntegrityError, match="append-only"), session_scope(db_url) as session:
        session.delete(session.scalars(sa.select(AuditEvent)).first())
    with pytest.raises(IntegrityError, match="append-only"), session_scope(db_url) as session:
        session.execute(sa.delete(AuditEvent).where(AuditEvent.actor == "api_key:2"))
    assert _rows(db_url) == before


def test_appending_still_works_after_refusals(db_url: str) -> None:
    before = _seed(db_url)
    with get_engine(db_url).connect() as connection:
        with pytest.raises(IntegrityError):
            connection.exec_driver_sql("DELETE FROM audit_events")
        connection.rollback()
    with session_scope(db_url) as session:
        record_audit(session, "cli:root", "api_key.revoke", "api_key:1", AuditOutcome.SUCCESS, None)
    after = _rows(db_url)
    assert after[:2] == before and len(after) == 3


def test_an_event_rolls_back_with_its_action(db_url: str) -> None:
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        record_audit(session, "api_key:1", "model.promote", "model_version:m/v", AuditOutcome.SUCCESS, "r")
        raise RuntimeError("the audited action failed")
    assert _rows(db_url) == []
