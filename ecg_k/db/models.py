"""The ecg-k database schema: SQLAlchemy 2.0 typed ORM models, one concept per table.

The same metadata is written out by hand in ``migrations/versions``; a test compares the two.
Enums are stored as strings with a CHECK constraint (no PostgreSQL enum types to migrate), timestamps are
UTC-aware on both SQLite and PostgreSQL, and JSON documents are JSONB on PostgreSQL.
"""

from __future__ import annotations

import enum
import json
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ecg_k.data.lab_comments import LabComment
from ecg_k.potassium import Interpretation, ShotRegion

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""A JSON column: JSONB on PostgreSQL, JSON text on SQLite."""
NullableJsonDocument = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
"""A :data:`JsonDocument` where Python None is SQL NULL (not the JSON ``null``), so ``IS NULL`` rules hold."""


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that only accepts aware datetimes and always returns them in UTC.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass a time-zone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ModelStatus(enum.StrEnum):
    """Where a model version stands in the registry (at most one champion)."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
    RETIRED = "retired"


class Role(enum.StrEnum):
    """What an API key may do: clients predict and read their own predictions, reviewers confirm and
    review, admins manage keys and models."""

    CLIENT = "client"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Verdict(enum.StrEnum):
    """A reviewer's judgement of one prediction."""

    AGREE = "agree"
    DISAGREE = "disagree"
    UNUSABLE_ECG = "unusable_ecg"


class AuditOutcome(enum.StrEnum):
    """Outcome of an audited action (IHE BALP: success, or the failure class)."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


def _enum(kind: type[enum.StrEnum], name: str) -> sa.Enum:
    """A string column restricted to the enum's values by a named CHECK constraint."""
    return sa.Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=max(len(member.value) for member in kind),
        values_callable=lambda members: [member.value for member in members],
    )


MemberT = TypeVar("MemberT", bound=enum.StrEnum)


def parse_member(kind: type[MemberT], value: MemberT | str, what: str) -> MemberT:
    """``kind(value)`` (e.g. ``"client"`` -> ``Role.CLIENT``), or a ValueError naming ``what`` and the allowed
    values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValueError(f"unknown {what} {value!r}; expected one of {allowed}") from None


def storable_text(value: str) -> str:
    """``value`` if every database can store it as text: no NUL or other control characters (tab and newlines
    aside) and no lone surrogates (PostgreSQL refuses NUL; neither database encodes a surrogate)."""
    if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r" for ch in value):
        raise ValueError("text must not hold control characters or lone surrogates")
    return value


def json_object(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object every backend can store in a :class:`JsonDocument` (no NaN or
    infinities, which PostgreSQL's jsonb refuses); else a ValueError naming ``what``."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object (dict), got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not storable JSON (not JSON-serialisable: {err})") from None
    return value


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so every constraint has a stable name."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonDocument}


class ModelVersion(Base):
    """A registered ONNX model version with its model card; at most one is the champion."""

    __tablename__ = "model_versions"
    __table_args__ = (
        sa.UniqueConstraint("name", "version"),
        sa.Index(
            "uq_model_versions_one_champion",
            "status",
            unique=True,
            sqlite_where=sa.text("status = 'champion'"),
            postgresql_where=sa.text("status = 'champion'"),
        ),
        sa.CheckConstraint("length(sha256) = 64", name="sha256_hex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    version: Mapped[str] = mapped_column(sa.String(100))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    path: Mapped[str] = mapped_column(sa.String(1000))
    preprocessing_digest: Mapped[str | None] = mapped_column(sa.String(64))
    card: Mapped[dict[str, Any]]
    status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus, "model_status"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())
    promoted_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"ModelVersion({self.name!r}, {self.version!r}, {self.status.value})"


class GateDecision(Base):
    """A retraining gate decision: a challenger compared with the champion of the day."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    challenger_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    champion_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    passed: Mapped[bool]
    criteria: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())

    challenger: Mapped[ModelVersion] = relationship(foreign_keys=[challenger_id])
    champion: Mapped[ModelVersion | None] = relationship(foreign_keys=[champion_id])


KEYED_SHA256 = "hmac-sha256"
LEGACY_SCRYPT = "scrypt"


