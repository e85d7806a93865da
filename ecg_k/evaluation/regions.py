"""Shot regions (method.md section 6): the many/median/few tag of every 0.1 mmol/L K+ bin, from the training
label histogram under the paper's relative rule or the DIR count rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecg_k.potassium import REGIONS, ShotRegion, bin_value, clip_to_grid, grid_bins, label_bin

ShotRuleName = Literal["relative", "count"]
SHOT_RULES: tuple[ShotRuleName, ...] = get_args(ShotRuleName)
SHOT_RULE_DEFAULTS: dict[str, tuple[float, float]] = {"relative": (0.5, 0.15), "count": (100.0, 20.0)}
"""(many, few) per rule: fractions of n_max for the paper's ECG rule, absolute counts for the DIR rule."""


@dataclass(frozen=True)
class ShotRegions:
    """Per-bin training counts and the many/median/few rule that tags each bin (method.md section 6).

    ``many``/``few`` are fractions of ``n_max`` under the ``relative`` rule and sample counts under the
    ``count`` rule: many if n_b > cut_many, few if n_b < cut_few, median in between (both ends inclusive);
    bins without training samples (zero-shot) are always few.
    """

    rule: ShotRuleName
    many: float
    few: float
    train_counts: Mapping[int, int]

    def __post_init__(self) -> None:
        if self.rule not in SHOT_RULES:
            raise ValueError(f"unknown shot rule {self.rule!r}; expected one of {SHOT_RULES}")
        if not 0 <= self.few <= self.many:
            raise ValueError(f"need 0 <= few <= many, got few={self.few}, many={self.many}")
        if not self.train_counts or min(self.train_counts.values()) < 1:
            raise ValueError("train_counts must hold at least one bin, each with a positive count")

    @property
    def n_max(self) -> int:
        """Largest training count over bins."""
        return max(self.train_counts.values())

    @property
    def cuts(self) -> tuple[float, float]:
        """(many, few) thresholds as sample counts."""
        scale = self.n_max if self.rule == "relative" else 1
        return self.many * scale, self.few * scale

    def counts_of_bins(self, bins: ArrayLike) -> NDArray[np.int64]:
        """Training count n_b of each bin index (0 for zero-shot bins)."""
        bins = np.asarray(bins, dtype=np.int64)
        known = np.fromiter(self.train_counts, dtype=np.int64)
        counts = np.fromiter(self.train_counts.values(), dtype=np.int64)
        order = np.argsort(known)
        known, counts = known[order], counts[order]
        where = np.clip(np.searchsorted(known, bins), 0, known.size - 1)
        return np.where(known[where] == bins, counts[where], 0)

    def region_of_bins(self, bins: ArrayLike) -> NDArray[np.str_]:
        """Region name (a :class:`~ecg_k.potassium.ShotRegion` value) of each bin index."""
        counts = self.counts_of_bins(bins)
        cut_many, cut_few = self.cuts
        region = np.full(counts.shape, ShotRegion.MEDIAN.value, dtype="<U6")
        region[counts > cut_many] = ShotRegion.MANY.value
        region[(counts < cut_few) | (counts == 0)] = ShotRegion.FEW.value
        return region

    def region_of(self, labels: ArrayLike) -> NDArray[np.str_]:
        """Region name of each label (labels on the 0.1 grid)."""
        return self.region_of_bins(grid_bins(labels, "labels"))

    def region_of_estimates(self, estimates: ArrayLike) -> NDArray[np.str_]:
        """Region of model estimates (no grid needed): clipped to the plausible range, rounded to 0.1
        (:func:`~ecg_k.potassium.clip_to_grid`)."""
        return self.region_of(clip_to_grid(estimates))

    def describe(self) -> str:
        """One line stating the rule and its thresholds, for reports."""
        cut_many, cut_few = self.cuts
        if self.rule == "relative":
            head = f"many: n_b > {self.many:g}·n_max, few: n_b < {self.few:g}·n_max"
        else:
            head = f"many: n_b > {self.many:g}, few: n_b < {self.few:g}"
        return (f"rule `{self.rule}` ({head}, median in between; n_max = {self.n_max} so cuts at "
                f"{cut_many:g} / {cut_few:g} training samples per 0.1 mmol/L bin; zero-shot bins are few)")

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> ShotRegions:
        """Rebuild from the :meth:`to_dict` form (as a model card or ``metrics.json`` holds it), checking
        that it tags the bins as saved; a ValueError says what is missing or inconsistent."""
        try:
            counts = {str(k): int(n) for k, n in saved["train_counts"].items()}
            bins = label_bin(np.array([float(k) for k in counts]))
            regions = cls(
                rule=saved["rule"], many=float(saved["many"]), few=float(saved["few"]),
                train_counts=dict(zip(bins.tolist(), counts.values(), strict=True)),
            )
        except KeyError as error:
            raise ValueError(f"missing key {error}") from error
        except (TypeError, AttributeError) as error:
            raise ValueError(f"not a ShotRegions.to_dict() mapping: {error}") from error
        rebuilt = regions.to_dict()
        for key in ("n_max", "bins"):
            if key in saved and saved[key] != rebuilt[key]:
                raise ValueError(
                    f"saved {key} {saved[key]} differs from the one the train counts give {rebuilt[key]}"
                )
        return regions

    def to_dict(self) -> dict[str, Any]:
        """JSON form: thresholds, n_max, training counts per bin and the training bins of each region."""
        bins = np.array(sorted(self.train_counts), dtype=np.int64)
        region = self.region_of_bins(bins)
        return {
            "rule": self.rule,
            "many": float(self.many),
            "few": float(self.few),
            "n_max": int(self.n_max),
            "train_counts": {f"{k:.1f}": int(self.train_counts[b]) for b, k in zip(bins, bin_value(bins), strict=True)},
            "bins": {name: [float(k) for k in bin_value(bins[region == name])] for name in REGIONS},
        }


