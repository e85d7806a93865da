"""``POST /v1/predictions/{id}/lab``: a reviewer records the measured K+ that confirms a prediction."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, status

from ecg_k.db.models import LabConfirmation
from service.audit import audited
from service.auth import Reviewer
from service.deps import RuntimeDep
from service.routes.predictions import load_prediction
from service.schemas import LabIn, LabOut

router = APIRouter(prefix="/v1/predictions", tags=["labs"])


@router.post("/{prediction_id}/lab", status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "Unknown prediction."}, 409: {"description": "Already confirmed."}})
def confirm_lab(prediction_id: uuid.UUID, lab: LabIn, request: Request, runtime: RuntimeDep,
                principal: Reviewer) -> LabOut:
    """Record the confirmed lab K+ and its time (one confirmation per prediction)."""
    with audited(request, runtime.settings.database_url, "lab.create", f"prediction:{prediction_id}") as scope:
        load_prediction(scope.session, prediction_id, principal)
        exists = sa.select(LabConfirmation.id).where(LabConfirmation.prediction_id == prediction_id)
        if scope.session.scalar(exists) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"prediction {prediction_id} already has a lab value")
        row = LabConfirmation(prediction_id=prediction_id, k_value=lab.k_value, lab_time=lab.lab_time,
                              itemid=lab.itemid, confirmed_by=principal.key_id)
        scope.session.add(row)
        scope.session.flush()
        scope.detail = {"lab_confirmation_id": row.id}
        return LabOut(prediction_id=prediction_id, k_value=row.k_value, lab_time=row.lab_time, itemid=row.itemid,
                      confirmed_by=row.confirmed_by, created_at=row.created_at)
