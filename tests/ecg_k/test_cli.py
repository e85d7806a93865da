"""The ecgk app: synth wiring, option parsing, plugin commands, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ecg_k.cli import app, load_plugins, parse_options

runner = CliRunner()


def test_synth_command_writes_mimic_layout(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "s"), "--n-ecgs", "6", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "mimic-iv-ecg" / "record_list.csv").is_file()
    assert (tmp_path / "s" / "mimic-iv" / "hosp" / "labevents.csv.gz").is_file()


def test_synth_bad_arguments_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "s"), "--n-ecgs", "0"])
    assert result.exit_code == 2 and "error" in result.output


def test_synth_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "precious.txt").write_text("keep me")
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "s"), "--n-ecgs", "3"])
    assert result.exit_code == 2
    assert (tmp_path / "s" / "precious.txt").read_text() == "keep me"


def test_parse_options_nests_and_types_values() -> None:
    assert parse_options(["dist.dist_weight=0.5", "dist.sort=hard", "seed=3", "weights.clip=[1, 50]"]) == {
        "dist": {"dist_weight": 0.5, "sort": "hard"}, "seed": 3, "weights": {"clip": [1, 50]},
    }
    with pytest.raises(typer.BadParameter):
        parse_options(["novalue"])


def test_training_commands_are_registered_by_entry_point() -> None:
    load_plugins()
    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert {"synth", "ingest", "train", "evaluate", "export", "compare", "demo"} <= names
