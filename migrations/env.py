"""Alembic environment of the ecg-k schema (target metadata: ``ecg_k.db.models.Base.metadata``).

The database comes, in this order, from: a connection passed in ``config.attributes["connection"]``
(``ecg_k.db.migrate`` does that, holding the migration lock), ``config.attributes["database_url"]``,
``alembic -x url=...``, ``sqlalchemy.url`` in alembic.ini, and finally the ecg-k settings
(``ECGK_DATABASE_URL``, SQLite under ``ECGK_HOME`` by default) through ``ecg_k.db.session``: this environment
imports ``ecg_k.db`` only.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from ecg_k.db.migrate import migration_connection
from ecg_k.db.models import Base
from ecg_k.db.session import resolve_database_url

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """The URL to migrate when no connection was passed in."""
    return resolve_database_url(
        config.attributes.get("database_url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
    )


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the DDL instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on(connection: Connection) -> None:
    """Run the migrations on a connection (inside its transaction, if it has one)."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations_on(connection)
        return
    with migration_connection(database_url()) as locked:
        run_migrations_on(locked)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
