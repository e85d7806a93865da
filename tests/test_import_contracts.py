"""The import contracts in pyproject.toml (DESIGN.md's package table) hold, and break when a forbidden import
is added: each test plants one such import in a copy of the packages and runs lint-imports on the copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ecg_k", "training", "service", "dashboard", "migrations")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages under ``root`` (its pyproject.toml), importable from ``root`` only."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """The packages and pyproject.toml copied to a temporary root."""
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _plant(root: Path, module: str, line: str) -> None:
    path = root / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_repository_keeps_every_contract(copy: Path) -> None:
    result = _lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("ecg_k/clinical.py", "import training.config", "ecg_k imports no other package"),
    ("service/app.py", "import dashboard.ui", "never on each other"),
    ("training/export.py", "import service.schemas", "never on each other"),
    ("dashboard/ui.py", "import torch", "never imports torch"),
    # Indirect: the service reaches torch through a domain module that imports it.
    ("service/app.py", "import ecg_k.models.net1d", "never imports torch"),
    ("ecg_k/clinical.py", "import ecg_k.losses", "domain's inference path"),
    ("dashboard/ui.py", "import ecg_k.inference", "needs no ONNX Runtime"),
    ("migrations/env.py", "import ecg_k.preprocessing", "migrations import only ecg_k.db"),
])
def test_a_forbidden_import_breaks_its_contract(copy: Path, module: str, line: str, contract: str) -> None:
    _plant(copy, module, line)
    result = _lint(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken


def test_the_migrations_contract_lists_every_other_module_of_the_domain() -> None:
    """New ecg_k modules must join the list, or migrations could import them unnoticed."""
    forbidden = set(_contracts()["migrations-db-only"]["forbidden_modules"])
    domain = {f"ecg_k.{path.stem}" for path in (REPO_ROOT / "ecg_k").iterdir()
              if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()}
    assert domain - {"ecg_k.db"} == {name for name in forbidden if name.startswith("ecg_k.")}
