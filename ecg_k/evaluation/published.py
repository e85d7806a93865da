"""Published numbers to compare against (the Dist Loss paper's ECG-Ka-DIR table)."""

from __future__ import annotations

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

