"""A seeded dashboard database: two registered synthetic models with their evaluation artefacts (vanilla-like
challenger, Dist-Loss-like champion), one key per role, and a month of served traffic with some labs.

The seed is built once per session (``seeded_template``); every test gets a copy of its home (SQLite file
and ECG store) so tests that write never see each other's rows. ``dashboard_env`` points the settings of
this process (which AppTest runs the pages in) at a copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecg_k.db.api_keys import create_api_key
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import Role
from ecg_k.db.registry import promote, register_model
from ecg_k.db.session import dispose_engines, session_scope
from ecg_k.settings import get_settings
from ecgk_demo.traffic import seed_traffic, write_synthetic_run
from tests.ecg_k.db.conftest import (  # noqa: F401  (fixtures: db_url on SQLite and PostgreSQL)
    db_url,
    dialect,
    postgres_server,
    postgres_template,
    sqlite_template,
)

SEED_END = datetime(2025, 3, 31, 18, 0, tzinfo=UTC)
N_PREDICTIONS = 600
ACTOR = "test"


@dataclass(frozen=True)
class Seeded:
    """A seeded dashboard home and what the tests need to know about it."""

    home: Path
    database_url: str
    champion_id: int
    challenger_id: int
    runs: dict[str, Path]
    keys: dict[str, str]
    key_ids: dict[str, int]


def seed_home(home: Path) -> Seeded:
    """A migrated SQLite database under ``home``, seeded by :func:`seed_database`."""
    database_url = f"sqlite:///{home / 'ecgk.db'}"
    upgrade(database_url)
    return seed_database(database_url, home)


def seed_database(database_url: str, home: Path, n_predictions: int = N_PREDICTIONS) -> Seeded:
    """Register two synthetic models (runs under ``home``), create one key per role and seed traffic (ECGs
    in ``home``'s store) into the migrated database ``database_url``."""
    runs = {"vanilla": home / "runs" / "vanilla", "dist": home / "runs" / "dist"}
    cards = {"vanilla": write_synthetic_run(runs["vanilla"], "vanilla", shrink=0.55, seed=1),
             "dist": write_synthetic_run(runs["dist"], "dist", shrink=0.85, noise_sd=0.5, seed=2)}
    with session_scope(database_url) as session:
        challenger = register_model(session, cards["vanilla"], actor=ACTOR)
        champion = register_model(session, cards["dist"], actor=ACTOR)
        promote(session, champion.name, champion.version, actor=ACTOR)
        created = {role.value: create_api_key(session, role, actor=ACTOR, name=f"test {role.value}")
                   for role in Role}
        seed_traffic(session, EcgStore(home / "ecg-store"), [champion.id, challenger.id],
                     n_predictions=n_predictions, reviewer_id=created["reviewer"].key.id, end=SEED_END,
                     lab_fraction=0.3, seed=3)
        ids = (champion.id, challenger.id)
    dispose_engines()
    return Seeded(home, database_url, *ids, runs, {name: new.plaintext for name, new in created.items()},
                  {name: new.key.id for name, new in created.items()})


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed_home(tmp_path_factory.mktemp("dashboard-template") / "home")


@pytest.fixture
def seeded(seeded_template: Seeded, tmp_path: Path) -> Iterator[Seeded]:
    """A private copy of the seeded home (the runs stay shared: they are read-only)."""
    home = tmp_path / "home"
    shutil.copytree(seeded_template.home, home, ignore=shutil.ignore_patterns("runs"))
    yield replace(seeded_template, home=home, database_url=f"sqlite:///{home / 'ecgk.db'}")
    dispose_engines()


@pytest.fixture
def dashboard_env(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seeded]:
    """This process's settings point at the seeded copy (for AppTest, which runs pages in-process)."""
    monkeypatch.setenv("ECGK_HOME", str(seeded.home))
    monkeypatch.setenv("ECGK_DATABASE_URL", seeded.database_url)
    monkeypatch.delenv("ECGK_ECG_STORE", raising=False)
    get_settings.cache_clear()
    yield seeded
    get_settings.cache_clear()


@pytest.fixture
def seeded_db(db_url: str, tmp_path: Path) -> Seeded:  # noqa: F811
    """The seed in a fresh database of the test's own, on SQLite and on PostgreSQL."""
    return seed_database(db_url, tmp_path / "home")
