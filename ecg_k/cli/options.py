"""Reading command-line options the commands share: integer lists, ``-o KEY=VALUE`` overrides, and a
pydantic validation error turned into a line that names the option."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError

from ecg_k.cli.output import fail


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"50971,50822"`` -> ``(50971, 50822)``; a CLI error naming ``option`` for anything else."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"invalid option {option}: expected comma-separated integers, got {text!r}")


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["dist.loss_weight=1", "seed=3"]`` -> nested dict; values parsed as JSON when they can be."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.strip().split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


def validation_message(err: ValidationError, command: Callable[..., object]) -> str:
    """The first problem of a validation error as a CLI error line, ``invalid option OPTION: message``.

    The option is ``command``'s ``--name`` for a field of that name (nested or not), else ``-o field.path``
    when ``command`` takes ``-o`` overrides (a parameter ``option``); a rule across fields names no option.
    """
    first = err.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    path = [str(part) for part in first["loc"]]
    if not path:
        return f"invalid options: {message}"
    parameters = inspect.signature(command).parameters
    if path[-1] in parameters:
        return f"invalid option --{path[-1].replace('_', '-')}: {message}"
    if "option" in parameters:
        return f"invalid option -o {'.'.join(path)}: {message}"
    return f"invalid option {'.'.join(path)}: {message}"
