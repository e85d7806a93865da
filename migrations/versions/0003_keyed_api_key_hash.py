"""API keys hashed with HMAC-SHA256 under the server secret instead of scrypt (no per-process key cache).

Adds ``api_keys.hash_scheme``. Existing rows become ``scrypt`` (the server default) and keep working: their
first successful check re-hashes them with the keyed hash (ecg_k.db.api_keys.verify_api_key). New keys are
``hmac-sha256`` with an empty ``salt``. Only ADD/DROP COLUMN, so SQLite never rebuilds the table (other tables
reference it and foreign keys are enforced).

Downgrade: code before this revision checks every key with scrypt, so the keys hashed with the keyed hash
cannot work there; they are revoked (re-issue them with ``ecgk keys create``) and the column is dropped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("hash_scheme", sa.String(16), nullable=False, server_default="scrypt"))


def downgrade() -> None:
    op.execute("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP "
               "WHERE hash_scheme = 'hmac-sha256' AND revoked_at IS NULL")
    op.drop_column("api_keys", "hash_scheme")
