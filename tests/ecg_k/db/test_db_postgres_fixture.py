"""The PostgreSQL fixture's contract: skip without the server binaries, except under CI, where it fails."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ecg_k.db.conftest import PG_BIN, PostgresServer, in_ci

Requirement = Callable[[Path, Mapping[str, str]], None]


def test_missing_postgres_is_a_skip_outside_ci(postgres_requirement: Requirement, tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL 15 unavailable"):
        postgres_requirement(tmp_path / "no-postgres", {})


@pytest.mark.parametrize("value", ["true", "True", "1", "yes"])
def test_missing_postgres_is_a_failure_in_ci(
    postgres_requirement: Requirement, tmp_path: Path, value: str
) -> None:
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        postgres_requirement(tmp_path / "no-postgres", {"CI": value})


def test_ci_environment_provides_postgres(postgres_requirement: Requirement) -> None:
    """Under CI=true the real binaries must be there (this test fails, never skips, when they are not)."""
    if not in_ci(os.environ):
        pytest.skip("CI is not set; the rule itself is checked by the two tests above")
    postgres_requirement(PG_BIN, os.environ)


def test_postgres_server_is_a_real_postgresql_15(postgres_server: PostgresServer) -> None:
    engine = sa.create_engine(postgres_server.url(), poolclass=sa.NullPool)
    with engine.connect() as connection:
        version = connection.execute(sa.text("SHOW server_version")).scalar_one()
        address = connection.execute(sa.text("SELECT host(inet_server_addr())")).scalar_one()
    engine.dispose()
    assert version.startswith("15.")
    assert address == "127.0.0.1"
