"""Vega-Lite charts (Altair, which Streamlit ships) for the dashboard pages, built from the plain tables of
``evaluation``, ``monitoring`` and ``review_queue``. Colours and zones are those of the evaluation report
(:mod:`ecg_k.display`), so a chart here reads like the PNG in a run's ``report.md``."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from ecg_k.display import K_AXIS, LABEL_COLOUR, PREDICTION_COLOUR, REGION_COLOURS, clinical_zones
from ecg_k.potassium import CLINICAL_REGIONS, LABEL_STEP, REGIONS, Interpretation, Thresholds

REGION_SCALE = alt.Scale(domain=list(REGIONS), range=[REGION_COLOURS[name] for name in REGIONS])
FLAG_COLOURS = {Interpretation.CRITICAL_LOW.value: "#2166ac", Interpretation.LOW.value: "#92c5de",
                Interpretation.NORMAL.value: "#bdbdbd", Interpretation.HIGH.value: "#f4a582",
                Interpretation.CRITICAL_HIGH.value: "#b2182b", "unable": "#636363"}
FLAG_SCALE = alt.Scale(domain=list(FLAG_COLOURS), range=list(FLAG_COLOURS.values()))
COUNT_COLOUR = "#d62728"
REGION_AXIS_ORDER = ["overall", *REGIONS, "bMAE"]
LEAD_SPACING_MV = 3.0
"""Vertical distance between stacked ECG leads."""
PLOT_SIZE = alt.AutoSizeParams(type="fit-x", contains="padding")
"""Width fits the container; ``height`` is the plotting area's, so legends and titles do not squash it
(Streamlit's default, "fit", makes the whole chart, decorations included, that high)."""


def _legend(title: str | None = None) -> alt.Legend:
    return alt.Legend(orient="bottom", title=title)


def _model_colour() -> alt.Color:
    return alt.Color("model:N", legend=_legend())


def _number(field: str, format_: str = ".3f", title: str | None = None) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", format=format_, title=title or field)


def region_bars(table: pd.DataFrame) -> alt.LayerChart:
    """MAE per shot region (and bMAE), one bar per model: the many-shot vs few-shot trade-off."""
    base = alt.Chart(table.dropna(subset=["mae"])).encode(
        x=alt.X("region:N", sort=REGION_AXIS_ORDER, title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("model:N"), y=alt.Y("mae:Q", title="MAE (mmol/L)"))
    bars = base.mark_bar().encode(color=_model_colour(),
                                  tooltip=["model", "region", "n", _number("mae"), _number("gm")])
    labels = base.mark_text(dy=-6, fontSize=11).encode(text=alt.Text("mae:Q", format=".3f"))
    return (bars + labels).properties(height=240, title="MAE by shot region", autosize=PLOT_SIZE)


def per_bin_chart(per_bin: pd.DataFrame, spans: pd.DataFrame, cuts: tuple[float, float],
                  title: str) -> alt.LayerChart:
    """Test MAE per 0.1 mmol/L bin over many/median/few shading, training counts on the right axis."""
    x_scale = alt.Scale(domain=[float(spans["low"].min()), float(spans["high"].max())], nice=False)
    shading = alt.Chart(spans).mark_rect(opacity=0.18).encode(
        x=alt.X("low:Q", scale=x_scale, title=K_AXIS), x2="high:Q",
        color=alt.Color("region:N", scale=REGION_SCALE, legend=_legend("shot region")))
    half_bar = 0.4 * LABEL_STEP
    bars = alt.Chart(per_bin.assign(low=per_bin["k"] - half_bar, high=per_bin["k"] + half_bar))
    bars = bars.mark_rect(color="#404040").encode(
        x=alt.X("low:Q", scale=x_scale), x2="high:Q", y=alt.Y("mae:Q", title="MAE (mmol/L)"), y2=alt.datum(0),
        tooltip=[_number("k", ".1f", "K⁺"), "n", _number("mae"), "region", _number("train_count", "d",
                                                                                   "training count")])
    counts_axis = alt.Axis(title="training n", titleColor=COUNT_COLOUR, orient="right")
    counts = alt.Chart(spans).mark_line(interpolate="step-after", color=COUNT_COLOUR, strokeWidth=1.5).encode(
        x=alt.X("low:Q", scale=x_scale), y=alt.Y("train_count:Q", axis=counts_axis))
    many_cut, few_cut = cuts
    cuts_table = pd.DataFrame({"train_count": [many_cut, few_cut], "rule": ["many above", "few below"]})
    cut_lines = alt.Chart(cuts_table).mark_rule(color=COUNT_COLOUR, strokeDash=[4, 3]).encode(
        y=alt.Y("train_count:Q", axis=counts_axis), tooltip=["rule", "train_count"])
    return alt.layer(shading, bars, alt.layer(counts, cut_lines)).resolve_scale(
        y="independent", color="independent").properties(height=220, title=title, autosize=PLOT_SIZE)


def _overlaid_bins(long: pd.DataFrame, value: str, series: tuple[str, str], title: str,
                   axis_format: str = "") -> alt.Chart:
    """Two series (``k, series, <value>``) drawn as translucent 0.1 mmol/L bars over each other."""
    data = long.assign(low=long["k"] - LABEL_STEP / 2, high=long["k"] + LABEL_STEP / 2)
    return alt.Chart(data).mark_rect(opacity=0.55).encode(
        x=alt.X("low:Q", title=K_AXIS), x2="high:Q",
        y=alt.Y(f"{value}:Q", title=value, stack=None, axis=alt.Axis(format=axis_format)), y2=alt.datum(0),
        color=alt.Color("series:N", legend=_legend(),
                        scale=alt.Scale(domain=list(series), range=[LABEL_COLOUR, PREDICTION_COLOUR])),
        tooltip=["series", _number("k", ".1f", "K⁺"), _number(value, axis_format or "d")],
    ).properties(height=220, title=title, autosize=PLOT_SIZE)


def distribution_chart(table: pd.DataFrame, title: str) -> alt.Chart:
    """Label and prediction counts per 0.1 mmol/L bin, overlaid (the paper's Fig. 1b/1c)."""
    return _overlaid_bins(table.rename(columns={"n": "count"}), "count", ("label", "prediction"), title)


def drift_chart(table: pd.DataFrame, title: str) -> alt.Chart:
    """Shares of served estimates and of training labels per 0.1 mmol/L bin, overlaid."""
    long = table.melt(id_vars="k", var_name="series", value_name="share")
    return _overlaid_bins(long, "share", ("training labels", "served estimates"), title, ".1%")


def sorted_error_chart(table: pd.DataFrame, region: str) -> alt.Chart:
    """Absolute errors sorted ascending, one line per model, within a shot region (paper Fig. 5)."""
    return alt.Chart(table).mark_line(strokeWidth=2).encode(
        x=alt.X("rank:Q", title="rank of sorted error"), y=alt.Y("error:Q", title="|error| (mmol/L)"),
        color=_model_colour(), tooltip=["model", "rank", _number("error")],
    ).properties(height=240, title=f"Sorted absolute errors, {region}-shot region", autosize=PLOT_SIZE)


def _zones(low: float, high: float, thresholds: Thresholds) -> pd.DataFrame:
    rows = [(label, max(start, low), min(stop, high), colour)
            for label, start, stop, colour in clinical_zones(thresholds) if max(start, low) < min(stop, high)]
    return pd.DataFrame(rows, columns=["zone", "start", "stop", "colour"])


def predicted_actual_chart(points: pd.DataFrame, thresholds: Thresholds, title: str) -> alt.LayerChart:
    """Predicted vs actual K+ (about square beside its legends): identity line, the clinical zones shaded
    (2.5, 3.5, 5.5, 6.5), points coloured by the shot region of the label."""
    values = pd.concat([points["y"], points["y_hat"]])
    low, high = math.floor(values.min() * 2) / 2 - 0.2, math.ceil(values.max() * 2) / 2 + 0.2
    scale = alt.Scale(domain=[low, high], nice=False)
    zones = _zones(low, high, thresholds)
    zone_scale = alt.Scale(domain=list(zones["zone"]), range=list(zones["colour"]))
    vertical = alt.Chart(zones).mark_rect(opacity=0.2).encode(
        x=alt.X("start:Q", scale=scale, title=f"actual {K_AXIS}"), x2="stop:Q",
        color=alt.Color("zone:N", scale=zone_scale, legend=alt.Legend(title="clinical zone (actual)")))
    horizontal = alt.Chart(zones).mark_rect(opacity=0.08).encode(
        y=alt.Y("start:Q", scale=scale, title=f"predicted {K_AXIS}"), y2="stop:Q",
        color=alt.Color("zone:N", scale=zone_scale, legend=None))
    diagonal = alt.Chart(pd.DataFrame({"x": [low, high]}))
    identity = diagonal.mark_line(color="black", strokeDash=[5, 4], clip=True).encode(
        x=alt.X("x:Q", scale=scale), y=alt.Y("x:Q", scale=scale))
    dots = alt.Chart(points).mark_circle(size=16, opacity=0.6).encode(
        x=alt.X("y:Q", scale=scale), y=alt.Y("y_hat:Q", scale=scale),
        color=alt.Color("region:N", scale=REGION_SCALE, legend=alt.Legend(title="shot region (actual)")),
        tooltip=[_number("y", ".1f", "actual"), _number("y_hat", ".2f", "predicted"), "region"])
    return alt.layer(vertical, horizontal, identity, dots).resolve_scale(color="independent").properties(
        height=360, title=title, autosize=PLOT_SIZE)


def clinical_chart(table: pd.DataFrame) -> alt.FacetChart:
    """Sensitivity, specificity, PPV and NPV with their 95 % CIs, per cut-off and model (a forest plot)."""
    data = table.dropna(subset=["value"])
    stat = alt.Y("stat:N", title=None, sort=["sensitivity", "specificity", "ppv", "npv"])
    base = alt.Chart().encode(y=stat, yOffset=alt.YOffset("model:N"), color=_model_colour())
    rules = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("low:Q", scale=alt.Scale(domain=[0, 1]), title=None), x2="high:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="value:Q", tooltip=["model", "rule", "stat", _number("value"), _number("low"), _number("high"),
                              _number("prevalence", ".1%")])
    return alt.layer(rules, points, data=data).properties(width=260, height=130).facet(
        facet=alt.Facet("rule:N", title=None, sort=list(dict.fromkeys(data["rule"]))), columns=3)


