"""The runtime view of a real exported model card: validation, shot region of an estimate, intervals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecg_k.data.store import labels_path
from ecg_k.evaluation.regions import shot_regions
from ecg_k.model_card import (
    ModelCard,
    ModelCardError,
    load_model_card,
    parse_model_card,
    write_model_card,
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


def test_card_holds_the_calibration_and_the_gate(card: ModelCard, raw: dict[str, Any]) -> None:
    intervals = card.prediction_intervals
    assert intervals.method == raw["prediction_intervals"]["method"] == "mondrian-label-conditional-split-conformal"
    # the toy dataset has no `cal` split: the fallback to `val` is recorded in the card
    assert intervals.calibration_split == "val" and "no `cal` split" in intervals.note
    assert intervals.n_calibration == 64
    assert {r.name for r in intervals.regions} == {"hypo", "normal", "hyper", "many", "median", "few"}
    assert sum(r.n for r in intervals.regions if r.partition == "clinical") == 64
    assert card.signal_quality.method == raw["signal_quality"]["method"]


def test_calibration_from_other_shot_regions_is_refused(raw: dict[str, Any]) -> None:
    edited = copy.deepcopy(raw)
    regions = {r["name"]: r for r in edited["prediction_intervals"]["regions"]}
    regions["many"]["bins"], regions["few"]["bins"] = regions["few"]["bins"], regions["many"]["bins"]
    with pytest.raises(ModelCardError, match="shot bins differ from the card's shot_regions"):
        parse_model_card(edited)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("input", ..., r"input: Field required"),
        ("onnx.sha256", "abc", r"onnx.sha256: String should match pattern"),
        ("format", "ecg-k-model-card/1", r"has format 'ecg-k-model-card/1'; this code reads 'ecg-k-model-card/2'"),
        ("format", ..., r"has format None; this code reads 'ecg-k-model-card/2'"),
        ("surprise", 1, r"surprise: Extra inputs are not permitted"),
        ("onnx.surprise", 1, r"onnx.surprise: Extra inputs are not permitted"),
        ("train_schedule.epochs_source", "guessed", r"train_schedule.epochs_source: Input should be 'set' or 'auto'"),
        ("shot_rule", "count", r"shot_rule 'count' is not the rule of shot_regions 'relative'"),
        ("input.leads", ["II"], r"does not fit|does not match the preprocessing"),
        ("preprocessing.filter_order", 2, r"not the digest .* would preprocess differently"),
        ("preprocessing_digest", "0" * 64, r"not the digest"),
        ("shot_regions.many", 0.9, r"saved bins .* differs"),
        ("shot_regions.train_counts", ..., r"shot_regions: .*missing key 'train_counts'"),
        ("prediction_intervals.regions", [], r"prediction_intervals.regions: .*at least 1"),
        ("prediction_intervals.coverages", [0.5], r"holds coverages"),
        ("signal_quality", ..., r"signal_quality: Field required"),
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


def test_card_round_trips_through_its_one_writer(card: ModelCard, raw: dict[str, Any], tmp_path: Path) -> None:
    assert card.as_dict() == raw  # export wrote the file through write_model_card
    write_model_card(tmp_path / "model_card.json", card)
    assert load_model_card(tmp_path / "model_card.json") == card
    assert json.loads((tmp_path / "model_card.json").read_text()) == raw


def test_card_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="no model card at"):
        load_model_card(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_model_card(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ModelCardError, match="JSON object"):
        load_model_card(tmp_path / "list.json")
