"""``ecgk dashboard`` and the launcher: loopback and no usage statistics by default, checks before start,
and a dashboard process that never imports torch or training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dashboard.cli import register
from dashboard.launch import APP, dashboard_environment, streamlit_command
from ecgk_demo.loopback import free_port, wait_until_ok
from tests.dashboard.conftest import Seeded

REPO_ROOT = Path(__file__).resolve().parents[2]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command()(lambda: None)  # a second command, so "dashboard" is addressed by name
    return app


def test_streamlit_command_binds_loopback_without_telemetry() -> None:
    command = streamlit_command("127.0.0.1", 8600)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options == {"--server.address": "127.0.0.1", "--server.port": "8600", "--server.headless": "true",
                       "--browser.gatherUsageStats": "false", "--server.fileWatcherType": "none",
                       "--server.runOnSave": "false", "--client.toolbarMode": "minimal",
                       "--runner.magicEnabled": "false"}
    with pytest.raises(ValueError, match="port must be in 1-65535"):
        streamlit_command("127.0.0.1", 70000)
    environment = dashboard_environment("sqlite:///x.db", Path("/srv/ecgk"))
    assert (environment["ECGK_DATABASE_URL"], environment["ECGK_HOME"]) == ("sqlite:///x.db", "/srv/ecgk")
    assert environment["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


def test_committed_streamlit_config_matches_the_launcher() -> None:
    config = (REPO_ROOT / ".streamlit" / "config.toml").read_text()
    for line in ('address = "127.0.0.1"', "headless = true", "gatherUsageStats = false", "magicEnabled = false"):
        assert line in config


@pytest.mark.parametrize(("arguments", "message"), [
    (["--database-url", "nonsense://"], "Can't load plugin"),
    (["--port", "0"], "greater than or equal to 1"),
])
def test_bad_options_exit_2(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(_app(), ["dashboard", *arguments])
    assert result.exit_code == 2 and message in result.output


def test_an_unmigrated_database_is_refused_before_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["dashboard", "--database-url", f"sqlite:///{tmp_path / 'new.db'}"])
    assert result.exit_code == 2 and "run `ecgk db upgrade`" in result.output


def test_ecgk_dashboard_serves_until_terminated(seeded: Seeded) -> None:
    port = free_port()
    environment = {**os.environ, "ECGK_HOME": str(seeded.home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ecg_k", "dashboard", "--port", str(port), "--database-url", seeded.database_url],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/_stcore/health", process, 60)
        arguments = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"streamlit" in arguments and b"--browser.gatherUsageStats" in arguments  # exec'ed in place
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"dashboard on http://127.0.0.1:{port}" in output.decode()


def test_the_dashboard_never_imports_torch_or_training(seeded: Seeded) -> None:
    """Every page, run as the server runs it, in a fresh interpreter: no torch, no training."""
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({str(APP)!r}, default_timeout=60).run()\n"
        "for page in ('views/live_monitoring.py', 'views/review_queue.py'):\n"
        "    app.switch_page(page).run()\n"
        "    assert not app.exception, app.exception\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'onnx')))\n"
    )
    environment = {**os.environ, "ECGK_HOME": str(seeded.home), "ECGK_DATABASE_URL": seeded.database_url}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
