"""The ``metrics.json`` of a run (DESIGN.md): regression metrics per shot region under both rules, detection
metrics and bootstrap CIs, per evaluated split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ecg_k.evaluation.bootstrap import add_error_cis, bootstrap_errors
from ecg_k.evaluation.detection import clinical_metrics
from ecg_k.evaluation.regions import SHOT_RULES, ShotRule, shot_regions
from ecg_k.evaluation.regression import regression_metrics
from ecg_k.potassium import DEFAULT_THRESHOLDS, REGIONS, Cutoff, Thresholds


def evaluate_predictions(
    predictions: pd.DataFrame,
    train_labels: ArrayLike,
    method: str,
    shot_rule: ShotRule = "relative",
    n_boot: int = 1000,
    seed: int = 0,
    splits: Sequence[str] = ("test", "val"),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    extra: Sequence[Cutoff] = (),
) -> dict[str, Any]:
    """The ``metrics.json`` of a run (DESIGN.md) from its ``predictions`` (columns ``split, y, y_hat``).

    Each evaluated split holds the chosen rule's regions at the top level and the other rule's under
    ``by_count_rule``/``by_relative_rule``; ``shot_regions`` records both rules' thresholds and bins. The
    chosen rule's region dicts carry ``mae_ci95`` and ``gm_ci95`` and the split ``bmae_ci95``: percentile 95 %
    CIs of a bootstrap over subjects when ``predictions`` has a ``subject_id`` column (over samples otherwise;
    ``ci_unit`` says which), ``n_boot`` resamples.
    """
    if shot_rule not in SHOT_RULES:
        raise ValueError(f"unknown shot rule {shot_rule!r}; expected one of {SHOT_RULES}")
    missing = {"split", "y", "y_hat"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack column(s) {sorted(missing)}; need split, y, y_hat")
    available = set(predictions["split"].unique())
    absent = [split for split in splits if split not in available]
    if absent:
        present = sorted(map(str, available))
        raise ValueError(f"predictions have no rows for split(s) {absent}; present: {present}")
    other_rule = next(rule for rule in SHOT_RULES if rule != shot_rule)
    regions = {rule: shot_regions(train_labels, rule) for rule in SHOT_RULES}

    out: dict[str, Any] = {}
    for split in splits:
        rows = predictions[predictions["split"] == split]
        y, y_hat = rows["y"].to_numpy(), rows["y_hat"].to_numpy()
        groups = rows["subject_id"].to_numpy() if "subject_id" in rows.columns else None
        try:
            metrics = regression_metrics(y, y_hat, regions[shot_rule])
            other = regression_metrics(y, y_hat, regions[other_rule])
            clinical = clinical_metrics(y, y_hat, n_boot=n_boot, seed=seed, thresholds=thresholds, extra=extra)
            if n_boot > 0:
                boot = bootstrap_errors(y, {"model": y_hat}, regions[shot_rule], groups, n_boot, seed)["model"]
                add_error_cis(metrics, boot)
        except ValueError as error:
            raise ValueError(f"split {split!r}: {error}") from error
        metrics["ci_unit"] = "subject" if groups is not None else "sample"
        metrics[f"by_{other_rule}_rule"] = {name: other[name] for name in REGIONS}
        out[split] = {**metrics, **clinical}
    out["shot_rule"] = shot_rule
    out["method"] = method
    out["shot_regions"] = {rule: region.to_dict() for rule, region in regions.items()}
    out["n_train"] = int(np.asarray(train_labels).size)
    return out

