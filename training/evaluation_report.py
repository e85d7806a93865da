"""Evaluation artefacts of a run: plots, ``report.md`` and the side-by-side methods table.

Plots follow scikit-learn's Display objects (``from_predictions(...)`` builds and draws, ``.plot(ax)``
redraws, ``.figure_``/``.ax_`` hold the result). They draw on ``matplotlib.figure.Figure`` objects with an
Agg canvas and never touch pyplot, so no global figure state leaks into a training job or a test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import ArrayLike, NDArray

from ecg_k.display import CLINICAL_ZONES, K_AXIS, LABEL_COLOUR, PREDICTION_COLOUR, REGION_COLOURS
from ecg_k.evaluation.detection import DETECTION_STATS
from ecg_k.evaluation.inputs import validate_predictions
from ecg_k.evaluation.plot_data import label_prediction_counts, region_spans, sorted_region_errors
from ecg_k.evaluation.published import PUBLISHED_ECG_KA_DIR, PUBLISHED_SOURCE
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.evaluation.regression import ALL_REGIONS, per_bin_errors
from ecg_k.potassium import (
    CLINICAL_REGIONS,
    DEFAULT_THRESHOLDS,
    LABEL_STEP,
    REGIONS,
    Thresholds,
    bin_value,
    detection_cutoffs,
    event_names,
    label_bin,
)
from ecg_k.records.run import RunMetrics

COMPARISON_COLUMNS = (
    "MAE all", "MAE many", "MAE median", "MAE few", "GM all", "GM many", "GM median", "GM few",
    "bMAE", "AUROC hyper", "AUROC hypo",
)


# ------------------------------------------------------------------------------------------------ plots


class _Display:
    """Shared plumbing: the axes to draw on (a fresh Agg-backed figure when none is given) and saving."""

    figsize: tuple[float, float] = (7.0, 4.0)
    ax_: Axes
    figure_: Figure

    def _axes(self, ax: Axes | None) -> Axes:
        if ax is None:
            figure = Figure(figsize=self.figsize, layout="constrained")
            FigureCanvasAgg(figure)
            ax = figure.add_subplot()
        root = ax.get_figure(root=True)
        if root is None:
            raise ValueError("the axes to draw on belong to no figure")
        self.ax_, self.figure_ = ax, root
        return ax

    def savefig(self, path: Path, dpi: int = 110) -> Path:
        """Write the figure (PNG by the suffix) and return the path."""
        self.figure_.savefig(path, dpi=dpi)
        return path


class LabelPredictionHistogramDisplay(_Display):
    """Label and prediction histograms overlaid on the 0.1 mmol/L bins (the paper's Fig. 1b/1c).

    Shows the distribution mismatch Dist Loss targets: a plain model's predictions crowd the normal range.
    """

    def __init__(self, y: ArrayLike, y_hat: ArrayLike, name: str | None = None,
                 thresholds: Thresholds = DEFAULT_THRESHOLDS) -> None:
        self.y, self.y_hat = validate_predictions(y, y_hat)
        self.name, self.thresholds = name, thresholds

    @classmethod
    def from_predictions(
        cls, y: ArrayLike, y_hat: ArrayLike, *, name: str | None = None, ax: Axes | None = None,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> Self:
        return cls(y, y_hat, name, thresholds).plot(ax)

    def plot(self, ax: Axes | None = None) -> Self:
        ax = self._axes(ax)
        counts = label_prediction_counts(self.y, self.y_hat)
        for series, colour in (("label", LABEL_COLOUR), ("prediction", PREDICTION_COLOUR)):
            rows = counts[counts["series"] == series]
            ax.bar(rows["k"], rows["n"], width=LABEL_STEP, color=colour, alpha=0.55, label=series)
        for cutoff in detection_cutoffs(self.thresholds):
            ax.axvline(cutoff.value, color="0.4", ls=":", lw=1)
        ax.set(xlabel=K_AXIS, ylabel="count", title=_title("Labels vs predictions", self.name))
        ax.legend()
        return self


class PerBinErrorDisplay(_Display):
    """MAE per 0.1 mmol/L test bin over many/median/few shading, training counts on a twin axis."""

    figsize = (10.5, 4.0)
    twin_ax_: Axes

    def __init__(self, table: pd.DataFrame, regions: ShotRegions, name: str | None = None) -> None:
        self.table, self.regions, self.name = table, regions, name

    @classmethod
    def from_predictions(
        cls, y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions, *, name: str | None = None,
        ax: Axes | None = None,
    ) -> Self:
        return cls(per_bin_errors(y, y_hat, regions), regions, name).plot(ax)

    def plot(self, ax: Axes | None = None) -> Self:
        ax = self._axes(ax)
        spans = region_spans(self.regions, self.table["bin"])
        region = spans["region"].to_numpy()
        change = np.flatnonzero(region[1:] != region[:-1]) + 1
        for start, stop in zip(np.r_[0, change], np.r_[change, region.size], strict=True):
            ax.axvspan(spans["low"].iloc[start], spans["high"].iloc[stop - 1],
                       color=REGION_COLOURS[region[start]], alpha=0.15, lw=0)
        ax.bar(self.table["k"], self.table["mae"], width=0.8 * LABEL_STEP, color="0.25", label="test MAE")
        ax.set(xlabel=K_AXIS, ylabel="MAE (mmol/L)", title=_title("MAE per 0.1 mmol/L bin", self.name))

        twin = ax.twinx()
        twin.plot(spans["k"], spans["train_count"], drawstyle="steps-mid",
                  color="tab:red", lw=1.2, label="train count")
        many_cut, few_cut = self.regions.cuts
        twin.axhline(many_cut, color="tab:red", ls="--", lw=0.8, label=f"many if above {many_cut:g}")
        twin.axhline(few_cut, color="tab:red", ls=":", lw=0.8, label=f"few if below {few_cut:g}")
        twin.set_ylabel("training samples per bin")
        self.twin_ax_ = twin
        handles: list[Artist] = [Patch(color=REGION_COLOURS[name], alpha=0.3, label=name) for name in REGIONS]
        handles += ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize="small",
                  title=f"rule: {self.regions.rule}")
        return self


class SortedErrorDisplay(_Display):
    """Absolute errors sorted ascending, one curve per method, within one shot region (paper Fig. 5).

    Shows where a GM difference comes from: many tiny errors drag the GM down without changing the MAE.
    """

    def __init__(self, errors: Mapping[str, NDArray[np.float64]], region: str) -> None:
        if not errors:
            raise ValueError("no methods given: need at least one method's errors")
        self.errors, self.region = dict(errors), region

    @classmethod
    def from_predictions(
        cls, runs: Mapping[str, tuple[ArrayLike, ArrayLike]], regions: ShotRegions, *, region: str = "few",
        ax: Axes | None = None,
    ) -> Self:
        """``runs``: method name -> (y, y_hat); keeps the errors of samples whose label bin is ``region``."""
        errors = {method: sorted_region_errors(y, y_hat, regions, region) for method, (y, y_hat) in runs.items()}
        return cls(errors, region).plot(ax)

    def plot(self, ax: Axes | None = None) -> Self:
        ax = self._axes(ax)
        for method, errors in self.errors.items():
            label = f"{method} (n={errors.size}" + (f", MAE={errors.mean():.3f})" if errors.size else ")")
            ax.plot(np.arange(1, errors.size + 1), errors, lw=1.5, label=label)
        ax.set(xlabel="rank of sorted error", ylabel="|error| (mmol/L)",
               title=f"Sorted absolute errors, {self.region}-shot region")
        ax.legend(fontsize="small")
        return self


class PredictedActualDisplay(_Display):
    """Predicted vs actual K+: identity line, shaded clinical zones, points coloured by shot region."""

    figsize = (6.0, 6.0)

    def __init__(
        self, y: ArrayLike, y_hat: ArrayLike, region: NDArray[np.str_], name: str | None = None
    ) -> None:
        self.y, self.y_hat = validate_predictions(y, y_hat)
        if len(region) != self.y.size:
            raise ValueError(f"length mismatch: {len(region)} region tags vs {self.y.size} samples")
        self.region, self.name = np.asarray(region), name

    @classmethod
    def from_predictions(
        cls, y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions, *, name: str | None = None,
        ax: Axes | None = None,
    ) -> Self:
        return cls(y, y_hat, regions.region_of(y), name).plot(ax)

    def plot(self, ax: Axes | None = None) -> Self:
        ax = self._axes(ax)
        values = np.concatenate([self.y, self.y_hat])
        low, high = values.min() - 0.2, values.max() + 0.2
        for label, start, stop, colour in CLINICAL_ZONES:
            start, stop = max(start, low), min(stop, high)
            if start < stop:
                ax.axvspan(start, stop, color=colour, alpha=0.18, lw=0, label=label)
                ax.axhspan(start, stop, color=colour, alpha=0.08, lw=0)
        ax.plot([low, high], [low, high], color="black", ls="--", lw=1, label="identity")
        for name in REGIONS:
            mask = self.region == name
            if mask.any():
                ax.scatter(self.y[mask], self.y_hat[mask], s=8, alpha=0.5, color=REGION_COLOURS[name],
                           label=f"{name} (n={int(mask.sum())})")
        ax.set(xlim=(low, high), ylim=(low, high), xlabel=f"actual {K_AXIS}", ylabel=f"predicted {K_AXIS}",
               title=_title("Predicted vs actual", self.name))
        ax.set_aspect("equal")
        ax.legend(fontsize="small", loc="upper left")
        return self


def _title(what: str, name: str | None) -> str:
    return what if name is None else f"{what}: {name}"


# ---------------------------------------------------------------------------------------------- report.md


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a markdown cell; '–' for missing (None/NaN)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _with_ci(stats: Mapping[str, Any], name: str) -> str:
    ci = stats["ci95"][name]
    return _fmt(stats[name]) + ("" if ci is None else f" [{_fmt(ci[0])}, {_fmt(ci[1])}]")


def _bin_ranges(ks: Sequence[float]) -> str:
    """Compact K+ list, e.g. '2.0–2.9, 5.4–6.6'; consecutive 0.1 bins merge into one range."""
    if not ks:
        return "none"
    bins = label_bin(ks)
    breaks = np.flatnonzero(np.diff(bins) != 1) + 1
    parts = []
    for run in np.split(bins, breaks):
        low, high = bin_value(run[[0, -1]])
        parts.append(f"{low:.1f}" if run.size == 1 else f"{low:.1f}–{high:.1f}")
    return ", ".join(parts)


def _region_table(split_metrics: Mapping[str, Any], names: Sequence[str]) -> str:
    columns = ("n", "mae", "mse", "gm", "bmae", "zero_errors")
    rows = [[name, *(_fmt(split_metrics[name][column]) for column in columns)] for name in names]
    return _md_table(["region", "n", "MAE", "MSE", "GM", "bMAE", "zero errors"], rows)


def _clinical_table(split_metrics: Mapping[str, Any]) -> str:
    rows = []
    for key, stats in split_metrics.items():
        if not (isinstance(stats, Mapping) and "ci95" in stats):
            continue
        percent = f"{100 * stats['prevalence']:.1f} %"
        auroc, sensitivity, specificity, ppv, npv = (_with_ci(stats, name) for name in DETECTION_STATS)
        rows.append([f"{key} ({stats['rule']})", f"{percent} ({stats['n_positive']}/{stats['n']})", auroc,
                     sensitivity, specificity, f"{ppv} at prevalence {percent}", npv])
    return _md_table(["cut-off", "prevalence", "AUROC", "sensitivity", "specificity", "PPV", "NPV"], rows)


def _split_section(
    split: str, split_metrics: Mapping[str, Any], rule: str, other_rule: str, plots: Mapping[str, Path]
) -> str:
    other_key = f"by_{other_rule}_rule"
    n_boot = split_metrics["hyper"]["n_boot"]
    figures = "\n\n".join(f"![{title}](plots/{path.name})" for title, path in plots.items())
    return "\n\n".join([
        f"## Split `{split}` (n = {split_metrics['overall']['n']})",
        f"### Regression, shot rule `{rule}`",
        _region_table(split_metrics, ALL_REGIONS),
        f"bMAE (mean of the per-bin MAEs over this split's label bins): {_fmt(split_metrics['bmae'])}; "
        f"Pearson r: {_fmt(split_metrics['pearson'])}.",
        f"The same split under the `{other_rule}` rule (key `{other_key}`):",
        _region_table(split_metrics[other_key], REGIONS),
        "### Clinical detection (predictions cut at the same K⁺; "
        f"95 % percentile bootstrap CI, {n_boot} resamples)",
        _clinical_table(split_metrics),
        "PPV and NPV hold only at the prevalence shown: a balanced test set has far more abnormal K⁺ than a "
        "clinic, where at 1 % prevalence even a good model has a PPV near 3 % (docs/method.md, section 9).",
        "### Plots",
        figures,
    ])


def save_split_plots(
    plots_dir: Path, split: str, y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions, method: str
) -> dict[str, Path]:
    """The four plots of one split as ``plots_dir/{split}_*.png``; returns title -> path."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    displays = {
        "labels vs predictions": ("label_vs_prediction",
                                  LabelPredictionHistogramDisplay.from_predictions(y, y_hat, name=method)),
        "MAE per bin": ("per_bin_mae", PerBinErrorDisplay.from_predictions(y, y_hat, regions, name=method)),
        "sorted few-shot errors": ("sorted_errors_few",
                                   SortedErrorDisplay.from_predictions({method: (y, y_hat)}, regions)),
        "predicted vs actual": ("predicted_vs_actual",
                                PredictedActualDisplay.from_predictions(y, y_hat, regions, name=method)),
    }
    return {title: display.savefig(plots_dir / f"{split}_{stem}.png")
            for title, (stem, display) in displays.items()}


