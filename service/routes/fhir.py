"""``GET /v1/predictions/{id}/fhir``: the estimate as a FHIR R4 Observation (AI-asserted, preliminary)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ecg_k.fhir import observation_for_prediction
from service.audit import audited
from service.auth import Caller
from service.deps import RuntimeDep
from service.routes.predictions import read_audited

router = APIRouter(prefix="/v1/predictions", tags=["fhir"])

FHIR_JSON = "application/fhir+json"
UNKNOWN_SUBJECT = "unknown"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


@router.get("/{prediction_id}/fhir", response_class=FhirResponse,
            responses={200: {"content": {FHIR_JSON: {}}, "description": "A FHIR R4 Observation."},
                       404: {"description": "Unknown, or another client's."}})
def read_prediction_fhir(prediction_id: uuid.UUID, request: Request, runtime: RuntimeDep,
                         principal: Caller) -> dict[str, Any]:
    """The prediction as a validated FHIR R4 ``Observation`` (LOINC 2823-3, status preliminary, AIAST)."""
    with audited(request, runtime.settings.database_url, "prediction.fhir",
                 f"prediction:{prediction_id}") as scope:
        row = read_audited(scope, prediction_id, principal)
        assert row.k_estimate is not None and row.interval_low is not None and row.interval_high is not None
        return observation_for_prediction(
            observation_id=str(row.id), estimate=row.k_estimate, interval=(row.interval_low, row.interval_high),
            coverage=runtime.settings.interval_coverage, card=runtime.card_of(row.model_version),
            subject_key=row.patient_id or UNKNOWN_SUBJECT, ecg_sha256=row.ecg_sha256, issued=row.created_at,
            ecg_time=row.ecg_time,
        )
