"""A reviewer closes the loop on a prediction: ``POST /v1/predictions/{id}/lab`` records the measured K+,
``POST /v1/predictions/{id}/reviews`` a verdict. Both write through :mod:`ecg_k.db.reviews`, as the
dashboard's review queue does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException, Request, status

from ecg_k.db.reviews import AlreadyConfirmedError, PredictionNotFoundError, ReviewPermissionError, add_review
from ecg_k.db.reviews import confirm_lab as confirm_lab_value
from service.audit import audited, request_id_of
from service.auth import Reviewer
from service.deps import RuntimeDep
from service.routes.predictions import load_prediction
from service.schemas import LabIn, LabOut, ReviewIn, ReviewOut
from service.strict import JsonBody

router = APIRouter(prefix="/v1/predictions", tags=["labs"])

SOURCE = "api"
"""The door named in the audit detail of writes made here."""


@contextmanager
def _domain_errors() -> Iterator[None]:
    """The review rules' errors as HTTP: 404 unknown, 409 confirmed already, 403 not a reviewer, 422 bad value."""
    try:
        yield
    except PredictionNotFoundError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from err
    except AlreadyConfirmedError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from err
    except ReviewPermissionError as err:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(err)) from err
    except ValueError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from err


@router.post("/{prediction_id}/lab", status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "Unknown prediction."}, 409: {"description": "Already confirmed."}},
             dependencies=[JsonBody])
def confirm_lab(prediction_id: uuid.UUID, lab: LabIn, request: Request, runtime: RuntimeDep,
                principal: Reviewer) -> LabOut:
    """Record the confirmed lab K+ and its time (one confirmation per prediction); ``comment_class``
    ``hemolysed`` marks a haemolysed sample, kept for the record but never used for retraining."""
    with audited(request, runtime.settings.database_url, "lab.create", f"prediction:{prediction_id}") as scope:
        load_prediction(scope.session, prediction_id, principal)
        with _domain_errors():
            row = confirm_lab_value(scope.session, prediction_id, lab.k_value, lab.lab_time,
                                    reviewer_id=principal.key_id, source=SOURCE, itemid=lab.itemid,
                                    comment_class=lab.comment_class, request_id=request_id_of(request))
        scope.detail = {"lab_confirmation_id": row.id}
        return LabOut(prediction_id=prediction_id, k_value=row.k_value, lab_time=row.lab_time, itemid=row.itemid,
                      comment_class=row.comment_class, confirmed_by=row.confirmed_by, created_at=row.created_at)


@router.post("/{prediction_id}/reviews", status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "Unknown prediction."}}, dependencies=[JsonBody])
def review_prediction(prediction_id: uuid.UUID, review: ReviewIn, request: Request, runtime: RuntimeDep,
                      principal: Reviewer) -> ReviewOut:
    """Record a reviewer's verdict (agree, disagree, unusable_ecg) and an optional comment."""
    with audited(request, runtime.settings.database_url, "review.create",
                 f"prediction:{prediction_id}") as scope:
        load_prediction(scope.session, prediction_id, principal)
        with _domain_errors():
            row = add_review(scope.session, prediction_id, review.verdict, reviewer_id=principal.key_id,
                             source=SOURCE, comment=review.comment, request_id=request_id_of(request))
        scope.detail = {"review_id": row.id}
        return ReviewOut(id=row.id, prediction_id=prediction_id, verdict=row.verdict, comment=row.comment,
                         reviewer_id=row.reviewer_id, created_at=row.created_at)
