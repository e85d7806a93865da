"""Clinical detection metrics (method.md section 7): AUROC, sensitivity, specificity, PPV and NPV at the
hyper- and hypokalemia cut-offs derived from :class:`~ecg_k.potassium.Thresholds` (and any other
operating points), each with a seeded percentile bootstrap 95 % CI over the test set.

Cut-offs compare *label bins* (so ``35 * 0.1 = 3.5000000000000004`` is still hypokalemia) and raw
predictions; one resample serves every statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ecg_k.evaluation.bootstrap import bootstrap_weights, percentile_ci
from ecg_k.evaluation.inputs import none_if_nan, validate_predictions
from ecg_k.potassium import DEFAULT_THRESHOLDS, Cutoff, Thresholds, detection_cutoffs, grid_bins

DETECTION_STATS = ("auroc", "sensitivity", "specificity", "ppv", "npv")

class _Detections:
    """Several cut-offs on one test set; :meth:`stats` evaluates them under any per-sample weights.

    Weights are bootstrap multiplicities (a resample of the test set = integer weights), so one code path
    gives the point estimate (unit weights) and every resample. The AUROC is the weighted Mann-Whitney
    statistic with ties counted one half, which is sklearn's ``roc_auc_score`` at unit weights; one sort of
    the predictions serves all cut-offs (a low cut-off scores -y_hat, i.e. counts negatives above).
    """

    def __init__(
        self, cutoffs: Sequence[Cutoff], y_bins: NDArray[np.int64], y_hat: NDArray[np.float64]
    ) -> None:
        self.cutoffs = tuple(cutoffs)
        truth = np.stack([cutoff.label_positive(y_bins) for cutoff in cutoffs], axis=1)
        predicted = np.stack([cutoff.prediction_positive(y_hat) for cutoff in cutoffs], axis=1)
        self.truth = truth
        self.cells = np.concatenate(
            [truth & predicted, truth & ~predicted, ~truth & predicted, ~truth & ~predicted], axis=1
        ).astype(np.float64)
        self.order = np.argsort(y_hat, kind="stable")
        self.tie_starts = np.concatenate(([0], np.flatnonzero(np.diff(y_hat[self.order])) + 1))
        self.sorted_truth = truth[self.order].astype(np.float64)

    def stats(self, weights: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Each statistic of :data:`DETECTION_STATS` as a (B, cut-offs) array for ``weights`` (B, n).

        NaN where undefined (no positives, no negatives or no predicted positives/negatives).
        """
        tp, fn, fp, tn = np.split(weights @ self.cells, 4, axis=1)
        ordered = weights[:, self.order]
        group_total = np.add.reduceat(ordered, self.tie_starts, axis=1)
        wins = np.empty_like(tp)
        for j, cutoff in enumerate(self.cutoffs):
            pos = np.add.reduceat(ordered * self.sorted_truth[:, j], self.tie_starts, axis=1)
            neg = group_total - pos
            below = np.cumsum(neg, axis=1) - neg
            beaten = below if cutoff.high else neg.sum(axis=1, keepdims=True) - below - neg
            wins[:, j] = (pos * (beaten + 0.5 * neg)).sum(axis=1)
        return {
            "auroc": _ratio(wins, (tp + fn) * (fp + tn)),
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn),
        }


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    """num / den with NaN where den is 0 (a class missing from that resample)."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out

def clinical_metrics(
    y: ArrayLike,
    y_hat: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    extra: Sequence[Cutoff] = (),
) -> dict[str, dict[str, Any]]:
    """Detection metrics at hyperkalemia (K >= 5.5) and hypokalemia (K <= 3.5) of ``thresholds``, plus the
    ``extra`` cut-offs (e.g. :func:`~ecg_k.potassium.operating_points`).

    Per cut-off: ``auroc`` (score y_hat, or -y_hat for low cut-offs), ``sensitivity``, ``specificity``,
    ``ppv``, ``npv`` with predictions thresholded at the same cut-off, each with a seeded percentile
    bootstrap 95 % CI under ``ci95`` (resamples missing a class are skipped for that statistic), and the
    ``prevalence`` and ``n`` the PPV/NPV hold at. Undefined values are None.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    cutoffs = (*detection_cutoffs(thresholds), *extra)
    keys = [cutoff.key for cutoff in cutoffs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate cut-off keys: {keys}")
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    detections = _Detections(cutoffs, grid_bins(y_arr, "y"), y_hat_arr)

    chunks: dict[str, list[NDArray[np.float64]]] = {name: [] for name in DETECTION_STATS}
    for weights in bootstrap_weights(y_arr.size, n_boot, np.random.default_rng(seed)):
        for name, values in detections.stats(weights).items():
            chunks[name].append(values)
    boot = {name: np.concatenate(parts) for name, parts in chunks.items() if parts}
    point = detections.stats(np.ones((1, y_arr.size)))

    out: dict[str, dict[str, Any]] = {}
    for j, cutoff in enumerate(cutoffs):
        n_positive = int(detections.truth[:, j].sum())
        out[cutoff.key] = {
            "rule": cutoff.describe(),
            **{name: none_if_nan(point[name][0, j]) for name in DETECTION_STATS},
            "ci95": {name: percentile_ci(boot[name][:, j]) if boot else None for name in DETECTION_STATS},
            "prevalence": n_positive / y_arr.size,
            "n_positive": n_positive,
            "n": int(y_arr.size),
            "n_boot": int(n_boot),
        }
    return out

