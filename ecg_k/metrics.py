"""Evaluation metrics: shot regions, DIR regression metrics, clinical detection metrics (method.md 6-7).

numpy/scipy only (no torch), because the dashboard imports it. Every dict returned holds plain
``float``/``int``/``None`` (never NaN), so it goes straight into ``metrics.json`` (DESIGN.md).

- Labels are K+ on the 0.1 mmol/L grid, binned with ``round(10*K)`` (:func:`ecg_k.data.cohort.label_bin`);
  off-grid labels are an error, because a region lookup on a mis-binned label is silently wrong.
- Predictions are never rounded: an exact zero error makes the GM zero, so zero errors are counted.
- Clinical cut-offs compare *label bins* (so ``35 * 0.1 = 3.5000000000000004`` is still hypokalemia) and raw
  predictions; bootstrap CIs resample the whole test set (one resample serves every statistic).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

from ecg_k.data.cohort import label_bin

LABEL_STEP = 0.1
"""Label grid and bin width (mmol/L)."""
GRID_TOLERANCE = 1e-3
"""Largest accepted distance of ``K / LABEL_STEP`` from an integer (float32 labels sit ~1e-6 off)."""

ShotRuleName = Literal["relative", "count"]
SHOT_RULES: tuple[ShotRuleName, ...] = get_args(ShotRuleName)
ESTIMATE_RANGE = (1.5, 10.0)
"""Plausible K+ range (DESIGN.md) an estimate is clipped to before its 0.1 bin is looked up."""
REGIONS = ("many", "median", "few")
SHOT_RULE_DEFAULTS: dict[str, tuple[float, float]] = {"relative": (0.5, 0.15), "count": (100.0, 20.0)}
"""(many, few) per rule: fractions of n_max for the paper's ECG rule, absolute counts for the DIR rule."""

CI_PERCENTILES = (2.5, 97.5)
DETECTION_STATS = ("auroc", "sensitivity", "specificity", "ppv", "npv")
_BOOT_CHUNK_ELEMENTS = 4_000_000
"""Upper bound on the size of one (resamples x samples) weight block, to bound memory on large test sets."""

JSONValue = float | int | None


# --------------------------------------------------------------------------------------------- validation


def _finite_1d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a finite 1-D float64 array, or a ValueError that names the input."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf value(s); metrics need finite values")
    return array


def _grid_bins(labels: ArrayLike, name: str) -> NDArray[np.int64]:
    """Bin indices of labels that must lie on the 0.1 mmol/L grid."""
    values = _finite_1d(labels, name)
    scaled = values / LABEL_STEP
    off = np.abs(scaled - np.rint(scaled))
    if off.size and off.max() > GRID_TOLERANCE:
        raise ValueError(
            f"{name} must lie on the {LABEL_STEP} mmol/L grid; {values[off.argmax()]!r} does not"
        )
    return label_bin(values, LABEL_STEP)


