"""Hostile input against the live server, on SQLite and PostgreSQL (tests/service/conftest.py): path traversal
in WFDB upload names and in a header's file fields, oversized, inconsistent or lying headers and signal files
(a header that does not describe its data exactly, wrong checksums), absurd rates and lengths, NaN/Infinity
literals, deep nesting, repeated keys, look-alike lead names, strings and booleans for numbers, other content
types and encodings in JSON, SQL-ish strings and control characters in every text field, implausible labs,
and a hypothesis run of generated JSON bodies.

Every refused request gets a 4xx with a message and adds no row but its audit event; no request gets a 5xx;
every table survives; a file named by an upload or a header is neither written nor read.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from ecg_k.db.audit import verify_chain
from ecg_k.db.models import Base, Prediction, Review
from ecg_k.db.session import create_db_engine, session_scope
from tests.service.conftest import RawEcg, Service

SQLISH = ("'; DROP TABLE predictions; --", '" OR 1=1 --', "1); DELETE FROM audit_events; --")
OUT_OF_UTC_RANGE = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
MAX_HEADER_BYTES = 64 * 1024
BODY_LIMIT_BYTES = 10 * 2**20  # the service's default max_body_bytes


def table_counts(service: Service) -> dict[str, int]:
    """Rows in every table of the schema (a dropped table fails here)."""
    engine = create_db_engine(service.database_url)
    try:
        with engine.connect() as connection:
            return {name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                    for name, table in Base.metadata.tables.items()}
    finally:
        engine.dispose()


def assert_refused(service: Service, send: Callable[[], httpx.Response], status: int,
                   reason: str | None = None) -> httpx.Response:
    """``send()`` gets ``status`` with a message (and ``reason``, for an unusable ECG), and adds exactly one
    row, its audit event, recorded as denied or failed."""
    before = table_counts(service)
    response = send()
    assert response.status_code == status, response.text[:500]
    detail = response.json()["detail"]
    assert detail, response.text
    if reason is not None:
        assert detail["reason"] == reason and detail["message"], detail
    assert table_counts(service) == before | {"audit_events": before["audit_events"] + 1}
    (audit,) = service.audit_events(response.headers["X-Request-Id"])
    assert audit.outcome.value in ("denied", "failure")
    return response


def post_json(service: Service, body: bytes | str, path: str = "/v1/predictions", key: str = "client",
              **headers: str) -> httpx.Response:
    with service.client(key) as client:
        return client.post(path, content=body, headers={"content-type": "application/json", **headers})


# -------------------------------------------------------------------------------------------------- WFDB


def multipart(parts: list[tuple[str, bytes | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body built by hand, so that file names go out byte for byte (httpx escapes
    control characters); ``parts`` are (field, file name or None, content)."""
    boundary = uuid.uuid4().hex.encode()
    body = b""
    for field, filename, content in parts:
        disposition = b'form-data; name="' + field.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


@dataclass(frozen=True)
class Upload:
    """A WFDB upload: the header text, the signal bytes, their file names and the form fields."""

    header: bytes
    signal: bytes
    header_name: bytes = b"record.hea"
    signal_name: bytes = b"record.mat"
    form: tuple[tuple[str, str], ...] = ()

    def send(self, service: Service) -> httpx.Response:
        body, content_type = multipart([("header", self.header_name, self.header),
                                        ("signal", self.signal_name, self.signal),
                                        *((name, None, value.encode()) for name, value in self.form)])
        with service.client("client") as client:
            return client.post("/v1/predictions/wfdb", content=body, headers={"content-type": content_type})


@pytest.fixture(scope="module")
def cinc_upload(cinc_record: Path) -> Upload:
    """The real CinC record E07500 (.hea + .mat), which scores."""
    return Upload(cinc_record.with_suffix(".hea").read_bytes(), cinc_record.with_suffix(".mat").read_bytes())


