"""Initial ecg-k schema: model registry, gate decisions, API keys, stored ECGs, predictions,
lab confirmations, reviews and the append-only audit trail.

Written by hand (values frozen here, independent of later edits to ecg_k.db.models); a test checks that the
migrated schema matches the ORM metadata on SQLite and PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
MODEL_STATUS = ("champion", "challenger", "retired")

SQLITE_AUDIT_TRIGGERS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END""",
    # INSERT OR REPLACE deletes the old row without firing DELETE triggers (recursive_triggers is off).
    """CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
    WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: REPLACE refused'); END""",
)
POSTGRESQL_AUDIT_TRIGGERS = (
    """CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END $$""",
    """CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
)


def _one_of(table: str, column: str, enum_name: str, values: Sequence[str]) -> sa.CheckConstraint:
    """The CHECK constraint of a string-valued enum column (named as the ORM's naming convention does)."""
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{enum_name}"))


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    """A foreign key, named as the ORM's naming convention does."""
    name = f"fk_{table}_{column}_{target.split('.')[0]}"
    return sa.ForeignKeyConstraint([column], [target], name=op.f(name))


def _created_at() -> sa.Column[datetime]:
    return sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("preprocessing_digest", sa.String(64), nullable=True),
        sa.Column("card", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        _created_at(),
        sa.Column("promoted_at", TIMESTAMP, nullable=True),
        sa.Column("retired_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name_version")),
        sa.CheckConstraint("length(sha256) = 64", name=op.f("ck_model_versions_sha256_hex")),
        _one_of("model_versions", "status", "model_status", MODEL_STATUS),
    )
    # At most one champion: a unique index over the rows whose status is 'champion'.
    op.create_index(
        "uq_model_versions_one_champion",
        "model_versions",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'champion'"),
        postgresql_where=sa.text("status = 'champion'"),
    )

    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenger_id", sa.Integer(), nullable=False),
        sa.Column("champion_id", sa.Integer(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("criteria", JSON_DOC, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_decisions")),
        _fk("gate_decisions", "challenger_id", "model_versions.id"),
        _fk("gate_decisions", "champion_id", "model_versions.id"),
    )
    op.create_index(op.f("ix_gate_decisions_challenger_id"), "gate_decisions", ["challenger_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        _created_at(),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
        _one_of("api_keys", "role", "role", ("client", "reviewer", "admin")),
    )

    op.create_table(
        "ecg_records",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("n_leads", sa.Integer(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("fs", sa.Double(), nullable=False),
        sa.Column("lead_names", JSON_DOC, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_ecg_records")),
        sa.CheckConstraint("length(sha256) = 64", name=op.f("ck_ecg_records_sha256_hex")),
        sa.CheckConstraint(
            "fs > 0 AND n_leads > 0 AND n_samples > 0", name=op.f("ck_ecg_records_positive_shape")
        ),
    )

    op.create_table(
        "predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("model_status", sa.String(10), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("ecg_sha256", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("k_estimate", sa.Double(), nullable=True),
        sa.Column("interval_low", sa.Double(), nullable=True),
        sa.Column("interval_high", sa.Double(), nullable=True),
        sa.Column("flag", sa.String(2), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("shot_region", sa.String(6), nullable=True),
        sa.Column("quality", JSON_DOC, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("ecg_time", TIMESTAMP, nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        _fk("predictions", "model_version_id", "model_versions.id"),
        _fk("predictions", "api_key_id", "api_keys.id"),
        _fk("predictions", "ecg_sha256", "ecg_records.sha256"),
        _one_of("predictions", "model_status", "model_status", MODEL_STATUS),
        _one_of("predictions", "flag", "flag", ("LL", "L", "N", "H", "HH")),
        _one_of("predictions", "shot_region", "shot_region", ("many", "median", "few")),
        sa.CheckConstraint(
            "(k_estimate IS NULL) = (flag IS NULL)", name=op.f("ck_predictions_estimate_has_flag")
        ),
        sa.CheckConstraint("interval_low <= interval_high", name=op.f("ck_predictions_interval_ordered")),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_predictions_latency_non_negative")),
    )
    # What the dashboard and the API filter on: time, model version, flag, the client's own key.
    op.create_index(op.f("ix_predictions_created_at"), "predictions", ["created_at"])
    op.create_index(
        "ix_predictions_model_version_id_created_at", "predictions", ["model_version_id", "created_at"]
    )
    op.create_index("ix_predictions_flag_created_at", "predictions", ["flag", "created_at"])
    op.create_index("ix_predictions_api_key_id_created_at", "predictions", ["api_key_id", "created_at"])
    op.create_index(op.f("ix_predictions_ecg_sha256"), "predictions", ["ecg_sha256"])
    op.create_index(op.f("ix_predictions_patient_id"), "predictions", ["patient_id"])

    op.create_table(
        "lab_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("k_value", sa.Double(), nullable=False),
        sa.Column("lab_time", TIMESTAMP, nullable=False),
        sa.Column("itemid", sa.Integer(), nullable=True),
        sa.Column("confirmed_by", sa.Integer(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_confirmations")),
        sa.UniqueConstraint("prediction_id", name=op.f("uq_lab_confirmations_prediction_id")),
        _fk("lab_confirmations", "prediction_id", "predictions.id"),
        _fk("lab_confirmations", "confirmed_by", "api_keys.id"),
        sa.CheckConstraint("k_value > 0", name=op.f("ck_lab_confirmations_k_positive")),
    )

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(12), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        _fk("reviews", "prediction_id", "predictions.id"),
        _fk("reviews", "reviewer_id", "api_keys.id"),
        _one_of("reviews", "verdict", "verdict", ("agree", "disagree", "unusable_ecg")),
    )
    op.create_index(op.f("ix_reviews_prediction_id"), "reviews", ["prediction_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recorded_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(7), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("detail", JSON_DOC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        _one_of("audit_events", "outcome", "outcome", ("success", "failure", "denied")),
    )
    op.create_index(op.f("ix_audit_events_recorded_at"), "audit_events", ["recorded_at"])
    op.create_index(op.f("ix_audit_events_resource"), "audit_events", ["resource"])
    op.create_index(op.f("ix_audit_events_request_id"), "audit_events", ["request_id"])
    triggers = {"sqlite": SQLITE_AUDIT_TRIGGERS, "postgresql": POSTGRESQL_AUDIT_TRIGGERS}
    dialect = op.get_context().dialect.name
    if dialect not in triggers:
        raise NotImplementedError(f"no append-only audit triggers for {dialect} (only SQLite and PostgreSQL)")
    for statement in triggers[dialect]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        for trigger in ("audit_events_no_replace", "audit_events_no_delete", "audit_events_no_update"):
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_table("audit_events")
    op.drop_table("reviews")
    op.drop_table("lab_confirmations")
    op.drop_table("predictions")
    op.drop_table("ecg_records")
    op.drop_table("api_keys")
    op.drop_table("gate_decisions")
    op.drop_table("model_versions")
