"""The audit hash chain (ecg_k.db.audit): intact after real writes, intact under concurrent writers, and
``ecgk audit verify`` names the first broken link after each tampering the triggers do not stop, on copies of
one populated database, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ecg_k.cli import app
from ecg_k.db.api_keys import create_api_key
from ecg_k.db.audit import entry_hash, record_audit, verify_chain
from ecg_k.db.models import (
    AuditChainHead,
    AuditEvent,
    AuditOutcome,
    EcgRecord,
    ModelStatus,
    ModelVersion,
    Prediction,
    Role,
    Verdict,
)
from ecg_k.db.reviews import add_review, confirm_lab
from ecg_k.db.session import create_db_engine, dispose_engines, read_snapshot, session_scope
from ecg_k.potassium import Interpretation, ShotRegion
from tests.ecg_k.db.conftest import PostgresServer

ECG_TIME = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
_copies = itertools.count(1)


def _populate(url: str) -> None:
    """What the service and the review queue write: keys, predictions (one by one and a batch) with their
    events, reads, a refusal, a lab confirmation and a review."""
    with session_scope(url) as session:
        keys = {role: create_api_key(session, role, actor="cli:test").key.id for role in Role}
        model = ModelVersion(name="ecg-k", version="v1", sha256="a" * 64, path="/m.onnx", card={},
                             status=ModelStatus.CHAMPION)
        session.add_all([model, EcgRecord(sha256="e" * 64, n_leads=12, n_samples=5000, fs=500.0,
                                          lead_names=["I", "II"])])
        session.flush()
        rows = []
        for i in range(6):
            row = Prediction(model_version=model, model_status=ModelStatus.CHAMPION, api_key_id=keys[Role.CLIENT],
                             ecg_sha256="e" * 64, request_id=f"req-{i}", k_estimate=3.0 + 0.37 * i,
                             interval_low=2.5 + 0.37 * i, interval_high=3.6 + 0.37 * i, flag=Interpretation.NORMAL,
                             critical=False, shot_region=ShotRegion.MANY,
                             quality={"fs": 500.0, "n_samples": 5000, "leads": ["I", "II"]},
                             patient_id=f"pseudo-{i}", ecg_time=ECG_TIME, latency_ms=12.5 + i)
            session.add(row)
            session.flush()
            rows.append(row)
            if i < 4:
                record_audit(session, f"api_key:{keys[Role.CLIENT]}", "prediction.create", f"prediction:{row.id}",
                             AuditOutcome.SUCCESS, f"req-{i}", {"interpretation": "N", "model_version_id": model.id})
        record_audit(session, f"api_key:{keys[Role.CLIENT]}", "prediction.batch", "prediction",
                     AuditOutcome.SUCCESS, "req-batch",
                     {"n": 2, "scored": 2, "prediction_ids": [str(rows[4].id), str(rows[5].id)]})
        record_audit(session, "anonymous", "auth", "api_key", AuditOutcome.DENIED, "req-x", {"status": 401})
        record_audit(session, f"api_key:{keys[Role.ADMIN]}", "prediction.read", f"prediction:{rows[1].id}",
                     AuditOutcome.SUCCESS, "req-read", {"patient_id": "pseudo-1"})
        confirm_lab(session, rows[2].id, 5.9, ECG_TIME + timedelta(minutes=20), reviewer_id=keys[Role.REVIEWER],
                    source="api", itemid=50971, request_id="req-lab")
        add_review(session, rows[2].id, Verdict.AGREE, reviewer_id=keys[Role.REVIEWER], source="dashboard",
                   comment="peaked T waves; ünïcode kept")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database with real writes, closed, to be copied (SQLite file, or PostgreSQL database name)."""
    from ecg_k.db.migrate import upgrade

    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("audit-chain") / "populated.db"
        url = f"sqlite:///{path}"
        source = str(path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        source = f"ecgk_chain_{next(_copies)}"
        server.admin(f"CREATE DATABASE {source}")
        url = server.url(source)
    upgrade(url)
    _populate(url)
    dispose_engines()
    yield f"{request.param}:{source}"


@pytest.fixture
def copy_url(request: pytest.FixtureRequest, populated: str, tmp_path: Path) -> Iterator[str]:
    """A fresh copy of the populated database."""
    dialect, source = populated.split(":", 1)
    if dialect == "sqlite":
        shutil.copyfile(source, tmp_path / "copy.db")
        yield f"sqlite:///{tmp_path / 'copy.db'}"
        dispose_engines()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"ecgk_chain_copy_{next(_copies)}"
    server.admin(f"CREATE DATABASE {name} TEMPLATE {source}")
    yield server.url(name)
    dispose_engines()
    server.admin(f"DROP DATABASE {name} WITH (FORCE)")


def _raw(url: str, *statements: str, **parameters: object) -> None:
    """Run statements as an operator with database access would (one transaction, no ORM)."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement), parameters)
    finally:
        engine.dispose()


def _lift_triggers(url: str) -> str:
    """SQL that removes the append-only triggers (what an operator must do to UPDATE or DELETE events)."""
    if url.startswith("sqlite"):
        return "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete"
    return "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete"


def _events(url: str) -> list[AuditEvent]:
    with session_scope(url) as session:
        return list(session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))


def _verify(url: str) -> str | None:
    return verify_chain(url).broken


def _rewrite_column(column: str, definition: str) -> Callable[[str], None]:
    """Drop and re-add a column of audit_events: every row's value changes, no UPDATE trigger fires."""
    def tamper(url: str) -> None:
        _raw(url, f"ALTER TABLE audit_events DROP COLUMN {column}",
             f"ALTER TABLE audit_events ADD COLUMN {column} {definition}")
    return tamper


def _delete_row(url: str) -> None:
    victim = _events(url)[5]
    _raw(url, *_lift_triggers(url).split("; "), "DELETE FROM audit_events WHERE id = :id", id=victim.id)


def _insert_backdated(url: str) -> None:
    """A forged event appended with a valid hash, and the head moved on: only its time gives it away."""
    last = _events(url)[-1]
    forged = SimpleNamespace(seq=last.seq + 1, recorded_at=datetime(2020, 1, 1, tzinfo=UTC), actor="api_key:1",
                             action="lab.confirm", resource="prediction:0", outcome=AuditOutcome.SUCCESS,
                             request_id=None, detail=None, prediction_hash=None)
    forged_hash = entry_hash(last.entry_hash, forged)
    when = "2020-01-01 00:00:00.000000" if url.startswith("sqlite") else "2020-01-01T00:00:00+00:00"
    _raw(url, "INSERT INTO audit_events (recorded_at, actor, action, resource, outcome, seq, entry_hash) "
              "VALUES (:when, 'api_key:1', 'lab.confirm', 'prediction:0', 'success', :seq, :hash)",
         "UPDATE audit_chain_head SET seq = :seq, entry_hash = :hash", when=when, seq=forged.seq, hash=forged_hash)


def _swap_pair(url: str) -> None:
    first, second = _events(url)[3:5]
    _raw(url, *_lift_triggers(url).split("; "), "UPDATE audit_events SET seq = -1 WHERE id = :a",
         "UPDATE audit_events SET seq = :sa WHERE id = :b", "UPDATE audit_events SET seq = :sb WHERE id = :a",
         a=first.id, b=second.id, sa=first.seq, sb=second.seq)


def _update_prediction(url: str) -> None:
    created = [event for event in _events(url) if event.action == "prediction.create"][1]
    _raw(url, "UPDATE predictions SET k_estimate = 6.9, flag = 'H' WHERE id = :id",
         id=created.resource.split(":")[1].replace("-", "") if url.startswith("sqlite")
         else created.resource.split(":")[1])


def _update_lab(url: str) -> None:
    _raw(url, "UPDATE lab_confirmations SET k_value = 3.1")


TAMPERING: dict[str, tuple[Callable[[str], None], str]] = {
    "changed actor (column dropped and re-added)": (
        _rewrite_column("actor", "VARCHAR(200) NOT NULL DEFAULT 'api_key:999'"), "seq=1 "),
    "changed detail (column dropped and re-added)": (_rewrite_column("detail", "TEXT DEFAULT NULL"),
                                                     "a field was changed"),
    "deleted row": (_delete_row, "event(s) 6..6 are missing"),
    "inserted backdated row": (_insert_backdated, "is earlier than the event before it"),
    "reordered pair": (_swap_pair, "seq=4 "),
    "updated prediction": (_update_prediction, "changed or were deleted since"),
    "updated lab value (what retraining trusts)": (_update_lab, "lab confirmation it names changed"),
}


def test_the_populated_database_has_an_intact_chain(copy_url: str) -> None:
    events = _events(copy_url)
    assert [event.seq for event in events] == list(range(1, len(events) + 1)) and len(events) >= 12
    assert _verify(copy_url) is None
    result = CliRunner().invoke(app, ["audit", "verify", "--url", copy_url])
    assert result.exit_code == 0 and f"{len(events)} event(s)" in result.output, result.output
    with session_scope(copy_url) as session:
        head = session.get(AuditChainHead, 1)
        assert head is not None and (head.seq, head.entry_hash) == (events[-1].seq, events[-1].entry_hash)
        batch = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "prediction.batch")).one()
        assert batch.prediction_hash is not None


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_names_the_first_broken_link(copy_url: str, case: str) -> None:
    tamper, expected = TAMPERING[case]
    tamper(copy_url)
    broken = _verify(copy_url)
    assert broken is not None and expected in broken, broken
    result = CliRunner().invoke(app, ["audit", "verify", "--url", copy_url])
    assert result.exit_code == 1 and "audit chain broken" in result.output, result.output


