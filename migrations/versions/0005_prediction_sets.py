"""Prediction sets and event probabilities on stored predictions (label-conditional conformal intervals).

``interval_low``/``interval_high`` keep the hull of the set; ``interval_segments`` holds the set itself
(a JSON list of ``[low, high]`` K+ segments, which can be non-contiguous), with its ``interval_coverage`` and
``interval_method``; ``p_hyper``/``p_hypo`` are the calibrated P(K+ >= 5.5) and P(K+ <= 3.5). All nullable:
rows served before this revision hold none of them, and they are read back as stored, never recomputed.
``lab_confirmations.in_prediction_set`` records, at confirmation, whether the lab K+ lies in that set, so
monitoring aggregates set coverage in SQL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
CHECKS = {
    "interval_coverage_range": "interval_coverage > 0 AND interval_coverage < 1",
    "p_hyper_range": "p_hyper >= 0 AND p_hyper <= 1",
    "p_hypo_range": "p_hypo >= 0 AND p_hypo <= 1",
}


NEW_PREDICTION_COLUMNS: tuple[sa.Column[object], ...] = (
    sa.Column("interval_segments", JSON_DOC, nullable=True),
    sa.Column("interval_coverage", sa.Double(), nullable=True),
    sa.Column("interval_method", sa.String(length=64), nullable=True),
    sa.Column("p_hyper", sa.Double(), nullable=True),
    sa.Column("p_hypo", sa.Double(), nullable=True),
)
IN_SET: sa.Column[bool] = sa.Column("in_prediction_set", sa.Boolean(), nullable=True)


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _upgrade_sqlite()
        return
    for column in NEW_PREDICTION_COLUMNS:
        op.add_column("predictions", column)
    for name, condition in CHECKS.items():
        op.create_check_constraint(op.f(f"ck_predictions_{name}"), "predictions", condition)
    op.add_column("lab_confirmations", IN_SET)


def _upgrade_sqlite() -> None:
    """``ALTER TABLE ... ADD COLUMN`` with each CHECK on its column: no table rebuild (which batch mode would
    need, and which cannot run in offline ``--sql`` mode)."""
    dialect = op.get_context().dialect
    checks = {name.removesuffix("_range"): (name, condition) for name, condition in CHECKS.items()}
    for column in NEW_PREDICTION_COLUMNS:
        ddl = f"ALTER TABLE predictions ADD COLUMN {column.name} {column.type.compile(dialect=dialect)}"
        if column.name in checks:
            name, condition = checks[column.name]
            ddl += f" CONSTRAINT ck_predictions_{name} CHECK ({condition})"
        op.execute(ddl)
    op.execute(f"ALTER TABLE lab_confirmations ADD COLUMN {IN_SET.name} {IN_SET.type.compile(dialect=dialect)}")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        # Plain DROP COLUMN (each CHECK sits on its own column): rebuilding ``predictions`` would drop a table
        # that lab confirmations and reviews reference.
        op.execute(f"ALTER TABLE lab_confirmations DROP COLUMN {IN_SET.name}")
        for column in reversed(NEW_PREDICTION_COLUMNS):
            op.execute(f"ALTER TABLE predictions DROP COLUMN {column.name}")
        return
    op.drop_column("lab_confirmations", IN_SET.name)
    for name in CHECKS:
        op.drop_constraint(op.f(f"ck_predictions_{name}"), "predictions", type_="check")
    for column in reversed(NEW_PREDICTION_COLUMNS):
        op.drop_column("predictions", column.name)
