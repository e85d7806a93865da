"""Closing the loop on a prediction: a reviewer records the measured K+ (lab confirmation) and a verdict.

A confirmed lab carries the class of its lab comment (:class:`~ecg_k.data.lab_comments.LabComment`): a
reviewer marks a haemolysed sample ``hemolysed`` (kept for the record, never used for retraining) or a
checked one ``verified``.

The API (``service/routes/labs.py``) and the dashboard's review queue both write through these functions,
so both doors apply the same rules and leave the same audit trail: each write adds one audit event
(``lab.confirm`` or ``review.add``) in the caller's transaction, with the reviewer's key as the actor
(``api_key:<id>``, as the service names callers) and the door (``source``) in the detail.

Bad input raises a :class:`ValueError` subclass that says what is wrong, before anything is written; a key
that may not review raises :class:`ReviewPermissionError`.
"""

from __future__ import annotations

import math
import numbers
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.conformal import in_segments
from ecg_k.data.lab_comments import LabComment
from ecg_k.db.api_keys import key_actor
from ecg_k.db.audit import record_audit
from ecg_k.db.models import (
    ApiKey,
    AuditOutcome,
    LabConfirmation,
    Prediction,
    Review,
    Role,
    Verdict,
    parse_member,
    storable_text,
)

REVIEW_ROLES = frozenset({Role.REVIEWER})
"""Roles that may confirm labs and review predictions (the service's ``Reviewer`` dependency agrees)."""
K_MAX = 15.0
"""Largest lab K+ accepted (mmol/L); values must also be > 0."""
ITEMID_MAX = 2**31 - 1
LAB_WINDOW = timedelta(hours=24)
"""A confirming lab must be drawn within this long before or after the ECG it confirms (when the prediction
has an ECG time); retraining then pairs only labs within its own, narrower window. There is no bound on the
calendar itself: de-identified sources such as MIMIC-IV shift dates by a century or two."""
COMMENT_MAX_CHARS = 2000


class PredictionNotFoundError(ValueError):
    """No prediction with this id."""


class AlreadyConfirmedError(ValueError):
    """The prediction already has its (single) lab confirmation."""


class ReviewPermissionError(PermissionError):
    """The key is unknown, revoked, or its role may not review."""


def _reviewer(session: Session, reviewer_id: int) -> ApiKey:
    """The active key ``reviewer_id`` if its role may review."""
    key = session.get(ApiKey, reviewer_id)
    if key is None or key.revoked_at is not None:
        raise ReviewPermissionError(f"API key {reviewer_id} is unknown or revoked")
    if key.role not in REVIEW_ROLES:
        allowed = ", ".join(sorted(role.value for role in REVIEW_ROLES))
        raise ReviewPermissionError(f"role {key.role.value} may not review predictions (needs {allowed})")
    return key


def _prediction(session: Session, prediction_id: uuid.UUID) -> Prediction:
    if not isinstance(prediction_id, uuid.UUID):
        raise ValueError(f"prediction id must be a UUID, got {prediction_id!r}")
    row = session.get(Prediction, prediction_id)
    if row is None:
        raise PredictionNotFoundError(f"no prediction {prediction_id}")
    return row


def _lab_value(k_value: float) -> float:
    if isinstance(k_value, bool) or not isinstance(k_value, numbers.Real) or not math.isfinite(k_value):
        raise ValueError(f"lab K+ must be a finite number in mmol/L, got {k_value!r}")
    if not 0 < k_value <= K_MAX:
        raise ValueError(f"lab K+ must lie in (0, {K_MAX:g}] mmol/L, got {k_value!r}")
    return float(k_value)


def _lab_time(lab_time: datetime) -> datetime:
    if not isinstance(lab_time, datetime) or lab_time.utcoffset() is None:
        raise ValueError(f"lab time must be a time-zone-aware datetime, got {lab_time!r}")
    return lab_time


def _lab_near_ecg(lab_time: datetime, prediction: Prediction) -> None:
    """Refuse a lab drawn more than :data:`LAB_WINDOW` from the ECG (when the ECG's time is known)."""
    if prediction.ecg_time is not None and abs(lab_time - prediction.ecg_time) > LAB_WINDOW:
        hours = LAB_WINDOW.total_seconds() / 3600
        raise ValueError(f"lab time {lab_time.isoformat()} lies more than {hours:g} h from the ECG "
                         f"({prediction.ecg_time.isoformat()})")


