"""Scoring K+ estimates: what the product says about each estimate of a model, computed in one place.

An estimate is reported at 2 decimals (:func:`ecg_k.clinical.reported_value`) and interpreted on that
reported value under the model card's thresholds (interpretation code, flag, critical mark); its shot region is
the card's region of its 0.1 bin; its prediction set (at a coverage level the card holds) and its calibrated
P(K+ >= hyperkalemia) and P(K+ <= hypokalemia) come from the card's label-conditional calibration.

The service scores each request with it, the synthetic traffic scores its requests in bulk with it, and the
stored prediction keeps every field, so reads return what was served and never score again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ecg_k.clinical import interpretation_code, reported_value
from ecg_k.conformal import ConformalCalibration, PredictionSet
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.model_card import ModelCard
from ecg_k.potassium import Flag, Interpretation, ShotRegion, Thresholds


@dataclass(frozen=True)
class Score:
    """One scored estimate: the raw ``estimate`` and everything reported about it."""

    estimate: float
    """The model output (mmol/L), unrounded, as stored."""
    value: float
    """The reported estimate (2 decimals): what is shown and interpreted."""
    interpretation: Interpretation
    region: ShotRegion
    prediction_set: PredictionSet
    """Segments and hull on the 0.1 grid, with the coverage level and method they were built with."""
    p_hyper: float
    p_hypo: float

    @property
    def flag(self) -> Flag:
        """Hypokalemia, normal or hyperkalemia (from the interpretation code)."""
        return self.interpretation.flag

    @property
    def critical(self) -> bool:
        """Whether the reported value is critical (LL or HH)."""
        return self.interpretation.critical


@dataclass(frozen=True)
class Scorer:
    """The parts of a model card that score an estimate: thresholds, shot regions and calibration."""

    thresholds: Thresholds
    regions: ShotRegions
    calibration: ConformalCalibration

    @classmethod
    def of_card(cls, card: ModelCard) -> Scorer:
        """The scorer of a validated model card."""
        return cls(card.thresholds, card.shot_regions, card.prediction_intervals)

    def score(self, estimates: ArrayLike, coverage: float) -> list[Score]:
        """Score each estimate with its ``coverage`` prediction set (a level the card holds, else a ValueError);
        a ValueError for a non-finite estimate."""
        values = np.asarray(estimates, dtype=np.float64).ravel()
        if not np.isfinite(values).all():
            raise ValueError(f"estimates must be finite K+ values in mmol/L, got {values[~np.isfinite(values)][:3]}")
        inside = self.calibration.membership(values, coverage)
        regions = self.regions.region_of_estimates(values)
        p_hyper = self.calibration.probability("hyper", values)
        p_hypo = self.calibration.probability("hypo", values)
        scores = []
        for i, estimate in enumerate(values.tolist()):
            value = reported_value(estimate)
            scores.append(Score(
                estimate=estimate, value=value, interpretation=interpretation_code(value, self.thresholds),
                region=ShotRegion(str(regions[i])),
                prediction_set=PredictionSet.from_membership(inside[i], coverage, self.calibration.method),
                p_hyper=float(p_hyper[i]), p_hypo=float(p_hypo[i]),
            ))
        return scores


def score_estimate(card: ModelCard, estimate: float, coverage: float) -> Score:
    """Score one estimate of the model of ``card`` (see :meth:`Scorer.score`)."""
    return Scorer.of_card(card).score([estimate], coverage)[0]