def test_a_raw_insert_outside_the_writer_is_reported(copy_url: str) -> None:
    _raw(copy_url, "INSERT INTO audit_events (recorded_at, actor, action, resource, outcome) "
                   "VALUES ('2019-06-01 00:00:00', 'api_key:1', 'lab.confirm', 'prediction:0', 'success')")
    broken = _verify(copy_url)
    assert broken is not None and "not in the chain" in broken


def test_concurrent_writers_keep_one_linear_chain(copy_url: str) -> None:
    """8 writers with an engine each (as 8 processes would have), 25 events each, all at once."""
    before = len(_events(copy_url))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(worker: int) -> None:
        engine = create_db_engine(copy_url)
        try:
            start.wait()
            for i in range(25):
                with sa.orm.Session(engine) as session, session.begin():
                    record_audit(session, f"api_key:{worker}", "prediction.read", f"prediction:{uuid.uuid4()}",
                                 AuditOutcome.DENIED, f"w{worker}-{i}")
        except BaseException as err:  # reported below
            errors.append(err)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    events = _events(copy_url)
    assert len(events) == before + 200
    assert [event.seq for event in events] == list(range(1, before + 201))
    assert _verify(copy_url) is None


def _append_events(url: str, worker: int, count: int) -> None:
    engine = create_db_engine(url)
    try:
        for i in range(count):
            with sa.orm.Session(engine) as session, session.begin():
                record_audit(session, f"api_key:{worker}", "prediction.read", f"prediction:{uuid.uuid4()}",
                             AuditOutcome.DENIED, f"w{worker}-{i}")
    finally:
        engine.dispose()


def test_a_snapshot_does_not_see_events_committed_after_its_first_read(copy_url: str) -> None:
    with read_snapshot(copy_url) as session:
        head_seq = session.get(AuditChainHead, 1).seq
        _append_events(copy_url, worker=1, count=3)  # another connection commits meanwhile
        assert session.scalar(sa.select(sa.func.max(AuditEvent.seq))) == head_seq
    assert len(_events(copy_url)) == head_seq + 3


def test_verify_while_writers_append_never_reports_a_broken_head(copy_url: str) -> None:
    """The service appends while `ecgk retrain` or `ecgk audit verify` walks the chain: every walk is intact."""
    before = len(_events(copy_url))
    writers = [threading.Thread(target=_append_events, args=(copy_url, worker, 30)) for worker in range(4)]
    for writer in writers:
        writer.start()
    reports = []
    while any(writer.is_alive() for writer in writers) or not reports:
        reports.append(verify_chain(copy_url))
    for writer in writers:
        writer.join(timeout=120)
    assert [report.broken for report in reports] == [None] * len(reports)
    final = verify_chain(copy_url)
    assert final.broken is None and final.events == before + 120