class ReliabilityDisplay(_Display):
    """Reliability diagram of calibrated event probabilities: observed frequency against the mean
    predicted probability per decile bin (marker area ~ samples), with the diagonal."""

    def __init__(self, rows: Mapping[str, Sequence[Mapping[str, float]]], name: str | None = None) -> None:
        self.rows, self.name = rows, name

    def plot(self, ax: Axes | None = None) -> Self:
        ax = self._axes(ax)
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for event, label in event_names().items():
            rows = self.rows.get(event, [])
            if rows:
                ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="observed frequency",
               title=_title("Reliability", self.name))
        ax.legend(loc="upper left")
        return self


_COVERAGE_GROUPS = ("overall", *CLINICAL_REGIONS, *REGIONS)


def _coverage_section(intervals: Mapping[str, Any], plots_dir: Path) -> str:
    """Coverage per true-K⁺ region, shot region and overall, and the reliability diagrams."""
    calibration = intervals["calibration"]
    thin = calibration["under_calibrated"]
    parts = [
        "## Prediction sets and probabilities",
        f"Method `{calibration['method']}` at {calibration['coverage']:.0%}, calibrated on "
        f"`{calibration['split']}` ({calibration['n']} pairs, none of which chose the model"
        + (")." if not calibration["note"] else f"). **Note:** {calibration['note']}."),
        _md_table(["true-K⁺ or shot region", "calibration pairs", "quantile of |y − ŷ| (mmol/L)"],
                  [[name, str(v["n"]), _fmt(v["quantile"])] for name, v in calibration["regions"].items()]),
        (f"Too few calibration pairs for this level in {thin}: every K⁺ of those regions is in every set."
         if thin else "Every region has enough calibration pairs for this level."),
    ]
    for split in (key for key in ("test", "test_natural") if key in intervals):
        report = intervals[split]
        coverage = report["coverage"]
        rows = [[name, str(coverage[name]["n"]), _with_ci(coverage[name] | {"ci95": {
                    "coverage": coverage[name]["coverage_ci95"]}}, "coverage"),
                 _fmt(coverage[name]["mean_set_size"], 2), _fmt(coverage[name]["mean_hull_width"], 2)]
                for name in _COVERAGE_GROUPS]
        display = ReliabilityDisplay(report["reliability"], name=split).plot()
        path = display.savefig(plots_dir / f"{split}_reliability.png")
        parts += [f"### Split `{split}`: coverage by the region of the true K⁺",
                  _md_table(["region", "n", "coverage [95 % CI]", "mean set size", "mean hull width"], rows),
                  f"Probabilities read at the {report['prevalence']} prevalence.",
                  f"![reliability {split}](plots/{path.name})"]
    return "\n\n".join(parts)


