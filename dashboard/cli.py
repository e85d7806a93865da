"""``ecgk dashboard``: registered into the ``ecgk`` app through the ``ecgk.commands`` entry point. After its
checks it replaces itself with the Streamlit server (exec), so signals (Ctrl-C, a container's SIGTERM) reach
the server directly and the server process never holds this CLI's imports."""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def dashboard(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = DEFAULT_PORT,
    database_url: Annotated[str | None, typer.Option(
        help="Database URL (default: ECGK_DATABASE_URL, else SQLite under ECGK_HOME).")] = None,
) -> None:
    """The clinician review and few-shot audit dashboard (Streamlit): model audit, live monitoring, review
    queue. The database must be migrated (`ecgk db upgrade`)."""
    if importlib.util.find_spec("streamlit") is None:  # the extra, named by ecgk before any database check
        raise ModuleNotFoundError("No module named 'streamlit'", name="streamlit")
    from dashboard.launch import dashboard_environment, streamlit_command
    from ecg_k.cli import console
    from ecg_k.cli.database import clear_errors, require_head, shown_url

    with clear_errors():
        require_head(database_url)
    command = streamlit_command(host, port)
    console.print(f"dashboard on http://{host}:{port} (database {shown_url(database_url)}); Ctrl-C stops it")
    console.file.flush()  # exec discards unflushed output
    os.execve(command[0], command, dashboard_environment(database_url))


def register(app: typer.Typer) -> None:
    """Entry point of the ``ecgk.commands`` group."""
    app.command()(dashboard)
