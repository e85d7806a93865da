"""The ORM schema on SQLite and PostgreSQL: every table round-trips, constraints hold, times stay UTC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from ecg_k.db.migrate import downgrade, upgrade
from ecg_k.db.models import (
    ApiKey,
    AuditEvent,
    AuditOutcome,
    EcgRecord,
    GateDecision,
    LabConfirmation,
    ModelStatus,
    ModelVersion,
    Prediction,
    Review,
    Role,
    Verdict,
)
from ecg_k.db.session import get_engine, session_scope
from ecg_k.potassium import Interpretation, ShotRegion
from ecg_k.settings import Settings

SHA_A, SHA_B, SHA_ECG = "a" * 64, "b" * 64, "e" * 64
ECG_TIME = datetime(2180, 7, 23, 14, 5, 11, 123456, tzinfo=timezone(timedelta(hours=-5)))


def _model(version: str, sha: str, status: ModelStatus = ModelStatus.CHALLENGER) -> ModelVersion:
    card = {"name": "ecg-k-net1d", "version": version, "metrics": {"test": {"few": {"mae": 1.25, "n": 40}}},
            "onnx": {"file": "model.onnx", "sha256": sha}, "leads": ["I"], "note": "K⁺ in mmol/L"}
    return ModelVersion(name="ecg-k-net1d", version=version, sha256=sha, path=f"/models/{version}.onnx",
                        preprocessing_digest="d" * 64, card=card, status=status)


def _prediction(model: ModelVersion, key: ApiKey | None, **changes: object) -> Prediction:
    values: dict[str, object] = {
        "model_version": model, "model_status": ModelStatus.CHAMPION, "api_key_id": None if key is None else key.id,
        "ecg_sha256": SHA_ECG, "request_id": "req-1", "k_estimate": 6.8, "interval_low": 5.9, "interval_high": 7.6,
        "flag": Interpretation.CRITICAL_HIGH, "critical": True, "shot_region": ShotRegion.FEW,
        "quality": {"averageQRS": 0.91, "flat_leads": [], "nan": False}, "patient_id": "p" * 64, "ecg_time": ECG_TIME,
        "latency_ms": 12.5,
    }
    values.update(changes)
    return Prediction(**values)


def test_every_table_round_trips(db_url: str) -> None:
    with session_scope(db_url) as session:
        champion = _model("v1", SHA_A, ModelStatus.CHAMPION)
        challenger = _model("v2", SHA_B)
        client = ApiKey(prefix="0123456789ab", salt="1" * 32, key_hash="2" * 64, role=Role.CLIENT,
                        name="ward 7")
        reviewer = ApiKey(prefix="ba9876543210", salt="3" * 32, key_hash="4" * 64, role=Role.REVIEWER)
        ecg = EcgRecord(sha256=SHA_ECG, n_leads=1, n_samples=5000, fs=500.0, lead_names=["I"])
        session.add_all([champion, challenger, client, reviewer, ecg])
        session.flush()
        prediction = _prediction(champion, client)
        unable = _prediction(
            champion, client, k_estimate=None, interval_low=None, interval_high=None, flag=None,
            critical=False, shot_region=None, quality={"averageQRS": 0.2, "reason": "low quality"},
        )
        session.add_all([prediction, unable])
        session.flush()
        session.add_all([
            GateDecision(
                challenger=challenger, champion=champion, passed=False, actor="retrain",
                criteria={"few_mae": {"champion": 1.3, "challenger": 1.4}, "reasons": ["few-shot worse"]},
            ),
            LabConfirmation(prediction_id=prediction.id, k_value=6.9, itemid=50971, confirmed_by=reviewer.id,
                            lab_time=ECG_TIME + timedelta(minutes=20)),
            Review(prediction_id=prediction.id, reviewer_id=reviewer.id, verdict=Verdict.AGREE,
                   comment="T waves"),
            AuditEvent(actor="api_key:1", action="prediction.create", resource=f"prediction:{prediction.id}",
                       outcome=AuditOutcome.SUCCESS, request_id="req-1", detail={"flag": "HH"}),
        ])
        prediction_id, unable_id = prediction.id, unable.id

    with session_scope(db_url) as session:
        read = session.get(Prediction, prediction_id)
        assert read is not None and isinstance(read.id, uuid.UUID)
        assert read.model_version.version == "v1" and read.model_version.status is ModelStatus.CHAMPION
        assert read.model_version.card["metrics"]["test"]["few"] == {"mae": 1.25, "n": 40}
        assert read.model_version.card["note"] == "K⁺ in mmol/L"
        assert (read.k_estimate, read.interval_low, read.interval_high) == (6.8, 5.9, 7.6)
        assert read.flag is Interpretation.CRITICAL_HIGH and read.critical is True
        assert read.shot_region is ShotRegion.FEW
        assert read.quality == {"averageQRS": 0.91, "flat_leads": [], "nan": False}
        assert read.ecg_time == ECG_TIME and read.ecg_time.tzinfo == UTC
        assert read.created_at.tzinfo == UTC
        assert abs(read.created_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert read.ecg.lead_names == ["I"] and read.ecg.fs == 500.0 and read.ecg.n_samples == 5000
        assert read.api_key_id is not None and session.get(ApiKey, read.api_key_id).name == "ward 7"
        unable = session.get(Prediction, unable_id)
        assert unable.k_estimate is None and unable.flag is None and unable.quality["reason"] == "low quality"

        lab = session.scalars(sa.select(LabConfirmation)).one()
        assert lab.prediction.id == prediction_id and lab.k_value == 6.9 and lab.itemid == 50971
        assert lab.lab_time == ECG_TIME + timedelta(minutes=20)
        review = session.scalars(sa.select(Review)).one()
        assert review.verdict is Verdict.AGREE and review.comment == "T waves"
        decision = session.scalars(sa.select(GateDecision)).one()
        assert decision.passed is False and decision.champion.version == "v1"
        assert decision.challenger.version == "v2" and decision.criteria["reasons"] == ["few-shot worse"]
        event = session.scalars(sa.select(AuditEvent)).one()
        assert event.outcome is AuditOutcome.SUCCESS and event.detail == {"flag": "HH"}
        assert event.recorded_at.tzinfo == UTC
        assert {key.role for key in session.scalars(sa.select(ApiKey))} == {Role.CLIENT, Role.REVIEWER}


def test_naive_datetimes_are_refused(session: Session) -> None:
    session.add(ApiKey(prefix="0123456789ab", salt="1" * 32, key_hash="2" * 64, role=Role.ADMIN,
                       revoked_at=datetime(2024, 1, 1)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_server_default_timestamps_read_back_as_utc(db_url: str) -> None:
    with get_engine(db_url).begin() as connection:
        connection.execute(sa.text("INSERT INTO ecg_records (sha256, n_leads, n_samples, fs, lead_names) "
                                   "VALUES (:sha, 1, 10, 500, '[\"I\"]')"), {"sha": SHA_ECG})
    with session_scope(db_url) as session:
        created = session.get(EcgRecord, SHA_ECG).created_at
    assert created.tzinfo == UTC and abs(created - datetime.now(UTC)) < timedelta(minutes=1)


def test_foreign_keys_are_enforced(session: Session) -> None:
    model = _model("v1", SHA_A)
    session.add(model)
    session.flush()
    session.add(_prediction(model, None))  # its ECG row does not exist
    with pytest.raises(IntegrityError):
        session.flush()


@pytest.mark.parametrize(
    "changes",
    [
        {"k_estimate": None},  # a flag without an estimate
        {"flag": None},  # an estimate without a flag
        {"interval_low": 8.0},  # low above high
        {"latency_ms": -1.0},
        {"interval_segments": [[5.9, 7.6]], "interval_method": "m"},  # a set without its coverage level
        {"interval_segments": [[5.9, 7.6]], "interval_coverage": 0.9},  # a set without its method
    ],
    ids=["flag-without-estimate", "estimate-without-flag", "interval-reversed", "negative-latency",
         "set-without-coverage", "set-without-method"],
)
def test_prediction_check_constraints(session: Session, changes: dict[str, object]) -> None:
    model = _model("v1", SHA_A)
    session.add_all([model, EcgRecord(sha256=SHA_ECG, n_leads=1, n_samples=5000, fs=500.0, lead_names=["I"])])
    session.flush()
    session.add(_prediction(model, None, **changes))
    with pytest.raises(IntegrityError):
        session.flush()


def test_a_stored_set_keeps_its_coverage_from_revision_0006(db_url: str) -> None:
    """Migration 0006: a set whose coverage level is erased is refused at head, and accepted again at 0005;
    a row served before sets were stored (no set, no coverage) passes the upgrade unchanged."""
    with session_scope(db_url) as session:
        model = _model("v1", SHA_A)
        session.add_all([model, EcgRecord(sha256=SHA_ECG, n_leads=1, n_samples=5000, fs=500.0, lead_names=["I"])])
        session.flush()
        served = _prediction(model, None, interval_segments=[[5.9, 7.6]], interval_coverage=0.9,
                             interval_method="m")
        session.add_all([served, _prediction(model, None, request_id="before-0005")])
        session.flush()
        served_id = served.id
    erase = sa.update(Prediction).where(Prediction.id == served_id).values(interval_coverage=None)
    with get_engine(db_url).connect() as connection, pytest.raises(IntegrityError):
        connection.execute(erase)
    downgrade(db_url, "0005")
    with session_scope(db_url) as session:
        session.execute(erase)
        session.execute(sa.update(Prediction).where(Prediction.id == served_id).values(interval_segments=None))
    upgrade(db_url)
    with session_scope(db_url) as session:
        rows = session.scalars(sa.select(Prediction).order_by(Prediction.request_id)).all()
        assert [(row.request_id, row.interval_coverage) for row in rows] == [("before-0005", None), ("req-1", None)]


INVALID_ENUM_VALUES = {
    "role": "UPDATE api_keys SET role = 'root'",
    "model_status": "UPDATE model_versions SET status = 'king'",
    "flag": "UPDATE predictions SET flag = 'XX'",
    "shot_region": "UPDATE predictions SET shot_region = 'rare'",
    "verdict": "UPDATE reviews SET verdict = 'maybe'",
    "outcome": "INSERT INTO audit_events (actor, action, resource, outcome) VALUES ('a', 'b', 'c', 'meh')",
}


@pytest.mark.parametrize("statement", INVALID_ENUM_VALUES.values(), ids=INVALID_ENUM_VALUES.keys())
def test_enum_columns_refuse_unknown_values_in_raw_sql(db_url: str, statement: str) -> None:
    with session_scope(db_url) as session:
        model = _model("v1", SHA_A)
        key = ApiKey(prefix="0123456789ab", salt="1" * 32, key_hash="2" * 64, role=Role.REVIEWER)
        session.add_all([model, key, EcgRecord(sha256=SHA_ECG, n_leads=1, n_samples=5000, fs=500.0,
                                               lead_names=["I"])])
        session.flush()
        prediction = _prediction(model, key)
        session.add(prediction)
        session.flush()
        session.add(Review(prediction_id=prediction.id, reviewer_id=key.id, verdict=Verdict.DISAGREE))
    with get_engine(db_url).connect() as connection, pytest.raises(IntegrityError):
        connection.exec_driver_sql(statement)


def test_session_scope_commits_or_rolls_back(db_url: str) -> None:
    with session_scope(db_url) as session:
        session.add(_model("v1", SHA_A))
    with pytest.raises(RuntimeError, match="boom"), session_scope(db_url) as session:
        session.add(_model("v2", SHA_B))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(db_url) as session:
        assert [m.version for m in session.scalars(sa.select(ModelVersion))] == ["v1"]


def test_engine_settings_per_dialect(db_url: str, dialect: str) -> None:
    engine = get_engine(db_url)
    assert get_engine(db_url) is engine  # one shared engine per URL
    with engine.connect() as connection:
        if dialect == "sqlite":
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        else:
            assert engine.pool._pre_ping is True


def test_settings_place_database_and_store_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECGK_DATABASE_URL", raising=False)
    monkeypatch.delenv("ECGK_ECG_STORE", raising=False)
    monkeypatch.setenv("ECGK_HOME", str(tmp_path))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path}/ecgk.db"
    assert settings.ecg_store == tmp_path / "ecg-store"
    monkeypatch.setenv("ECGK_DATABASE_URL", "postgresql+psycopg://ecgk@db:5432/ecgk")
    monkeypatch.setenv("ECGK_ECG_STORE", "/srv/ecg")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://ecgk@db:5432/ecgk"
    assert settings.ecg_store == Path("/srv/ecg")