def _itemid(itemid: int | None) -> int | None:
    if itemid is None:
        return None
    if isinstance(itemid, bool) or not isinstance(itemid, numbers.Integral) or not 0 <= itemid <= ITEMID_MAX:
        raise ValueError(f"itemid must be an integer in [0, {ITEMID_MAX}] when given, got {itemid!r}")
    return int(itemid)


def _source(source: str) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source must name the door that writes (e.g. 'api', 'dashboard'), got {source!r}")
    return source


def lab_confirmation_of(session: Session, prediction_id: uuid.UUID) -> LabConfirmation | None:
    """The lab confirmation of ``prediction_id``, or ``None``."""
    query = sa.select(LabConfirmation).where(LabConfirmation.prediction_id == prediction_id)
    return session.scalars(query).one_or_none()


def confirm_lab(
    session: Session,
    prediction_id: uuid.UUID,
    k_value: float,
    lab_time: datetime,
    *,
    reviewer_id: int,
    source: str,
    itemid: int | None = None,
    comment_class: LabComment | str = LabComment.NONE,
    request_id: str | None = None,
) -> LabConfirmation:
    """Record the measured K+ confirming ``prediction_id`` (one per prediction), audited as ``lab.confirm``;
    ``comment_class`` ``hemolysed`` marks a haemolysed sample (never used for retraining).

    Raises :class:`PredictionNotFoundError`, :class:`AlreadyConfirmedError`, :class:`ValueError` for a bad
    value, time, itemid or comment class, and :class:`ReviewPermissionError` for a key that may not review.
    """
    value, when, item, door = _lab_value(k_value), _lab_time(lab_time), _itemid(itemid), _source(source)
    comment = parse_lab_comment(comment_class)
    _reviewer(session, reviewer_id)
    prediction = _prediction(session, prediction_id)
    _lab_near_ecg(when, prediction)
    if lab_confirmation_of(session, prediction_id) is not None:
        raise AlreadyConfirmedError(f"prediction {prediction_id} already has a lab value")
    segments = prediction.interval_segments
    row = LabConfirmation(prediction_id=prediction_id, k_value=value, lab_time=when, itemid=item,
                          comment_class=comment, confirmed_by=reviewer_id,
                          in_prediction_set=None if segments is None else in_segments(value, segments))
    session.add(row)
    session.flush()
    record_audit(session, key_actor(reviewer_id), "lab.confirm", f"prediction:{prediction_id}",
                 AuditOutcome.SUCCESS, request_id,
                 {"lab_confirmation_id": row.id, "source": door, "comment_class": comment.value})
    return row


def parse_lab_comment(comment_class: LabComment | str) -> LabComment:
    """``"hemolysed"`` -> ``LabComment.HEMOLYSED``, with a clear error for anything else."""
    return parse_member(LabComment, comment_class, "lab comment class")


def parse_verdict(verdict: Verdict | str) -> Verdict:
    """``"agree"`` -> ``Verdict.AGREE``, with a clear error for anything else."""
    return parse_member(Verdict, verdict, "verdict")


def add_review(
    session: Session,
    prediction_id: uuid.UUID,
    verdict: Verdict | str,
    *,
    reviewer_id: int,
    source: str,
    comment: str | None = None,
    request_id: str | None = None,
) -> Review:
    """Record a reviewer's verdict on ``prediction_id`` (several per prediction allowed), audited as
    ``review.add``. An empty comment is stored as none."""
    judged, door = parse_verdict(verdict), _source(source)
    if comment is not None:
        if not isinstance(comment, str) or len(comment) > COMMENT_MAX_CHARS:
            raise ValueError(f"comment must be text of at most {COMMENT_MAX_CHARS} characters")
        comment = storable_text(comment).strip() or None
    _reviewer(session, reviewer_id)
    _prediction(session, prediction_id)
    row = Review(prediction_id=prediction_id, reviewer_id=reviewer_id, verdict=judged, comment=comment)
    session.add(row)
    session.flush()
    record_audit(session, key_actor(reviewer_id), "review.add", f"prediction:{prediction_id}",
                 AuditOutcome.SUCCESS, request_id,
                 {"review_id": row.id, "verdict": judged.value, "source": door})
    return row
