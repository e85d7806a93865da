"""The audit page's data: the registered card's numbers, the run's predictions, and the tables drawn from
them, checked against independent computations on the seeded evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard.evaluation import (
    Evaluation,
    clinical_summary,
    clinical_table,
    coverage_table,
    distributions,
    list_models,
    load_evaluation,
    per_bin_table,
    region_comparison,
    region_spans,
    region_table,
    reliability_table,
    scatter_points,
    sorted_errors,
)
from ecg_k.db.registry import register_model
from ecg_k.db.session import session_scope
from ecg_k.evaluation.regions import ShotRegions
from tests.dashboard.conftest import ACTOR, Seeded


def _load(seeded: Seeded, model_id: int) -> Evaluation:
    with session_scope(seeded.database_url) as session:
        return load_evaluation(session, model_id)


def _card(run: Path) -> dict:
    return json.loads((run / "model_card.json").read_text())


def test_models_are_listed_champion_first(seeded: Seeded) -> None:
    with session_scope(seeded.database_url) as session:
        models = list_models(session)
    assert [(m.id, m.status, m.method) for m in models] == [(seeded.champion_id, "champion", "dist"),
                                                           (seeded.challenger_id, "challenger", "vanilla")]
    assert models[0].short == "dist-seed2 (champion)"
    assert models[0].path == str(seeded.runs["dist"] / "model.onnx")


def test_evaluation_holds_the_card_and_the_runs_predictions(seeded: Seeded) -> None:
    evaluation = _load(seeded, seeded.champion_id)
    card = _card(seeded.runs["dist"])
    assert evaluation.metrics == card["metrics"] and evaluation.splits == ["test", "val"]
    assert evaluation.regions == ShotRegions.from_dict(card["shot_regions"])
    assert evaluation.warning is None
    assert evaluation.predictions_path == seeded.runs["dist"] / "predictions.parquet"
    y, y_hat = evaluation.predictions_of("test")
    saved = pd.read_parquet(seeded.runs["dist"] / "predictions.parquet")
    np.testing.assert_array_equal(y_hat, saved.loc[saved["split"] == "test", "y_hat"].to_numpy())
    assert y.size == card["metrics"]["test"]["overall"]["n"] == 1120


def test_coverage_and_reliability_of_the_cards_prediction_sets(seeded: Seeded) -> None:
    evaluation = _load(seeded, seeded.champion_id)
    assert evaluation.calibration is not None and evaluation.calibration.calibration_split == "cal"
    table = coverage_table({"dist": evaluation}, "test", 0.9, n_boot=20).set_index("region")
    y, y_hat = evaluation.predictions_of("test")
    inside = evaluation.calibration.membership(y_hat, 0.9)
    covered = inside[np.arange(y.size), np.rint(y * 10).astype(int) - 15]
    for region, mask in {"overall": y > 0, "hypo": y <= 3.5, "normal": (y > 3.5) & (y < 5.5),
                         "hyper": y >= 5.5}.items():
        assert table.loc[region, "n"] == mask.sum()
        assert table.loc[region, "coverage"] == pytest.approx(covered[mask].mean())
        assert table.loc[region, "ci_low"] <= table.loc[region, "coverage"] <= table.loc[region, "ci_high"]
    assert table.loc[["hypo", "normal", "hyper"], "coverage"].min() >= 0.8  # label-conditional on 1120 cal pairs
    rows = reliability_table({"dist": evaluation}, "test")
    assert set(rows["event"]) == {"P(K⁺ ≥ 5.5)", "P(K⁺ ≤ 3.5)"}
    assert rows.groupby("event")["n"].sum().tolist() == [y.size, y.size]
    assert rows[["predicted", "observed"]].stack().between(0, 1).all()


def test_region_table_and_comparison_show_the_card_numbers(seeded: Seeded) -> None:
    evaluations = {"dist": _load(seeded, seeded.champion_id), "vanilla": _load(seeded, seeded.challenger_id)}
    table = region_table(evaluations, "test")
    cards = {name: _card(seeded.runs[name])["metrics"]["test"] for name in evaluations}
    for name, metrics in cards.items():
        rows = table[table["model"] == name].set_index("region")
        for region in ("overall", "many", "median", "few"):
            assert rows.loc[region, "mae"] == metrics[region]["mae"]
            assert rows.loc[region, "gm"] == metrics[region]["gm"]
            assert rows.loc[region, "n"] == metrics[region]["n"]
        assert rows.loc["bMAE", "mae"] == metrics["bmae"]
    wide = region_comparison(table)
    assert list(wide.columns) == ["n", "MAE dist", "MAE vanilla", "ΔMAE", "GM dist", "GM vanilla"]
    assert wide.loc["few", "ΔMAE"] == pytest.approx(cards["vanilla"]["few"]["mae"] - cards["dist"]["few"]["mae"])
    assert wide.loc["few", "n"] == cards["dist"]["few"]["n"]
    assert cards["vanilla"]["few"]["mae"] > cards["dist"]["few"]["mae"]  # the seeded trade-off


def test_per_bin_errors_match_a_groupby_of_the_predictions(seeded: Seeded) -> None:
    evaluation = _load(seeded, seeded.challenger_id)
    bins = per_bin_table(evaluation, "test")
    saved = pd.read_parquet(seeded.runs["vanilla"] / "predictions.parquet").query("split == 'test'")
    expected = (saved.assign(error=(saved["y_hat"] - saved["y"]).abs(), k=saved["y"].round(1))
                .groupby("k")["error"].agg(["size", "mean"]))
    np.testing.assert_allclose(bins["k"], expected.index)
    np.testing.assert_array_equal(bins["n"], expected["size"])
    np.testing.assert_allclose(bins["mae"], expected["mean"], rtol=1e-12)
    train = _card(seeded.runs["vanilla"])["shot_regions"]["train_counts"]
    assert bins.set_index("k")["train_count"].get(4.2) == train["4.2"]
    spans = region_spans(evaluation, bins)
    assert spans["k"].is_monotonic_increasing and np.allclose(np.diff(spans["k"]), 0.1)
    assert spans["train_count"].sum() == sum(train.values())
    assert set(spans.loc[spans["train_count"] == 0, "region"]) == {"few"}


def test_distributions_sorted_errors_and_scatter(seeded: Seeded) -> None:
    evaluations = {"dist": _load(seeded, seeded.champion_id), "vanilla": _load(seeded, seeded.challenger_id)}
    y, y_hat = evaluations["dist"].predictions_of("test")
    counts = distributions(evaluations["dist"], "test")
    labels = counts[counts["series"] == "label"]
    assert labels["n"].sum() == y.size and set(labels["n"]) == {20}  # balanced: 20 per bin
    predictions = counts[counts["series"] == "prediction"].set_index("k")["n"]
    assert predictions.sum() == y.size and predictions.get(4.0, 0) == int((np.rint(y_hat * 10) == 40).sum())
    errors = sorted_errors(evaluations, "test", "few")
    few = evaluations["dist"].metrics["test"]["few"]
    dist_errors = errors.loc[errors["model"] == "dist", "error"].to_numpy()
    assert dist_errors.size == few["n"] and np.all(np.diff(dist_errors) >= 0)
    assert dist_errors.mean() == pytest.approx(few["mae"], rel=1e-12)
    with pytest.raises(ValueError, match="unknown region 'rare'"):
        sorted_errors(evaluations, "test", "rare")
    points = scatter_points(evaluations["vanilla"], "test")
    assert len(points) == y.size and (points["region"] == "few").sum() == few["n"]


def test_clinical_table_from_the_card_and_extra_cutoffs_from_the_predictions(seeded: Seeded) -> None:
    evaluation = _load(seeded, seeded.champion_id)
    card_hyper = evaluation.metrics["test"]["hyper"]
    basic = clinical_table({"dist": evaluation}, "test")
    assert set(basic["cutoff"]) == {"hyper", "hypo"} and len(basic) == 8
    sensitivity = basic.set_index(["cutoff", "stat"]).loc[("hyper", "sensitivity")]
    assert (sensitivity["value"], sensitivity["low"], sensitivity["high"]) == (
        card_hyper["sensitivity"], *card_hyper["ci95"]["sensitivity"])
    full = clinical_table({"dist": evaluation}, "test", extra=True, n_boot=50)
    assert set(full["cutoff"]) == {"hyper", "hypo", "hyper_gt_6.0", "hyper_gt_6.5", "hypo_lt_3.0", "hypo_lt_2.5"}
    y, y_hat = evaluation.predictions_of("test")
    row = full.set_index(["cutoff", "stat"]).loc[("hyper_gt_6.5", "sensitivity")]
    positive = np.rint(y * 10) > 65
    assert row["value"] == pytest.approx((y_hat[positive] > 6.5).mean())
    assert row["low"] <= row["value"] <= row["high"] and row["n_positive"] == positive.sum()
    summary = clinical_summary(full)
    first = summary.iloc[0]
    assert (first["rule"], first["model"]) == ("K >= 5.5", "dist")
    low, high = card_hyper["ci95"]["sensitivity"]
    assert first["sensitivity"] == f"{card_hyper['sensitivity']:.2f} [{low:.2f}, {high:.2f}]"
    assert first["prevalence"] == f"{card_hyper['prevalence']:.1%} ({card_hyper['n_positive']}/1120)"


def test_without_the_predictions_file_tables_remain_and_charts_say_why(seeded: Seeded, tmp_path: Path) -> None:
    run = tmp_path / "moved"
    shutil.copytree(seeded.runs["dist"], run)
    card = _card(run) | {"version": "moved"}
    (run / "model_card.json").write_text(json.dumps(card))
    (run / "predictions.parquet").unlink()
    with session_scope(seeded.database_url) as session:
        model_id = register_model(session, run / "model_card.json", actor=ACTOR).id
    evaluation = _load(seeded, model_id)
    assert evaluation.predictions is None
    assert "no predictions.parquet beside the registered model" in evaluation.warning
    assert per_bin_table(evaluation, "test") is None and scatter_points(evaluation, "test") is None
    few_mae = region_table({"m": evaluation}, "test").set_index("region").loc["few", "mae"]
    assert few_mae == card["metrics"]["test"]["few"]["mae"]
    assert len(clinical_table({"m": evaluation}, "test", extra=True)) == 8


def test_a_run_evaluated_again_after_export_is_flagged(seeded: Seeded, tmp_path: Path) -> None:
    run = tmp_path / "re-evaluated"
    shutil.copytree(seeded.runs["vanilla"], run)
    (run / "model_card.json").write_text(json.dumps(_card(run) | {"version": "re-evaluated"}))
    frame = pd.read_parquet(run / "predictions.parquet")
    frame.loc[frame["split"] == "test", "y_hat"] += 0.01
    frame.to_parquet(run / "predictions.parquet", index=False)
    with session_scope(seeded.database_url) as session:
        model_id = register_model(session, run / "model_card.json", actor=ACTOR).id
    warning = _load(seeded, model_id).warning
    assert warning is not None and "does not reproduce the card (test, overall" in warning


def test_cards_without_evaluation_are_refused(seeded: Seeded, tmp_path: Path) -> None:
    run = tmp_path / "bare"
    shutil.copytree(seeded.runs["vanilla"], run)
    card = {key: value for key, value in _card(run).items() if key != "metrics"} | {"version": "bare"}
    (run / "model_card.json").write_text(json.dumps(card))
    with session_scope(seeded.database_url) as session:
        model_id = register_model(session, run / "model_card.json", actor=ACTOR).id
    with pytest.raises(ValueError, match="the model card has no 'metrics'"):
        _load(seeded, model_id)
    with pytest.raises(ValueError, match="no registered model version with id 999"):
        _load(seeded, 999)
