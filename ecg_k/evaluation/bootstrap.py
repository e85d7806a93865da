"""Seeded percentile bootstrap: resample weights over samples or over subjects (clusters), percentile 95 % CIs,
and the paired bootstrap of the error metrics of several estimate vectors of the same samples.

A resample is a row of integer multiplicities, so one code path gives the point estimate (unit weights) and
every resample; blocks of at most ``_BOOT_CHUNK_ELEMENTS`` bound the memory on large test sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ecg_k.evaluation.inputs import validate_predictions
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.evaluation.regression import ALL_REGIONS
from ecg_k.potassium import finite_1d, grid_bins

CI_PERCENTILES = (2.5, 97.5)
ERROR_STATS = ("mae", "gm")
_BOOT_CHUNK_ELEMENTS = 4_000_000
"""Upper bound on the size of one (resamples x samples) weight block, to bound memory on large test sets."""

def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[NDArray[np.float64]]:
    """Resample multiplicities: (b, n) blocks of at most ``_BOOT_CHUNK_ELEMENTS`` entries, n_boot rows."""
    rows = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_ci(samples: ArrayLike) -> list[float] | None:
    """Percentile 95 % CI over the resamples where the statistic is defined; None when none is."""
    values = np.asarray(samples, dtype=np.float64)
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return None
    low, high = np.percentile(valid, CI_PERCENTILES)
    return [float(low), float(high)]

def _cluster_weights(groups: NDArray[np.int64], n_boot: int, rng: np.random.Generator) -> Iterator[NDArray[np.float64]]:
    """Subject-bootstrap multiplicities per sample: (b, n) blocks; each resample draws as many subjects as there
    are, with replacement, and every sample of a drawn subject counts once per draw."""
    n_groups = int(groups.max()) + 1 if groups.size else 0
    rows = max(1, _BOOT_CHUNK_ELEMENTS // max(groups.size, 1))
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups)) + (np.arange(b) * n_groups)[:, None]
        per_group = np.bincount(draws.ravel(), minlength=b * n_groups).reshape(b, n_groups)
        yield per_group[:, groups].astype(np.float64)


def _weighted_errors(weights: NDArray[np.float64], errors: NDArray[np.float64], bins: NDArray[np.int64],
                     region: NDArray[np.str_]) -> dict[str, NDArray[np.float64]]:
    """Per resample (rows of ``weights``): MAE and GM of every region and of ``overall``, and the bMAE; NaN
    where a resample holds no sample of the region. GM is 0 where a zero error was drawn."""
    out: dict[str, NDArray[np.float64]] = {}
    zero = errors == 0
    logs = np.log(np.where(zero, 1.0, errors))
    for name in ALL_REGIONS:
        mask = np.ones(errors.size, bool) if name == "overall" else region == name
        w = weights[:, mask]
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{name}.mae"] = np.where(total > 0, w @ errors[mask] / total, np.nan)
            gm = np.exp(w @ logs[mask] / total)
        drew_zero = (w[:, zero[mask]] > 0).any(axis=1)
        out[f"{name}.gm"] = np.where(total > 0, np.where(drew_zero, 0.0, gm), np.nan)
    uniq, inverse = np.unique(bins, return_inverse=True)
    onehot = np.zeros((errors.size, uniq.size))
    onehot[np.arange(errors.size), inverse] = 1.0
    bin_weight = weights @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        per_bin = (weights @ (onehot * errors[:, None])) / bin_weight
    out["bmae"] = np.nanmean(np.where(bin_weight > 0, per_bin, np.nan), axis=1)
    return out


def bootstrap_errors(
    y: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    regions: ShotRegions,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, NDArray[np.float64]]]:
    """Paired bootstrap of the error metrics of several estimate vectors of the same samples.

    ``groups`` (e.g. subject ids) makes it a cluster bootstrap: subjects are resampled, each with all its
    samples (a subject's ECGs are not independent); without it samples are resampled. Every vector sees the
    same resamples, so differences between them are paired. Returns, per name, ``"{region}.mae"``,
    ``"{region}.gm"`` (region in overall/many/median/few) and ``"bmae"``, each an array of ``n_boot`` values
    (NaN where a resample lacks the region).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    y_arr = finite_1d(y, "y")
    bins = grid_bins(y_arr, "y")
    region = regions.region_of_bins(bins)
    errors = {}
    for name, y_hat in predictions.items():
        errors[name] = np.abs(validate_predictions(y_arr, y_hat)[1] - y_arr)
    group_ids = np.arange(y_arr.size) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if group_ids.size != y_arr.size:
        raise ValueError(f"groups must have one entry per sample: {group_ids.size} vs {y_arr.size}")
    parts: dict[str, dict[str, list[NDArray[np.float64]]]] = {name: {} for name in errors}
    for weights in _cluster_weights(group_ids.astype(np.int64), n_boot, np.random.default_rng(seed)):
        for name, e in errors.items():
            for key, values in _weighted_errors(weights, e, bins, region).items():
                parts[name].setdefault(key, []).append(values)
    return {name: {key: np.concatenate(chunks) for key, chunks in by_key.items()} for name, by_key in parts.items()}


def add_error_cis(split_metrics: dict[str, Any], boot: Mapping[str, NDArray[np.float64]]) -> None:
    """Add ``mae_ci95``/``gm_ci95`` to each region dict and ``bmae_ci95`` to the split (in place)."""
    for name in ALL_REGIONS:
        for stat in ERROR_STATS:
            split_metrics[name][f"{stat}_ci95"] = percentile_ci(boot[f"{name}.{stat}"])
    split_metrics["bmae_ci95"] = percentile_ci(boot["bmae"])
