"""Focal-R, the regression version of the focal loss (Yang et al., ICML 2021, the DIR paper; method.md
section 10).

Each sample's error is scaled by a factor in [0, 1) that grows with the error, so well-fitted (mostly
many-shot) samples count less. The official ``weighted_focal_l1_loss`` computes, per sample,

    |e| * (2 * sigmoid(beta * |e|) - 1) ** gamma      (``activation="sigmoid"``, the default)
    |e| * tanh(beta * |e|) ** gamma                   (``activation="tanh"``)

and the mean over the batch (``base="l2"`` scales ``e**2`` instead, ``weighted_focal_mse_loss``). The paper
writes the factor as ``sigmoid(|beta * e|) ** gamma``, which lies in [0.5, 1); the default follows the code
(``2 * sigmoid - 1`` maps a zero error to 0, as the paper's text "maps the absolute error into [0, 1]" says).

K+ defaults: the official ``beta = 0.2`` is per year of error; by the bin equivalence of method.md section 10
(1 year <-> one 0.1 mmol/L bin) it becomes ``beta = 2.0`` per mmol/L; ``gamma = 1`` is unit-free.
"""

from __future__ import annotations

from typing import Literal

import torch

Activation = Literal["sigmoid", "tanh"]
Base = Literal["l1", "l2"]


def focal_r(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 1.0,
    activation: Activation = "sigmoid",
    base: Base = "l1",
) -> torch.Tensor:
    """Elementwise Focal-R loss (same shape as ``pred``): the base error times the focal factor."""
    if beta <= 0 or gamma < 0:
        raise ValueError(f"Focal-R needs beta > 0 and gamma >= 0, got beta={beta}, gamma={gamma}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} and {tuple(target.shape)}")
    error = (pred - target).abs()
    if activation == "sigmoid":
        factor = 2 * torch.sigmoid(beta * error) - 1
    elif activation == "tanh":
        factor = torch.tanh(beta * error)
    else:
        raise ValueError(f"unknown Focal-R activation {activation!r}; choose sigmoid or tanh")
    if base not in ("l1", "l2"):
        raise ValueError(f"unknown Focal-R base {base!r}; choose l1 or l2")
    return (error if base == "l1" else error.square()) * factor.pow(gamma)
