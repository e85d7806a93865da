"""FHIR output of a K+ estimate: an AI-labelled ``Observation`` and its ``Provenance`` (conventions.md 5).

Both are built as plain dicts, validated by constructing the ``fhir.resources.R4B`` models and returned as
their JSON form. fhir.resources 8.x defaults to R5; its ``R4B`` subpackage (FHIR 4.3.0) is used because
R4B keeps R4's Observation, Device, DocumentReference and Provenance elements, so the JSON is what R4
servers take (``device``, ``derivedFrom``, ``Device.deviceName``/``version`` as in R4).

LOINC decision: the code is 2823-3 "Potassium [Moles/volume] in Serum or Plasma" (the project default).
2823-3 denotes a measured lab value, so every resource says it is an estimate: ``status`` is always
``preliminary`` (never ``final``), ``method`` is "ECG-derived estimate (deep learning)", ``meta.security``
carries AIAST, the model is the ``device``, and a ``Provenance`` names the AI device and its model card.
The alternative, a local code with 2823-3 only as a mapping, would hide the value from systems that
trend serum K+, and these markers already keep it from passing as a lab result.

Value and interpretation use the same reported number (2 decimals, :func:`ecg_k.clinical.reported_value`).
The subject is a pseudonymous key (never a name) and the source ECG is named by its stored sha256.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from ecg_k.clinical import REPORT_DECIMALS, interpretation_code, reported_value
from ecg_k.model_card import RELIABILITY_NOTES, ModelCard, shot_region_of_estimate

FHIR_PACKAGE = "fhir.resources.R4B"

LOINC = "http://loinc.org"
POTASSIUM_CODE = "2823-3"
POTASSIUM_DISPLAY = "Potassium [Moles/volume] in Serum or Plasma"
UCUM = "http://unitsofmeasure.org"
UNIT = "mmol/L"
METHOD_TEXT = "ECG-derived estimate (deep learning)"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_DISPLAY = {"LL": "Critical low", "L": "Low", "N": "Normal", "H": "High", "HH": "Critical high"}
AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
AI_IG = "http://hl7.org/fhir/uv/aitransparency"
"""HL7 AI Transparency on FHIR IG (HL7/aitransparency-ig): AIconfidence, AIDevice, AIProvenance, AIModelCard
profiles and code systems."""
AICONFIDENCE_URL = f"{AI_IG}/StructureDefinition/AIconfidence"
AIKIND_URL = f"{AI_IG}/StructureDefinition/aitransparency.AIKind"
AI_DEVICE_TYPE_SYSTEM = f"{AI_IG}/CodeSystem/AIdeviceTypeCS"
AI_INPUTS_SYSTEM = f"{AI_IG}/CodeSystem/AIinputsCS"

ONNX_SHA256_SYSTEM = "urn:ecg-k:onnx-sha256"
ECG_SHA256_SYSTEM = "urn:ecg-k:ecg-sha256"
SUBJECT_KEY_SYSTEM = "urn:ecg-k:subject-key"
MODEL_VERSION_SYSTEM = "urn:ecg-k:model-version"
DEVICE_ID = "ecg-k-model"
MODEL_CARD_ID = "model-card"

_SUBJECT_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FHIR_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")


def _validated(model: type[FHIRAbstractModel], payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` validated as a ``model`` resource, in the JSON form fhir.resources writes."""
    return model.model_validate(payload).model_dump(mode="json")


def _check_id(value: str, what: str) -> str:
    if not _FHIR_ID.fullmatch(value):
        raise ValueError(f"{what} must be a FHIR id (1-64 of A-Z a-z 0-9 - .), got {value!r}")
    return value


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (FHIR instants carry an offset), got {moment!r}")
    return moment


def _quantity(value: float) -> dict[str, Any]:
    return {"value": round(value, REPORT_DECIMALS), "unit": UNIT, "system": UCUM, "code": UNIT}


def _ai_device(card: ModelCard) -> dict[str, Any]:
    """The model as an AIDevice-style Device: name, version and the sha256 of the ONNX file."""
    return {
        "resourceType": "Device",
        "id": DEVICE_ID,
        "extension": [{
            "url": AIKIND_URL,
            "valueCodeableConcept": {"coding": [{
                "system": AI_DEVICE_TYPE_SYSTEM,
                "code": "Deep-Learning-Models",
                "display": "Deep Learning Models",
            }]},
        }],
        "identifier": [{"system": ONNX_SHA256_SYSTEM, "value": card.onnx.sha256}],
        "status": "active",
        "deviceName": [{"name": card.name, "type": "model-name"}],
        "type": {"coding": [{
            "system": AI_DEVICE_TYPE_SYSTEM, "code": "Artificial-Intelligence",
            "display": "All kinds of Artificial Intelligence",
        }]},
        "version": [{"value": card.version}],
    }


def _device_reference(card: ModelCard) -> dict[str, str]:
    return {"reference": f"#{DEVICE_ID}", "display": f"{card.name} {card.version}"}


