"""Model audit: where a registered model fails, above all in the few-shot region, and how two models
compare (vanilla vs Dist Loss, champion vs challenger). Numbers from the registered model card, charts
from the run's predictions (see dashboard/evaluation.py)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import cast

import pandas as pd
import streamlit as st

from dashboard import charts, ui
from dashboard.evaluation import (
    Evaluation,
    ModelSummary,
    clinical_summary,
    coverage_table,
    distributions,
    per_bin_table,
    region_comparison,
    region_spans,
    region_table,
    reliability_table,
    scatter_points,
    sorted_errors,
)
from ecg_k.potassium import REGIONS


def _pick_models(models: list[ModelSummary]) -> list[ModelSummary]:
    """The model to audit and, optionally, one to compare it with (default: the next in the list)."""
    by_id = {model.id: model for model in models}
    left, right = st.columns(2)
    first = left.selectbox("Model", list(by_id), format_func=lambda i: by_id[i].label)
    others: list[int | None] = [None, *(i for i in by_id if i != first)]
    second = right.selectbox("Compare with", others, index=min(1, len(others) - 1),
                             format_func=lambda i: "nothing" if i is None else by_id[i].label)
    return [by_id[first]] + ([] if second is None else [by_id[second]])


def _numbers(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    floats: list[Hashable] = [column for column in frame.columns if frame[column].dtype.kind == "f"]
    return frame.style.format("{:.3f}", subset=floats, na_rep="–")


def _side_by_side(evaluations: dict[str, Evaluation], draw: Callable[[str, Evaluation], None]) -> None:
    """Call ``draw(name, evaluation)`` in one column per model."""
    for column, (name, evaluation) in zip(st.columns(len(evaluations)), evaluations.items(), strict=True):
        with column:
            draw(name, evaluation)


def _missing(evaluation: Evaluation) -> None:
    st.info(f"No per-sample predictions for {evaluation.model.short}: {evaluation.warning}")


# The audit's views, one tab each (a browser draws a chart when its tab opens).
SECTIONS = ("Shot regions", "Error per 0.1 mmol/L bin", "Labels vs predictions", "Sorted errors",
            "Predicted vs actual", "Clinical operating points", "Prediction sets and probabilities")
HEADLINE = (("overall", "mae", "MAE, all"), ("many", "mae", "MAE, many-shot"),
            ("few", "mae", "MAE, few-shot"), ("bMAE", "mae", "bMAE"), ("few", "gm", "GM, few-shot"))


def _headline(table: pd.DataFrame) -> None:
    """The headline errors of each model; the second model's with its change against the first (lower is
    better, so a decrease shows green)."""
    values = table.set_index(["model", "region"])
    models = list(dict.fromkeys(table["model"]))
    for index, model in enumerate(models):
        st.markdown(f"**{model}**")
        for column, (region, metric, label) in zip(st.columns(len(HEADLINE)), HEADLINE, strict=True):
            value = values.loc[(model, region), metric]
            delta = None
            if index and pd.notna(value) and pd.notna(base := values.loc[(models[0], region), metric]):
                delta = f"{value - base:+.3f}"
            shown = "–" if pd.isna(value) else f"{value:.3f}"
            column.metric(label, shown, delta=delta, delta_color="inverse")


def render() -> None:
    ui.sidebar_sign_in()
    st.title("Model audit")
    database_url = ui.settings().database_url
    with ui.database_errors():
        models = ui.models(database_url)
    if not models:
        st.info("No model is registered yet: `ecgk serve --model RUN/model.onnx` registers an exported "
                "model, `ecgk retrain` registers challengers.")
        st.stop()
    chosen = _pick_models(models)
    try:
        evaluations = {model.short: ui.evaluation(database_url, model.id) for model in chosen}
    except ValueError as err:
        st.error(f"Cannot audit this model: {err}")
        st.stop()
    splits = [split for split in next(iter(evaluations.values())).splits
              if all(split in e.metrics for e in evaluations.values())]
    split = st.radio("Split", splits, horizontal=True,
                     help="Balanced test set: its MAE is not comparable with a natural-distribution set's.")
    for name, evaluation in evaluations.items():
        if evaluation.warning and evaluation.predictions is not None:
            st.warning(f"{name}: {evaluation.warning}")
        st.caption(f"**{name}** shot regions on its training labels: {evaluation.regions.describe()}.")

    table = region_table(evaluations, split)
    _headline(table)

    tabs = st.tabs(list(SECTIONS))
    with tabs[0]:
        chart_column, table_column = st.columns([2, 3])
        chart_column.altair_chart(charts.region_bars(table), width="stretch")
        table_column.dataframe(_numbers(region_comparison(table)), width="stretch")

    with tabs[1]:
        st.caption("Bars: test MAE per bin. Shading: the bin's shot region. Red steps (right axis): training "
                   "samples per bin; dashed: the many and few cuts.")

        def per_bin(name: str, evaluation: Evaluation) -> None:
            bins = per_bin_table(evaluation, split)
            if bins is None:
                _missing(evaluation)
                return
            chart = charts.per_bin_chart(bins, region_spans(evaluation, bins), evaluation.regions.cuts, name)
            st.altair_chart(chart, width="stretch")
            with st.expander(f"Per-bin table: {name}"):
                st.dataframe(_numbers(bins.drop(columns="bin")), hide_index=True, width="stretch")

        _side_by_side(evaluations, per_bin)

    with tabs[2]:
        def histogram(name: str, evaluation: Evaluation) -> None:
            counts = distributions(evaluation, split)
            if counts is None:
                _missing(evaluation)
            else:
                st.altair_chart(charts.distribution_chart(counts, name), width="stretch")

        _side_by_side(evaluations, histogram)

    with tabs[3]:
        region = st.segmented_control("Shot region", list(REGIONS), default="few", required=True)
        errors = sorted_errors(evaluations, split, region)
        chart_column, table_column = st.columns([3, 2])
        if errors.empty:
            chart_column.info(f"No {split} samples in the {region}-shot region (or no predictions file).")
        else:
            chart_column.altair_chart(charts.sorted_error_chart(errors, region), width="stretch")
            # Named aggregation gives a frame (pandas-stubs type it as a Series).
            summary = cast(pd.DataFrame, errors.groupby("model", sort=False)["error"].agg(
                n="size", MAE="mean", median="median", p90=lambda e: e.quantile(0.9)))
            table_column.dataframe(_numbers(summary), width="stretch")

    with tabs[4]:
        def scatter(name: str, evaluation: Evaluation) -> None:
            points = scatter_points(evaluation, split)
            if points is None:
                _missing(evaluation)
            else:
                chart = charts.predicted_actual_chart(points, evaluation.thresholds, name)
                st.altair_chart(chart, width="stretch")

        _side_by_side(evaluations, scatter)

    with tabs[5]:
        st.caption("Predictions cut at the same K⁺ as the label; 95 % percentile bootstrap CIs. PPV and NPV "
                   "hold only at the prevalence shown (a balanced test set has far more abnormal K⁺ than a "
                   "clinic).")
        extra = st.toggle("Also K⁺ > 6.0, > 6.5, < 3.0 and < 2.5 (bootstrapped from the predictions: a few "
                          "seconds)")
        named_ids = tuple((name, evaluation.model.id) for name, evaluation in evaluations.items())
        detection = ui.clinical(database_url, named_ids, split, extra)
        st.altair_chart(charts.clinical_chart(detection), width="content")
        st.dataframe(clinical_summary(detection), hide_index=True, width="stretch")

    with tabs[6]:
        nominal = ui.settings().interval_coverage
        st.caption("Label-conditional conformal sets: the nominal coverage is guaranteed for each region of the "
                   "*true* K⁺ (hypo ≤ 3.5, normal, hyper ≥ 5.5) and each shot region, not only on average. "
                   "Set size: total length of the set's segments (mmol/L). Rules: bootstrap 95 % CIs.")
        for name, evaluation in evaluations.items():
            if evaluation.calibration is None:
                st.info(f"{name}: its model card predates label-conditional sets; export it again.")
            else:
                calibration = evaluation.calibration
                thin = calibration.under_calibrated(nominal)
                st.caption(f"**{name}**: calibrated on `{calibration.calibration_split}` "
                           f"({calibration.n_calibration} pairs). {calibration.note}"
                           + (f" Too few pairs for {nominal:.0%} in {thin}: those regions' K⁺ are in every set."
                              if thin else ""))
        coverage = coverage_table(evaluations, split, nominal)
        if coverage.empty:
            st.info("No calibrated model with per-sample predictions for this split.")
        else:
            chart_column, table_column = st.columns([3, 2])
            chart_column.altair_chart(charts.set_coverage_chart(coverage, nominal), width="stretch")
            table_column.dataframe(coverage.style.format(
                {"coverage": "{:.1%}", "ci_low": "{:.1%}", "ci_high": "{:.1%}", "mean_set_size": "{:.2f}",
                 "mean_hull_width": "{:.2f}"}, na_rep="–"), hide_index=True, width="stretch")
            st.altair_chart(charts.reliability_chart(reliability_table(evaluations, split)), width="stretch")

render()
