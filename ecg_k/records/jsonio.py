"""JSON files: the indented, atomic writing every artefact uses, and the parsing shared by the record readers
(the only code that parses a record file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (the format of every manifest and card)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and rename, so a crash or a full disk never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_json(tmp, payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RecordError(ValueError):
    """A record file that is missing, unreadable, of an unknown format or invalid."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (a record never holds NaN or infinities)")


def read_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; a :class:`RecordError` naming ``what`` when it is absent, not strict JSON
    (NaN and infinities included) or not an object."""
    if not path.is_file():
        raise RecordError(f"no {what} at {path}")
    try:
        payload = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"{what} {path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise RecordError(f"{what} {path} must hold a JSON object, got {type(payload).__name__}")
    return payload


def describe(error: ValidationError) -> str:
    """Every problem of a validation error with its field path, on one line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}" for e in error.errors())


def check_format(payload: dict[str, Any], expected: str, what: str, source: Path | str) -> None:
    """Refuse a record whose ``format`` is not ``expected``, naming both."""
    found = payload.get("format")
    if found != expected:
        raise RecordError(f"{what} {source} has format {found!r}; this code reads {expected!r}")


def record_payload(record: BaseModel) -> dict[str, Any]:
    """The JSON form of a record as its file holds it: top-level fields that are None are left out."""
    return {key: value for key, value in record.model_dump(mode="json").items() if value is not None}


def write_record(path: Path, record: BaseModel) -> None:
    """Write ``record`` atomically as indented JSON (:func:`record_payload`)."""
    write_json_atomic(path, record_payload(record))
