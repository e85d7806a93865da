"""Alembic migrations on SQLite and PostgreSQL: head and back to base, idempotent and concurrent upgrades,
and a migrated schema identical to the ORM's."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from multiprocessing import Queue, get_context
from pathlib import Path
from threading import Barrier as BarrierType

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ecg_k.db.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from ecg_k.db.models import Base

TABLES = {"model_versions", "gate_decisions", "api_keys", "ecg_records", "predictions", "lab_confirmations",
          "reviews", "audit_events", "audit_chain_head"}
REPO_ROOT = MIGRATIONS_DIR.parent


def _inspect(url: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """Tables, index names per table, and audit trigger names of the database at ``url``."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        tables = set(inspector.get_table_names())
        indexes = {table: {index["name"] for index in inspector.get_indexes(table)} for table in tables}
        if connection.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        triggers = set(connection.exec_driver_sql(query).scalars())
    engine.dispose()
    return tables, indexes, triggers


def test_upgrade_to_head_and_downgrade_to_base(empty_db_url: str, dialect: str) -> None:
    assert current_revision(empty_db_url) is None
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision() == "0006"
    tables, indexes, triggers = _inspect(empty_db_url)
    assert tables == TABLES | {"alembic_version"}
    dashboard_filters = {"ix_predictions_created_at", "ix_predictions_model_version_id_created_at",
                         "ix_predictions_flag_created_at", "ix_predictions_api_key_id_created_at"}
    assert dashboard_filters <= indexes["predictions"]
    assert "uq_model_versions_one_champion" in indexes["model_versions"]
    assert {"ix_audit_events_recorded_at", "ix_audit_events_request_id"} <= indexes["audit_events"]
    expected_triggers = (
        {"audit_events_no_update", "audit_events_no_delete", "audit_events_no_replace",
         "predictions_set_states_coverage_insert", "predictions_set_states_coverage_update"} if dialect == "sqlite"
        else {"audit_events_no_update_delete", "audit_events_no_truncate"}
    )
    assert triggers == expected_triggers

    upgrade(empty_db_url)  # at every start-up: a no-op at head
    assert current_revision(empty_db_url) == head_revision()

    downgrade(empty_db_url, "base")
    tables, _, triggers = _inspect(empty_db_url)
    assert tables == {"alembic_version"} and triggers == set()
    assert current_revision(empty_db_url) is None
    if dialect == "postgresql":
        engine = sa.create_engine(empty_db_url, poolclass=sa.NullPool)
        with engine.connect() as connection:
            functions = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_append_only'").scalar_one()
        engine.dispose()
        assert functions == 0

    upgrade(empty_db_url)  # and up again from base
    assert _inspect(empty_db_url)[0] == TABLES | {"alembic_version"}


def test_migrated_schema_matches_the_orm(db_url: str) -> None:
    engine = sa.create_engine(db_url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def _upgrade_together(url: str, barrier: BarrierType, failures: Queue[str]) -> None:
    """Wait until every process is ready, then upgrade at the same moment."""
    barrier.wait(timeout=120)
    try:
        upgrade(url)
    except Exception as err:  # reported to the test, which fails on it
        failures.put(repr(err))


@pytest.mark.slow
def test_concurrent_upgrades_from_several_processes(empty_db_url: str) -> None:
    context = get_context("spawn")
    barrier, failures = context.Barrier(3), context.Queue()
    processes = [context.Process(target=_upgrade_together, args=(empty_db_url, barrier, failures))
                 for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert failures.empty(), failures.get()
    assert current_revision(empty_db_url) == head_revision()
    assert _inspect(empty_db_url)[0] == TABLES | {"alembic_version"}


@pytest.mark.parametrize("url", ["postgresql+psycopg://app@localhost/ecgk", "sqlite:///ecgk.db"])
def test_offline_sql_includes_the_audit_triggers(url: str) -> None:
    config = alembic_config()
    config.attributes["database_url"] = url
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE audit_events" in sql
    assert "CREATE TRIGGER audit_events_no_update" in sql
    assert ("CREATE UNIQUE INDEX uq_model_versions_one_champion ON model_versions (status) "
            "WHERE status = 'champion'") in sql


def test_alembic_command_line_uses_alembic_ini(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "alembic.ini", "-x", f"url={url}", "upgrade", "head"],
        cwd=REPO_ROOT, capture_output=True, text=True, env=os.environ | {"ECGK_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert current_revision(url) == head_revision()
    assert not (tmp_path / "ecgk.db").exists()  # -x url won over the settings
