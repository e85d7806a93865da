"""Live monitoring of served predictions: volume and flags over time, drift of the estimates against the
training labels, and error and interval coverage where labs confirmed the estimate (aggregated in SQL, see
dashboard/monitoring.py)."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard import charts, monitoring, ui
from ecg_k.potassium import Interpretation

DEFAULT_DAYS = 30  # the date filter starts this many days before the last prediction
FLAGGED = tuple(code.value for code in Interpretation if code is not Interpretation.NORMAL)


def _percent(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    shares: list[Hashable] = [column for column in frame.columns if column not in ("model", "predictions")]
    return frame.style.format("{:.1%}", subset=shares)


def render() -> None:
    ui.sidebar_sign_in()
    st.title("Live monitoring")
    database_url = ui.settings().database_url
    with ui.database_errors():
        span = ui.prediction_span(database_url)
        models = ui.models(database_url)
    if span is None:
        st.info("No predictions yet: the API stores every estimate it serves.")
        st.stop()
    first, last = span
    by_id = {model.id: model for model in models}
    left, right = st.columns([1, 2])
    days = left.date_input("Days (UTC)", value=(max(first, last - timedelta(days=DEFAULT_DAYS - 1)), last),
                           min_value=first, max_value=last)
    chosen = right.multiselect("Model versions", list(by_id), default=list(by_id),
                               format_func=lambda i: by_id[i].label)
    if not isinstance(days, tuple) or len(days) != 2:
        st.info("Pick the last day of the range.")
        st.stop()
    try:
        window = monitoring.Window.of_days(days[0], days[1], tuple(chosen))
    except ValueError as err:
        st.warning(str(err))
        st.stop()
    with ui.database_errors():
        data = ui.monitoring_data(database_url, window)
    names = {model_id: model.short for model_id, model in by_id.items()}

    total = int(data.flags["n"].sum())
    flagged = int(data.flags.loc[data.flags["flag"].isin(FLAGGED), "n"].sum())
    critical = int(data.flags["critical"].sum())
    labs = int(data.confirmed["n"].sum())
    kpis = st.columns(6)
    kpis[0].metric("Predictions", f"{total:,}")
    kpis[1].metric("Flagged (L/LL/H/HH)", f"{flagged / total:.1%}" if total else "–")
    kpis[2].metric("Critical (LL/HH)", f"{critical / total:.1%}" if total else "–")
    kpis[3].metric("Lab-confirmed", f"{labs:,}")
    kpis[4].metric("MAE vs lab", f"{data.confirmed['abs_error'].sum() / labs:.3f}" if labs else "–")
    nominal = ui.settings().interval_coverage
    kpis[5].metric("Interval coverage", f"{data.confirmed['covered'].sum() / labs:.1%}" if labs else "–",
                   help=f"Share of lab values inside the served interval (nominal {nominal:.0%}).")
    if not total:
        st.info("No predictions in this window.")
        st.stop()

    st.header("Predictions over time")
    chart_column, table_column = st.columns([1, 1])
    chart_column.altair_chart(charts.daily_flags_chart(data.daily), width="stretch")
    table_column.markdown("**Flag rates**")
    rates = monitoring.flag_rates(data.flags, names)
    table_column.dataframe(_percent(rates), hide_index=True, width="stretch")

    st.header("Drift against the training labels")
    st.caption("Share of served estimates per 0.1 mmol/L bin against the model's training labels. Some gap "
               "is expected (plain regression pulls estimates toward normal; Dist Loss narrows it); watch it "
               "grow.")
    served = [model_id for model_id in chosen if model_id in set(data.histogram["model_id"])]
    for tab, model_id in zip(st.tabs([names[i] for i in served]), served, strict=True):
        result = monitoring.drift(data.histogram[data.histogram["model_id"] == model_id],
                                  ui.regions(database_url, model_id))
        if result is None:
            tab.info("No estimates from this model in the window.")
            continue
        chart_column, numbers = tab.columns([3, 1])
        chart_column.altair_chart(charts.drift_chart(result.table, names[model_id]), width="stretch")
        numbers.metric("Wasserstein distance", f"{result.wasserstein:.3f} mmol/L")
        numbers.metric("PSI", f"{result.psi:.3f}",
                       help="Population stability index; > 0.25 is usually read as a major shift.")
        numbers.metric("Mean estimate / label", f"{result.mean_estimate:.2f} / {result.mean_label:.2f}")
        numbers.metric("Estimates", f"{result.n:,}")

    st.header("Lab-confirmed predictions")
    st.caption("By the region of the lab value: hypo (≤ 3.5), normal, hyper (≥ 5.5), where the prediction sets "
               "guarantee their nominal coverage, and the shot region on the model's training labels (as on the "
               "audit page); bias = mean (estimate − lab).")
    if not labs:
        st.info("No lab value confirms a prediction in this window yet.")
        return
    tables = []
    for model_id in sorted(set(data.confirmed["model_id"])):
        part = data.confirmed[data.confirmed["model_id"] == model_id]
        table = monitoring.confirmed_by_region(part, ui.regions(database_url, model_id))
        tables.append(table.assign(model=names[model_id]))
    confirmed = pd.concat(tables, ignore_index=True)
    error_column, coverage_column = st.columns(2)
    error_column.altair_chart(charts.confirmed_error_chart(confirmed), width="stretch")
    coverage_column.altair_chart(charts.coverage_chart(confirmed, nominal), width="stretch")
    shown = confirmed[["model", "region", "n", "mae", "bias", "coverage"]].style.format(
        {"mae": "{:.3f}", "bias": "{:+.3f}", "coverage": "{:.1%}"}, na_rep="–")
    st.dataframe(shown, hide_index=True, width="stretch")


render()
