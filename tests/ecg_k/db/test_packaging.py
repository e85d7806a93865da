"""The wheel ships the migrations: built from the Docker build context (what the images' `pip install .`
sees), installed away from the checkout, its `ecgk db upgrade` migrates a new SQLite database to head."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecg_k.db.migrate import current_revision, find_migrations_dir, head_revision
from tests.build_context import REPO_ROOT, build_wheel

PIP_TIMEOUT_S = 120
UPGRADE_SCRIPT = """
import sys
from ecg_k.db import migrate
print("MIGRATIONS_DIR", migrate.MIGRATIONS_DIR)
from ecg_k.cli import main
sys.argv = ["ecgk", "db", "upgrade", "--url", sys.argv[1]]
main()
"""


def _environment(module_dir: Path, *, packaged: bool, checkout: bool) -> Path:
    """A fake layout: ``module_dir`` (ecg_k/db) inside a root, with migrations where asked."""
    module_dir.mkdir(parents=True)
    for where, wanted in ((module_dir, packaged), (module_dir.parents[1], checkout)):
        if wanted:
            (where / "migrations").mkdir()
            (where / "migrations" / "env.py").write_text("")
    return module_dir


def test_installed_migrations_win_over_a_checkout_around_them(tmp_path: Path) -> None:
    module_dir = _environment(tmp_path / "root" / "ecg_k" / "db", packaged=True, checkout=True)
    assert find_migrations_dir(module_dir) == module_dir / "migrations"


def test_a_checkout_finds_migrations_at_its_root(tmp_path: Path) -> None:
    module_dir = _environment(tmp_path / "root" / "ecg_k" / "db", packaged=False, checkout=True)
    assert find_migrations_dir(module_dir) == tmp_path / "root" / "migrations"
    assert find_migrations_dir(REPO_ROOT / "ecg_k" / "db") == REPO_ROOT / "migrations"


def test_without_migrations_the_installed_location_is_reported(tmp_path: Path) -> None:
    module_dir = _environment(tmp_path / "root" / "ecg_k" / "db", packaged=False, checkout=False)
    assert find_migrations_dir(module_dir) == module_dir / "migrations"


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_wheel_from_the_build_context_migrates_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ecg_k/db/migrations/env.py", "ecg_k/db/migrations/script.py.mako",
            "ecg_k/db/migrations/versions/0001_initial.py", "service/app.py", "training/cli.py",
            "ecg_k/cli/app.py", "ecgk_demo/loopback.py"} <= names
    assert not any(name.startswith("migrations/") for name in names), "no top-level 'migrations' package"

    site = tmp_path / "site"
    _run([*pip, "install", "--no-deps", "--no-index", "--no-compile", "-q", "--target", str(site), str(wheel)],
         cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    # -S: no site-packages processing, so the checkout's editable install (a .pth finder) stays out; the
    # dependencies come from this interpreter's site-packages, ecg-k only from the installed wheel.
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]]),
                        "ECGK_HOME": str(tmp_path / "home")}
    env.pop("ECGK_DATABASE_URL", None)
    output = _run([sys.executable, "-S", "-c", UPGRADE_SCRIPT, url], cwd=elsewhere, env=env)

    assert f"MIGRATIONS_DIR {site / 'ecg_k' / 'db' / 'migrations'}" in output
    assert f"at revision {head_revision()} (head)" in output
    assert current_revision(url) == head_revision()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        assert {"model_versions", "predictions", "audit_events"} <= set(sa.inspect(connection).get_table_names())
    engine.dispose()
