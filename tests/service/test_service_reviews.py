"""Reviews and lab confirmations through the API: reviewer-only, stored through ecg_k.db.reviews, audited."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from ecg_k.data.lab_comments import LabComment
from ecg_k.db.models import LabConfirmation, Review, Verdict
from ecg_k.db.session import session_scope
from tests.service.conftest import RawEcg, Service


def _prediction(service: Service, raw_ecg: RawEcg) -> str:
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload())
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _reviews(service: Service, prediction_id: str) -> list[Review]:
    with session_scope(service.database_url) as session:
        query = sa.select(Review).where(Review.prediction_id == uuid.UUID(prediction_id)).order_by(Review.id)
        return list(session.scalars(query))


def test_reviewer_records_verdicts_with_request_and_domain_audit(service: Service, raw_ecg: RawEcg) -> None:
    prediction_id = _prediction(service, raw_ecg)
    with service.client("reviewer") as reviewer:
        first = reviewer.post(f"/v1/predictions/{prediction_id}/reviews",
                              json={"verdict": "disagree", "comment": "  lab pending  "})
        second = reviewer.post(f"/v1/predictions/{prediction_id}/reviews", json={"verdict": "unusable_ecg"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["prediction_id"], body["verdict"], body["comment"]) == (prediction_id, "disagree", "lab pending")
    assert second.status_code == 201 and second.json()["comment"] is None
    stored = _reviews(service, prediction_id)
    assert [(r.verdict, r.comment) for r in stored] == [(Verdict.DISAGREE, "lab pending"),
                                                        (Verdict.UNUSABLE_ECG, None)]
    assert {r.reviewer_id for r in stored} == {body["reviewer_id"]}
    events = service.audit_events(first.headers["X-Request-Id"])
    assert [(e.action, e.outcome.value) for e in events] == [("review.add", "success"),
                                                              ("review.create", "success")]
    assert events[0].actor == events[1].actor == f"api_key:{body['reviewer_id']}"
    assert events[0].detail == {"review_id": body["id"], "verdict": "disagree", "source": "api"}


def test_only_reviewers_review_known_predictions_with_valid_verdicts(service: Service, raw_ecg: RawEcg) -> None:
    prediction_id = _prediction(service, raw_ecg)
    before = service.counts()
    with service.client("client") as client:
        forbidden = client.post(f"/v1/predictions/{prediction_id}/reviews", json={"verdict": "agree"})
    with service.client("admin") as admin:
        admin_forbidden = admin.post(f"/v1/predictions/{prediction_id}/reviews", json={"verdict": "agree"})
    with service.client("reviewer") as reviewer:
        unknown = reviewer.post(f"/v1/predictions/{uuid.uuid4()}/reviews", json={"verdict": "agree"})
        bad_verdict = reviewer.post(f"/v1/predictions/{prediction_id}/reviews", json={"verdict": "maybe"})
        too_long = reviewer.post(f"/v1/predictions/{prediction_id}/reviews",
                                 json={"verdict": "agree", "comment": "x" * 2001})
    assert (forbidden.status_code, admin_forbidden.status_code, unknown.status_code) == (403, 403, 404)
    assert bad_verdict.status_code == 422 and too_long.status_code == 422
    assert "no prediction" in unknown.json()["detail"]
    assert _reviews(service, prediction_id) == []
    after = service.counts()
    assert after["audit_events"] - before["audit_events"] == 5  # one refusal event per request
    assert [e.outcome.value for e in service.audit_events(unknown.headers["X-Request-Id"])] == ["denied"]


def test_lab_confirmation_leaves_a_domain_audit_event(service: Service, raw_ecg: RawEcg) -> None:
    prediction_id = _prediction(service, raw_ecg)
    with service.client("reviewer") as reviewer:
        confirmed = reviewer.post(f"/v1/predictions/{prediction_id}/lab",
                                  json={"k_value": 2.9, "lab_time": "2024-05-01T10:00:00+02:00"})
    assert confirmed.status_code == 201, confirmed.text
    with session_scope(service.database_url) as session:
        row = session.scalars(sa.select(LabConfirmation).where(
            LabConfirmation.prediction_id == uuid.UUID(prediction_id))).one()
        assert (row.k_value, row.lab_time.isoformat(), row.itemid) == (2.9, "2024-05-01T08:00:00+00:00", None)
        assert row.comment_class is LabComment.NONE and confirmed.json()["comment_class"] == "none"
    events = service.audit_events(confirmed.headers["X-Request-Id"])
    assert [e.action for e in events] == ["lab.confirm", "lab.create"]
    assert events[0].detail == {"lab_confirmation_id": row.id, "source": "api", "comment_class": "none"}


def test_reviewer_marks_a_lab_haemolysed(service: Service, raw_ecg: RawEcg) -> None:
    prediction_id = _prediction(service, raw_ecg)
    lab = {"k_value": 6.9, "lab_time": "2024-05-01T10:00:00Z", "itemid": 50971}
    with service.client("reviewer") as reviewer:
        misspelt = reviewer.post(f"/v1/predictions/{prediction_id}/lab", json=lab | {"comment_class": "pink"})
        marked = reviewer.post(f"/v1/predictions/{prediction_id}/lab", json=lab | {"comment_class": "hemolysed"})
    assert misspelt.status_code == 422 and "hemolysed" in misspelt.text
    assert marked.status_code == 201, marked.text
    assert marked.json()["comment_class"] == "hemolysed"
    with session_scope(service.database_url) as session:
        row = session.scalars(sa.select(LabConfirmation).where(
            LabConfirmation.prediction_id == uuid.UUID(prediction_id))).one()
        assert (row.k_value, row.comment_class) == (6.9, LabComment.HEMOLYSED)
