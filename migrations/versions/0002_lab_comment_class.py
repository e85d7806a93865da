"""The comment class of a confirmed lab (``lab_confirmations.comment_class``: none, verified, hemolysed).

A reviewer confirming a lab may mark it haemolysed (its K+ is falsely high): the lab is kept for the record
but never feeds retraining. Existing confirmations become ``none`` (the server default). The column is added
in place with its CHECK constraint (SQLite accepts a column constraint in ADD COLUMN), so SQLite never
rebuilds the table; PostgreSQL gets the same named constraint.

Downgrade drops the column (code before this revision has no haemolysed mark; such labs would then feed
retraining, so downgrading is refused while any confirmed lab is marked haemolysed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "lab_confirmations"
COLUMN = "comment_class"
CHECK = "ck_lab_confirmations_lab_comment"
CLASSES = ("none", "verified", "hemolysed")
ALLOWED = f"{COLUMN} IN ({', '.join(repr(value) for value in CLASSES)})"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {TABLE} ADD COLUMN {COLUMN} VARCHAR(9) DEFAULT 'none' NOT NULL "
                   f"CONSTRAINT {CHECK} CHECK ({ALLOWED})")
        return
    op.add_column(TABLE, sa.Column(COLUMN, sa.String(9), nullable=False, server_default="none"))
    op.create_check_constraint(CHECK, TABLE, ALLOWED)


def downgrade() -> None:
    if not op.get_context().as_sql:
        marked = op.get_bind().execute(sa.text(f"SELECT count(*) FROM {TABLE} WHERE {COLUMN} = 'hemolysed'"))
        if marked.scalar_one():
            raise RuntimeError(f"{TABLE} holds labs marked haemolysed; revision 0001 cannot tell them apart and "
                               "would retrain on them: refusing to downgrade")
    op.drop_column(TABLE, COLUMN)
