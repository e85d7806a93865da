"""ecg_k.scoring on the toy run's real model card: every field of a scored estimate, one estimate or many."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecg_k.clinical import flag, interpretation_code, is_critical, reported_value
from ecg_k.model_card import ModelCard
from ecg_k.potassium import RELIABILITY_NOTES, Flag, Interpretation, ShotRegion
from ecg_k.scoring import Scorer, score_estimate


@pytest.fixture(scope="module")
def raw(card_path: Path) -> dict[str, Any]:
    return json.loads(card_path.read_text())


def test_region_of_estimate_follows_the_saved_bins(card: ModelCard, raw: dict[str, Any]) -> None:
    for region, bins in raw["shot_regions"]["bins"].items():
        for k in bins:
            assert score_estimate(card, k, 0.9).region == region
            assert score_estimate(card, k + 0.04, 0.9).region == region  # same 0.1 bin
    # Outside the training range: zero-shot bins, and clipped to the plausible range.
    assert score_estimate(card, 0.3, 0.9).region is ShotRegion.FEW
    assert score_estimate(card, 14.0, 0.9).region is ShotRegion.FEW


def test_reliability_notes() -> None:
    assert set(RELIABILITY_NOTES) == set(ShotRegion) and set(RELIABILITY_NOTES) == {"many", "median", "few"}
    assert "few training ECGs" in RELIABILITY_NOTES[ShotRegion.FEW] and "caution" in RELIABILITY_NOTES["few"]


def test_prediction_set_holds_the_estimate_and_widens_with_coverage(card: ModelCard) -> None:
    sets = [score_estimate(card, 4.23, c).prediction_set for c in (0.8, 0.9, 0.95)]
    for p, coverage in zip(sets, (0.8, 0.9, 0.95), strict=True):
        assert p.low <= 4.2 <= p.high and p.method == card.prediction_intervals.method and p.coverage == coverage
    sizes = [sum(b - a for a, b in p.segments) for p in sets]
    assert sizes == sorted(sizes)
    score = score_estimate(card, 4.23, 0.9)
    assert 0 <= score.p_hyper <= 1 and 0 <= score.p_hypo <= 1
    assert score_estimate(card, 7.5, 0.9).p_hyper >= score.p_hyper
    assert score_estimate(card, 2.5, 0.9).p_hypo >= score.p_hypo


@pytest.mark.parametrize("estimate", [2.4949, 3.5004, 3.506, 5.4951, 6.5, 6.5051])
def test_interpretation_is_of_the_reported_value(card: ModelCard, estimate: float) -> None:
    score = score_estimate(card, estimate, 0.9)
    value = reported_value(estimate)
    assert score.estimate == estimate and score.value == value
    assert score.interpretation is interpretation_code(value, card.thresholds)
    assert score.flag is flag(value, card.thresholds) and score.critical is is_critical(value, card.thresholds)


def test_interpretation_codes_name_their_flag() -> None:
    assert [code.flag for code in Interpretation] == [Flag.HYPOKALEMIA, Flag.HYPOKALEMIA, Flag.NORMAL,
                                                      Flag.HYPERKALEMIA, Flag.HYPERKALEMIA]
    assert [code.critical for code in Interpretation] == [True, False, False, False, True]


def test_bulk_scoring_equals_one_at_a_time(card: ModelCard) -> None:
    estimates = np.random.default_rng(0).uniform(1.0, 9.0, 200)
    bulk = Scorer.of_card(card).score(estimates, 0.8)
    assert bulk == [score_estimate(card, float(k), 0.8) for k in estimates]


def test_scoring_errors(card: ModelCard) -> None:
    with pytest.raises(ValueError, match=r"no 0.5 interval; available: \[0.8, 0.9, 0.95\]"):
        score_estimate(card, 4.2, coverage=0.5)
    with pytest.raises(ValueError, match="finite"):
        score_estimate(card, float("nan"), 0.9)
