"""The review queue: flagged predictions (L, LL, H, HH) still waiting for their lab value, one prediction's
details and stored ECG, and the reviewer's submission (lab K+ and verdict).

A prediction leaves the queue once a lab value confirms it or a reviewer marks its ECG unusable. A
submission writes through :mod:`ecg_k.db.reviews` (the rules and tables the API uses) in one transaction,
plus one ``review.submit`` audit event for the submission itself (the dashboard's equivalent of the API's
per-request event); a refused submission writes nothing but that event, with the failure.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dashboard.auth import ANONYMOUS, SOURCE, SignedIn
from ecg_k.data.lab_comments import LabComment
from ecg_k.db.audit import record_audit
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.models import AuditOutcome, LabConfirmation, ModelVersion, Prediction, Review, Verdict
from ecg_k.db.reviews import (
    ReviewPermissionError,
    add_review,
    confirm_lab,
    lab_confirmation_of,
    parse_lab_comment,
    parse_verdict,
)
from ecg_k.db.session import session_scope
from ecg_k.potassium import Interpretation

QUEUE_FLAGS = tuple(code for code in Interpretation if code is not Interpretation.NORMAL)
QUEUE_LIMIT = 200
"""Most rows the queue lists at once (critical first, then oldest first)."""
TRACE_POINTS = 2500
"""Most samples drawn per lead (a 10 s, 500 Hz lead is drawn at 250 Hz)."""
LAB_VERDICTS = (Verdict.AGREE, Verdict.DISAGREE)
"""Verdicts that judge the estimate against the lab value, so they need one."""


def _waiting() -> sa.ColumnElement[bool]:
    """Flagged, no lab confirmation, and not marked unusable by a reviewer."""
    has_lab = sa.exists().where(LabConfirmation.prediction_id == Prediction.id)
    unusable = sa.exists().where(Review.prediction_id == Prediction.id,
                                 Review.verdict == Verdict.UNUSABLE_ECG)
    return sa.and_(Prediction.flag.in_(QUEUE_FLAGS), ~has_lab, ~unusable)


@dataclass(frozen=True)
class Queue:
    """The first rows of the queue and how many predictions wait in all."""

    table: pd.DataFrame
    total: int


def review_queue(session: Session, limit: int = QUEUE_LIMIT) -> Queue:
    """Waiting predictions, critical first, then oldest first: ``id, created, estimate, low, high, flag,
    critical, region, patient, model, reviews`` (reviews: verdicts already given)."""
    reviews = (sa.select(sa.func.count()).where(Review.prediction_id == Prediction.id)
               .correlate(Prediction).scalar_subquery())
    query = (sa.select(Prediction.id, Prediction.created_at, Prediction.k_estimate, Prediction.interval_low,
                       Prediction.interval_high, Prediction.flag, Prediction.critical, Prediction.shot_region,
                       Prediction.patient_id, ModelVersion.version, reviews)
             .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
             .where(_waiting()).order_by(Prediction.critical.desc(), Prediction.created_at, Prediction.id)
             .limit(limit))
    columns = ["id", "created", "estimate", "low", "high", "flag", "critical", "region", "patient", "model",
               "reviews"]
    table = pd.DataFrame(session.execute(query).all(), columns=columns)
    for column in ("flag", "region"):  # enum members -> their codes
        table[column] = [None if value is None else value.value for value in table[column]]
    total = session.scalar(sa.select(sa.func.count()).select_from(Prediction).where(_waiting()))
    return Queue(table, int(total or 0))


@dataclass(frozen=True)
class PredictionDetail:
    """One prediction with its model, ECG address, lab value and reviews so far."""

    id: uuid.UUID
    created_at: datetime
    k_estimate: float | None
    interval: tuple[float, float] | None
    flag: str | None
    critical: bool
    shot_region: str | None
    patient_id: str | None
    ecg_time: datetime | None
    model: str
    ecg_sha256: str
    lab: tuple[float, datetime] | None
    reviews: pd.DataFrame


def prediction_detail(session: Session, prediction_id: uuid.UUID) -> PredictionDetail:
    """The details of ``prediction_id`` (ValueError when it does not exist)."""
    row = session.get(Prediction, prediction_id)
    if row is None:
        raise ValueError(f"no prediction {prediction_id}")
    lab = lab_confirmation_of(session, prediction_id)
    reviews = pd.DataFrame(
        [(r.created_at, r.verdict.value, r.comment, r.reviewer_id) for r in session.scalars(
            sa.select(Review).where(Review.prediction_id == prediction_id).order_by(Review.id))],
        columns=["when", "verdict", "comment", "reviewer key"])
    interval = None if row.interval_low is None or row.interval_high is None else (row.interval_low,
                                                                                    row.interval_high)
    return PredictionDetail(
        id=row.id, created_at=row.created_at, k_estimate=row.k_estimate, interval=interval,
        flag=None if row.flag is None else row.flag.value, critical=row.critical,
        shot_region=None if row.shot_region is None else row.shot_region.value, patient_id=row.patient_id,
        ecg_time=row.ecg_time, model=f"{row.model_version.name} {row.model_version.version}",
        ecg_sha256=row.ecg_sha256, lab=None if lab is None else (lab.k_value, lab.lab_time), reviews=reviews)


def ecg_trace(store: EcgStore, sha256: str, max_points: int = TRACE_POINTS) -> pd.DataFrame:
    """The stored ECG as ``lead, t, mv`` rows (every k-th sample so a lead has at most ``max_points``);
    raises the store's errors for a missing or corrupt blob."""
    ecg = store.get(sha256)
    n_leads, n_samples = ecg.signal.shape
    step = max(1, math.ceil(n_samples / max_points))
    index = np.arange(0, n_samples, step)
    return pd.DataFrame({
        "lead": np.repeat(np.array(ecg.lead_names, dtype=object), index.size),
        "t": np.tile(index / ecg.fs, n_leads),
        "mv": ecg.signal[:, index].reshape(-1).astype(np.float64),
    })


