"""The root ``ecgk`` app: its version option, the commands of ``ecg_k`` (data, database), the commands other
packages register through the ``ecgk.commands`` entry points, and the entry point that turns a missing extra,
Ctrl-C or a full disk into a one-line message."""

from __future__ import annotations

import errno
import functools
import sys
from importlib.metadata import entry_points
from typing import Annotated

import typer

from ecg_k.cli.data import ingest, synth
from ecg_k.cli.database import audit_app, db_app, keys_app, models_app
from ecg_k.cli.output import err_console, print_error
from ecg_k.version import code_version

app = typer.Typer(
    name="ecgk", help="ecg-k: blood potassium from the ECG.", no_args_is_help=True, add_completion=False
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.command()(synth)
app.command()(ingest)


COMMAND_EXTRAS = {
    **dict.fromkeys(("train", "evaluate", "export", "compare", "retrain"), "train"),
    "serve": "service", "dashboard": "dashboard", "demo": "all",
    **dict.fromkeys(("db", "keys", "models"), "db"),
}
"""The pip extra (pyproject.toml) each command needs beyond the base install."""
OWN_PACKAGES = frozenset({"ecg_k", "ecgk_demo", "training", "service", "dashboard"})


def version_line() -> str:
    """``ecg-k 0.1.0 (code 1a2b3c4d5e6f-dirty)``: the package version and the git commit it runs from."""
    version = code_version()
    commit = version["git_commit"]
    if not commit:
        return f"ecg-k {version['package']} (code: installed package, no git checkout)"
    return f"ecg-k {version['package']} (code {str(commit)[:12]}{'-dirty' if version['git_dirty'] else ''})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Show the package and code version and exit.")] = False,
) -> None:
    """ecg-k: blood potassium from the ECG."""


@functools.cache
def load_plugins() -> None:
    """Add the commands other packages register under the ``ecgk.commands`` entry-point group."""
    for entry in entry_points(group="ecgk.commands"):
        entry.load()(app)


STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
"""A full disk, a file over the size limit, an exhausted quota: reported as such, never as a traceback."""


def main() -> None:
    """Console-script entry point."""
    load_plugins()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except ModuleNotFoundError as err:
        missing = (err.name or "").partition(".")[0]
        if not missing or missing in OWN_PACKAGES:
            raise
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        extra = COMMAND_EXTRAS.get(command, "all")
        print_error(f"`ecgk {command}` needs the '{extra}' extra ({missing} is not installed): "
                    f"pip install 'ecg-k[{extra}]'")
        sys.exit(2)
    except OSError as err:
        if err.errno not in STORAGE_FULL_ERRNOS:
            raise
        where = f" writing {err.filename}" if err.filename else ""
        err_console.print(f"[bold red]error:[/] out of storage{where} ({err.strerror or err}); artefacts already "
                          "written are intact (every file is written to a temporary name first): free space "
                          "and rerun the same command to resume")
        sys.exit(1)