def validate_predictions(y: ArrayLike, y_hat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Labels and predictions as equal-length, non-empty, finite float64 arrays (else a ValueError)."""
    y_arr, y_hat_arr = _finite_1d(y, "y"), _finite_1d(y_hat, "y_hat")
    if y_arr.shape != y_hat_arr.shape:
        raise ValueError(f"length mismatch: {y_arr.size} labels vs {y_hat_arr.size} predictions")
    if y_arr.size == 0:
        raise ValueError("no samples: y and y_hat are empty")
    return y_arr, y_hat_arr


def _none_if_nan(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def bin_value(bins: ArrayLike) -> NDArray[np.float64]:
    """K+ (mmol/L) at the centre of each bin index, rounded so 41 -> 4.1 exactly as printed."""
    return np.round(np.asarray(bins, dtype=np.float64) * LABEL_STEP, 6)


# ------------------------------------------------------------------------------------------- shot regions


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
        """Region name of each bin index."""
        counts = self.counts_of_bins(bins)
        cut_many, cut_few = self.cuts
        region = np.full(counts.shape, "median", dtype="<U6")
        region[counts > cut_many] = "many"
        region[(counts < cut_few) | (counts == 0)] = "few"
        return region

    def region_of(self, labels: ArrayLike) -> NDArray[np.str_]:
        """Region name of each label (labels on the 0.1 grid)."""
        return self.region_of_bins(_grid_bins(labels, "labels"))

    def region_of_estimates(self, estimates: ArrayLike) -> NDArray[np.str_]:
        """Region of model estimates (no grid needed): clipped to :data:`ESTIMATE_RANGE`, rounded to 0.1."""
        values = np.round(np.clip(np.asarray(estimates, dtype=np.float64), *ESTIMATE_RANGE), 1)
        return self.region_of(values)

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
            bins = label_bin(np.array([float(k) for k in counts]), LABEL_STEP)
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
    bins = _grid_bins(train_labels, "train_labels")
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


# ------------------------------------------------------------------------------------ regression metrics


def _per_bin(errors: NDArray[np.float64], bins: NDArray[np.int64]
             ) -> tuple[NDArray[np.int64], NDArray[np.intp], NDArray[np.float64]]:
    """(unique bins, sample count, mean error) per bin."""
    uniq, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    return uniq, counts, np.bincount(inverse, weights=errors, minlength=uniq.size) / counts


def _error_summary(errors: NDArray[np.float64], bins: NDArray[np.int64]) -> dict[str, JSONValue]:
    """MAE, MSE, GM and bMAE of one region; null values (not NaN) when the region is empty."""
    if errors.size == 0:
        return {"mae": None, "mse": None, "gm": None, "bmae": None, "n": 0, "zero_errors": 0}
    zero_errors = int(np.count_nonzero(errors == 0))
    return {
        "mae": float(errors.mean()),
        "mse": float(np.mean(errors**2)),
        "gm": 0.0 if zero_errors else float(stats.gmean(errors)),
        "bmae": float(_per_bin(errors, bins)[2].mean()),
        "n": int(errors.size),
        "zero_errors": zero_errors,
    }


def balanced_mae(y: ArrayLike, y_hat: ArrayLike) -> float:
    """bMAE: the mean over the label bins present of the per-bin MAE (model selection, method.md 5 and 7)."""
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    return float(_per_bin(np.abs(y_hat_arr - y_arr), _grid_bins(y_arr, "y"))[2].mean())


def pearson(y: ArrayLike, y_hat: ArrayLike) -> float | None:
    """Pearson r of labels and predictions; None when fewer than 2 samples or either side is constant."""
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    if y_arr.size < 2 or np.ptp(y_arr) == 0 or np.ptp(y_hat_arr) == 0:
        return None
    return _none_if_nan(stats.pearsonr(y_arr, y_hat_arr).statistic)


def regression_metrics(y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions) -> dict[str, Any]:
    """``{"overall"|"many"|"median"|"few": {"mae","mse","gm","bmae","n","zero_errors"}, "bmae", "pearson"}``.

    Region MAE is sample-weighted over the region's samples; bMAE is the mean of per-bin MAEs over the test
    label bins present (the model-selection metric).
    """
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    bins = _grid_bins(y_arr, "y")
    errors = np.abs(y_hat_arr - y_arr)
    region = regions.region_of_bins(bins)
    out: dict[str, Any] = {"overall": _error_summary(errors, bins)}
    for name in REGIONS:
        mask = region == name
        out[name] = _error_summary(errors[mask], bins[mask])
    out["bmae"] = out["overall"]["bmae"]
    out["pearson"] = pearson(y_arr, y_hat_arr)
    return out


def per_bin_errors(y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions) -> pd.DataFrame:
    """One row per test label bin: ``bin, k, n, mae, region, train_count`` (sorted by K+)."""
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    uniq, counts, mae = _per_bin(np.abs(y_hat_arr - y_arr), _grid_bins(y_arr, "y"))
    return pd.DataFrame({
        "bin": uniq,
        "k": bin_value(uniq),
        "n": counts,
        "mae": mae,
        "region": regions.region_of_bins(uniq),
        "train_count": regions.counts_of_bins(uniq),
    })


# -------------------------------------------------------------------------------------- clinical metrics

_OPERATORS: dict[str, Callable[[Any, Any], NDArray[np.bool_]]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
}


@dataclass(frozen=True)
class Cutoff:
    """A clinical cut-off, positive when ``K <op> value``; applied to labels (by bin) and to predictions."""

    key: str
    op: Literal[">=", ">", "<=", "<"]
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise ValueError(
                f"cut-off {self.key!r}: unknown operator {self.op!r}; expected one of {list(_OPERATORS)}"
            )
        scaled = self.value / LABEL_STEP
        if abs(scaled - round(scaled)) > GRID_TOLERANCE:
            raise ValueError(f"cut-off {self.key!r}: {self.value} is not on the {LABEL_STEP} mmol/L grid")

    @property
    def high(self) -> bool:
        """True for hyperkalemia-type cut-offs (higher prediction = more likely positive)."""
        return self.op.startswith(">")

    def label_positive(self, bins: NDArray[np.int64]) -> NDArray[np.bool_]:
        return _OPERATORS[self.op](bins, int(round(self.value / LABEL_STEP)))

    def prediction_positive(self, y_hat: NDArray[np.float64]) -> NDArray[np.bool_]:
        return _OPERATORS[self.op](y_hat, self.value)

    def describe(self) -> str:
        return f"K {self.op} {self.value:g}"


HYPER = Cutoff("hyper", ">=", 5.5)
HYPO = Cutoff("hypo", "<=", 3.5)
EXTRA_CUTOFFS = (
    Cutoff("hyper_gt_6.0", ">", 6.0),
    Cutoff("hyper_gt_6.5", ">", 6.5),
    Cutoff("hypo_lt_3.0", "<", 3.0),
    Cutoff("hypo_lt_2.5", "<", 2.5),
)
"""The other operating points of conventions.md section 2 (> 6.0, > 6.5, < 3.0, < 2.5: strict, as there)."""


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


def _bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[NDArray[np.float64]]:
    """Resample multiplicities: (b, n) blocks of at most ``_BOOT_CHUNK_ELEMENTS`` entries, n_boot rows."""
    rows = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _percentile_ci(samples: NDArray[np.float64]) -> list[float] | None:
    """Percentile 95 % CI over the resamples where the statistic is defined; None when none is."""
    valid = samples[np.isfinite(samples)]
    if valid.size == 0:
        return None
    low, high = np.percentile(valid, CI_PERCENTILES)
    return [float(low), float(high)]


def clinical_metrics(
    y: ArrayLike,
    y_hat: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: Sequence[Cutoff] = (),
) -> dict[str, dict[str, Any]]:
    """Detection metrics at hyperkalemia (K >= 5.5) and hypokalemia (K <= 3.5), plus ``thresholds``.

    Per cut-off: ``auroc`` (score y_hat, or -y_hat for low cut-offs), ``sensitivity``, ``specificity``,
    ``ppv``, ``npv`` with predictions thresholded at the same cut-off, each with a seeded percentile
    bootstrap 95 % CI under ``ci95`` (resamples missing a class are skipped for that statistic), and the
    ``prevalence`` and ``n`` the PPV/NPV hold at. Undefined values are None.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    cutoffs = (HYPER, HYPO, *thresholds)
    keys = [cutoff.key for cutoff in cutoffs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate cut-off keys: {keys}")
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    detections = _Detections(cutoffs, _grid_bins(y_arr, "y"), y_hat_arr)

    chunks: dict[str, list[NDArray[np.float64]]] = {name: [] for name in DETECTION_STATS}
    for weights in _bootstrap_weights(y_arr.size, n_boot, np.random.default_rng(seed)):
        for name, values in detections.stats(weights).items():
            chunks[name].append(values)
    boot = {name: np.concatenate(parts) for name, parts in chunks.items() if parts}
    point = detections.stats(np.ones((1, y_arr.size)))

    out: dict[str, dict[str, Any]] = {}
    for j, cutoff in enumerate(cutoffs):
        n_positive = int(detections.truth[:, j].sum())
        out[cutoff.key] = {
            "rule": cutoff.describe(),
            **{name: _none_if_nan(point[name][0, j]) for name in DETECTION_STATS},
            "ci95": {name: _percentile_ci(boot[name][:, j]) if boot else None for name in DETECTION_STATS},
            "prevalence": n_positive / y_arr.size,
            "n_positive": n_positive,
            "n": int(y_arr.size),
            "n_boot": int(n_boot),
        }
    return out


# --------------------------------------------------------------------------------------- the whole report


def evaluate_predictions(
    predictions: pd.DataFrame,
    regions: ShotRegions,
    method: str,
    n_boot: int = 1000,
    seed: int = 0,
    splits: Sequence[str] = ("test", "val"),
    thresholds: Sequence[Cutoff] = (),
) -> dict[str, Any]:
    """The ``metrics.json`` of a run (DESIGN.md) from its ``predictions`` (columns ``split, y, y_hat``).

    ``regions`` are the run's shot regions (computed once, by ``ecgk evaluate``). Each evaluated split holds
    their regions at the top level and the other rule's (default cut-offs, same training counts) under
    ``by_count_rule``/``by_relative_rule``; ``shot_regions`` records both rules' thresholds and bins. The
    chosen rule's region dicts carry ``mae_ci95`` and ``gm_ci95`` and the split ``bmae_ci95``: percentile 95 %
    CIs of a bootstrap over subjects when ``predictions`` has a ``subject_id`` column (over samples otherwise;
    ``ci_unit`` says which), ``n_boot`` resamples.
    """
    missing = {"split", "y", "y_hat"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack column(s) {sorted(missing)}; need split, y, y_hat")
    available = set(predictions["split"].unique())
    absent = [split for split in splits if split not in available]
    if absent:
        present = sorted(map(str, available))
        raise ValueError(f"predictions have no rows for split(s) {absent}; present: {present}")
    shot_rule = regions.rule
    other_rule = next(rule for rule in SHOT_RULES if rule != shot_rule)
    other_many, other_few = SHOT_RULE_DEFAULTS[other_rule]
    other_regions = ShotRegions(other_rule, other_many, other_few, regions.train_counts)

    out: dict[str, Any] = {}
    for split in splits:
        rows = predictions[predictions["split"] == split]
        y, y_hat = rows["y"].to_numpy(), rows["y_hat"].to_numpy()
        groups = rows["subject_id"].to_numpy() if "subject_id" in rows.columns else None
        try:
            metrics = regression_metrics(y, y_hat, regions)
            other = regression_metrics(y, y_hat, other_regions)
            clinical = clinical_metrics(y, y_hat, n_boot=n_boot, seed=seed, thresholds=thresholds)
            if n_boot > 0:
                boot = bootstrap_errors(y, {"model": y_hat}, regions, groups, n_boot, seed)["model"]
                add_error_cis(metrics, boot)
        except ValueError as error:
            raise ValueError(f"split {split!r}: {error}") from error
        metrics["ci_unit"] = "subject" if groups is not None else "sample"
        metrics[f"by_{other_rule}_rule"] = {name: other[name] for name in REGIONS}
        out[split] = {**metrics, **clinical}
    out["shot_rule"] = shot_rule
    out["method"] = method
    out["shot_regions"] = {rule: (regions if rule == shot_rule else other_regions).to_dict() for rule in SHOT_RULES}
    out["n_train"] = int(sum(regions.train_counts.values()))
    return out


# ------------------------------------------------------------------------------------ published numbers

PUBLISHED_SOURCE = (
    "Nie, Tang, Hong, Dist Loss, ICLR 2025: ECG-Ka-DIR balanced test set on real MIMIC-IV "
    "(the paper's Table 8; GM of baselines from Table 1 only)"
)
PUBLISHED_ECG_KA_DIR: dict[str, dict[str, tuple[float | None, ...]]] = {
    "Vanilla": {"mae": (1.235, 0.274, 0.685, 1.771), "gm": (0.835, 0.193, 0.622, 1.578)},
    "+ LDS": {"mae": (1.092, 0.368, 0.638, 1.510), "gm": (None, None, None, 1.190)},
    "+ FDS": {"mae": (1.223, 0.317, 0.681, 1.737), "gm": (None, None, None, 1.529)},
    "+ RankSim": {"mae": (1.249, 0.275, 0.696, 1.791), "gm": (None, None, None, 1.600)},
    "+ ConR": {"mae": (1.227, 0.277, 0.690, 1.756), "gm": (None, None, None, 1.556)},
    "+ Balanced MSE": {"mae": (1.106, 0.606, 0.727, 1.417), "gm": (None, None, None, 1.046)},
    "+ Dist Loss (INV-L1)": {"mae": (1.088, 0.458, 0.648, 1.467), "gm": (0.680, 0.300, 0.463, 1.044)},
    "+ Dist Loss (INV-L2)": {"mae": (1.044, 0.606, 0.674, 1.329), "gm": (0.692, 0.403, 0.445, 0.978)},
    "LDS + Dist Loss": {"mae": (None, None, None, 1.325), "gm": (None, None, None, None)},
    "FDS + Dist Loss": {"mae": (None, None, None, 1.428), "gm": (None, None, None, None)},
    "RankSim + Dist Loss": {"mae": (None, None, None, 1.325), "gm": (None, None, None, None)},
    "ConR + Dist Loss": {"mae": (None, None, None, 1.336), "gm": (None, None, None, None)},
    "BMSE + Dist Loss": {"mae": (None, None, None, 1.357), "gm": (None, None, None, None)},
}
"""MAE and GM (All, Many, Median, Few) as published; None where the paper gives no trustworthy number."""


# ----------------------------------------------------------------------- subject bootstrap of the errors

ERROR_STATS = ("mae", "gm")


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
    for name in ("overall", *REGIONS):
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
    y_arr = _finite_1d(y, "y")
    bins = _grid_bins(y_arr, "y")
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


def percentile_ci(samples: ArrayLike) -> list[float] | None:
    """Percentile 95 % CI of bootstrap values (NaN resamples skipped); None when none is defined."""
    return _percentile_ci(np.asarray(samples, dtype=np.float64))


def add_error_cis(split_metrics: dict[str, Any], boot: Mapping[str, NDArray[np.float64]]) -> None:
    """Add ``mae_ci95``/``gm_ci95`` to each region dict and ``bmae_ci95`` to the split (in place)."""
    for name in ("overall", *REGIONS):
        for stat in ERROR_STATS:
            split_metrics[name][f"{stat}_ci95"] = percentile_ci(boot[f"{name}.{stat}"])
    split_metrics["bmae_ci95"] = percentile_ci(boot["bmae"])
