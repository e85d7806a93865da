"""training.evaluation_report: plots write PNGs, report.md states regions and rule, the comparison table."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ecg_k.evaluation import plot_data
from ecg_k.evaluation.regions import ShotRule, ShotRuleName, shot_regions
from ecg_k.evaluation.report import evaluate_predictions
from ecg_k.records.run import RunMetrics
from training.evaluation_report import (
    COMPARISON_COLUMNS,
    LabelPredictionHistogramDisplay,
    PerBinErrorDisplay,
    PredictedActualDisplay,
    SortedErrorDisplay,
    comparison_table,
    published_table,
    write_comparison,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def train_labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.round(np.clip(rng.normal(4.2, 0.5, 3000), 1.5, 10), 1).astype(np.float32)


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    y = np.round(np.repeat(np.arange(2.0, 7.6, 0.1), 3), 1)
    y_hat = 4.2 + 0.6 * (y - 4.2) + rng.normal(0, 0.3, y.size)
    return pd.DataFrame({"split": ["test"] * y.size + ["val"] * y.size, "y": np.r_[y, y],
                         "y_hat": np.r_[y_hat, y_hat + 0.1]})


def run_metrics(
    predictions: pd.DataFrame, train_labels: np.ndarray, method: str, rule: ShotRuleName = "relative", **kwargs: Any
) -> dict[str, Any]:
    return evaluate_predictions(predictions, ShotRule(name=rule).regions(train_labels), method, n_boot=50, **kwargs)


@pytest.fixture(scope="module")
def report_dir(
    tmp_path_factory: pytest.TempPathFactory, predictions: pd.DataFrame, train_labels: np.ndarray
) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    metrics = run_metrics(predictions, train_labels, "dist_loss", splits=("test",))
    write_report(run_dir, RunMetrics.model_validate(metrics), predictions)
    return run_dir


def test_report_writes_one_png_per_plot(report_dir: Path) -> None:
    pngs = sorted(p.name for p in (report_dir / "plots").glob("*.png"))
    assert pngs == ["test_label_vs_prediction.png", "test_per_bin_mae.png", "test_predicted_vs_actual.png",
                    "test_sorted_errors_few.png"]
    for name in pngs:
        assert_png(report_dir / "plots" / name)


def test_report_mentions_regions_rule_prevalence_and_plots(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    needles = ("rule `relative`", "rule `count`", "by_count_rule", "| overall |", "| many |", "| median |",
               "| few |", "at prevalence", "hyper (K >= 5.5)", "hypo (K <= 3.5)", "Pearson r")
    for needle in needles:
        assert needle in text, needle
    for png in (report_dir / "plots").glob("*.png"):
        assert f"(plots/{png.name})" in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_report_needs_metrics_with_a_rule_and_its_regions(predictions: pd.DataFrame,
                                                          train_labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shot_rule"):
        RunMetrics.model_validate({"method": "m"})
    metrics = run_metrics(predictions, train_labels, "m")
    with pytest.raises(ValueError, match="regions of each rule"):
        RunMetrics.model_validate({**metrics, "shot_regions": {"relative": metrics["shot_regions"]["relative"]}})


def test_displays_draw_on_a_given_axes_without_pyplot(tmp_path: Path, train_labels: np.ndarray) -> None:
    regions = shot_regions(train_labels)
    y = np.array([2.5, 3.5, 4.2, 4.4, 5.5, 6.8])
    y_hat = np.array([3.0, 3.6, 4.1, 4.6, 5.0, 6.0])
    figure = Figure(figsize=(12, 8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2).ravel()
    displays = [
        LabelPredictionHistogramDisplay.from_predictions(y, y_hat, ax=axes[0]),
        PerBinErrorDisplay.from_predictions(y, y_hat, regions, ax=axes[1]),
        SortedErrorDisplay.from_predictions({"a": (y, y_hat), "b": (y, y + 0.2)}, regions, ax=axes[2]),
        PredictedActualDisplay.from_predictions(y, y_hat, regions, ax=axes[3]),
    ]
    assert all(d.figure_ is figure for d in displays) and [d.ax_ for d in displays] == list(axes)
    assert len(axes[2].get_lines()) == 2  # one sorted-error curve per method
    assert_png(displays[0].savefig(tmp_path / "grid.png"))
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()


def test_displays_draw_the_plot_data_the_dashboard_charts(predictions: pd.DataFrame, train_labels: np.ndarray) -> None:
    """The report's Displays and the dashboard's charts draw the same numbers (ecg_k.evaluation.plot_data)."""
    rows = predictions[predictions["split"] == "test"]
    y, y_hat = rows["y"].to_numpy(), rows["y_hat"].to_numpy()
    regions = shot_regions(train_labels)

    histogram = LabelPredictionHistogramDisplay.from_predictions(y, y_hat)
    counts = plot_data.label_prediction_counts(y, y_hat)
    drawn = [(round(bar.get_x() + bar.get_width() / 2, 6), bar.get_height()) for bar in histogram.ax_.patches]
    assert drawn == list(zip(counts["k"].round(6), counts["n"].astype(float), strict=True))

    per_bin = PerBinErrorDisplay.from_predictions(y, y_hat, regions)
    spans = plot_data.region_spans(regions, per_bin.table["bin"])
    (steps,) = per_bin.twin_ax_.lines[:1]
    assert steps.get_xdata().tolist() == spans["k"].tolist()
    assert steps.get_ydata().tolist() == spans["train_count"].tolist()

    sorted_few = SortedErrorDisplay.from_predictions({"m": (y, y_hat)}, regions, region="few")
    assert sorted_few.errors["m"].tolist() == plot_data.sorted_region_errors(y, y_hat, regions, "few").tolist()


def test_display_input_errors(train_labels: np.ndarray) -> None:
    regions = shot_regions(train_labels)
    with pytest.raises(ValueError, match="unknown region"):
        SortedErrorDisplay.from_predictions({"a": ([4.0], [4.1])}, regions, region="tail")
    with pytest.raises(ValueError, match="no methods"):
        SortedErrorDisplay.from_predictions({}, regions)
    with pytest.raises(ValueError, match="y_hat contains"):
        LabelPredictionHistogramDisplay.from_predictions([4.0], [np.nan])


def test_comparison_table_has_one_row_per_method(predictions: pd.DataFrame, train_labels: np.ndarray) -> None:
    runs = {name: run_metrics(predictions.assign(y_hat=predictions["y_hat"] + shift), train_labels, name)
            for name, shift in (("vanilla", 0.0), ("dist_loss", 0.2), ("bmse", -0.1))}
    table = comparison_table(runs)
    assert table.index.tolist() == ["vanilla", "dist_loss", "bmse"]
    assert table.columns.tolist() == list(COMPARISON_COLUMNS)
    test = runs["dist_loss"]["test"]
    assert table.loc["dist_loss", "MAE few"] == pytest.approx(test["few"]["mae"])
    assert table.loc["dist_loss", "AUROC hypo"] == pytest.approx(test["hypo"]["auroc"])
    assert table.attrs == {"split": "test", "shot_rule": "relative"}


def test_comparison_refuses_mixed_shot_rules(predictions: pd.DataFrame, train_labels: np.ndarray) -> None:
    runs = {"a": run_metrics(predictions, train_labels, "a"),
            "b": run_metrics(predictions, train_labels, "b", rule="count")}
    with pytest.raises(ValueError, match="different shot rules"):
        comparison_table(runs)


def test_write_comparison_labels_the_published_block(tmp_path: Path, predictions: pd.DataFrame,
                                                     train_labels: np.ndarray) -> None:
    runs = {"vanilla": run_metrics(predictions, train_labels, "vanilla")}
    write_comparison(tmp_path, runs)
    text = (tmp_path / "comparison.md").read_text()
    ours, published = text.split("## Reference only")
    assert "| vanilla |" in ours and "Vanilla" not in ours
    assert "real MIMIC-IV" in published and "not comparable" in published
    assert "| + Dist Loss (INV-L2) |" in published
    assert pd.read_csv(tmp_path / "comparison.csv", index_col="method").index.tolist() == ["vanilla"]
    assert len(pd.read_csv(tmp_path / "published_ecg_ka_dir.csv")) == len(published_table())


def test_published_table_holds_the_paper_numbers() -> None:
    table = published_table()
    vanilla = table.loc["Vanilla", ["MAE all", "MAE many", "MAE median", "MAE few"]]
    assert vanilla.tolist() == [1.235, 0.274, 0.685, 1.771]
    assert table.loc["+ Dist Loss (INV-L2)", ["MAE few", "GM few"]].tolist() == [1.329, 0.978]
    assert table[["bMAE", "AUROC hyper", "AUROC hypo"]].isna().all().all()