def with_lines(upload: Upload, edit: Callable[[list[str]], list[str]], **changes: Any) -> Upload:
    """``upload`` with its header lines edited (and other fields replaced)."""
    lines = edit(upload.header.decode().splitlines())
    return replace(upload, header=("\n".join(lines) + "\n").encode(), **changes)


def flat_signal(upload: Upload) -> bytes:
    """The .mat with its 24-byte preamble and every sample zero: a flat ECG, refused as ``flat_lead`` once the
    header's checksums say 0 too (:func:`zero_checksums`)."""
    return upload.signal[:24] + bytes(len(upload.signal) - 24)


def zero_checksums(lines: list[str]) -> list[str]:
    """The header with the checksum of every signal line set to 0 (the sum of an all-zero signal)."""
    return [lines[0], *(" ".join([*line.split()[:6], "0", *line.split()[7:]]) for line in lines[1:13]),
            *lines[13:]]


def set_signal_files(name: str) -> Callable[[list[str]], list[str]]:
    """Point the file field of every signal line at ``name``."""
    return lambda lines: [lines[0], *(f"{name} {line.split(maxsplit=1)[1]}" for line in lines[1:13]), *lines[13:]]


def test_the_real_record_scores(service: Service, cinc_upload: Upload) -> None:
    """The base of the hostile variants below is accepted as it is."""
    response = cinc_upload.send(service)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("name", ["{up}{target}", "/{target}", "..\\..\\..\\x.mat", "x\x00/../../x.mat",
                                  "{up}x.mat\r\nContent-Type: text/plain"])
def test_traversal_in_upload_names_writes_nothing_outside(service: Service, cinc_upload: Upload, tmp_path: Path,
                                                          name: str) -> None:
    target = tmp_path / "escaped.mat"
    raw = name.format(up="../" * 40, target=str(target).lstrip("/")).encode()
    upload = replace(cinc_upload, header_name=raw.replace(b".mat", b".hea"), signal_name=raw)
    response = upload.send(service)  # the names are ignored: the record scores
    assert response.status_code == 201, response.text
    assert not target.exists() and not target.with_suffix(".hea").exists()


@pytest.mark.parametrize(("edit", "reason"), [
    pytest.param(set_signal_files("{canary}"), "flat_lead", id="absolute"),
    pytest.param(set_signal_files("{up}{canary}"), "flat_lead", id="relative"),
    pytest.param(set_signal_files("/etc/passwd"), "flat_lead", id="etc-passwd"),
    pytest.param(lambda lines: [*lines, "{canary} 16x1+24 1000.0(0)/mV 16 0 0 0 0 V7"], "unreadable",
                 id="extra-signal-line"),
    pytest.param(lambda lines: ["{up}canary " + lines[0].split(maxsplit=1)[1], *lines[1:]], "unreadable",
                 id="record-name"),
])
def test_header_file_fields_cannot_reach_other_files(service: Service, cinc_upload: Upload, tmp_path: Path,
                                                     edit: Callable[[list[str]], list[str]], reason: str) -> None:
    """A readable copy of the record lies at the named place; the upload's own signal is flat. Reading the
    canary would score (201); the service reads the upload (flat_lead) or refuses the header (unreadable)."""
    canary = tmp_path / "canary.mat"
    canary.write_bytes(cinc_upload.signal)

    def hostile(lines: list[str]) -> list[str]:
        return [line.format(up="../" * 40, canary=str(canary)) for line in edit(zero_checksums(lines))]

    upload = with_lines(cinc_upload, hostile, signal=flat_signal(cinc_upload))
    response = assert_refused(service, lambda: upload.send(service), 422, reason)
    assert str(tmp_path) not in response.text


def _record_line(**fields: str) -> Callable[[list[str]], list[str]]:
    """Replace fields of the record line ``name n_sig fs n_samples``."""
    order = ("name", "n_sig", "fs", "n_samples")

    def edit(lines: list[str]) -> list[str]:
        values = dict(zip(order, lines[0].split(), strict=True)) | fields
        return [" ".join(values[key] for key in order), *lines[1:]]

    return edit


