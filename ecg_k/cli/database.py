"""``ecgk db`` (migrations), ``ecgk keys`` (API keys), ``ecgk models`` (the model registry) and ``ecgk audit``
(the audit chain), and the helpers other packages' database commands share. Database modules are imported per
command, so the rest of ``ecgk`` starts without SQLAlchemy."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer

from ecg_k.cli.output import fail

db_app = typer.Typer(help="The database: schema migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create (the key is shown once), list, revoke.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: register an exported model, promote a champion, list.",
                         no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify its hash chain.", no_args_is_help=True)

RoleName = Literal["client", "reviewer", "admin"]
"""The values of ecg_k.db.models.Role, listed so that this module needs no SQLAlchemy (a test compares them)."""

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: ECGK_DATABASE_URL, else SQLite under ECGK_HOME)."),
]


@contextmanager
def clear_errors() -> Iterator[None]:
    """Bad input (a bad URL, an unknown role or key) exits 2; an unreachable database exits 1."""
    import sqlalchemy.exc

    try:
        yield
    except (ValueError, sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as err:
        fail(str(err))
    except sqlalchemy.exc.OperationalError as err:
        fail(f"database unavailable: {err.orig}", code=1)


def shown_url(url: str | None) -> str:
    """The URL as safe to print (password hidden)."""
    import sqlalchemy as sa

    from ecg_k.db.session import resolve_database_url

    return sa.make_url(resolve_database_url(url)).render_as_string(hide_password=True)


def cli_actor() -> str:
    """Who runs the CLI, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return f"cli:uid-{os.getuid()}"


def require_head(url: str | None) -> None:
    """Exit 2 unless the database at ``url`` is migrated to the newest revision."""
    from ecg_k.db.migrate import current_revision, head_revision

    current, head = current_revision(url), head_revision()
    if current != head:
        fail(f"database {shown_url(url)} is at revision {current or 'none'}, not {head}: run `ecgk db upgrade`")


@db_app.command()
def upgrade(url: UrlOption = None) -> None:
    """Create or migrate the schema to the newest revision (safe to repeat)."""
    from ecg_k.db.migrate import current_revision
    from ecg_k.db.migrate import upgrade as upgrade_to_head

    with clear_errors():
        upgrade_to_head(url)
        typer.echo(f"database {shown_url(url)} at revision {current_revision(url)} (head)")


@db_app.command()
def current(url: UrlOption = None) -> None:
    """Show the schema revision of the database and the newest one."""
    from ecg_k.db.migrate import current_revision, head_revision

    with clear_errors():
        revision, head = current_revision(url), head_revision()
        state = "up to date" if revision == head else "behind: run `ecgk db upgrade`"
        typer.echo(f"database {shown_url(url)}: revision {revision or 'none'}, head {head} ({state})")


@audit_app.command()
def verify(url: UrlOption = None) -> None:
    """Walk the audit chain and recompute every hash: exit 0 when intact, 1 naming the first broken link."""
    from ecg_k.db.audit import verify_chain

    with clear_errors():
        require_head(url)
        report = verify_chain(url)
    if report.broken is not None:
        fail(f"audit chain broken after {report.events} intact event(s): {report.broken}", code=1)
    typer.echo(f"audit chain intact: {report.events} event(s); head seq {report.head_seq}, hash {report.head_hash} "
               "(keep this line outside the database to detect a rewritten chain)")


@keys_app.command()
def create(
    role: Annotated[RoleName, typer.Option(help="What the key may do.")],
    name: Annotated[str | None, typer.Option(help="Who or what the key is for.")] = None,
    url: UrlOption = None,
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    from ecg_k.db.api_keys import create_api_key
    from ecg_k.db.session import session_scope

    with clear_errors():
        require_head(url)
        with session_scope(url) as session:
            new = create_api_key(session, role, name=name, actor=cli_actor())
        role = new.key.role.value
        typer.echo(f"API key {new.key.id} ({role}) created; store it now, it is not shown again:", err=True)
        typer.echo(new.plaintext)


@keys_app.command("list")
def list_keys(url: UrlOption = None) -> None:
    """List API keys (id, prefix, role, name, created, revoked); secrets are never shown."""
    from rich.console import Console
    from rich.table import Table

    from ecg_k.db.api_keys import list_api_keys
    from ecg_k.db.session import session_scope

    with clear_errors():
        require_head(url)
        with session_scope(url) as session:
            keys = list_api_keys(session)
    table = Table(title=f"API keys in {shown_url(url)}")
    for column in ("id", "prefix", "role", "name", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
        table.add_row(str(key.id), key.prefix, key.role.value, key.name or "-",
                      key.created_at.isoformat(timespec="seconds"), revoked)
    Console().print(table)


@keys_app.command()
def revoke(
    key_id: Annotated[int, typer.Argument(help="Id of the key (see `ecgk keys list`).")],
    url: UrlOption = None,
) -> None:
    """Revoke an API key for good."""
    from ecg_k.db.api_keys import revoke_api_key
    from ecg_k.db.session import session_scope

    with clear_errors():
        require_head(url)
        with session_scope(url) as session:
            revoke_api_key(session, key_id, actor=cli_actor())
        typer.echo(f"API key {key_id} revoked")


@models_app.command("list")
def list_models(url: UrlOption = None) -> None:
    """List registered model versions, oldest first: name, version, status, sha256, registered, path (one per
    line, tab-separated, for people and scripts alike)."""
    from ecg_k.db.registry import list_versions
    from ecg_k.db.session import session_scope

    with clear_errors():
        require_head(url)
        with session_scope(url) as session:
            for v in list_versions(session):
                typer.echo("\t".join((v.name, v.version, v.status.value, v.sha256,
                                      v.created_at.isoformat(timespec="seconds"), v.path)))


@models_app.command()
def register(
    card: Annotated[Path, typer.Argument(help="model_card.json of an exported run (model.onnx beside it).")],
    promote: Annotated[bool, typer.Option("--promote", help="Make it the champion at once (audited).")] = False,
    url: UrlOption = None,
) -> None:
    """Register an exported model (its sha256 checked against the card) as a challenger, or the champion."""
    from ecg_k.db.registry import promote as promote_version
    from ecg_k.db.registry import register_model
    from ecg_k.db.session import session_scope

    with clear_errors():
        require_head(url)
        with session_scope(url) as session:
            version = register_model(session, card, actor=cli_actor())
            if promote:
                promote_version(session, version.name, version.version, actor=cli_actor())
            typer.echo(f"{version.name} {version.version} registered as {version.status.value}")


@models_app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model name (see `ecgk models list`).")],
    version: Annotated[str, typer.Argument(help="Version to make the champion (a retired one rolls back).")],
    url: UrlOption = None,
) -> None:
    """Make a registered version the champion and retire the previous one (audited); a running API swaps
    to it within ECGK_MODEL_POLL_S seconds."""
    from ecg_k.db.registry import promote as promote_version
    from ecg_k.db.session import session_scope

    with clear_errors():
        require_head(url)
        with session_scope(url) as session:
            promote_version(session, name, version, actor=cli_actor())
        typer.echo(f"{name} {version} is the champion")