def write_report(run_dir: Path, record: RunMetrics, predictions: pd.DataFrame) -> None:
    """Write ``run_dir/report.md`` and ``run_dir/plots/*.png`` for every split evaluated in ``record``, with the
    shot regions it holds."""
    regions, other = record.regions, record.other_regions
    other_rule = other.rule
    metrics = record.as_dict()
    splits = list(record.splits)

    region_bins = regions.to_dict()["bins"]
    run_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        f"# Evaluation report: {metrics['method']}",
        f"Shot regions on the training labels ({_fmt(metrics.get('n_train'))} samples): "
        f"{regions.describe()}.",
        _md_table(["region", "training bins (K⁺, mmol/L)"],
                  [[name, _bin_ranges(region_bins[name])] for name in REGIONS]),
        f"Also reported for comparison: {other.describe()}.",
        "Balanced-test MAE is not comparable with MAE on a natural-distribution test set "
        "(docs/method.md, section 9).",
    ]
    for split in splits:
        rows = predictions[predictions["split"] == split]
        if rows.empty:
            raise ValueError(f"predictions have no rows for split {split!r}, which metrics report")
        y, y_hat = rows["y"].to_numpy(), rows["y_hat"].to_numpy()
        plots = save_split_plots(run_dir / "plots", split, y, y_hat, regions, metrics["method"])
        sections.append(_split_section(split, metrics[split], regions.rule, other_rule, plots))
    if "intervals" in metrics:
        sections.append(_coverage_section(metrics["intervals"], run_dir / "plots"))
    (run_dir / "report.md").write_text("\n\n".join(sections) + "\n")


