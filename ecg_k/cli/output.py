"""What every ``ecgk`` command prints through: the consoles, and the one-line error that ends a command."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    """``error: message`` on stderr, on one line (the message is text, never markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error and exit non-zero (never a traceback for bad input)."""
    print_error(message)
    raise typer.Exit(code)
