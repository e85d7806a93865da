"""Tamper-evident audit trail: each audit event gets its place in a hash chain (``seq``, ``entry_hash``) and
the digest of the predictions and lab confirmation it names (``prediction_hash``); ``audit_chain_head`` holds
the chain's last link and is the lock every writer takes first.

Existing events are chained in ``id`` order, with the hashes of ecg_k.db.audit (the chain's one definition),
while the UPDATE trigger is lifted for the backfill and put back exactly as 0001 created it. An offline
script (``alembic upgrade --sql``) cannot compute hashes: it starts an empty chain, so it is for new databases
(on one with events, ``ecgk audit verify`` reports them as unchained).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import cast

import sqlalchemy as sa
from alembic import context, op

from ecg_k.db.audit import GENESIS_HASH, entry_hash, records_hash

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_NO_UPDATE = """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END"""
EVENT_COLUMNS = ("id", "recorded_at", "actor", "action", "resource", "outcome", "request_id", "detail")


def _backfill(connection: sa.Connection) -> tuple[int, str]:
    """Chain the events already recorded, in id order; the head's (seq, entry_hash)."""
    from ecg_k.db.models import AuditEvent  # the typed columns (UTC times, JSON), selected by name only

    table = cast(sa.Table, AuditEvent.__table__)  # typed as any FROM clause; the model maps one table
    rows = connection.execute(sa.select(*(table.c[name] for name in EVENT_COLUMNS)).order_by(table.c.id)).all()
    previous, seq = GENESIS_HASH, 0
    for row in rows:
        seq += 1
        event = SimpleNamespace(**row._asdict(), seq=seq)
        event.prediction_hash = records_hash(connection, event)
        previous = entry_hash(previous, event)
        connection.execute(table.update().where(table.c.id == row.id).values(
            seq=seq, prediction_hash=event.prediction_hash, entry_hash=previous))
    return seq, previous


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_events", sa.Column("prediction_hash", sa.String(64), nullable=True))
    op.add_column("audit_events", sa.Column("entry_hash", sa.String(64), nullable=True))
    op.create_index(op.f("uq_audit_events_seq"), "audit_events", ["seq"], unique=True)
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_chain_head_single_row")),
    )
    if context.is_offline_mode():
        op.execute(f"INSERT INTO audit_chain_head (id, seq, entry_hash) VALUES (1, 0, '{GENESIS_HASH}')")
        return
    connection = op.get_bind()
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
    seq, head = _backfill(connection)
    if postgresql:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete")
    else:
        op.execute(SQLITE_NO_UPDATE)
    connection.execute(sa.text("INSERT INTO audit_chain_head (id, seq, entry_hash) VALUES (1, :seq, :hash)"),
                       {"seq": seq, "hash": head})


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    op.drop_index(op.f("uq_audit_events_seq"), table_name="audit_events")
    op.drop_column("audit_events", "entry_hash")
    op.drop_column("audit_events", "prediction_hash")
    op.drop_column("audit_events", "seq")
