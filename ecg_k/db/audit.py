"""Audit events (IHE BALP-like): who did what to which resource, with what outcome, for which request.

The ``audit_events`` table is append-only in the database itself: the Alembic migration installs triggers
that refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL, INSERT OR REPLACE on SQLite), so neither the ORM
nor raw SQL can alter a recorded event.

An event is written in the caller's transaction, so it commits or rolls back with the action it records;
to audit a failed action, record the failure in a session of its own.

The trail is also tamper-evident (a hash chain). Each event gets the next ``seq`` and
``entry_hash = sha256(previous entry_hash + its canonical content)``, where the content includes
``prediction_hash``: the digest of the records a successful event names (its ``prediction:<id>``
resource, its detail's ``prediction_ids`` and ``lab_confirmation_id``). :func:`verify_chain` recomputes
everything and names the first broken link: a changed field, a deleted, inserted or reordered event, a
prediction changed or deleted since its event. Writers first update the single
:class:`~ecg_k.db.models.AuditChainHead` row, so concurrent writers (threads, processes, hosts) queue on its
lock (PostgreSQL's row lock, SQLite's write lock) and the chain stays linear.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.db.models import (
    AuditChainHead,
    AuditEvent,
    AuditOutcome,
    Base,
    LabConfirmation,
    Prediction,
    json_object,
    utcnow,
)
from ecg_k.db.session import read_snapshot

GENESIS_HASH = "0" * 64
"""The ``entry_hash`` before the first event."""
CLOCK_TOLERANCE = timedelta(seconds=1)
"""How far ``recorded_at`` may step back along the chain (clock adjustments) before verify reports it."""
PREDICTION_FIELDS = ("id", "model_version_id", "model_status", "api_key_id", "ecg_sha256", "request_id",
                     "k_estimate", "interval_low", "interval_high", "flag", "critical", "shot_region", "quality",
                     "patient_id", "ecg_time", "latency_ms", "created_at")
"""The prediction columns its digest covers (those a served estimate and its audit depend on)."""
LAB_FIELDS = ("id", "prediction_id", "k_value", "lab_time", "itemid", "confirmed_by", "created_at")
"""The lab confirmation columns its digest covers (what retraining trusts)."""
EVENT_FIELDS = ("seq", "recorded_at", "actor", "action", "resource", "outcome", "request_id", "detail",
                "prediction_hash")
"""The audit event columns its ``entry_hash`` covers (all but ``id`` and the hash itself)."""


def _plain(value: Any) -> Any:
    """A column value in its canonical JSON form: enums by value, times as UTC ISO text, UUIDs as text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, (str, dict, list)):
        return value
    if isinstance(value, int):
        return int(value)
    return float(value)


