"""FHIR Observation and Provenance of a K+ estimate: valid R4 (fhir.resources.R4B) carrying every element
conventions.md section 5 asks for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B import __fhir_version__
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from ecg_k.fhir import (
    AICONFIDENCE_URL,
    DEVICE_ID,
    ECG_SHA256_SYSTEM,
    FHIR_PACKAGE,
    MODEL_CARD_ID,
    ONNX_SHA256_SYSTEM,
    observation_for_prediction,
    provenance_for_observation,
)
from ecg_k.model_card import ModelCard
from ecg_k.potassium import Interpretation, ShotRegion
from ecg_k.scoring import score_estimate

ECG_SHA = "ab" * 32
ECG_TIME = datetime(2180, 3, 4, 10, 15, tzinfo=timezone(timedelta(hours=-5)))
ISSUED = datetime(2180, 3, 4, 15, 16, 17, 123000, tzinfo=UTC)
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
QUANTITY = {"unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}


def _observation(card: ModelCard, estimate: float = 4.237, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "observation_id": "pred-42",
        "estimate": estimate,
        "coverage": 0.9,
        "card": card,
        "subject_key": "sk_3f9a1c",
        "ecg_sha256": ECG_SHA,
        "issued": ISSUED,
        "ecg_time": ECG_TIME,
        "ecg_reference": "DocumentReference/ecg-7",
    } | overrides
    score = score_estimate(card, estimate, 0.9)
    arguments = {"interpretation": score.interpretation, "shot_region": score.region} | arguments
    if "interval" not in arguments:
        prediction = score.prediction_set
        arguments |= {"interval": (prediction.low, prediction.high), "segments": list(prediction.segments),
                      "method": prediction.method, "probabilities": (score.p_hyper, score.p_hypo)}
    return observation_for_prediction(**arguments)


def _contained(resource: dict[str, Any], resource_id: str) -> dict[str, Any]:
    (found,) = [c for c in resource["contained"] if c["id"] == resource_id]
    return found


def test_r4_package_is_used() -> None:
    assert FHIR_PACKAGE == "fhir.resources.R4B" and __fhir_version__.startswith("4.")


def test_observation_carries_every_element(card: ModelCard) -> None:
    obs = _observation(card)
    assert json.loads(json.dumps(obs)) == obs  # JSON-able as returned
    Observation.model_validate(obs)  # still a valid resource
    assert obs["resourceType"] == "Observation" and obs["id"] == "pred-42"
    assert obs["status"] == "preliminary"
    assert obs["code"]["coding"] == [{
        "system": "http://loinc.org",
        "code": "2823-3",
        "display": "Potassium [Moles/volume] in Serum or Plasma",
    }]
    assert obs["valueQuantity"] == {"value": 4.24, **QUANTITY}
    assert obs["interpretation"] == [
        {"coding": [{"system": INTERPRETATION, "code": "N", "display": "Normal"}]}
    ]
    # The normal range agrees with the flags: 3.5 is L and 5.5 is H, and FHIR ranges include their ends.
    (reference_range,) = obs["referenceRange"]
    assert reference_range["low"] == {"value": 3.51, **QUANTITY}
    assert reference_range["high"] == {"value": 5.49, **QUANTITY}
    assert reference_range["type"]["coding"][0]["code"] == "normal"
    assert "<= 3.5" in reference_range["text"] and ">= 5.5" in reference_range["text"]
    assert "inclusive" in reference_range["text"]
    assert "critical below 2.5 (LL) and above 6.5 (HH)" in obs["note"][0]["text"]
    assert obs["category"] == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "procedure",
        "display": "Procedure"}]}]
    assert obs["meta"]["security"] == [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "AIAST",
        "display": "Artificial Intelligence asserted",
    }]
    assert obs["method"] == {"text": "ECG-derived estimate (deep learning)"}

    assert obs["device"]["reference"] == f"#{DEVICE_ID}"
    device = _contained(obs, DEVICE_ID)
    assert device["resourceType"] == "Device"
    assert device["deviceName"] == [{"name": card.name, "type": "model-name"}]
    assert device["version"] == [{"value": card.version}]
    assert device["identifier"] == [{"system": ONNX_SHA256_SYSTEM, "value": card.onnx.sha256}]

    (source,) = obs["derivedFrom"]
    assert source["identifier"] == {"system": ECG_SHA256_SYSTEM, "value": ECG_SHA}
    assert source["reference"] == "DocumentReference/ecg-7"

    (confidence,) = obs["extension"]
    score = score_estimate(card, 4.237, 0.9)
    prediction = score.prediction_set
    hull = {"low": {"value": prediction.low, **QUANTITY}, "high": {"value": prediction.high, **QUANTITY}}
    assert confidence["url"] == AICONFIDENCE_URL and confidence["valueRange"] == hull
    components = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert components["hull"]["valueRange"] == hull and "90% prediction set" in components["hull"]["code"]["text"]
    assert components["p-hyperkalemia"]["valueQuantity"]["value"] == round(score.p_hyper, 3)
    assert components["p-hypokalemia"]["valueQuantity"]["value"] == round(score.p_hypo, 3)
    assert "K+ >= 5.5" in components["p-hyperkalemia"]["code"]["text"]
    assert obs["subject"] == {"identifier": {"system": "urn:ecg-k:subject-key", "value": "sk_3f9a1c"}}
    assert datetime.fromisoformat(obs["effectiveDateTime"]) == ECG_TIME
    assert datetime.fromisoformat(obs["issued"]) == ISSUED
    assert "90% prediction set (mondrian-label-conditional" in obs["note"][0]["text"]
    assert card.version in obs["note"][0]["text"]


@pytest.mark.parametrize(
    ("estimate", "value", "code"),
    [(2.49, 2.49, "LL"), (2.5, 2.5, "L"), (3.5, 3.5, "L"), (3.5004, 3.5, "L"), (3.506, 3.51, "N"),
     (5.49, 5.49, "N"), (5.5, 5.5, "H"), (6.5, 6.5, "H"), (6.51, 6.51, "HH")],
)
def test_interpretation_matches_the_reported_value(
    card: ModelCard, estimate: float, value: float, code: str
) -> None:
    obs = _observation(card, estimate)
    assert obs["valueQuantity"]["value"] == value
    assert obs["interpretation"][0]["coding"][0]["code"] == code


def test_optional_elements(card: ModelCard) -> None:
    obs = _observation(card, ecg_time=None, ecg_reference=None, subject_key=None)
    Observation.model_validate(obs)
    assert "effectiveDateTime" not in obs
    assert "subject" not in obs  # never a shared "unknown" patient
    (source,) = obs["derivedFrom"]
    assert "reference" not in source and source["identifier"]["value"] == ECG_SHA


def test_a_set_stored_without_its_coverage_is_labelled_so(card: ModelCard) -> None:
    """A prediction served before coverage levels were stored keeps its set, never labelled with a level."""
    obs = _observation(card, coverage=None)
    components = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert components["hull"]["code"]["text"] == "prediction set (coverage not recorded) of K+ (hull)"
    assert "Prediction set (coverage not recorded) (mondrian" in obs["note"][0]["text"]
    assert "%" not in obs["note"][0]["text"]


def test_interpretation_and_region_are_taken_as_stored(card: ModelCard) -> None:
    """What the row holds is what the Observation says: no second scoring of the estimate."""
    obs = _observation(card, 4.237, interpretation=Interpretation.HIGH, shot_region=ShotRegion.MANY)
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert "Shot region 'many'" in obs["note"][0]["text"]


def test_every_contained_resource_is_referenced(card: ModelCard) -> None:
    obs = _observation(card)
    prov = provenance_for_observation(obs, card)
    for resource in (obs, prov):
        text = json.dumps({k: v for k, v in resource.items() if k != "contained"})
        for contained in resource["contained"]:
            assert f'"#{contained["id"]}"' in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subject_key": "John Smith"}, "pseudonymous key"),
        ({"ecg_sha256": "xyz"}, "64 lower-case hex"),
        ({"issued": datetime(2180, 1, 1, 10)}, "issued must be timezone-aware"),
        ({"ecg_time": datetime(2180, 1, 1, 10)}, "ecg_time must be timezone-aware"),
        ({"interval": (5.0, 4.0)}, "low <= high"),
        ({"interval": (float("nan"), 4.0)}, "finite"),
        ({"coverage": 90}, "coverage must lie in"),
        ({"probabilities": (1.2, 0.0)}, "probability must lie in"),
        ({"observation_id": "pred/1"}, "observation_id must be a FHIR id"),
        ({"estimate": float("nan")}, "finite"),
    ],
)
def test_observation_inputs_are_validated(card: ModelCard, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _observation(card, **({"interval": (3.0, 5.0)} | overrides))


def test_non_contiguous_set_is_carried_segment_by_segment(card: ModelCard) -> None:
    obs = _observation(card, interval=(3.0, 6.2), segments=[(3.0, 4.1), (5.5, 6.2)], method="m")
    segments = [c["valueRange"] for c in obs["component"] if c["code"]["coding"][0]["code"] == "segment"]
    assert [(r["low"]["value"], r["high"]["value"]) for r in segments] == [(3.0, 4.1), (5.5, 6.2)]
    assert "3.0-4.1, 5.5-6.2 mmol/L" in obs["note"][0]["text"]


def test_provenance_names_target_ai_device_and_model_card(card: ModelCard) -> None:
    obs = _observation(card)
    url = "https://models.example/ecg-k/card.json"
    prov = provenance_for_observation(obs, card, provenance_id="prov-42", model_card_url=url)
    assert json.loads(json.dumps(prov)) == prov
    Provenance.model_validate(prov)
    assert prov["id"] == "prov-42"
    assert prov["target"] == [{"reference": "Observation/pred-42"}]
    assert prov["recorded"] == obs["issued"]
    assert prov["reason"][0]["coding"][0]["code"] == "AIAST"
    assert prov["meta"]["security"] == obs["meta"]["security"]

    (agent,) = prov["agent"]
    assert agent["who"]["reference"] == f"#{DEVICE_ID}"
    assert _contained(prov, DEVICE_ID) == _contained(obs, DEVICE_ID)  # the same AI device, with its version

    entities = {entity["role"]: entity["what"] for entity in prov["entity"]}
    assert entities["source"] == obs["derivedFrom"][0]
    assert entities["derivation"]["reference"] == f"#{MODEL_CARD_ID}"
    model_card = _contained(prov, MODEL_CARD_ID)
    assert model_card["resourceType"] == "DocumentReference"
    assert model_card["type"]["coding"][0]["code"] == "AIModelCard"
    assert model_card["identifier"][0]["value"] == card.version
    assert model_card["content"][0]["attachment"]["url"] == url


def test_provenance_needs_a_built_observation(card: ModelCard) -> None:
    obs = _observation(card)
    without_id = {k: v for k, v in obs.items() if k != "id"}
    with pytest.raises(ValueError, match="must have an id"):
        provenance_for_observation(without_id, card)