def daily_flags_chart(table: pd.DataFrame) -> alt.Chart:
    """Predictions per UTC day, stacked by flag."""
    return alt.Chart(table).mark_bar().encode(
        x=alt.X("yearmonthdate(day):T", title="day (UTC)"), y=alt.Y("n:Q", title="predictions"),
        color=alt.Color("flag:N", scale=FLAG_SCALE, legend=_legend("flag")), order=alt.Order("flag_rank:Q"),
        tooltip=[alt.Tooltip("day:T", title="day"), "flag", "n"],
    ).transform_calculate(
        flag_rank=f"indexof({list(FLAG_COLOURS)}, datum.flag)"
    ).properties(height=220, title="Predictions per day", autosize=PLOT_SIZE)


def _by_region(table: pd.DataFrame, field: str, title: str, axis: alt.Axis | None = None) -> alt.Chart:
    """Bars of ``field`` per region (overall, true-K+ regions, shot regions), one per model."""
    return alt.Chart(table.dropna(subset=["mae"])).mark_bar().encode(
        x=alt.X("region:N", sort=["overall", *CLINICAL_REGIONS, *REGIONS], title=None,
                axis=alt.Axis(labelAngle=0)),
        xOffset="model:N", y=alt.Y(f"{field}:Q", title=title, axis=axis or alt.Axis()), color=_model_colour(),
        tooltip=["model", "region", "n", _number("mae"), _number("bias", "+.3f"), _number("coverage", ".1%")])


