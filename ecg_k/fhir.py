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
The subject is a pseudonymous key (never a name), and absent when the request named no patient (an
identifier such as "unknown" would merge every anonymous ECG into one patient at the receiving server).
The source ECG is named by its stored sha256.

Semantics:
- ``category`` is ``procedure`` (observation-category: results of procedures other than laboratory and
  imaging, electrodiagnostics such as the ECG included), never ``laboratory``: no sample was analysed.
- ``referenceRange`` is the *normal* range the flags imply. Flags are L at K+ <= 3.5 and H at K+ >= 5.5 on
  the reported 2-decimal value, and FHIR ranges include their ends, so the normal range is 3.51-5.49 mmol/L.
  The alert (critical) thresholds are stated in the note, not as a range.
- The prediction set (its hull, and each segment when it is non-contiguous) and its coverage level are
  ``component`` entries, as are the calibrated P(K+ >= 5.5) and P(K+ <= 3.5); the hull is also the
  AIconfidence ``valueRange``.
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

from ecg_k.clinical import REPORT_DECIMALS, reported_value
from ecg_k.model_card import ModelCard
from ecg_k.potassium import RELIABILITY_NOTES, Interpretation, ShotRegion, Thresholds

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
CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                         "code": "procedure", "display": "Procedure"}]}
REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
PROBABILITY_CODE = "urn:ecg-k:probability"
PREDICTION_SET_CODE = "urn:ecg-k:prediction-set"
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


def normal_range(thresholds: Thresholds) -> tuple[float, float]:
    """The inclusive normal range of reported values: strictly between the L and H flags."""
    step = 10.0 ** -REPORT_DECIMALS
    return round(thresholds.hypokalemia + step, REPORT_DECIMALS), round(thresholds.hyperkalemia - step,
                                                                        REPORT_DECIMALS)


def _probability(code: str, text: str, value: float) -> dict[str, Any]:
    if not 0 <= value <= 1:
        raise ValueError(f"a probability must lie in [0, 1], got {value}")
    return {"code": {"coding": [{"system": PROBABILITY_CODE, "code": code}], "text": text},
            "valueQuantity": {"value": round(value, 3), "unit": "probability", "system": UCUM, "code": "1"}}


def _set_component(code: str, text: str, low: float, high: float) -> dict[str, Any]:
    return {"code": {"coding": [{"system": PREDICTION_SET_CODE, "code": code}], "text": text},
            "valueRange": {"low": _quantity(low), "high": _quantity(high)}}


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
    interpretation: Interpretation,
    shot_region: ShotRegion,
    interval: tuple[float, float],
    coverage: float | None,
    card: ModelCard,
    subject_key: str | None,
    ecg_sha256: str,
    segments: list[tuple[float, float]] | None = None,
    method: str | None = None,
    probabilities: tuple[float, float] | None = None,
    issued: datetime,
    ecg_time: datetime | None = None,
    ecg_reference: str | None = None,
) -> dict[str, Any]:
    """A validated FHIR R4 ``Observation`` (JSON dict) for one K+ estimate of model ``card``, as it was scored
    (:mod:`ecg_k.scoring`) and stored: its ``interpretation`` code and ``shot_region`` are taken as given, not
    recomputed.

    ``interval`` is the hull of the ``coverage`` prediction set (None for a prediction stored without its
    coverage level: the set is then labelled "coverage not recorded", never with today's setting),
    ``segments`` its parts and ``method`` its construction, when known; ``probabilities`` are
    (P(K+ >= hyperkalemia), P(K+ <= hypokalemia)). ``subject_key`` is a pseudonymous key, or None for no
    ``subject``; ``ecg_sha256`` names the stored source ECG, and ``ecg_reference`` (e.g.
    ``DocumentReference/123``) links it when it exists. ``ecg_time`` becomes ``effectiveDateTime`` and
    ``issued`` is the prediction time.
    """
    low, high = (float(v) for v in interval)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"interval must be finite with low <= high, got {interval}")
    if coverage is not None and not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    if subject_key is not None and not _SUBJECT_KEY.fullmatch(subject_key):
        raise ValueError("subject_key must be a pseudonymous key (1-128 of A-Z a-z 0-9 . _ : -), not a name")
    if not _SHA256.fullmatch(ecg_sha256):
        raise ValueError(f"ecg_sha256 must be 64 lower-case hex digits, got {ecg_sha256!r}")
    value = reported_value(estimate)
    code, region = Interpretation(interpretation), ShotRegion(shot_region)
    thresholds = card.thresholds
    normal_low, normal_high = normal_range(thresholds)
    set_name = "prediction set (coverage not recorded)" if coverage is None else f"{coverage:.0%} prediction set"
    components = [_set_component("hull", f"{set_name} of K+ (hull)", low, high)]
    if segments is not None and len(segments) > 1:
        components += [_set_component("segment", f"{set_name} of K+ (segment {i + 1})", a, b)
                       for i, (a, b) in enumerate(segments)]
    if probabilities is not None:
        components += [
            _probability("p-hyperkalemia", f"P(K+ >= {thresholds.hyperkalemia:g} {UNIT}), calibrated",
                         probabilities[0]),
            _probability("p-hypokalemia", f"P(K+ <= {thresholds.hypokalemia:g} {UNIT}), calibrated",
                         probabilities[1]),
        ]
    construction = f" ({method})" if method else ""
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
        "category": [CATEGORY],
        "code": {
            "coding": [{"system": LOINC, "code": POTASSIUM_CODE, "display": POTASSIUM_DISPLAY}],
            "text": "Potassium (ECG-derived estimate)",
        },
        "issued": _aware(issued, "issued"),
        "valueQuantity": _quantity(value),
        "interpretation": [{"coding": [{
            "system": INTERPRETATION_SYSTEM, "code": code, "display": INTERPRETATION_DISPLAY[code],
        }]}],
        "note": [{"text": (
            f"Estimated from the ECG by {card.name} {card.version}; not a laboratory measurement. "
            f"{set_name[0].upper()}{set_name[1:]}{construction}: "
            f"{', '.join(f'{a:.1f}-{b:.1f}' for a, b in (segments or [(low, high)]))} {UNIT}. "
            f"Shot region '{region}': {RELIABILITY_NOTES[region]}. Alert thresholds: critical below "
            f"{thresholds.critical_low:g} (LL) and above {thresholds.critical_high:g} (HH) {UNIT}."
        )}],
        "method": {"text": METHOD_TEXT},
        "device": _device_reference(card),
        "derivedFrom": [source_ecg],
        "referenceRange": [{
            "low": _quantity(normal_low),
            "high": _quantity(normal_high),
            "type": {"coding": [{"system": REFERENCE_RANGE_MEANING, "code": "normal", "display": "Normal Range"}]},
            "text": (
                f"Normal: {normal_low:.2f}-{normal_high:.2f} {UNIT} (inclusive); flagged L at "
                f"<= {thresholds.hypokalemia:g} and H at >= {thresholds.hyperkalemia:g}."
            ),
        }],
        "component": components,
    }
    if subject_key is not None:
        payload["subject"] = {"identifier": {"system": SUBJECT_KEY_SYSTEM, "value": subject_key}}
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