def _digest(fields: Sequence[str], row: Any, prefix: str = "") -> str:
    content = json.dumps({name: _plain(getattr(row, name)) for name in fields}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256((prefix + content).encode()).hexdigest()


def prediction_digest(row: Any) -> str:
    """sha256 of a prediction's :data:`PREDICTION_FIELDS` (an ORM object or a row with those columns)."""
    return _digest(PREDICTION_FIELDS, row)


def entry_hash(previous: str, event: Any) -> str:
    """The chain hash of ``event`` (its :data:`EVENT_FIELDS`) after the event whose hash is ``previous``."""
    return _digest(EVENT_FIELDS, event, previous + "\n")


def named_predictions(resource: str, detail: dict[str, Any] | None) -> list[uuid.UUID]:
    """The predictions an event names: its ``prediction:<uuid>`` resource, then its detail's
    ``prediction_ids`` (a batch); anything that is not a UUID names nothing."""
    kind, _, ident = resource.partition(":")
    candidates = [ident] if kind == "prediction" else []
    ids = (detail or {}).get("prediction_ids")
    candidates += [str(value) for value in ids] if isinstance(ids, list) else []
    named: list[uuid.UUID] = []
    for candidate in candidates:
        try:
            value = uuid.UUID(candidate)
        except ValueError:
            continue
        if value not in named:
            named.append(value)
    return named


def _table(model: type[Base]) -> sa.Table:
    """A mapped class's table (``__table__`` is typed as any FROM clause; these models map one table)."""
    return cast(sa.Table, model.__table__)


def _rows(connection: sa.Connection | Session, table: sa.Table, fields: Sequence[str], ids: list[Any]
          ) -> dict[Any, Any]:
    query = sa.select(*(table.c[name] for name in fields)).where(table.c.id.in_(ids))
    return {row.id: row for row in connection.execute(query)} if ids else {}


def records_hash(connection: sa.Connection | Session, event: Any) -> str | None:
    """The digest of the records a successful event names, as they are now: its predictions
    (:func:`named_predictions`) and the lab confirmation of its detail's ``lab_confirmation_id`` (a deleted
    record counts as missing); ``None`` when it names none. Stored as the event's ``prediction_hash``."""
    if _plain(event.outcome) != AuditOutcome.SUCCESS.value:
        return None
    predictions = named_predictions(event.resource, event.detail)
    lab_id = (event.detail or {}).get("lab_confirmation_id")
    labs = [lab_id] if isinstance(lab_id, int) and not isinstance(lab_id, bool) else []
    if not predictions and not labs:
        return None
    found = _rows(connection, _table(Prediction), PREDICTION_FIELDS, predictions)
    found_labs = _rows(connection, _table(LabConfirmation), LAB_FIELDS, labs)
    parts = [prediction_digest(found[i]) if i in found else f"missing prediction:{i}" for i in predictions]
    parts += [_digest(LAB_FIELDS, found_labs[i]) if i in found_labs else f"missing lab:{i}" for i in labs]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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
    head = _table(AuditChainHead)
    seq, previous = session.execute(
        sa.update(head).where(head.c.id == 1).values(seq=head.c.seq + 1).returning(head.c.seq, head.c.entry_hash)
    ).one()  # first: the head's lock queues concurrent writers, so the chain stays linear
    event = AuditEvent(
        actor=actor, action=action, resource=resource, outcome=outcome, request_id=request_id, detail=detail,
        recorded_at=utcnow(), seq=seq,
    )
    session.flush()  # the records this event names, if new, are in the database before they are hashed
    event.prediction_hash = records_hash(session, event)
    event.entry_hash = entry_hash(previous, event)
    session.add(event)
    session.flush()
    session.execute(sa.update(head).where(head.c.id == 1).values(entry_hash=event.entry_hash))
    return event


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found: ``broken`` names the first broken link (``None``: intact)."""

    events: int
    head_seq: int
    head_hash: str
    broken: str | None


def _first_unchained(session: Session) -> str | None:
    event = session.scalars(sa.select(AuditEvent).where(AuditEvent.seq.is_(None) | AuditEvent.entry_hash.is_(None))
                            .order_by(AuditEvent.id).limit(1)).first()
    if event is None:
        return None
    return (f"audit event id={event.id} ({event.action} {event.resource} at {_plain(event.recorded_at)}) is not "
            "in the chain: inserted outside the audit writer")


def verify_chain(database_url: str | None = None) -> ChainReport:
    """Walk the audit chain of ``database_url`` (default: the settings') in ``seq`` order and recompute every
    hash; report the first broken link. Reads one snapshot (:func:`~ecg_k.db.session.read_snapshot`), so
    events the service appends meanwhile are neither waited for nor mistaken for a broken head.

    Detects: a changed field of any event (by any means, triggers dropped or a column rewritten), a deleted
    event (a gap in ``seq``, or a chain shorter than its head), an event inserted outside the writer (no
    ``seq``, or a hash that does not follow), a reordered pair (``seq`` against ``id`` order, hashes), a
    ``recorded_at`` that steps back, and a prediction changed or deleted since an event that names it.
    """
    with read_snapshot(database_url) as session:
        return _walk(session)


def _walk(session: Session) -> ChainReport:
    head = session.get(AuditChainHead, 1)
    head_seq, head_hash = (head.seq, head.entry_hash) if head is not None else (0, GENESIS_HASH)
    unchained = _first_unchained(session)
    if unchained is not None:
        return ChainReport(0, head_seq, head_hash, unchained)
    previous, expected, last_id, last_time, count = GENESIS_HASH, 1, 0, None, 0
    query = sa.select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
    for event in session.scalars(query):
        # _first_unchained ruled out rows without seq or entry_hash.
        assert event.seq is not None and event.entry_hash is not None
        where = f"audit event id={event.id} seq={event.seq} ({event.action} {event.resource})"
        broken = None
        if event.seq != expected:
            broken = f"{where}: expected seq {expected}; event(s) {expected}..{event.seq - 1} are missing"
        elif event.id < last_id:
            broken = f"{where}: stored before the event with id={last_id}, which precedes it in the chain"
        elif entry_hash(previous, event) != event.entry_hash:
            broken = f"{where}: its content does not match its hash (a field was changed)"
        elif last_time is not None and event.recorded_at < last_time - CLOCK_TOLERANCE:
            broken = f"{where}: recorded_at {_plain(event.recorded_at)} is earlier than the event before it"
        elif records_hash(session, event) != event.prediction_hash:
            broken = f"{where}: the prediction(s) or lab confirmation it names changed or were deleted since"
        if broken is not None:
            return ChainReport(count, head_seq, head_hash, broken)
        previous, expected, last_id, last_time = event.entry_hash, expected + 1, event.id, event.recorded_at
        count += 1
        session.expunge(event)
    if (head_seq, head_hash) != (count, previous):
        return ChainReport(count, head_seq, head_hash,
                           f"the chain ends at seq {count} but its head records seq {head_seq}: the last "
                           f"{head_seq - count} event(s) were deleted, or the head was changed")
    return ChainReport(count, head_seq, head_hash, None)