def confirmed_error_chart(table: pd.DataFrame) -> alt.Chart:
    """MAE of lab-confirmed estimates by shot region of the lab value, one bar per model."""
    return _by_region(table, "mae", "MAE vs lab (mmol/L)").properties(
        height=220, title="Error on lab-confirmed predictions", autosize=PLOT_SIZE)


def coverage_chart(table: pd.DataFrame, nominal: float) -> alt.LayerChart | alt.FacetChart:
    """Share of lab values inside the served prediction set by true-K+ and shot region of the lab value,
    against the nominal coverage (which the sets guarantee in each true-K+ region)."""
    bars = _by_region(table, "coverage", "labs inside the set", alt.Axis(format="%"))
    target = alt.Chart(pd.DataFrame({"nominal": [nominal]})).mark_rule(color="black", strokeDash=[5, 4])
    return alt.layer(bars, target.encode(y="nominal:Q")).properties(
        height=220, title=f"Prediction-set coverage (dashed: nominal {nominal:.0%})", autosize=PLOT_SIZE)


def set_coverage_chart(table: pd.DataFrame, nominal: float) -> alt.LayerChart | alt.FacetChart:
    """Prediction-set coverage on an evaluation split by true-K+ and shot region (bootstrap 95 % CI as a
    rule), one bar per model, against the nominal level."""
    data = table.dropna(subset=["coverage"])
    x = alt.X("region:N", sort=["overall", *CLINICAL_REGIONS, *REGIONS], title=None, axis=alt.Axis(labelAngle=0))
    tooltip = ["model", "region", "n", _number("coverage", ".1%"), _number("ci_low", ".1%"),
               _number("ci_high", ".1%"), _number("mean_set_size", ".2f")]
    bars = alt.Chart(data).mark_bar().encode(
        x=x, xOffset="model:N", y=alt.Y("coverage:Q", title="true K⁺ inside the set", axis=alt.Axis(format="%"),
                                        scale=alt.Scale(domain=[0, 1])),
        color=_model_colour(), tooltip=tooltip)
    ci = alt.Chart(data).mark_rule(color="black").encode(x=x, xOffset="model:N", y="ci_low:Q", y2="ci_high:Q")
    target = alt.Chart(pd.DataFrame({"nominal": [nominal]})).mark_rule(color="black", strokeDash=[5, 4])
    return alt.layer(bars, ci, target.encode(y="nominal:Q")).properties(
        height=240, title=f"Prediction-set coverage (dashed: nominal {nominal:.0%})", autosize=PLOT_SIZE)


