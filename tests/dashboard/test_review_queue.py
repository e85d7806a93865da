"""The review queue, a prediction's details and stored ECG, the reviewer's submission (through
ecg_k.db.reviews, audited) and the dashboard sign-in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from dashboard.auth import SignedIn, sign_in
from dashboard.review_queue import (
    QUEUE_FLAGS,
    ReviewForm,
    ecg_trace,
    prediction_detail,
    record_read,
    review_queue,
    submit_review,
)
from ecg_k.db.ecg_store import EcgNotFoundError, EcgStore
from ecg_k.db.models import AuditEvent, LabConfirmation, Prediction, Review, Role, Verdict
from ecg_k.db.reviews import AlreadyConfirmedError, ReviewPermissionError
from ecg_k.db.session import session_scope
from ecg_k.leads import MIMIC_LEAD_ORDER
from tests.dashboard.conftest import Seeded

LAB_TIME = datetime(2025, 3, 31, 19, 0, tzinfo=UTC)


def _reviewer(seeded_db: Seeded, role: str = "reviewer") -> SignedIn:
    return SignedIn(seeded_db.key_ids[role], Role(role), f"test {role}")


def _waiting_ids(seeded_db: Seeded) -> set[uuid.UUID]:
    """Flagged predictions without a lab or an unusable-ECG verdict, from the rows themselves."""
    with session_scope(seeded_db.database_url) as session:
        labelled = set(session.scalars(sa.select(LabConfirmation.prediction_id)))
        unusable = set(session.scalars(
            sa.select(Review.prediction_id).where(Review.verdict == Verdict.UNUSABLE_ECG)))
        flagged = session.scalars(sa.select(Prediction.id).where(Prediction.flag.in_(QUEUE_FLAGS)))
        return {p for p in flagged if p not in labelled and p not in unusable}


def _audit(seeded_db: Seeded, request_id: str) -> list[tuple[str, str]]:
    with session_scope(seeded_db.database_url) as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.request_id == request_id)
                                 .order_by(AuditEvent.id))
        return [(event.action, event.outcome.value) for event in events]


def test_queue_lists_waiting_flagged_predictions_critical_first(seeded_db: Seeded) -> None:
    waiting = _waiting_ids(seeded_db)
    with session_scope(seeded_db.database_url) as session:
        queue = review_queue(session, limit=1000)
        first_five = review_queue(session, limit=5)
    assert queue.total == len(waiting) == len(queue.table) > 10
    assert set(queue.table["id"]) == waiting and set(queue.table["flag"]) <= {"LL", "L", "H", "HH"}
    critical = queue.table["critical"].to_numpy()
    assert critical.any() and not np.any(np.diff(critical.astype(int)) > 0)  # critical rows come first
    normal = queue.table[~queue.table["critical"]]
    assert normal["created"].is_monotonic_increasing
    assert list(first_five.table["id"]) == list(queue.table["id"][:5]) and first_five.total == queue.total


def test_submission_stores_lab_and_verdict_audited_and_leaves_the_queue(seeded_db: Seeded) -> None:
    with session_scope(seeded_db.database_url) as session:
        before = review_queue(session)
    target = before.table["id"].iloc[0]
    with session_scope(seeded_db.database_url) as session:
        lab_time = session.get(Prediction, target).ecg_time + timedelta(minutes=35)
    form = ReviewForm(verdict="agree", k_value=6.4, lab_time=lab_time, itemid=50971, comment="peaked T waves",
                      comment_class="verified")
    stored = submit_review(seeded_db.database_url, _reviewer(seeded_db), target, form)
    with session_scope(seeded_db.database_url) as session:
        lab = session.get(LabConfirmation, stored.lab_confirmation_id)
        review = session.get(Review, stored.review_id)
        assert (lab.prediction_id, lab.k_value, lab.lab_time, lab.confirmed_by, lab.comment_class) == (
            target, 6.4, lab_time, seeded_db.key_ids["reviewer"], "verified")
        assert (review.prediction_id, review.verdict, review.comment) == (target, Verdict.AGREE, "peaked T waves")
        after = review_queue(session)
    assert after.total == before.total - 1 and target not in set(after.table["id"])
    assert _audit(seeded_db, stored.request_id) == [("lab.confirm", "success"), ("review.add", "success"),
                                                 ("review.submit", "success")]
    with pytest.raises(AlreadyConfirmedError):
        submit_review(seeded_db.database_url, _reviewer(seeded_db), target, form)


def test_unusable_ecg_needs_no_lab_and_leaves_the_queue(seeded_db: Seeded) -> None:
    with session_scope(seeded_db.database_url) as session:
        target = review_queue(session).table["id"].iloc[-1]
    form = ReviewForm(verdict="unusable_ecg")
    stored = submit_review(seeded_db.database_url, _reviewer(seeded_db), target, form)
    assert stored.lab_confirmation_id is None
    assert target not in _waiting_ids(seeded_db)


@pytest.mark.parametrize(("role", "form", "error", "message", "outcome"), [
    ("client", ReviewForm(verdict="agree", k_value=5.0, lab_time=LAB_TIME), ReviewPermissionError,
     "role client may not review", "denied"),
    ("admin", ReviewForm(verdict="agree", k_value=5.0, lab_time=LAB_TIME), ReviewPermissionError,
     "role admin may not review", "denied"),
    ("reviewer", ReviewForm(verdict="agree"), ValueError, "a lab K.* is needed to agree", "failure"),
    ("reviewer", ReviewForm(verdict="disagree", k_value=5.0), ValueError, "together with the time", "failure"),
    ("reviewer", ReviewForm(verdict="agree", k_value=99.0, lab_time=LAB_TIME), ValueError, r"\(0, 15\]",
     "failure"),
    ("reviewer", ReviewForm(verdict="perhaps"), ValueError, "unknown verdict", "failure"),
    ("reviewer", ReviewForm(verdict="unusable_ecg", comment_class="hemolysed"), ValueError,
     "needs the lab K", "failure"),
    ("reviewer", ReviewForm(verdict="agree", k_value=5.0, lab_time=LAB_TIME, comment_class="lysed"), ValueError,
     "unknown lab comment class", "failure"),
])
def test_refused_submissions_write_only_the_refusal(seeded_db: Seeded, role: str, form: ReviewForm, error: type,
                                                    message: str, outcome: str) -> None:
    with session_scope(seeded_db.database_url) as session:
        target = review_queue(session).table["id"].iloc[0]
        labs_before = session.scalar(sa.select(sa.func.count()).select_from(LabConfirmation))
    with pytest.raises(error, match=message):
        submit_review(seeded_db.database_url, _reviewer(seeded_db, role), target, form)
    with session_scope(seeded_db.database_url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LabConfirmation)) == labs_before
        assert session.scalar(sa.select(sa.func.count()).select_from(Review)) == 0
        [event] = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "review.submit"))
    assert (event.outcome.value, event.actor, event.resource) == (outcome, f"api_key:{seeded_db.key_ids[role]}",
                                                                  f"prediction:{target}")
    assert event.detail["source"] == "dashboard"


def test_detail_and_stored_ecg_of_a_prediction(seeded_db: Seeded) -> None:
    with session_scope(seeded_db.database_url) as session:
        target = review_queue(session).table.iloc[0]
        detail = prediction_detail(session, target["id"])
        with pytest.raises(ValueError, match="no prediction"):
            prediction_detail(session, uuid.uuid4())
    assert (detail.k_estimate, detail.flag, detail.interval) == (target["estimate"], target["flag"],
                                                                 (target["low"], target["high"]))
    assert detail.lab is None and detail.reviews.empty and detail.model.startswith("ecg-k-synthetic ")
    store = EcgStore(seeded_db.home / "ecg-store")
    trace = ecg_trace(store, detail.ecg_sha256)
    signal = store.get(detail.ecg_sha256).signal
    assert list(dict.fromkeys(trace["lead"])) == list(MIMIC_LEAD_ORDER) and len(trace) == 12 * 2500
    lead_ii = trace[trace["lead"] == "II"]
    np.testing.assert_array_equal(lead_ii["mv"].to_numpy(), signal[1, ::2])
    assert lead_ii["t"].iloc[1] == pytest.approx(2 / 500)
    with pytest.raises(EcgNotFoundError):
        ecg_trace(store, "0" * 64)


def test_sign_in_and_reads_are_audited(seeded_db: Seeded) -> None:
    who = sign_in(seeded_db.database_url, f"  {seeded_db.keys['reviewer']} ")
    assert who == SignedIn(seeded_db.key_ids["reviewer"], Role.REVIEWER, "test reviewer") and who.can_review
    client = sign_in(seeded_db.database_url, seeded_db.keys["client"])
    assert client is not None and not client.can_review and client.label == "test client (client)"
    assert sign_in(seeded_db.database_url, "ecgk_000000000000_wrong") is None
    prediction_id = uuid.uuid4()
    record_read(seeded_db.database_url, None, prediction_id)
    with session_scope(seeded_db.database_url) as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.action.in_(["auth", "prediction.read"]))
                                 .order_by(AuditEvent.id)).all()
        assert [(e.action, e.actor, e.outcome.value) for e in events] == [
            ("auth", f"api_key:{seeded_db.key_ids['reviewer']}", "success"),
            ("auth", f"api_key:{seeded_db.key_ids['client']}", "success"),
            ("auth", "anonymous", "denied"),
            ("prediction.read", "anonymous", "success")]
        assert events[-1].resource == f"prediction:{prediction_id}"
