"""The ``metrics.json`` of a run (DESIGN.md): regression metrics per shot region under both rules, detection
metrics and bootstrap CIs, per evaluated split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ecg_k.evaluation.bootstrap import add_error_cis, bootstrap_errors
from ecg_k.evaluation.detection import clinical_metrics
from ecg_k.evaluation.regions import SHOT_RULE_DEFAULTS, SHOT_RULES, ShotRegions
from ecg_k.evaluation.regression import regression_metrics
from ecg_k.potassium import DEFAULT_THRESHOLDS, REGIONS, Cutoff, Thresholds


def evaluate_predictions(
    predictions: pd.DataFrame,
    regions: ShotRegions,
    method: str,
    n_boot: int = 1000,
    seed: int = 0,
    splits: Sequence[str] = ("test", "val"),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    extra: Sequence[Cutoff] = (),
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
            clinical = clinical_metrics(y, y_hat, n_boot=n_boot, seed=seed, thresholds=thresholds, extra=extra)
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

