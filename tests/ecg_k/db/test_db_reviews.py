"""Lab confirmations and reviews (ecg_k.db.reviews): stored once, audited in the caller's transaction,
reviewer keys only, and every bad input refused before anything is written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.data.lab_comments import LabComment
from ecg_k.db.api_keys import create_api_key, revoke_api_key
from ecg_k.db.migrate import current_revision, downgrade, head_revision, upgrade
from ecg_k.db.models import (
    AuditEvent,
    EcgRecord,
    LabConfirmation,
    ModelStatus,
    ModelVersion,
    Prediction,
    Review,
    Role,
    Verdict,
)
from ecg_k.db.reviews import (
    AlreadyConfirmedError,
    PredictionNotFoundError,
    ReviewPermissionError,
    add_review,
    confirm_lab,
    lab_confirmation_of,
)
from ecg_k.db.session import session_scope
from ecg_k.potassium import Interpretation

LAB_TIME = datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))


def _seed(db_url: str) -> tuple[uuid.UUID, dict[Role, int]]:
    """One prediction and one key per role."""
    with session_scope(db_url) as session:
        model = ModelVersion(name="m", version="v", sha256="a" * 64, path="/m.onnx", card={},
                             status=ModelStatus.CHAMPION)
        session.add_all([model, EcgRecord(sha256="e" * 64, n_leads=1, n_samples=5000, fs=500.0, lead_names=["I"])])
        session.flush()
        prediction = Prediction(model_version=model, model_status=ModelStatus.CHAMPION, ecg_sha256="e" * 64,
                                k_estimate=6.1, interval_low=5.4, interval_high=6.9, flag=Interpretation.HIGH,
                                critical=False, quality={}, latency_ms=3.0)
        session.add(prediction)
        keys = {role: create_api_key(session, role, actor="test").key.id for role in Role}
        return prediction.id, keys


def _events(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_confirm_lab_once_with_an_audit_event(db_url: str) -> None:
    prediction_id, keys = _seed(db_url)
    reviewer = keys[Role.REVIEWER]
    with session_scope(db_url) as session:
        row = confirm_lab(session, prediction_id, 5.8, LAB_TIME, reviewer_id=reviewer, source="api", itemid=50971,
                          request_id="req-1")
        lab_id = row.id
    with session_scope(db_url) as session:
        stored = lab_confirmation_of(session, prediction_id)
        assert (stored.k_value, stored.itemid, stored.confirmed_by) == (5.8, 50971, reviewer)
        assert stored.lab_time == LAB_TIME and stored.lab_time.tzinfo == UTC
        [event] = _events(session, "lab.confirm")
        assert (event.actor, event.resource, event.request_id) == (f"api_key:{reviewer}",
                                                                   f"prediction:{prediction_id}", "req-1")
        assert event.detail == {"lab_confirmation_id": lab_id, "source": "api", "comment_class": "none"}
        assert stored.comment_class is LabComment.NONE
        with pytest.raises(AlreadyConfirmedError, match="already has a lab value"):
            confirm_lab(session, prediction_id, 5.9, LAB_TIME, reviewer_id=reviewer, source="api")


@pytest.mark.parametrize(("segments", "lab", "inside"), [
    (None, 6.0, None), ([[5.4, 5.9], [6.3, 6.9]], 6.1, False), ([[5.4, 5.9], [6.3, 6.9]], 6.3, True),
    ([[5.4, 5.9], [6.3, 6.9]], 5.94, True),  # on the 0.1 grid of the set: 5.9
])
def test_confirmation_records_whether_the_lab_is_in_the_stored_set(
    db_url: str, segments: list[list[float]] | None, lab: float, inside: bool | None
) -> None:
    prediction_id, keys = _seed(db_url)
    with session_scope(db_url) as session:
        row = session.get(Prediction, prediction_id)
        row.interval_segments, row.interval_coverage, row.interval_method = segments, 0.9, "m"
    with session_scope(db_url) as session:
        confirm_lab(session, prediction_id, lab, LAB_TIME, reviewer_id=keys[Role.REVIEWER], source="api")
    with session_scope(db_url) as session:
        assert lab_confirmation_of(session, prediction_id).in_prediction_set is inside


def test_reviews_accumulate_with_audit_events(db_url: str) -> None:
    prediction_id, keys = _seed(db_url)
    reviewer = keys[Role.REVIEWER]
    with session_scope(db_url) as session:
        add_review(session, prediction_id, "disagree", reviewer_id=reviewer, source="dashboard", comment="  ")
        add_review(session, prediction_id, Verdict.UNUSABLE_ECG, reviewer_id=reviewer, source="dashboard",
                   comment=" noisy V1 ")
    with session_scope(db_url) as session:
        reviews = session.scalars(sa.select(Review).order_by(Review.id)).all()
        assert [(r.verdict, r.comment, r.reviewer_id) for r in reviews] == [
            (Verdict.DISAGREE, None, reviewer), (Verdict.UNUSABLE_ECG, "noisy V1", reviewer)]
        events = _events(session, "review.add")
        assert [e.detail["verdict"] for e in events] == ["disagree", "unusable_ecg"]
        assert {e.detail["source"] for e in events} == {"dashboard"}


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"k_value": 0.0}, ValueError, r"lab K\+ must lie in \(0, 15\]"),
    ({"k_value": 15.5}, ValueError, r"lab K\+ must lie in \(0, 15\]"),
    ({"k_value": float("nan")}, ValueError, "finite number"),
    ({"k_value": True}, ValueError, "finite number"),
    ({"lab_time": datetime(2025, 3, 1, 9, 30)}, ValueError, "time-zone-aware"),
    ({"itemid": -1}, ValueError, "itemid must be an integer"),
    ({"itemid": 2.5}, ValueError, "itemid must be an integer"),
    ({"source": " "}, ValueError, "source must name the door"),
    ({"prediction_id": "not-a-uuid"}, ValueError, "prediction id must be a UUID"),
    ({"prediction_id": uuid.UUID(int=7)}, PredictionNotFoundError, "no prediction"),
    ({"role": Role.CLIENT}, ReviewPermissionError, "role client may not review"),
    ({"role": Role.ADMIN}, ReviewPermissionError, "role admin may not review"),
    ({"reviewer_id": 999}, ReviewPermissionError, "unknown or revoked"),
])
def test_bad_lab_input_is_refused_and_nothing_is_written(db_url: str, change: dict[str, Any], error: type,
                                                         message: str) -> None:
    prediction_id, keys = _seed(db_url)
    change = dict(change)  # the parameter is shared by both backends' runs
    arguments: dict[str, Any] = {"prediction_id": prediction_id, "k_value": 5.0, "lab_time": LAB_TIME,
                                 "reviewer_id": keys[change.pop("role", Role.REVIEWER)], "source": "api"}
    arguments.update(change)
    with session_scope(db_url) as session:
        with pytest.raises(error, match=message):
            confirm_lab(session, arguments.pop("prediction_id"), arguments.pop("k_value"),
                        arguments.pop("lab_time"), **arguments)
        assert session.scalar(sa.select(sa.func.count()).select_from(LabConfirmation)) == 0
        assert _events(session, "lab.confirm") == []


def test_bad_review_input_and_revoked_keys_are_refused(db_url: str) -> None:
    prediction_id, keys = _seed(db_url)
    reviewer = keys[Role.REVIEWER]
    with session_scope(db_url) as session:
        with pytest.raises(ValueError, match="unknown verdict 'maybe'; expected one of agree, disagree, unusable"):
            add_review(session, prediction_id, "maybe", reviewer_id=reviewer, source="api")
        with pytest.raises(ValueError, match="at most 2000 characters"):
            add_review(session, prediction_id, "agree", reviewer_id=reviewer, source="api", comment="x" * 2001)
        for unstorable in ("peaked T\x00", "\ud800"):  # PostgreSQL refuses NUL; no encoding holds a lone surrogate
            with pytest.raises(ValueError, match="control characters or lone surrogates"):
                add_review(session, prediction_id, "agree", reviewer_id=reviewer, source="dashboard",
                           comment=unstorable)
        with pytest.raises(PredictionNotFoundError):
            add_review(session, uuid.uuid4(), "agree", reviewer_id=reviewer, source="api")
        revoke_api_key(session, reviewer, actor="test")
        with pytest.raises(ReviewPermissionError, match="unknown or revoked"):
            add_review(session, prediction_id, "agree", reviewer_id=reviewer, source="api")
        assert session.scalar(sa.select(sa.func.count()).select_from(Review)) == 0


def test_a_lab_marked_haemolysed_is_stored_and_audited(db_url: str) -> None:
    prediction_id, keys = _seed(db_url)
    reviewer = keys[Role.REVIEWER]
    with session_scope(db_url) as session:
        with pytest.raises(ValueError, match="unknown lab comment class 'haemolyzed'; expected one of none, "
                                             "verified, hemolysed"):
            confirm_lab(session, prediction_id, 6.8, LAB_TIME, reviewer_id=reviewer, source="api",
                        comment_class="haemolyzed")
        assert lab_confirmation_of(session, prediction_id) is None
        confirm_lab(session, prediction_id, 6.8, LAB_TIME, reviewer_id=reviewer, source="dashboard",
                    comment_class="hemolysed")
    with session_scope(db_url) as session:
        assert lab_confirmation_of(session, prediction_id).comment_class is LabComment.HEMOLYSED
        [event] = _events(session, "lab.confirm")
        assert event.detail["comment_class"] == "hemolysed"
        with pytest.raises(sa.exc.IntegrityError):  # the database itself refuses any other class
            with session.begin_nested():
                session.execute(sa.text("UPDATE lab_confirmations SET comment_class = 'pink'"))


def test_migration_0002_keeps_existing_labs_and_guards_haemolysed_marks(db_url: str) -> None:
    prediction_id, keys = _seed(db_url)
    with session_scope(db_url) as session:
        confirm_lab(session, prediction_id, 5.1, LAB_TIME, reviewer_id=keys[Role.REVIEWER], source="api")
    downgrade(db_url, "0001")  # a lab confirmed before the column existed ...
    upgrade(db_url)
    with session_scope(db_url) as session:  # ... reads as none
        lab = lab_confirmation_of(session, prediction_id)
        assert (lab.k_value, lab.comment_class) == (5.1, LabComment.NONE)
        lab.comment_class = LabComment.HEMOLYSED
    with pytest.raises(RuntimeError, match="marked haemolysed"):  # 0001 would retrain on it
        downgrade(db_url, "0001")
    assert current_revision(db_url) == head_revision()
