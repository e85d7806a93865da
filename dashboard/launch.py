"""Running the dashboard as a Streamlit server process: the command line (loopback, no usage statistics,
no file watcher) and its environment, for ``ecgk dashboard``.

The options are passed on the command line, not only in ``.streamlit/config.toml``, because Streamlit reads
that file from the working directory, which may be anywhere. The database and the ECG store reach the
server as ``ECGK_DATABASE_URL`` and ``ECGK_HOME``/``ECGK_ECG_STORE``, like every ecg-k process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")
HEALTH_PATH = "/_stcore/health"
"""Where a running dashboard answers 200 once it serves."""
STREAMLIT_OPTIONS = {
    "server.headless": "true",
    "browser.gatherUsageStats": "false",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "client.toolbarMode": "minimal",
    "runner.magicEnabled": "false",
}
"""Always passed (install.md section 7: no telemetry; no watcher: the app does not change under a server;
no "magic": a bare string in a page is a comment, not output)."""


def streamlit_command(host: str, port: int) -> list[str]:
    """``python -m streamlit run dashboard/app.py`` bound to ``host:port`` with :data:`STREAMLIT_OPTIONS`."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1-65535, got {port}")
    options = [item for key, value in STREAMLIT_OPTIONS.items() for item in (f"--{key}", value)]
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host,
            "--server.port", str(port), *options]


def dashboard_environment(database_url: str | None = None, home: Path | None = None) -> dict[str, str]:
    """This process's environment with the dashboard's database and home set (when given)."""
    environment = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    if database_url is not None:
        environment["ECGK_DATABASE_URL"] = database_url
    if home is not None:
        environment["ECGK_HOME"] = str(home)
    return environment