def _signal_line(index: int, field: int, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        parts = lines[index].split()
        parts[field] = value
        return [*lines[:index], " ".join(parts), *lines[index + 1:]]

    return edit


HOSTILE_WFDB: dict[str, tuple[Callable[[Upload], Upload], int, str | None]] = {
    "header over 64 KiB": (lambda u: with_lines(u, lambda lines: [*lines, "#" + "x" * MAX_HEADER_BYTES]), 422,
                           "unreadable"),
    "60 KB line (was 30 s of regex)": (
        lambda u: with_lines(u, lambda lines: [*lines[:13], "x" * 60_000, *lines[13:]]), 422, "unreadable"),
    "5000-digit signal count (was 500)": (lambda u: with_lines(u, _record_line(n_sig="9" * 5000)), 422,
                                          "unreadable"),
    "10^12 samples": (lambda u: with_lines(u, _record_line(n_samples="1000000000000")), 422, "unreadable"),
    "skew of 10^9 samples": (lambda u: with_lines(u, _signal_line(1, 1, "16x1:1000000000+24")), 422,
                             "unreadable"),
    "fs 0": (lambda u: with_lines(u, _record_line(fs="0")), 422, "unsupported_rate"),
    "fs 1 Hz": (lambda u: with_lines(u, _record_line(fs="1")), 422, "unsupported_rate"),
    "fs 1e12": (lambda u: with_lines(u, _record_line(fs="1e12")), 422, "unreadable"),
    "fs NaN": (lambda u: with_lines(u, _record_line(fs="NaN")), 422, "unreadable"),
    "fs -500": (lambda u: with_lines(u, _record_line(fs="-500")), 422, "unreadable"),
    "unknown format": (lambda u: with_lines(u, _signal_line(1, 1, "999")), 422, "unreadable"),
    "repeated lead names (was 500)": (lambda u: with_lines(u, _signal_line(2, 8, "I")), 422, "unreadable"),
    "NUL in an unused lead name (was 500 on PostgreSQL)": (
        lambda u: with_lines(u, _signal_line(12, 8, "V6\x00")), 422, "unreadable"),
    "non-ASCII header": (lambda u: with_lines(u, _signal_line(12, 8, "V6é")), 422, "unreadable"),
    "truncated signal": (lambda u: replace(u, signal=u.signal[: len(u.signal) // 2]), 422, "unreadable"),
    "empty signal": (lambda u: replace(u, signal=b""), 422, "unreadable"),
    "signal over the body limit": (lambda u: replace(u, signal=u.signal + bytes(BODY_LIMIT_BYTES)), 413, None),
    "one-lead header over the 12-lead file (was 201)": (
        lambda u: with_lines(u, lambda lines: [_record_line(n_sig="1")(lines)[0], lines[1]]), 422, "unreadable"),
    "16-bit file declared as format 8 (was 201)": (
        lambda u: with_lines(u, lambda lines: [lines[0], *(line.replace(" 16x1+24 ", " 8x1+24 ")
                                                            for line in lines[1:])]), 422, "unreadable"),
    "data longer than declared (was 201)": (lambda u: replace(u, signal=u.signal + bytes(24)), 422, "unreadable"),
    "wrong checksum (was 201)": (lambda u: with_lines(u, _signal_line(3, 6, "1")), 422, "unreadable"),
    "signal lines naming two files": (lambda u: with_lines(u, _signal_line(2, 0, "other.mat")), 422,
                                      "unreadable"),
    "year 1 at +14:00 (was 500)": (lambda u: replace(u, form=(("ecg_time", OUT_OF_UTC_RANGE[0]),)), 422, None),
    "naive ecg_time": (lambda u: replace(u, form=(("ecg_time", "2024-05-01T08:30:00"),)), 422, None),
}


@pytest.mark.parametrize("case", list(HOSTILE_WFDB))
def test_hostile_wfdb_upload_is_refused(service: Service, cinc_upload: Upload, case: str) -> None:
    make, status, reason = HOSTILE_WFDB[case]
    upload = make(cinc_upload)
    response = assert_refused(service, lambda: upload.send(service), status, reason)
    assert "ecgk-wfdb-" not in response.text  # no server paths in messages


def test_unparsable_multipart_is_refused_and_audited(service: Service, cinc_upload: Upload) -> None:
    upload = replace(cinc_upload, signal_name=b"a" * 10_000 + b".mat")  # python-multipart refuses the part header
    assert_refused(service, lambda: upload.send(service), 400)


# -------------------------------------------------------------------------------------------------- JSON


def _replace(raw: RawEcg, **fields: Any) -> str:
    return json.dumps(raw.payload() | fields)


def _extra_lead(raw: RawEcg, name: str, samples: list[float]) -> str:
    """The real ECG without V6 and with one more lead (the schema allows 12), which the model does not read."""
    leads = {n: row.tolist() for n, row in zip(raw.lead_names, raw.signal, strict=True) if n != "V6"}
    return json.dumps({"sampling_rate": raw.fs, "leads": leads | {name: samples}})


HOSTILE_JSON: dict[str, tuple[Callable[[RawEcg], str], str | None]] = {
    "fs 0": (lambda raw: _replace(raw, sampling_rate=0), None),
    "fs -1": (lambda raw: _replace(raw, sampling_rate=-1), None),
    "fs 1e308": (lambda raw: _replace(raw, sampling_rate=1e308), None),
    "fs 1 Hz": (lambda raw: _replace(raw, sampling_rate=1), "unsupported_rate"),
    "fs NaN": (lambda raw: _replace(raw, sampling_rate=float("nan")), None),
    "fs Infinity": (lambda raw: _replace(raw, sampling_rate=float("inf")), None),
    "fs as SQL": (lambda raw: _replace(raw, sampling_rate=SQLISH[0]), None),
    "Infinity sample": (lambda raw: _replace(raw, leads={"I": [float("inf")] + raw.signal[0, 1:].tolist()}), "nan"),
    "NaN in an unused lead (was 500)": (lambda raw: _extra_lead(raw, "X", [float("nan")] * 5000), "nan"),
    "1e300 in an unused lead (was 500)": (lambda raw: _extra_lead(raw, "X", [1e300] * 5000), "nan"),
    "blank lead name (was 500)": (lambda raw: _extra_lead(raw, "  ", [0.1] * 5000), None),
    "NUL in a lead name (was 500 on PostgreSQL)": (lambda raw: _extra_lead(raw, "X\x00", [0.1] * 5000), None),
    "1000-character lead name": (lambda raw: _extra_lead(raw, "X" * 1000, [0.1] * 5000), None),
    "5 million samples within the body limit (50 000 s)": (
        lambda raw: '{"sampling_rate": 100, "leads": {"I": [' + "0," * 4_999_999 + "0]}}", "too_long"),
    "61 s, over the duration cap": (lambda raw: _replace(raw, leads={
        name: (row.tolist() * 7)[: int(61 * raw.fs)] for name, row in zip(raw.lead_names, raw.signal, strict=True)}),
        "too_long"),
    **{f"lead names I and {name!r} (the last won)": ((lambda n: lambda raw: _extra_lead(
        raw, n, raw.signal[0].tolist()))(name), "duplicate_lead") for name in ("i", " I", "ı", "Ｉ", "Ⅰ")},
    "lead_names I and i": (lambda raw: json.dumps({"sampling_rate": raw.fs, "lead_names": ["I", "i"],
                                                   "signal": raw.signal[:2].tolist()}), "duplicate_lead"),
    "repeated key, the valid value last (was 201)": (
        lambda raw: '{"sampling_rate": -1, ' + _replace(raw)[1:], "duplicate_key"),
    "repeated lead key (was 201)": (
        lambda raw: _replace(raw)[:-2] + ', "I": ' + json.dumps(raw.signal[1].tolist()) + "}}", "duplicate_key"),
    "escaped repeated key": (lambda raw: '{"sampl\\u0069ng_rate": 1, ' + _replace(raw)[1:], "duplicate_key"),
    "fs as a string (was 201)": (lambda raw: _replace(raw, sampling_rate="500"), None),
    "fs true": (lambda raw: _replace(raw, sampling_rate=True), None),
    "a sample as a string (was 201)": (
        lambda raw: _replace(raw, leads={"I": ["0.1", *raw.signal[0, 1:].tolist()]}), None),
    "a sample true (was 201)": (lambda raw: _replace(raw, leads={"I": [True, *raw.signal[0, 1:].tolist()]}), None),
    "nesting 100 000 deep": (lambda raw: '{"leads": ' + "[" * 100_000 + "]" * 100_000 + "}", None),
    "truncated body": (lambda raw: _replace(raw)[:1000], None),
    **{f"ecg_time {time} (was 500)": ((lambda t: lambda raw: _replace(raw, ecg_time=t))(time), None)
       for time in OUT_OF_UTC_RANGE},
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_hostile_json_is_refused(service: Service, raw_ecg: RawEcg, case: str) -> None:
    make, reason = HOSTILE_JSON[case]
    body = make(raw_ecg)
    assert len(body) < BODY_LIMIT_BYTES
    assert_refused(service, lambda: post_json(service, body), 422, reason)


def test_batch_reports_a_hostile_ecg_and_stores_nothing_for_it(service: Service, raw_ecg: RawEcg) -> None:
    hostile = json.loads(_extra_lead(raw_ecg, "X", [float("nan")] * 5000))
    body = json.dumps({"ecgs": [raw_ecg.payload(), hostile]})
    before = table_counts(service)
    response = post_json(service, body, "/v1/predictions/batch")
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first["prediction"] and second["error"]["reason"] == "nan" and second["prediction"] is None
    assert table_counts(service)["predictions"] == before["predictions"] + 1
    refused = json.dumps({"ecgs": [raw_ecg.payload() | {"ecg_time": OUT_OF_UTC_RANGE[0]}]})
    assert_refused(service, lambda: post_json(service, refused, "/v1/predictions/batch"), 422)


# ------------------------------------------------------------------------------ content types and labs


def post_raw(service: Service, path: str, body: bytes, headers: dict[str, str], key: str = "client"
             ) -> httpx.Response:
    """POST ``body`` with ``headers`` (httpx adds no Content-Type to raw content)."""
    with service.client(key) as client:
        request = client.build_request("POST", path, content=body, headers=headers)
        assert request.headers.get("content-type") == headers.get("content-type")
        return client.send(request)


CONTENT_HEADERS: dict[str, tuple[dict[str, str], int]] = {
    "no Content-Type (was 201)": ({}, 415),
    "text/plain (was 201)": ({"content-type": "text/plain"}, 415),
    "a form type (was 201)": ({"content-type": "application/x-www-form-urlencoded"}, 415),
    "gzip declared, body plain (was 201)": ({"content-type": "application/json", "content-encoding": "gzip"}, 415),
    "br encoding": ({"content-type": "application/json", "content-encoding": "br"}, 415),
}


@pytest.mark.parametrize("case", list(CONTENT_HEADERS))
@pytest.mark.parametrize("route", ["prediction", "batch", "lab", "review"])
def test_json_routes_take_plain_application_json_only(service: Service, raw_ecg: RawEcg, prediction_id: str,
                                                      case: str, route: str) -> None:
    headers, status = CONTENT_HEADERS[case]
    path, key, body = {
        "prediction": ("/v1/predictions", "client", _replace(raw_ecg)),
        "batch": ("/v1/predictions/batch", "client", json.dumps({"ecgs": [raw_ecg.payload()]})),
        "lab": (f"/v1/predictions/{prediction_id}/lab", "reviewer",
                json.dumps({"k_value": 4.2, "lab_time": "2024-05-01T09:05:00Z"})),
        "review": (f"/v1/predictions/{prediction_id}/reviews", "reviewer", json.dumps({"verdict": "agree"})),
    }[route]
    response = assert_refused(service, lambda: post_raw(service, path, body.encode(), headers, key), status)
    assert "reason" in response.json()["detail"] or "Content-Encoding" in response.json()["detail"]


def test_a_gzip_wfdb_upload_is_refused(service: Service, cinc_upload: Upload) -> None:
    body, content_type = multipart([("header", b"r.hea", cinc_upload.header), ("signal", b"r.mat",
                                                                               gzip.compress(cinc_upload.signal))])
    assert_refused(service, lambda: post_raw(service, "/v1/predictions/wfdb", body,
                                             {"content-type": content_type, "content-encoding": "gzip"}), 415)


@pytest.fixture(scope="module")
def dated_prediction(service: Service, raw_ecg: RawEcg) -> str:
    """A prediction of an ECG recorded on 2024-05-01 08:30 UTC."""
    response = post_json(service, _replace(raw_ecg, ecg_time="2024-05-01T08:30:00Z"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


HOSTILE_LABS: dict[str, dict[str, Any]] = {
    "k_value true (was stored as 1.0)": {"k_value": True},
    "k_value as a string (was 201)": {"k_value": "5.9"},
    "itemid as a string": {"itemid": "50971"},
    "itemid true": {"itemid": True},
    "lab in 1900 (was 201)": {"lab_time": "1900-01-01T00:00:00Z"},
    "lab in 1970 (was 201)": {"lab_time": "1970-01-01T00:00:00Z"},
    "lab in 3000 (was 201)": {"lab_time": "3000-01-01T00:00:00Z"},
    "lab 25 h after the ECG": {"lab_time": "2024-05-02T09:30:01Z"},
    "lab 25 h before the ECG": {"lab_time": "2024-04-30T07:29:59Z"},
}


def test_implausible_labs_are_refused_and_a_plausible_one_is_stored(service: Service, dated_prediction: str,
                                                                    subtests: pytest.Subtests) -> None:
    path = f"/v1/predictions/{dated_prediction}/lab"
    valid = {"k_value": 5.9, "lab_time": "2024-05-01T09:05:00Z", "itemid": 50971}
    for case, change in HOSTILE_LABS.items():
        with subtests.test(case=case):
            assert_refused(service, lambda c=change: post_json(service, json.dumps(valid | c), path, "reviewer"), 422)
    response = post_json(service, json.dumps(valid | {"lab_time": "2024-05-02T08:00:00Z"}), path, "reviewer")
    assert response.status_code == 201, response.text
    assert response.json()["k_value"] == 5.9


# -------------------------------------------------------------------------------------- SQL-ish strings


def _sql_requests(raw: RawEcg, upload: Upload, prediction_id: str, text: str,
                  ) -> dict[str, Callable[[Service], httpx.Response]]:
    """One request per text field, carrying ``text`` there (and only there), each refused with a 422."""
    lab = {"k_value": 4.2, "lab_time": "2024-05-01T09:05:00Z"}
    base = f"/v1/predictions/{prediction_id}"
    return {
        "patient_id": lambda s: post_json(s, _replace(raw, patient_id=text)),
        "lead name": lambda s: post_json(s, json.dumps({"sampling_rate": raw.fs,
                                                        "leads": {text: raw.signal[0].tolist()}})),
        "lead_names": lambda s: post_json(s, json.dumps({"sampling_rate": raw.fs, "lead_names": [text],
                                                         "signal": [raw.signal[0].tolist()]})),
        "ecg_time": lambda s: post_json(s, _replace(raw, ecg_time=text)),
        "extra field": lambda s: post_json(s, _replace(raw, **{text: 1})),
        "wfdb patient_id": lambda s: replace(upload, form=(("patient_id", text),)).send(s),
        "wfdb ecg_time": lambda s: replace(upload, form=(("ecg_time", text),)).send(s),
        "lab itemid": lambda s: post_json(s, json.dumps(lab | {"itemid": text}), f"{base}/lab", "reviewer"),
        "lab k_value": lambda s: post_json(s, json.dumps(lab | {"k_value": text}), f"{base}/lab", "reviewer"),
        "lab_time": lambda s: post_json(s, json.dumps(lab | {"lab_time": text}), f"{base}/lab", "reviewer"),
        "review verdict": lambda s: post_json(s, json.dumps({"verdict": text}), f"{base}/reviews", "reviewer"),
        "review comment NUL": lambda s: post_json(s, json.dumps({"verdict": "agree", "comment": text + "\x00"}),
                                                  f"{base}/reviews", "reviewer"),
        "prediction id": lambda s: post_json(s, json.dumps(lab), f"/v1/predictions/{quote(text, safe='')}/lab",
                                             "reviewer"),
    }


@pytest.mark.parametrize("text", SQLISH)
def test_sql_ish_strings_in_every_text_field_are_refused(service: Service, raw_ecg: RawEcg, cinc_upload: Upload,
                                                         prediction_id: str, text: str,
                                                         subtests: pytest.Subtests) -> None:
    for field, send in _sql_requests(raw_ecg, cinc_upload, prediction_id, text).items():
        with subtests.test(field=field):
            assert_refused(service, partial(send, service), 422)
    with subtests.test(field="X-API-Key"):
        assert_refused(service, lambda: httpx.get(f"{service.base_url}/v1/models", headers={"X-API-Key": text}),
                       401)


@pytest.mark.parametrize("text", SQLISH)
def test_sql_ish_free_text_is_stored_verbatim(service: Service, raw_ecg: RawEcg, prediction_id: str,
                                              text: str) -> None:
    """Where free text is allowed (an extra lead's name, a review comment) it is data, not SQL."""
    created = post_json(service, _extra_lead(raw_ecg, text, raw_ecg.signal[11].tolist()))
    assert created.status_code == 201, created.text
    with service.client("reviewer") as reviewer:
        review = reviewer.post(f"/v1/predictions/{prediction_id}/reviews", json={"verdict": "agree", "comment": text})
    assert review.status_code == 201, review.text
    with session_scope(service.database_url) as session:
        stored = session.get(Prediction, uuid.UUID(created.json()["id"]))
        assert stored is not None and stored.quality["leads"][-1] == text
        assert session.get(Review, review.json()["id"]).comment == text
    assert set(table_counts(service)) == set(Base.metadata.tables)


# ---------------------------------------------------------------------------------- generated JSON bodies

LEAD_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "i", " I ", "", " ",
              "X\x00", "\u202e", "💥", *SQLISH)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(), st.text(max_size=20),
    st.sampled_from([*SQLISH, *OUT_OF_UTC_RANGE, "2024-05-01T08:30:00", "2024-05-01T08:30:00Z", "pseudo-1"]),
)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)


@dataclass(frozen=True)
class SetKey:
    key: str
    value: Any


@dataclass(frozen=True)
class DropKey:
    key: str


@dataclass(frozen=True)
class RenameLead:
    lead: int
    name: str


@dataclass(frozen=True)
class SetSample:
    """Set sample ``at`` (a fraction of the length) of a lead."""

    lead: int
    at: float
    value: Any


@dataclass(frozen=True)
class CutLead:
    lead: int
    fraction: float


@dataclass(frozen=True)
class CutBody:
    """Send only the first ``fraction`` of the serialized body."""

    fraction: float


BodyEdit = SetKey | DropKey | RenameLead | SetSample | CutLead | CutBody
KEYS = ("sampling_rate", "leads", "lead_names", "signal", "ecg_time", "patient_id", "extra")
body_edits = st.lists(st.one_of(
    st.builds(SetKey, st.sampled_from(KEYS), json_value),
    st.builds(DropKey, st.sampled_from(KEYS)),
    st.builds(RenameLead, st.integers(0, 11), st.sampled_from(LEAD_NAMES) | st.text(max_size=70)),
    st.builds(SetSample, st.integers(0, 11), st.floats(0, 1), st.floats() | json_value),
    st.builds(CutLead, st.integers(0, 11), st.floats(0, 1)),
    st.builds(CutBody, st.floats(0, 1)),
), max_size=3)


def edited_body(raw: RawEcg, edits: list[BodyEdit]) -> str:
    """The real ECG's JSON after ``edits`` (NaN and Infinity written as the literals Python's json writes)."""
    body: dict[str, Any] = raw.payload()
    leads: list[tuple[str, list[Any]]] = list(body.pop("leads").items())
    cut = 1.0
    for change in edits:
        if isinstance(change, SetKey):
            body[change.key] = change.value
        elif isinstance(change, DropKey):
            body.pop(change.key, None)
            leads = [] if change.key == "leads" else leads
        elif isinstance(change, RenameLead) and leads:
            index = change.lead % len(leads)
            leads[index] = (change.name, leads[index][1])
        elif isinstance(change, SetSample) and leads:
            samples = list(leads[change.lead % len(leads)][1])
            if samples:
                samples[min(int(change.at * len(samples)), len(samples) - 1)] = change.value
            leads[change.lead % len(leads)] = (leads[change.lead % len(leads)][0], samples)
        elif isinstance(change, CutLead) and leads:
            name, samples = leads[change.lead % len(leads)]
            leads[change.lead % len(leads)] = (name, samples[: int(change.fraction * len(samples))])
        elif isinstance(change, CutBody):
            cut = change.fraction
    if leads and "leads" not in body:
        body["leads"] = dict(leads)
    text = json.dumps(body)
    return text[: int(cut * len(text))] if cut < 1 else text


def test_generated_json_bodies_never_get_a_5xx(service: Service, raw_ecg: RawEcg) -> None:
    """Each generated body is scored (201, one prediction) or refused (4xx with a message, no prediction);
    either way exactly one audit event."""
    before = table_counts(service)
    statuses: Counter[int] = Counter()

    @settings(max_examples=100, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(edits=body_edits)
    def run(edits: list[BodyEdit]) -> None:
        response = post_json(service, edited_body(raw_ecg, edits))
        assert response.status_code in (201, 422), response.text[:500]
        if response.status_code == 422:
            assert response.json()["detail"]
        statuses[response.status_code] += 1
        event(f"status {response.status_code}")

    run()
    after = table_counts(service)
    print(f"generated JSON bodies: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    assert statuses[201] >= 10 and statuses[422] >= 30, statuses
    assert after["predictions"] - before["predictions"] == statuses[201]
    assert after["audit_events"] - before["audit_events"] == sum(statuses.values())
    assert service.process.poll() is None


def test_no_request_got_or_logged_a_5xx(service: Service) -> None:
    """Last in this module: the access log of every request above (and of the modules before) holds no 5xx
    and the server logged no traceback; the audit chain all of them wrote verifies. Prints the requests per
    route and status."""
    log = service.log()
    lines = re.findall(r"service\.access (\S+) (\S+) (\d{3}) ", log)
    assert len(lines) > 100 and "Traceback" not in log
    assert not [line for line in lines if line[2].startswith("5")]
    assert verify_chain(service.database_url).broken is None
    print("requests by route and status:", dict(sorted(Counter(f"{m} {r} {s}" for m, r, s in lines).items())))