# ----------------------------------------------------------------------------------------- comparison


def _frame(rows: Mapping[str, Sequence[float | None]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(dict(rows), orient="index", columns=list(COMPARISON_COLUMNS), dtype=float)
    frame.index.name = "method"
    return frame


def comparison_table(runs: Mapping[str, Mapping[str, Any]], split: str = "test") -> pd.DataFrame:
    """One row per run (``runs``: method name -> metrics.json dict), the paper's Table 8 columns.

    All runs must share one shot rule: region metrics under different rules are not comparable.
    """
    if not runs:
        raise ValueError("no runs to compare")
    rules = {name: metrics.get("shot_rule") for name, metrics in runs.items()}
    if len(set(rules.values())) != 1:
        raise ValueError(f"runs use different shot rules, so their regions differ: {rules}")
    rows = {}
    for name, metrics in runs.items():
        if split not in metrics:
            raise ValueError(f"run {name!r} has no {split!r} metrics")
        m = metrics[split]
        errors = [m[region][metric] for metric in ("mae", "gm") for region in ALL_REGIONS]
        rows[name] = [*errors, m["bmae"], m["hyper"]["auroc"], m["hypo"]["auroc"]]
    frame = _frame(rows)
    frame.attrs.update(split=split, shot_rule=next(iter(rules.values())))
    return frame


def _ci_text(ci: Sequence[float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def ci_table(runs: Mapping[str, Mapping[str, Any]], split: str = "test") -> pd.DataFrame:
    """One row per run: the 95 % CIs of ``metrics.json`` (MAE and GM per region, bMAE); "—" where a run
    has none (evaluated before the CIs existed, or with no bootstrap)."""
    rows = {}
    for name, metrics in runs.items():
        m = metrics[split]
        cells = [_ci_text(m[region].get(f"{stat}_ci95")) for stat in ("mae", "gm") for region in ALL_REGIONS]
        rows[name] = [*cells, _ci_text(m.get("bmae_ci95"))]
    columns = [f"{stat} {region} 95% CI" for stat in ("MAE", "GM") for region in ALL_REGIONS] + ["bMAE 95% CI"]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame.index.name = "method"
    unit = {metrics[split].get("ci_unit", "sample") for metrics in runs.values()}
    frame.attrs["ci_unit"] = ", ".join(sorted(unit))
    return frame


def published_table() -> pd.DataFrame:
    """The paper's ECG-Ka-DIR numbers (real MIMIC-IV) in the comparison columns; NaN where not published."""
    blank = [None] * (len(COMPARISON_COLUMNS) - 2 * len(ALL_REGIONS))
    return _frame({name: [*row["mae"], *row["gm"], *blank] for name, row in PUBLISHED_ECG_KA_DIR.items()})


def _frame_markdown(frame: pd.DataFrame) -> str:
    rows = [[str(name), *map(_fmt, row)] for name, row in zip(frame.index, frame.to_numpy(), strict=True)]
    return _md_table([str(frame.index.name or ""), *frame.columns], rows)


def write_comparison(out: Path, runs: Mapping[str, Mapping[str, Any]], split: str = "test") -> None:
    """Write ``out/comparison.{md,csv}`` and ``out/published_ecg_ka_dir.csv`` (``out`` is a directory)."""
    table = comparison_table(runs, split)
    cis = ci_table(runs, split)
    published = published_table()
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv")
    cis.to_csv(out / "comparison_ci95.csv")
    published.to_csv(out / "published_ecg_ka_dir.csv")
    text = "\n\n".join([
        f"# Method comparison (split `{split}`, shot rule `{table.attrs['shot_rule']}`)",
        _frame_markdown(table),
        f"## 95 % confidence intervals (percentile bootstrap over {cis.attrs['ci_unit']}s)",
        _md_table(["method", *cis.columns], [[str(n), *row] for n, row in zip(cis.index, cis.to_numpy(), strict=True)]),
        "## Reference only: published numbers on real MIMIC-IV (not comparable)",
        f"> {PUBLISHED_SOURCE}. These are published numbers on the real ECG-Ka-DIR benchmark; they are "
        "**not comparable** with runs on synthetic data or on a different cohort, split or shot rule. "
        "AUROC and bMAE were not reported.",
        _frame_markdown(published),
    ])
    (out / "comparison.md").write_text(text + "\n")

