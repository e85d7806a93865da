"""Display conventions shared by the evaluation report (matplotlib, ``training``) and the dashboard
(Vega-Lite): one colour per shot region, the shaded clinical K+ zones and the K+ axis label, so a plot
means the same in both places. Colours are hex strings, which both libraries accept."""

from __future__ import annotations

import math

from ecg_k.potassium import DEFAULT_THRESHOLDS, ShotRegion, Thresholds

REGION_COLOURS: dict[str, str] = {ShotRegion.MANY: "#1b9e77", ShotRegion.MEDIAN: "#7570b3", ShotRegion.FEW: "#d95f02"}
LABEL_COLOUR, PREDICTION_COLOUR = "#ff7f0e", "#1f77b4"
K_AXIS = "K⁺ (mmol/L)"


def clinical_zones(thresholds: Thresholds = DEFAULT_THRESHOLDS) -> tuple[tuple[str, float, float, str], ...]:
    """(label, low, high, colour) of the shaded K+ zones of ``thresholds``; the normal range is unshaded."""
    t = thresholds
    return (
        (f"critical hypo (< {t.critical_low:g})", -math.inf, t.critical_low, "#2166ac"),
        (f"hypo (≤ {t.hypokalemia:g})", t.critical_low, t.hypokalemia, "#92c5de"),
        (f"hyper (≥ {t.hyperkalemia:g})", t.hyperkalemia, t.critical_high, "#f4a582"),
        (f"critical hyper (> {t.critical_high:g})", t.critical_high, math.inf, "#b2182b"),
    )


CLINICAL_ZONES = clinical_zones()
"""The zones of the default thresholds (DESIGN.md flags)."""
