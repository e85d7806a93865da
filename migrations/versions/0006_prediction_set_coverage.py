"""Every stored prediction set states its coverage level and method.

Since 0005 a prediction holds its set (``interval_segments``) with the ``interval_coverage`` and
``interval_method`` it was built with, and reads (``GET /v1/predictions/{id}``, FHIR) return those as stored:
the coverage setting of the day never relabels an old set. This revision makes the database hold to it: a row
with a set and no coverage level (or no method) is refused. Rows served before 0005 hold no set, so they
satisfy the rule as they are (their hull is read back as "coverage not recorded").

PostgreSQL gets a CHECK constraint. SQLite cannot add one to an existing table without rebuilding it (which
would drop a table that lab confirmations and reviews reference, and cannot run in offline ``--sql`` mode), so
there two triggers refuse such an INSERT or UPDATE; the ORM declares the same rule as a CHECK constraint.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "set_states_coverage"
CONDITION = "interval_segments IS NULL OR (interval_coverage IS NOT NULL AND interval_method IS NOT NULL)"
NEW_ROW_CONDITION = ("NEW.interval_segments IS NULL OR "
                     "(NEW.interval_coverage IS NOT NULL AND NEW.interval_method IS NOT NULL)")
SQLITE_TRIGGERS = {
    f"predictions_{NAME}_{event.lower()}": f"""CREATE TRIGGER predictions_{NAME}_{event.lower()}
    BEFORE {event} ON predictions WHEN NOT ({NEW_ROW_CONDITION})
    BEGIN SELECT RAISE(ABORT, 'a prediction set must state its coverage level and method'); END"""
    for event in ("INSERT", "UPDATE")
}
"""SQLite's form of the rule: one trigger per write that could break it."""


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for statement in SQLITE_TRIGGERS.values():
            op.execute(statement)
        return
    op.create_check_constraint(op.f(f"ck_predictions_{NAME}"), "predictions", CONDITION)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for trigger in reversed(SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER {trigger}")
        return
    op.drop_constraint(op.f(f"ck_predictions_{NAME}"), "predictions", type_="check")