def shot_regions(
    train_labels: ArrayLike, rule: ShotRuleName = "relative", many: float | None = None, few: float | None = None
) -> ShotRegions:
    """Shot regions from the training labels; ``many``/``few`` default to the rule's (0.5/0.15 or 100/20)."""
    if rule not in SHOT_RULE_DEFAULTS:
        raise ValueError(f"unknown shot rule {rule!r}; expected one of {SHOT_RULES}")
    bins = grid_bins(train_labels, "train_labels")
    if bins.size == 0:
        raise ValueError("train_labels is empty: shot regions need the training label histogram")
    uniq, counts = np.unique(bins, return_counts=True)
    default_many, default_few = SHOT_RULE_DEFAULTS[rule]
    return ShotRegions(
        rule=rule,
        many=default_many if many is None else float(many),
        few=default_few if few is None else float(few),
        train_counts=dict(zip(uniq.tolist(), counts.tolist(), strict=True)),
    )


class ShotRule(BaseModel):
    """How ``ecgk evaluate`` tags 0.1 mmol/L bins many/median/few: the rule and its cut-offs (the rule's
    defaults when unset). Validated where it is built (the CLI, the caller); :meth:`regions` applies it once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ShotRuleName = "relative"
    many: float | None = Field(default=None, ge=0, description="many if n_b > this (fraction of n_max or count).")
    few: float | None = Field(default=None, ge=0, description="few if n_b < this (fraction of n_max or count).")

    @model_validator(mode="after")
    def _ordered(self) -> ShotRule:
        many, few = self.cuts
        if few > many:
            raise ValueError(f"shot rule {self.name}: need few <= many, got few={few:g}, many={many:g}")
        return self

    @property
    def cuts(self) -> tuple[float, float]:
        """(many, few) with the rule's defaults filled in."""
        default_many, default_few = SHOT_RULE_DEFAULTS[self.name]
        return (default_many if self.many is None else self.many, default_few if self.few is None else self.few)

    def regions(self, train_labels: ArrayLike) -> ShotRegions:
        """The shot regions of this rule on the training labels."""
        many, few = self.cuts
        return shot_regions(train_labels, self.name, many=many, few=few)