def observation_for_prediction(
    *,
    observation_id: str,
    estimate: float,
    interval: tuple[float, float],
    coverage: float,
    card: ModelCard,
    subject_key: str,
    ecg_sha256: str,
    issued: datetime,
    ecg_time: datetime | None = None,
    ecg_reference: str | None = None,
) -> dict[str, Any]:
    """A validated FHIR R4 ``Observation`` (JSON dict) for one K+ estimate of model ``card``.

    ``interval`` is the ``coverage`` prediction interval (:func:`ecg_k.model_card.prediction_interval`),
    carried as the AIconfidence ``valueRange``. ``subject_key`` is a pseudonymous key; ``ecg_sha256`` names
    the stored source ECG, and ``ecg_reference`` (e.g. ``DocumentReference/123``) links it when it exists.
    ``ecg_time`` becomes ``effectiveDateTime`` and ``issued`` is the prediction time.
    """
    low, high = (float(v) for v in interval)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"interval must be finite with low <= high, got {interval}")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    if not _SUBJECT_KEY.fullmatch(subject_key):
        raise ValueError("subject_key must be a pseudonymous key (1-128 of A-Z a-z 0-9 . _ : -), not a name")
    if not _SHA256.fullmatch(ecg_sha256):
        raise ValueError(f"ecg_sha256 must be 64 lower-case hex digits, got {ecg_sha256!r}")
    value = reported_value(estimate)
    code = interpretation_code(value, card.thresholds)
    region = shot_region_of_estimate(card, estimate)
    thresholds = card.thresholds
    source_ecg: dict[str, Any] = {
        "type": "DocumentReference",
        "identifier": {"system": ECG_SHA256_SYSTEM, "value": ecg_sha256},
        "display": "source ECG",
    }
    if ecg_reference is not None:
        source_ecg["reference"] = ecg_reference
    payload: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _check_id(observation_id, "observation_id"),
        "meta": {"security": [AIAST]},
        "contained": [_ai_device(card)],
        "extension": [{
            "url": AICONFIDENCE_URL, "valueRange": {"low": _quantity(low), "high": _quantity(high)},
        }],
        "status": "preliminary",
        "code": {
            "coding": [{"system": LOINC, "code": POTASSIUM_CODE, "display": POTASSIUM_DISPLAY}],
            "text": "Potassium (ECG-derived estimate)",
        },
        "subject": {"identifier": {"system": SUBJECT_KEY_SYSTEM, "value": subject_key}},
        "issued": _aware(issued, "issued"),
        "valueQuantity": _quantity(value),
        "interpretation": [{"coding": [{
            "system": INTERPRETATION_SYSTEM, "code": code, "display": INTERPRETATION_DISPLAY[code],
        }]}],
        "note": [{"text": (
            f"Estimated from the ECG by {card.name} {card.version}; not a laboratory measurement. "
            f"{coverage:.0%} prediction interval {low:.2f}-{high:.2f} {UNIT}. "
            f"Shot region '{region}': {RELIABILITY_NOTES[region]}."
        )}],
        "method": {"text": METHOD_TEXT},
        "device": _device_reference(card),
        "derivedFrom": [source_ecg],
        "referenceRange": [{
            "low": _quantity(thresholds.hypokalemia),
            "high": _quantity(thresholds.hyperkalemia),
            "text": (
                f"Flags: L at K+ <= {thresholds.hypokalemia:g} and H at K+ >= {thresholds.hyperkalemia:g} "
                f"{UNIT} (LL below {thresholds.critical_low:g}, HH above {thresholds.critical_high:g}). "
                "FHIR ranges are inclusive, so the limits themselves are flagged L and H."
            ),
        }],
    }
    if ecg_time is not None:
        payload["effectiveDateTime"] = _aware(ecg_time, "ecg_time")
    return _validated(Observation, payload)


def provenance_for_observation(
    observation: Mapping[str, Any],
    card: ModelCard,
    *,
    provenance_id: str | None = None,
    model_card_url: str | None = None,
) -> dict[str, Any]:
    """A validated FHIR R4 ``Provenance`` (JSON dict, AIProvenance-style) for an Observation built above.

    ``target`` is the Observation, ``agent.who`` the AI Device (contained, same as in the Observation),
    ``entity`` the source ECG (role source) and the model card as a contained ``DocumentReference``
    (role derivation; ``model_card_url`` says where the card is served, when it is).
    """
    parsed = Observation.model_validate(dict(observation))
    if parsed.id is None or parsed.issued is None or not parsed.derivedFrom:
        raise ValueError(
            "observation must have an id, issued and derivedFrom (build it with observation_for_prediction)"
        )
    attachment: dict[str, Any] = {"contentType": "application/json", "title": "model_card.json"}
    if model_card_url is not None:
        attachment["url"] = model_card_url
    model_card = {
        "resourceType": "DocumentReference",
        "id": MODEL_CARD_ID,
        "identifier": [{"system": MODEL_VERSION_SYSTEM, "value": card.version}],
        "status": "current",
        "type": {"coding": [{"system": AI_INPUTS_SYSTEM, "code": "AIModelCard", "display": "AI Model-Card"}]},
        "description": f"Model card of {card.name} {card.version} (ONNX sha256 {card.onnx.sha256})",
        "content": [{"attachment": attachment}],
    }
    payload: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"security": [AIAST]},
        "contained": [_ai_device(card), model_card],
        "target": [{"reference": f"Observation/{parsed.id}"}],
        "recorded": parsed.issued,
        "reason": [{"coding": [AIAST]}],
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": "CREATE",
            "display": "create",
        }]},
        "agent": [{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author", "display": "Author",
            }]},
            "role": [{"coding": [{"system": AI_DEVICE_TYPE_SYSTEM, "code": "Artificial-Intelligence"}]}],
            "who": _device_reference(card),
        }],
        "entity": [
            {"role": "source", "what": parsed.derivedFrom[0].model_dump(mode="json")},
            {"role": "derivation", "what": {"reference": f"#{MODEL_CARD_ID}", "display": "model card"}},
        ],
    }
    if provenance_id is not None:
        payload["id"] = _check_id(provenance_id, "provenance_id")
    return _validated(Provenance, payload)
