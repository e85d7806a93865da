"""`pip install "ecg-k[service]"` into a fresh virtual environment gives a working `ecgk serve` and `ecgk db upgrade`
without torch, and a command whose extra is missing names it in one line. The wheel is built from the Docker
build context; the pins are requirements/service.txt (the lock of the extra); pip may use its local cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build_context import REPO_ROOT, build_wheel

INSTALL_TIMEOUT_S = 900


def _run(command: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ECGK_", "PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(command, cwd=cwd, env=env | {"ECGK_HOME": str(cwd / "home")}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_the_service_extra_serves_and_migrates_without_torch(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    requirements = REPO_ROOT / "requirements"
    install = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                    "--no-compile", "-q", "-c", str(requirements / "constraints.txt"),
                    "-r", str(requirements / "service.txt"), f"{wheel}[service]"], tmp_path, INSTALL_TIMEOUT_S)
    assert install.returncode == 0, install.stderr[-4000:]
    ecgk = str(venv / "bin" / "ecgk")

    absent = _run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; "
                   "print([m for m in ('torch', 'torchsort', 'streamlit', 'httpx') if u.find_spec(m)])"],
                  tmp_path)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr

    serve_help = _run([ecgk, "serve", "--help"], tmp_path)
    assert serve_help.returncode == 0 and "--model" in serve_help.stdout, serve_help.stderr
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade = _run([ecgk, "db", "upgrade", "--url", url], tmp_path)
    assert upgrade.returncode == 0 and "(head)" in upgrade.stdout, upgrade.stderr
    version = _run([ecgk, "--version"], tmp_path)
    assert version.stdout.strip() == "ecg-k 0.1.0 (code: installed package, no git checkout)"

    train = _run([ecgk, "train", "--data", "d", "--out", "r", "--method", "dist"], tmp_path)
    assert train.returncode == 2 and "Traceback" not in train.stderr
    assert train.stderr.strip() == ("error: `ecgk train` needs the 'train' extra (torch is not installed): "
                                    "pip install 'ecg-k[train]'")
    dashboard = _run([ecgk, "dashboard"], tmp_path)
    assert dashboard.returncode == 2 and "needs the 'dashboard' extra (streamlit is not installed)" in dashboard.stderr
