"""The ecgk command line as a user meets it: --version, enumerated options that list their choices, errors that
name their option, a missing extra named in one line, and `serve` refusing a bad model before any database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from ecg_k.cli import app, load_plugins
from ecg_k.cli.database import RoleName
from ecg_k.db.models import Role
from ecg_k.models import NET1D_CONFIGS
from ecg_k.version import code_version
from tests.conftest import REPO_ROOT
from training.cli import Device, Net1dModel
from training.config import TrainConfig

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    """``ecgk ARGS`` in this process (exit code, stdout, stderr), with every package's commands."""
    load_plugins()
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def ecgk(*args: str, home: Path, prelude: str = "pass") -> subprocess.CompletedProcess[str]:
    """``python -m ecg_k ARGS`` with ECGK_HOME at ``home``; ``prelude`` runs first (e.g. to hide a module)."""
    code = f"import sys; {prelude}; sys.argv = ['ecgk', *sys.argv[1:]]; from ecg_k.cli import main; main()"
    env = os.environ | {"ECGK_HOME": str(home), "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ECGK_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=home.parent)


def test_version_names_package_and_code() -> None:
    code, out, _ = invoke("--version")
    commit = code_version()["git_commit"]
    assert code == 0 and out.startswith("ecg-k 0.1.0 (code ") and str(commit)[:12] in out


@pytest.mark.parametrize(("args", "choices"), [
    (["train", "--help"], "<small|ecgfounder|tiny>"),
    (["train", "--help"], "<auto|cpu|cuda>"),
    (["train", "--help"], "1<=x<=2"),
    (["evaluate", "--help"], "<relative|count>"),
    (["retrain", "--help"], "<auto|cpu|cuda>"),
    (["keys", "create", "--help"], "<client|reviewer|admin>"),
])
def test_enumerated_options_list_their_choices(args: list[str], choices: str) -> None:
    code, out, _ = invoke(*args)
    assert code == 0 and choices in out, out


def test_listed_choices_are_the_domains_own() -> None:
    """The CLI lists them without importing torch or SQLAlchemy; they must not drift from their homes."""
    assert set(get_args(Net1dModel)) == set(NET1D_CONFIGS)
    assert get_args(Device) == get_args(TrainConfig.model_fields["device"].annotation)
    assert list(get_args(RoleName)) == [role.value for role in Role]


@pytest.mark.parametrize(("args", "message"), [
    (["ingest", "--itemids", "abc"], "error: invalid option --itemids: expected comma-separated integers, got 'abc'"),
    (["ingest", "--window-min", "-3"], "error: invalid option --window-min: Input should be greater than 0"),
    (["train", "--method", "dist", "--stage", "2"], "error: invalid options: --stage 2 needs --init RUN"),
    (["train", "--method", "dist", "-o", "dist.bw_method=-1"], "error: invalid option -o dist.bw_method:"),
    (["train", "--method", "dist", "--model", "huge"], "Invalid value for '--model'"),
    (["keys", "create", "--role", "root"], "Invalid value for '--role'"),
])
def test_validation_errors_name_their_option(tmp_path: Path, args: list[str], message: str) -> None:
    data = {"ingest": ["--ecg-root", str(tmp_path), "--hosp-root", str(tmp_path), "--out", str(tmp_path / "d")],
            "train": ["--data", str(tmp_path), "--out", str(tmp_path / "r")], "keys": []}[args[0]]
    code, _, err = invoke(*args, *data)
    assert code == 2 and message in err, err


@pytest.mark.parametrize(("command", "hidden", "extra"), [
    (["db", "upgrade"], "sqlalchemy", "db"),
    (["serve"], "uvicorn", "service"),
    (["train", "--data", "d", "--out", "r", "--method", "dist"], "torchsort", "train"),
])
def test_a_missing_extra_is_named_in_one_line(tmp_path: Path, command: list[str], hidden: str, extra: str) -> None:
    result = ecgk(*command, home=tmp_path / "home", prelude=f"sys.modules[{hidden!r}] = None")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"error: `ecgk {command[0]}` needs the '{extra}' extra ({hidden} is not "
                                     f"installed): pip install 'ecg-k[{extra}]'")


def test_serve_refuses_a_missing_or_mismatched_model_before_any_database(tmp_path: Path,
                                                                          exported_run: Path) -> None:
    home = tmp_path / "home"
    result = ecgk("serve", "--model", str(tmp_path / "nonexistent.onnx"), home=home)
    assert (result.returncode, result.stderr.strip()) == (2, f"error: --model: no ONNX file at "
                                                             f"{tmp_path / 'nonexistent.onnx'}")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(exported_run / "model_card.json", other / "model_card.json")
    (other / "model.onnx").write_bytes((exported_run / "model.onnx").read_bytes() + b"\0")
    result = ecgk("serve", "--model", str(other / "model.onnx"), home=home)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "does not match the model card's" in result.stderr
    (other / "model_card.json").unlink()
    result = ecgk("serve", "--model", str(other / "model.onnx"), home=home)
    assert result.returncode == 2 and "--model: no model card at" in result.stderr
    assert not home.exists()  # no database, no ECG store, no secret: nothing was created
