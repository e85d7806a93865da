"""``GET /v1/predictions/{id}/fhir``: the estimate as a FHIR R4 Observation (AI-asserted, preliminary), and
``GET /v1/predictions/{id}/fhir/provenance``: the AI Provenance that targets it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ecg_k.db.models import Prediction
from ecg_k.fhir import observation_for_prediction, provenance_for_observation
from service.audit import audited
from service.auth import Caller
from service.deps import RuntimeDep
from service.routes.predictions import read_audited
from service.runtime import Runtime

router = APIRouter(prefix="/v1/predictions", tags=["fhir"])

FHIR_JSON = "application/fhir+json"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def _observation(row: Prediction, runtime: Runtime) -> dict[str, Any]:
    """The stored prediction as an Observation: its interpretation, shot region, set, coverage level and
    probabilities as stored when it was served (never recomputed, nor labelled with today's coverage setting)."""
    assert row.k_estimate is not None and row.interval_low is not None and row.interval_high is not None
    assert row.flag is not None and row.shot_region is not None
    probabilities = None if row.p_hyper is None or row.p_hypo is None else (row.p_hyper, row.p_hypo)
    return observation_for_prediction(
        observation_id=str(row.id), estimate=row.k_estimate, interpretation=row.flag, shot_region=row.shot_region,
        interval=(row.interval_low, row.interval_high), coverage=row.interval_coverage,
        card=runtime.card_of(row.model_version),
        subject_key=row.patient_id, ecg_sha256=row.ecg_sha256, issued=row.created_at, ecg_time=row.ecg_time,
        segments=None if row.interval_segments is None else [(a, b) for a, b in row.interval_segments],
        method=row.interval_method, probabilities=probabilities,
    )


@router.get("/{prediction_id}/fhir", response_class=FhirResponse,
            responses={200: {"content": {FHIR_JSON: {}}, "description": "A FHIR R4 Observation."},
                       404: {"description": "Unknown, or another client's."}})
def read_prediction_fhir(prediction_id: uuid.UUID, request: Request, runtime: RuntimeDep,
                         principal: Caller) -> dict[str, Any]:
    """The prediction as a validated FHIR R4 ``Observation`` (LOINC 2823-3, category procedure, status
    preliminary, AIAST; the prediction set and the two probabilities as components)."""
    with audited(request, runtime.settings.database_url, "prediction.fhir",
                 f"prediction:{prediction_id}") as scope:
        return _observation(read_audited(scope, prediction_id, principal), runtime)


@router.get("/{prediction_id}/fhir/provenance", response_class=FhirResponse,
            responses={200: {"content": {FHIR_JSON: {}}, "description": "A FHIR R4 Provenance."},
                       404: {"description": "Unknown, or another client's."}})
def read_prediction_provenance(prediction_id: uuid.UUID, request: Request, runtime: RuntimeDep,
                               principal: Caller) -> dict[str, Any]:
    """The AI ``Provenance`` of the prediction's Observation: the model as author, the source ECG and the
    model card as entities."""
    with audited(request, runtime.settings.database_url, "prediction.fhir_provenance",
                 f"prediction:{prediction_id}") as scope:
        row = read_audited(scope, prediction_id, principal)
        observation = _observation(row, runtime)
        return provenance_for_observation(observation, runtime.card_of(row.model_version),
                                          provenance_id=f"{row.id}-provenance")