class ApiKey(Base):
    """An API key: a public lookup prefix and a keyed hash of the secret (never the secret).

    ``hash_scheme`` is ``hmac-sha256`` (HMAC-SHA256 under the server secret, ``salt`` empty); ``scrypt``, the
    server default, marks a key created before migration 0003, hashed with its ``salt`` until its first
    successful check re-hashes it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    salt: Mapped[str] = mapped_column(sa.String(32), default="")
    hash_scheme: Mapped[str] = mapped_column(sa.String(16), default=KEYED_SHA256, server_default=LEGACY_SCRYPT)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"ApiKey({self.id}, {self.prefix!r}, {self.role.value}, revoked={self.revoked_at is not None})"


class EcgRecord(Base):
    """A submitted ECG, identified by the sha256 of its content in the file store (ecg_store.py)."""

    __tablename__ = "ecg_records"
    __table_args__ = (
        sa.CheckConstraint("length(sha256) = 64", name="sha256_hex"),
        sa.CheckConstraint("fs > 0 AND n_leads > 0 AND n_samples > 0", name="positive_shape"),
    )

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    n_leads: Mapped[int]
    n_samples: Mapped[int]
    fs: Mapped[float]
    lead_names: Mapped[list[str]] = mapped_column(JsonDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())


class Prediction(Base):
    """One K+ estimate (or "unable to estimate": no value, no flag) served for one ECG."""

    __tablename__ = "predictions"
    __table_args__ = (
        sa.Index("ix_predictions_model_version_id_created_at", "model_version_id", "created_at"),
        sa.Index("ix_predictions_flag_created_at", "flag", "created_at"),
        sa.Index("ix_predictions_api_key_id_created_at", "api_key_id", "created_at"),
        sa.CheckConstraint("(k_estimate IS NULL) = (flag IS NULL)", name="estimate_has_flag"),
        sa.CheckConstraint("interval_low <= interval_high", name="interval_ordered"),
        sa.CheckConstraint("latency_ms >= 0", name="latency_non_negative"),
        sa.CheckConstraint("interval_coverage > 0 AND interval_coverage < 1", name="interval_coverage_range"),
        sa.CheckConstraint(
            "interval_segments IS NULL OR (interval_coverage IS NOT NULL AND interval_method IS NOT NULL)",
            name="set_states_coverage",
        ),
        sa.CheckConstraint("p_hyper >= 0 AND p_hyper <= 1", name="p_hyper_range"),
        sa.CheckConstraint("p_hypo >= 0 AND p_hypo <= 1", name="p_hypo_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"))
    model_status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus, "model_status"))
    api_key_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_keys.id"))
    ecg_sha256: Mapped[str] = mapped_column(sa.ForeignKey("ecg_records.sha256"), index=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(200))
    k_estimate: Mapped[float | None]
    interval_low: Mapped[float | None]
    interval_high: Mapped[float | None]
    interval_segments: Mapped[list[list[float]] | None] = mapped_column(NullableJsonDocument)
    """The prediction set as ``[low, high]`` K+ segments (interval_low/high are its hull)."""
    interval_coverage: Mapped[float | None]
    """The coverage level the set was built with (stored with every set; None only for rows served before
    sets were stored, whose hull is read as "coverage not recorded")."""
    interval_method: Mapped[str | None] = mapped_column(sa.String(64))
    p_hyper: Mapped[float | None]
    """Calibrated P(K+ >= hyperkalemia) at the natural prevalence."""
    p_hypo: Mapped[float | None]
    """Calibrated P(K+ <= hypokalemia) at the natural prevalence."""
    flag: Mapped[Interpretation | None] = mapped_column(_enum(Interpretation, "flag"))
    """The estimate's interpretation code (LL/L/N/H/HH) under the model card's thresholds."""
    critical: Mapped[bool] = mapped_column(default=False)
    shot_region: Mapped[ShotRegion | None] = mapped_column(_enum(ShotRegion, "shot_region"))
    quality: Mapped[dict[str, Any]]
    patient_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    ecg_time: Mapped[datetime | None]
    latency_ms: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now(), index=True)

    model_version: Mapped[ModelVersion] = relationship()
    ecg: Mapped[EcgRecord] = relationship()


class LabConfirmation(Base):
    """The measured K+ that confirms (or refutes) one prediction: a labelled pair for retraining, unless the
    reviewer marked the lab haemolysed (``comment_class``): then it is kept for the record only."""

    __tablename__ = "lab_confirmations"
    __table_args__ = (sa.CheckConstraint("k_value > 0", name="k_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("predictions.id"), unique=True)
    k_value: Mapped[float]
    lab_time: Mapped[datetime]
    itemid: Mapped[int | None]
    comment_class: Mapped[LabComment] = mapped_column(
        _enum(LabComment, "lab_comment"), default=LabComment.NONE, server_default=LabComment.NONE.value
    )
    in_prediction_set: Mapped[bool | None]
    """Whether the lab K+ lies in the prediction's stored set (decided once, at confirmation); None for a
    prediction stored without a set."""
    confirmed_by: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())

    prediction: Mapped[Prediction] = relationship()


class Review(Base):
    """A reviewer's verdict on one prediction (several reviews per prediction are allowed)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("predictions.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id"))
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict, "verdict"))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())

    prediction: Mapped[Prediction] = relationship()


class AuditEvent(Base):
    """One audited action. Append-only in the database itself: triggers refuse UPDATE and DELETE.
    Tamper-evident: ``entry_hash`` chains each event to the one before it (``seq`` orders the chain) and
    covers ``prediction_hash``, the digest of the predictions and lab confirmation the event names
    (ecg_k/db/audit.py).

    No foreign keys on purpose: the audit trail outlives what it names, and no cascade may ever touch it.
    ``seq`` and ``entry_hash`` are NULL only in a row written outside :func:`ecg_k.db.audit.record_audit`,
    which ``ecgk audit verify`` reports as a broken link.
    """

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("uq_audit_events_seq", "seq", unique=True),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now(), index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(100))
    resource: Mapped[str] = mapped_column(sa.String(200), index=True)
    outcome: Mapped[AuditOutcome] = mapped_column(_enum(AuditOutcome, "outcome"))
    request_id: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    detail: Mapped[dict[str, Any] | None]
    seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    prediction_hash: Mapped[str | None] = mapped_column(sa.String(64))
    entry_hash: Mapped[str | None] = mapped_column(sa.String(64))


class AuditChainHead(Base):
    """The one row that ends the audit chain: the last event's ``seq`` and ``entry_hash``. Every writer
    updates it first, so writers queue on its row lock and the chain stays linear (SQLite: the write lock)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    entry_hash: Mapped[str] = mapped_column(sa.String(64))
