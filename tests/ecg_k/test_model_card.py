"""The runtime view of a real exported model card: validation, shot region of an estimate, intervals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecg_k.data.store import labels_path
from ecg_k.metrics import shot_regions
from ecg_k.model_card import (
    RELIABILITY_NOTES,
    ModelCard,
    ModelCardError,
    load_model_card,
    min_calibration_samples,
    parse_model_card,
    prediction_interval,
    shot_region_of_estimate,
)


@pytest.fixture(scope="module")
def raw(card_path: Path) -> dict[str, Any]:
    return json.loads(card_path.read_text())


def _edited(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with the dotted ``path`` set to ``value`` (or deleted when value is ...)."""
    out = copy.deepcopy(raw)
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return out


def test_real_card_loads_with_what_the_runtime_needs(card: ModelCard, raw: dict[str, Any]) -> None:
    assert card.name == raw["name"] and card.version == raw["version"]
    assert card.input.name == "ecg" and card.input.shape == ("batch", 1, 5000) and card.input.leads == ("I",)
    assert card.output.name == raw["output"]["name"] and card.output.unit == "mmol/L"
    assert card.preprocessing.digest() == raw["preprocessing_digest"]
    assert card.thresholds.hyperkalemia == 5.5
    assert card.onnx.sha256 == raw["onnx"]["sha256"]
    assert card.shot_regions.to_dict() == raw["shot_regions"]
    train = np.load(labels_path(Path(raw["training_data"]["path"]), "train"))
    assert card.shot_regions == shot_regions(train, rule=raw["shot_rule"])


def test_region_of_estimate_follows_the_saved_bins(card: ModelCard, raw: dict[str, Any]) -> None:
    for region, bins in raw["shot_regions"]["bins"].items():
        for k in bins:
            assert shot_region_of_estimate(card, k) == region
            assert shot_region_of_estimate(card, k + 0.04) == region  # same 0.1 bin
    # Outside the training range: zero-shot bins, and clipped to the plausible range.
    assert shot_region_of_estimate(card, 0.3) == "few"
    assert shot_region_of_estimate(card, 14.0) == "few"


def test_reliability_notes() -> None:
    assert set(RELIABILITY_NOTES) == {"many", "median", "few"}
    assert "few training ECGs" in RELIABILITY_NOTES["few"] and "caution" in RELIABILITY_NOTES["few"]


@pytest.mark.parametrize(("coverage", "n"), [(0.8, 9), (0.9, 19), (0.95, 39)])
def test_min_calibration_samples(coverage: float, n: int) -> None:
    assert min_calibration_samples(coverage) == n


def test_interval_uses_the_region_of_the_estimate(card: ModelCard, raw: dict[str, Any]) -> None:
    groups = raw["prediction_intervals"]["regions"]
    region = max(("many", "median", "few"), key=lambda name: groups[name]["n"])
    assert groups[region]["n"] >= 19, "the toy val split should fill at least one region"
    estimate = raw["shot_regions"]["bins"][region][0] + 0.01
    q = groups[region]["quantiles"]
    assert prediction_interval(card, estimate) == pytest.approx((estimate + q["0.05"], estimate + q["0.95"]))
    assert prediction_interval(card, estimate, 0.8) == pytest.approx(
        (estimate + q["0.1"], estimate + q["0.9"])
    )
    widths = [np.diff(prediction_interval(card, estimate, c))[0] for c in (0.8, 0.9, 0.95)]
    assert widths == sorted(widths)


@pytest.mark.parametrize(("n", "uses_region"), [(0, False), (2, False), (18, False), (19, True)])
def test_interval_falls_back_to_overall_below_19_region_samples(
    raw: dict[str, Any], n: int, uses_region: bool
) -> None:
    overall = raw["prediction_intervals"]["regions"]["overall"]["quantiles"]
    region = {"n": n, "quantiles": None if n == 0 else {q: -2.0 for q in overall}}
    card = parse_model_card(_edited(raw, "prediction_intervals.regions.few", region))
    estimate = 9.0  # a zero-shot bin: few
    assert shot_region_of_estimate(card, estimate) == "few"
    expected = (7.0, 7.0) if uses_region else (estimate + overall["0.05"], estimate + overall["0.95"])
    assert prediction_interval(card, estimate) == pytest.approx(expected)


def test_interval_errors(card: ModelCard) -> None:
    with pytest.raises(ValueError, match=r"no 0.5 interval; available: \[0.95, 0.9, 0.8\]"):
        prediction_interval(card, 4.2, coverage=0.5)
    with pytest.raises(ValueError, match="coverage must lie in"):
        prediction_interval(card, 4.2, coverage=1.0)
    with pytest.raises(ValueError, match="finite"):
        prediction_interval(card, float("nan"))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("input", ..., r"input: Field required"),
        ("onnx.sha256", "abc", r"onnx.sha256: String should match pattern"),
        ("format", "other/1", r"format: Input should be 'ecg-k-model-card/1'"),
        ("input.leads", ["II"], r"does not fit|does not match the preprocessing"),
        ("preprocessing.filter_order", 2, r"not the digest .* would preprocess differently"),
        ("preprocessing_digest", "0" * 64, r"not the digest"),
        ("shot_regions.many", 0.9, r"saved bins .* differs"),
        ("shot_regions.train_counts", ..., r"shot_regions: .*missing key 'train_counts'"),
        ("prediction_intervals.regions.overall.quantiles", None, r"quantiles must be given exactly when n"),
        ("prediction_intervals.regions.few", ..., r"missing group\(s\) \['few'\]"),
        ("thresholds.hypokalemia", 6.0, r"critical_low < hypokalemia"),
    ],
)
def test_unusable_cards_are_refused_with_the_field(
    raw: dict[str, Any], path: str, value: Any, message: str
) -> None:
    with pytest.raises(ModelCardError, match=message):
        parse_model_card(_edited(raw, path, value))


def test_several_problems_are_listed_together(raw: dict[str, Any]) -> None:
    broken = _edited(_edited(raw, "input", ...), "output.unit", "mg/dL")
    with pytest.raises(ModelCardError) as info:
        parse_model_card(broken)
    assert "input: Field required" in str(info.value) and "output.unit" in str(info.value)


def test_card_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="no model card at"):
        load_model_card(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_model_card(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ModelCardError, match="JSON object"):
        load_model_card(tmp_path / "list.json")