def reliability_chart(table: pd.DataFrame) -> alt.LayerChart | alt.FacetChart:
    """Reliability diagram: observed frequency against mean predicted probability per decile bin, one line
    per model and event; the diagonal is perfect calibration."""
    diagonal = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(color="grey", strokeDash=[4, 4]).encode(
        x="p:Q", y="p:Q")
    lines = alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("predicted:Q", title="mean predicted probability", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("observed:Q", title="observed frequency", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("event:N", title="event"), strokeDash=alt.StrokeDash("model:N", title="model"),
        tooltip=["model", "event", "n", _number("predicted"), _number("observed")])
    return alt.layer(diagonal, lines).properties(height=300, title="Reliability of the event probabilities",
                                                 autosize=PLOT_SIZE)


def ecg_chart(trace: pd.DataFrame, height_per_lead: int = 55) -> alt.LayerChart | alt.FacetChart:
    """The stored ECG, leads stacked top to bottom ``LEAD_SPACING_MV`` apart, in mV against seconds."""
    leads = list(dict.fromkeys(trace["lead"]))
    offsets = {lead: -LEAD_SPACING_MV * i for i, lead in enumerate(leads)}
    data = trace.assign(y=trace["mv"] + trace["lead"].map(offsets))
    y_scale = alt.Scale(domain=[-LEAD_SPACING_MV * (len(leads) - 0.5), LEAD_SPACING_MV * 0.5], nice=False)
    lines = alt.Chart(data).mark_line(strokeWidth=0.8, color="#202020").encode(
        x=alt.X("t:Q", title="time (s)", scale=alt.Scale(nice=False)),
        y=alt.Y("y:Q", scale=y_scale, axis=None), detail="lead:N")
    names = pd.DataFrame({"lead": leads, "y": [offsets[lead] + 0.9 for lead in leads],
                          "t": [float(trace["t"].min())] * len(leads)})
    labels = alt.Chart(names).mark_text(align="left", dx=2, fontWeight="bold", color="#b2182b").encode(
        x="t:Q", y=alt.Y("y:Q", scale=y_scale), text="lead:N")
    return alt.layer(lines, labels).properties(height=height_per_lead * len(leads), title="Stored ECG (mV)",
                                               autosize=PLOT_SIZE)