def record_read(database_url: str, who: SignedIn | None, prediction_id: uuid.UUID) -> None:
    """Audit that a dashboard user opened a prediction with its ECG (``prediction.read``, as the API does)."""
    with session_scope(database_url) as session:
        record_audit(session, ANONYMOUS if who is None else who.actor, "prediction.read",
                     f"prediction:{prediction_id}", AuditOutcome.SUCCESS, None, {"source": SOURCE})


@dataclass(frozen=True)
class ReviewForm:
    """What the reviewer entered: the lab K+ and its time (optional only for an unusable ECG), the itemid,
    the lab's comment class (``hemolysed``: kept for the record, never used for retraining), the verdict and
    a comment."""

    verdict: Verdict | str
    k_value: float | None = None
    lab_time: datetime | None = None
    itemid: int | None = None
    comment: str | None = None
    comment_class: LabComment | str = LabComment.NONE

    def check(self) -> Verdict:
        """The verdict, once the form is complete for it (ValueError otherwise)."""
        verdict = parse_verdict(self.verdict)
        if (self.k_value is None) != (self.lab_time is None):
            raise ValueError("give the lab K+ together with the time it was measured")
        if self.k_value is None and parse_lab_comment(self.comment_class) is not LabComment.NONE:
            raise ValueError("a lab comment (haemolysed, verified) needs the lab K+ it is about")
        if verdict in LAB_VERDICTS and self.k_value is None:
            raise ValueError(f"a lab K+ is needed to {verdict.value} with the estimate")
        return verdict


@dataclass(frozen=True)
class Submitted:
    """What a submission stored."""

    lab_confirmation_id: int | None
    review_id: int
    request_id: str


def submit_review(database_url: str, who: SignedIn, prediction_id: uuid.UUID, form: ReviewForm) -> Submitted:
    """Store the lab value (if given) and the verdict of ``form`` in one transaction, audited.

    Raises :class:`~ecg_k.db.reviews.ReviewPermissionError` for a key that may not review and ValueError
    for bad or incomplete input or a prediction already confirmed; then nothing but the refusal is written.
    """
    request_id = f"dashboard-{uuid.uuid4()}"
    resource = f"prediction:{prediction_id}"
    try:
        if not who.can_review:
            raise ReviewPermissionError(f"role {who.role.value} may not review predictions")
        verdict = form.check()
        with session_scope(database_url) as session:
            lab = None
            if form.k_value is not None and form.lab_time is not None:
                lab = confirm_lab(session, prediction_id, form.k_value, form.lab_time, reviewer_id=who.key_id,
                                  source=SOURCE, itemid=form.itemid, comment_class=form.comment_class,
                                  request_id=request_id)
            review = add_review(session, prediction_id, verdict, reviewer_id=who.key_id, source=SOURCE,
                                comment=form.comment, request_id=request_id)
            record_audit(session, who.actor, "review.submit", resource, AuditOutcome.SUCCESS, request_id,
                         {"source": SOURCE, "review_id": review.id,
                          "lab_confirmation_id": None if lab is None else lab.id})
            return Submitted(None if lab is None else lab.id, review.id, request_id)
    except (ValueError, PermissionError) as err:
        outcome = AuditOutcome.DENIED if isinstance(err, PermissionError) else AuditOutcome.FAILURE
        with session_scope(database_url) as session:
            record_audit(session, who.actor, "review.submit", resource, outcome, request_id,
                         {"source": SOURCE, "error": type(err).__name__})
        raise
