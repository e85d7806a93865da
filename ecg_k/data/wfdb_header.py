"""A single-segment WFDB header parsed into a ``wfdb.Record``, as ``wfdb.rdheader`` parses it, from lines already read.

``wfdb.rdheader`` looks up each field's type and default in a pandas table once per field and signal line
(about 240 ``DataFrame.loc`` calls for a 12-lead header): that parse costs more than reading the samples.
This module takes the same patterns (``rx_record``, ``rx_signal``) and the same type and default table
(``RECORD_SPECS``, ``SIGNAL_SPECS``) from wfdb, read once into dicts, and applies wfdb 4.3.1's rules (pinned):
empty fields take their read default, a missing baseline takes ADC zero, an ADC gain of 0 means 200, a
near-integral rate becomes an int. A test holds every attribute equal to ``wfdb.rdheader`` on real and
edge-case headers.
"""

from __future__ import annotations

import datetime
from typing import Any

import wfdb
from wfdb.io._header import RECORD_SPECS, SIGNAL_SPECS, float_types, int_types, wfdb_strptime
from wfdb.io.header import HeaderSyntaxError, rx_record, rx_signal

_RECORD_FIELDS: tuple[str, ...] = tuple(RECORD_SPECS.index)
_SIGNAL_FIELDS: tuple[str, ...] = tuple(SIGNAL_SPECS.index)
_TYPES: dict[str, Any] = {**RECORD_SPECS["allowed_types"].to_dict(), **SIGNAL_SPECS["allowed_types"].to_dict()}
_RECORD_DEFAULTS: dict[str, Any] = RECORD_SPECS["read_default"].to_dict()
_SIGNAL_DEFAULTS: dict[str, Any] = SIGNAL_SPECS["read_default"].to_dict()


def _record_fields(record_line: str) -> dict[str, Any]:
    """The record line's fields, typed as ``wfdb.io._header._parse_record_line`` types them."""
    match = rx_record.match(record_line)
    if match is None:
        raise HeaderSyntaxError("invalid syntax in record line")
    fields: dict[str, Any] = dict(zip(_RECORD_FIELDS, match.groups(), strict=True))
    for field, text in fields.items():
        if text == "":
            fields[field] = _RECORD_DEFAULTS[field]
        elif _TYPES[field] is int_types:
            fields[field] = int(text)
        elif _TYPES[field] is float_types:
            fields[field] = float(text)
            if field == "fs" and round(fields[field], 8) == float(int(fields[field])):
                fields[field] = int(fields[field])
        elif field == "base_time":
            fields[field] = wfdb_strptime(text)
        elif field == "base_date":
            fields[field] = datetime.datetime.strptime(text, "%d/%m/%Y").date()
    if fields["base_date"] and fields["base_time"]:
        fields["base_datetime"] = datetime.datetime.combine(fields["base_date"], fields["base_time"])
    return fields


def _signal_fields(signal_lines: list[str]) -> dict[str, list[Any]]:
    """Per field, one value per signal line, typed as ``wfdb.io._header._parse_signal_lines`` types them."""
    columns: dict[str, list[Any]] = {field: [] for field in _SIGNAL_FIELDS}
    for line in signal_lines:
        match = rx_signal.match(line)
        if match is None:
            raise HeaderSyntaxError("invalid syntax in signal line")
        texts = dict(zip(_SIGNAL_FIELDS, match.groups(), strict=True))
        for field, text in texts.items():
            value: Any
            if text == "":
                value = _SIGNAL_DEFAULTS[field]
                if field == "baseline" and texts["adc_zero"] != "":
                    value = int(texts["adc_zero"])
            elif _TYPES[field] is int_types:
                value = int(text)
            elif _TYPES[field] is float_types:
                value = float(text)
                if field == "adc_gain" and value == 0:
                    value = 200.0
            else:
                value = text
            columns[field].append(value)
    return columns


def parse_header(lines: list[str], comments: list[str]) -> wfdb.Record:
    """The ``wfdb.Record`` that ``wfdb.rdheader`` returns for a single-segment header, given its record and
    signal ``lines`` and its ``comments`` as ``wfdb.io.header.parse_header_content`` splits its text.

    Raises ``HeaderSyntaxError`` (or ``ValueError`` from a field's conversion) where wfdb would, and
    ``ValueError`` for a multi-segment header, which this project does not read.
    """
    if not lines:
        raise HeaderSyntaxError("the header has no record line")
    record_fields = _record_fields(lines[0])
    if record_fields["n_seg"] is not None:
        raise ValueError("multi-segment headers are not supported")
    record = wfdb.Record()
    if len(lines) > 1:
        for field, values in _signal_fields(lines[1:]).items():
            setattr(record, field, values)
    for field, value in record_fields.items():
        if field != "n_seg":
            setattr(record, field, value)
    record.comments = [line.strip(" \t#") for line in comments]
    return record
