"""Label-conditional (Mondrian) split-conformal intervals and calibrated K+ event probabilities.

Why by the *true* K+: a model that pulls rare values toward the mean under-covers exactly the patients who
matter, and grouping residuals by the *estimate* cannot repair that (the estimate of a true 6.5 sits among
the normal estimates). Here each region R of the true K+ (hypo, normal, hyper and the three shot regions)
gets its own finite-sample quantile q_R of the score ``|y - y_hat|`` over the calibration pairs whose label
lies in R; the prediction set of a new estimate is every K+ value y of the 0.1 grid whose own region's band
``|y - y_hat| <= q_R(y)`` holds the estimate. For each partition (clinical, shot) this is Vovk's Mondrian
construction, so coverage holds conditionally on the true region of either partition; the set served is
the union of both partitions' sets (a superset keeps both guarantees). It can be non-contiguous, so it is
given as segments and their hull. A region with fewer pairs than ``1/alpha - 1`` has no finite quantile:
all its K+ values are then in every set, which is wide but honest.

The probabilities P(K+ >= hyperkalemia) and P(K+ <= hypokalemia) are isotonic regressions of the event on
the estimate over the same calibration pairs, once as they are (the balanced draw's prevalence) and once
re-weighted per 0.1 bin to the training labels' distribution (the natural prevalence the service reports).

numpy/pandas only (no torch): the service and dashboard import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecg_k.evaluation.regions import ShotRegions
from ecg_k.potassium import (
    CLINICAL_REGIONS,
    LABEL_STEP,
    PLAUSIBLE_BINS,
    PLAUSIBLE_RANGE,
    REGIONS,
    Thresholds,
    bin_value,
    clinical_region_of_bins,
    grid_bins,
)

METHOD = "mondrian-label-conditional-split-conformal"
SCORE = "abs_residual"
COVERAGES = (0.8, 0.9, 0.95)
Event = Literal["hyper", "hypo"]
EVENTS: tuple[Event, ...] = ("hyper", "hypo")
_PROBABILITY_STEP = 0.01
"""Estimates are grouped to this step before the isotonic fit, which bounds the card's size at any n."""
Partition = Literal["clinical", "shot"]
Prevalence = Literal["calibration", "natural"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def min_calibration_pairs(coverage: float) -> int:
    """Fewest pairs with a finite ``coverage`` quantile: ``ceil((n+1)(1-a)) <= n`` iff ``n >= 1/a - 1``."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    return math.ceil(round(coverage / (1 - coverage), 9))


def conformal_quantile(scores: ArrayLike, coverage: float) -> float | None:
    """The ``ceil((n+1)·coverage)``-th smallest score (finite-sample split conformal); None if n is too small."""
    values = np.sort(np.asarray(scores, dtype=np.float64))
    if values.size < min_calibration_pairs(coverage):
        return None
    rank = math.ceil(round((values.size + 1) * coverage, 9))
    return float(values[rank - 1])


class RegionQuantiles(_Frozen):
    """One region of the true K+: its grid bins, its calibration count, its quantile per coverage.

    A quantile of None means fewer than :func:`min_calibration_pairs` pairs: every K+ of the region is then
    in every prediction set at that coverage.
    """

    name: str = Field(min_length=1)
    partition: Partition
    bins: tuple[int, ...]
    n: int = Field(ge=0)
    quantiles: dict[float, float | None]


class IsotonicStep(_Frozen):
    """A monotone map estimate -> probability, linear between knots and flat beyond them."""

    direction: Literal["increasing", "decreasing"]
    x: tuple[float, ...] = Field(min_length=1)
    p: tuple[float, ...] = Field(min_length=1)
    n: int = Field(ge=1)
    n_positive: int = Field(ge=0)

    @model_validator(mode="after")
    def _monotone(self) -> IsotonicStep:
        x, p = np.asarray(self.x), np.asarray(self.p)
        sign = 1 if self.direction == "increasing" else -1
        if x.shape != p.shape or np.any(np.diff(x) <= 0) or np.any(sign * np.diff(p) < -1e-12):
            raise ValueError(f"knots must be strictly increasing in x and {self.direction} in p, of equal length")
        if p.min() < 0 or p.max() > 1:
            raise ValueError("probabilities must lie in [0, 1]")
        return self

    def __call__(self, estimates: ArrayLike) -> NDArray[np.float64]:
        return np.interp(np.asarray(estimates, dtype=np.float64), self.x, self.p)


class ConformalCalibration(_Frozen):
    """What a model card holds for intervals and probabilities (written by export, read by the runtime)."""

    method: Literal["mondrian-label-conditional-split-conformal"]
    score: Literal["abs_residual"]
    calibration_split: str = Field(min_length=1)
    note: str
    n_calibration: int = Field(ge=1)
    coverages: tuple[float, ...] = Field(min_length=1)
    thresholds: Thresholds
    regions: tuple[RegionQuantiles, ...] = Field(min_length=1)
    probabilities: dict[Prevalence, dict[Literal["hyper", "hypo"], IsotonicStep]]

    @model_validator(mode="after")
    def _consistent(self) -> ConformalCalibration:
        for region in self.regions:
            if set(region.quantiles) != set(self.coverages):
                raise ValueError(f"region {region.name} holds coverages {sorted(region.quantiles)}, "
                                 f"the card {list(self.coverages)}")
        for partition in ("clinical", "shot"):
            bins = sorted(b for r in self.regions if r.partition == partition for b in r.bins)
            if bins != PLAUSIBLE_BINS.tolist():
                raise ValueError(f"the {partition} regions must tile the K+ grid {PLAUSIBLE_RANGE} exactly once")
        return self

    def under_calibrated(self, coverage: float) -> list[str]:
        """Regions with too few calibration pairs for ``coverage`` (they widen to their whole range)."""
        return [r.name for r in self.regions if r.quantiles[self._level(coverage)] is None]

    def _level(self, coverage: float) -> float:
        for level in self.coverages:
            if abs(level - coverage) < 1e-9:
                return level
        raise ValueError(f"the model card holds no {coverage:g} interval; available: {list(self.coverages)}")

    def membership(self, estimates: ArrayLike, coverage: float) -> NDArray[np.bool_]:
        """``(n, len(PLAUSIBLE_BINS))``: whether each grid K+ is in each estimate's prediction set.

        The reported value (the estimate on the grid, clipped to the plausible range) is always added, so a
        set is never empty; adding values can only raise coverage.
        """
        level = self._level(coverage)
        est = np.asarray(estimates, dtype=np.float64).reshape(-1, 1)
        if not np.isfinite(est).all():
            raise ValueError("estimates must be finite K+ values in mmol/L")
        distance = np.abs(bin_value(PLAUSIBLE_BINS)[None, :] - est)
        band = np.zeros(len(PLAUSIBLE_BINS))
        inside = np.zeros(distance.shape, dtype=bool)
        for partition in ("clinical", "shot"):
            for region in (r for r in self.regions if r.partition == partition):
                q = region.quantiles[level]
                band[np.isin(PLAUSIBLE_BINS, region.bins)] = np.inf if q is None else q + 1e-9
            inside |= distance <= band[None, :]
        nearest = np.clip(np.rint(est[:, 0] / LABEL_STEP).astype(np.int64), PLAUSIBLE_BINS[0], PLAUSIBLE_BINS[-1])
        inside[np.arange(len(est)), nearest - PLAUSIBLE_BINS[0]] = True
        return inside

    def interval(self, estimate: float, coverage: float) -> PredictionSet:
        """The prediction set of one estimate as segments (K+ on the grid) and their hull."""
        return PredictionSet.from_membership(self.membership([estimate], coverage)[0], coverage, self.method)

    def probability(self, event: Literal["hyper", "hypo"], estimates: ArrayLike,
                    prevalence: Prevalence = "natural") -> NDArray[np.float64]:
        """Calibrated P(K+ >= hyperkalemia) (``hyper``) or P(K+ <= hypokalemia) (``hypo``)."""
        return self.probabilities[prevalence][event](estimates)


def in_segments(value: float, segments: Sequence[Sequence[float]]) -> bool:
    """Whether K+ ``value`` (taken on the 0.1 label grid, as sets are) lies in one of the ``[low, high]``
    segments of a stored prediction set."""
    k = round(float(value), 1)
    return any(low - 1e-9 <= k <= high + 1e-9 for low, high in segments)


class PredictionSet(_Frozen):
    """A prediction set on the 0.1 K+ grid: contiguous ``segments`` ([low, high], inclusive) and hull."""

    segments: tuple[tuple[float, float], ...] = Field(min_length=1)
    coverage: float
    method: str

    @property
    def low(self) -> float:
        return self.segments[0][0]

    @property
    def high(self) -> float:
        return self.segments[-1][1]

    @classmethod
    def from_membership(cls, inside: NDArray[np.bool_], coverage: float, method: str) -> PredictionSet:
        edges = np.diff(np.concatenate(([0], inside.astype(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        values = bin_value(PLAUSIBLE_BINS)
        return cls(segments=tuple((round(float(values[s]), 1), round(float(values[e]), 1))
                                  for s, e in zip(starts, ends, strict=True)),
                   coverage=coverage, method=method)


def _weighted_isotonic(x: NDArray[np.floating[Any]], y: NDArray[np.floating[Any]], w: NDArray[np.number[Any]]
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pool-adjacent-violators on points sorted by ``x``; knots at both ends of every pooled block."""
    means: list[float] = []
    weights: list[float] = []
    ends: list[list[float]] = []
    for xi, yi, wi in zip(x, y, w, strict=True):
        means.append(yi)
        weights.append(wi)
        ends.append([xi, xi])
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            weights[-2] = total
            ends[-2][1] = ends[-1][1]
            del means[-1], weights[-1], ends[-1]
    knots = [(end, mean) for (first, last), mean in zip(ends, means, strict=True)
             for end in ((first,) if first == last else (first, last))]
    return np.array([k for k, _ in knots]), np.clip(np.array([m for _, m in knots]), 0.0, 1.0)


def fit_isotonic(estimates: ArrayLike, events: ArrayLike, weights: ArrayLike | None = None,
                 direction: Literal["increasing", "decreasing"] = "increasing") -> IsotonicStep:
    """Isotonic P(event | estimate) on calibration pairs (estimates grouped to 0.01 mmol/L first)."""
    sign = 1.0 if direction == "increasing" else -1.0
    est = sign * np.asarray(estimates, dtype=np.float64)
    hit = np.asarray(events, dtype=np.float64)
    w = np.ones_like(est) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    if not keep.any():
        raise ValueError("no calibration pair has a positive weight")
    key = np.rint(est[keep] / _PROBABILITY_STEP).astype(np.int64)
    groups, index = np.unique(key, return_inverse=True)
    total = np.bincount(index, weights=w[keep])
    mean_hit = np.bincount(index, weights=w[keep] * hit[keep]) / total
    knots, p = _weighted_isotonic(groups * _PROBABILITY_STEP, mean_hit, total)
    if sign < 0:
        knots, p = -knots[::-1], p[::-1]
    return IsotonicStep(direction=direction, x=tuple(map(float, knots)), p=tuple(map(float, p)),
                        n=int(keep.sum()), n_positive=int(hit[keep].sum()))


def _natural_weights(cal_bins: NDArray[np.int64], train_bins: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per-pair weight p_train(bin) / p_cal(bin): re-weights the balanced draw to the natural distribution."""
    uniq, cal_counts = np.unique(cal_bins, return_counts=True)
    train_counts = np.array([(train_bins == b).sum() for b in uniq], dtype=np.float64)
    ratio = (train_counts / max(train_bins.size, 1)) / (cal_counts / cal_bins.size)
    return ratio[np.searchsorted(uniq, cal_bins)]


def calibrate(
    y: ArrayLike,
    y_hat: ArrayLike,
    regions: ShotRegions,
    train_labels: ArrayLike,
    thresholds: Thresholds,
    calibration_split: str,
    note: str = "",
    coverages: Sequence[float] = COVERAGES,
) -> ConformalCalibration:
    """Per-region conformal quantiles and the event probabilities from calibration pairs ``(y, y_hat)``.

    The pairs must not have chosen the model (``calibration_split`` names where they come from; ``note``
    states any fallback).
    """
    bins = grid_bins(y, "y")
    est = np.asarray(y_hat, dtype=np.float64)
    if bins.size == 0 or bins.shape != est.shape or not np.isfinite(est).all():
        raise ValueError(f"need as many finite estimates as labels and at least one pair, got {bins.size}/"
                         f"{est.size}")
    score = np.abs(bin_value(bins) - est)
    members: list[tuple[str, Partition, NDArray[np.str_], NDArray[np.str_]]] = [
        (name, "clinical", clinical_region_of_bins(PLAUSIBLE_BINS, thresholds), clinical_region_of_bins(bins,
                                                                                                   thresholds))
        for name in CLINICAL_REGIONS
    ] + [(name, "shot", regions.region_of_bins(PLAUSIBLE_BINS), regions.region_of_bins(bins)) for name in REGIONS]
    quantiles = tuple(
        RegionQuantiles(name=name, partition=partition, bins=tuple(PLAUSIBLE_BINS[grid == name].tolist()),
                        n=int((pairs == name).sum()),
                        quantiles={c: conformal_quantile(score[pairs == name], c) for c in coverages})
        for name, partition, grid, pairs in members
    )
    hyper = bins >= int(round(thresholds.hyperkalemia / LABEL_STEP))
    hypo = bins <= int(round(thresholds.hypokalemia / LABEL_STEP))
    natural = _natural_weights(bins, grid_bins(train_labels, "train_labels"))
    prevalences: tuple[tuple[Prevalence, NDArray[np.float64] | None], ...] = (("calibration", None),
                                                                             ("natural", natural))
    probabilities: dict[Prevalence, dict[Literal["hyper", "hypo"], IsotonicStep]] = {
        prevalence: {"hyper": fit_isotonic(est, hyper, w), "hypo": fit_isotonic(est, hypo, w, "decreasing")}
        for prevalence, w in prevalences
    }
    return ConformalCalibration(
        method=METHOD, score=SCORE, calibration_split=calibration_split, note=note, n_calibration=int(bins.size),
        coverages=tuple(coverages), thresholds=thresholds, regions=quantiles, probabilities=probabilities,
    )


FALLBACK_NOTE = ("the dataset has no `cal` split, so the intervals and probabilities were calibrated on `val`, "
                 "which also chose the epoch: their coverage may be optimistic")


def calibrate_predictions(predictions: pd.DataFrame, train_labels: ArrayLike, regions: ShotRegions,
                          thresholds: Thresholds) -> ConformalCalibration:
    """:func:`calibrate` on a run's ``cal`` predictions (columns ``split, y, y_hat``), or on ``val`` with
    the fallback stated in the note when the dataset has no ``cal`` split."""
    split = "cal" if (predictions["split"] == "cal").any() else "val"
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        raise ValueError("predictions hold neither `cal` nor `val` rows to calibrate the intervals on")
    return calibrate(rows["y"].to_numpy(), rows["y_hat"].to_numpy(), regions, train_labels, thresholds, split,
                     "" if split == "cal" else FALLBACK_NOTE)


# --------------------------------------------------------------------------------------------- evaluation


def _bootstrap_mean_ci(values: NDArray[np.float64], n_boot: int, rng: np.random.Generator) -> list[float] | None:
    """Percentile 95 % CI of a mean by resampling, in blocks that bound memory."""
    if values.size == 0 or n_boot < 1:
        return None
    rows = max(1, 2_000_000 // values.size)
    means = np.concatenate([values[rng.integers(0, values.size, size=(min(rows, n_boot - s), values.size))]
                            .mean(axis=1) for s in range(0, n_boot, rows)])
    low, high = np.percentile(means, (2.5, 97.5))
    return [float(low), float(high)]


class GroupCoverage(TypedDict):
    """One group's row of :func:`coverage_report` (None where the group is empty)."""

    n: int
    coverage: float | None
    coverage_ci95: list[float] | None
    mean_hull_width: float | None
    mean_set_size: float | None


def coverage_report(
    calibration: ConformalCalibration,
    y: ArrayLike,
    y_hat: ArrayLike,
    regions: ShotRegions,
    coverage: float = 0.9,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, GroupCoverage]:
    """Coverage, mean hull width and mean set size (mmol/L) per true-K+ region, shot region and overall.

    Each group's coverage has a percentile bootstrap 95 % CI; an empty group reports ``n = 0`` and Nones.
    """
    bins = grid_bins(y, "y")
    inside = calibration.membership(y_hat, coverage)
    column = np.clip(bins, PLAUSIBLE_BINS[0], PLAUSIBLE_BINS[-1]) - PLAUSIBLE_BINS[0]
    covered = inside[np.arange(bins.size), column] & (bins >= PLAUSIBLE_BINS[0]) & (bins <= PLAUSIBLE_BINS[-1])
    values = bin_value(PLAUSIBLE_BINS)
    first = inside.argmax(axis=1)
    last = inside.shape[1] - 1 - inside[:, ::-1].argmax(axis=1)
    hull = values[last] - values[first]
    size = inside.sum(axis=1) * LABEL_STEP
    groups: dict[str, NDArray[np.bool_]] = {"overall": np.ones(bins.size, dtype=bool)}
    clinical = clinical_region_of_bins(bins, calibration.thresholds)
    shot = regions.region_of_bins(bins)
    groups |= {name: clinical == name for name in CLINICAL_REGIONS}
    groups |= {name: shot == name for name in REGIONS}
    rng = np.random.default_rng(seed)
    out: dict[str, GroupCoverage] = {}
    for name, mask in groups.items():
        hit = covered[mask].astype(np.float64)
        out[name] = {
            "n": int(mask.sum()),
            "coverage": float(hit.mean()) if hit.size else None,
            "coverage_ci95": _bootstrap_mean_ci(hit, n_boot, rng),
            "mean_hull_width": float(hull[mask].mean()) if hit.size else None,
            "mean_set_size": float(size[mask].mean()) if hit.size else None,
        }
    return out


def reliability(
    probabilities: ArrayLike, events: ArrayLike, n_bins: int = 10, min_count: int = 1
) -> list[dict[str, float | int]]:
    """Reliability diagram rows per probability decile bin [k/10, (k+1)/10): mean predicted, observed, n."""
    p = np.asarray(probabilities, dtype=np.float64)
    hit = np.asarray(events, dtype=np.float64)
    which = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    rows = []
    for k in range(n_bins):
        mask = which == k
        if mask.sum() >= min_count:
            rows.append({"bin": k, "n": int(mask.sum()), "predicted": float(p[mask].mean()),
                         "observed": float(hit[mask].mean())})
    return rows


def event_labels(y: ArrayLike, thresholds: Thresholds) -> Mapping[str, NDArray[np.bool_]]:
    """Whether each label is hyperkalemia / hypokalemia under ``thresholds`` (label-bin comparison)."""
    region = clinical_region_of_bins(grid_bins(y, "y"), thresholds)
    return {"hyper": region == "hyper", "hypo": region == "hypo"}
