"""ConR, contrastive regularisation for imbalanced regression (Keramati et al., ICLR 2024;
``BorealisAI/ConR``; method.md section 10).

Two augmented views of the batch go through the model; over their 2B features (L2-normalised), anchor i has
positives ``|y_i - y_j| <= w`` (j != i) and negatives ``|y_i - y_j| > w`` with ``|pred_i - pred_j| <= w``
(predictions detached). The loss of anchor i is InfoNCE averaged over its positives, with each negative
pushed by ``exp(e * |y_i - y_j|)``; anchors without a negative contribute 0; ``loss += beta * ConR``.

Training as the official ``train.py`` does: the regression loss sees the **clean** batch; the two augmented
views go through the model in a second forward and only ConR sees their features (and their detached
predictions). K+ defaults (bin equivalence from the AgeDB defaults w 1 year, beta 4, e 0.01 per year):
``window`` 0.1 mmol/L (one bin), ``beta`` 4, ``eta`` 0.1 per mmol/L, ``temperature`` 0.07 (the official
function hard-codes ``t = 0.07`` and ignores its ``-t`` argument, 0.2 by default; 0.07 is what it computes).
The paper built the ECG views with Gaussian noise of unknown std: ``noise_std`` (default 0.1, in units of the
per-record z-scored signal) is a project guess.

``denominator="official"`` (default) is what the official code computes: it exponentiates the masked logit
matrix, so besides the positives and the pushed negatives every other entry of the row (self included) adds
``exp(0) = 1``. ``"paper"`` (a named variant) keeps only positives and pushed negatives.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

_LABEL_TOLERANCE = 1e-6
"""Labels 0.1 apart count as within a 0.1 window despite float error (4.2 - 4.1 = 0.10000000000000053)."""
_MASKED_LOGIT = -1e9
"""Stands for exp(.) = 0 in the log-sum-exp; finite so that masked rows keep finite gradients."""
OFFICIAL_TEMPERATURE = 0.07
"""The temperature the official ConR function uses whatever ``-t`` says."""
Denominator = Literal["official", "paper"]


class ConR(torch.nn.Module):
    """``beta * ConR(features, labels, preds, weights)`` over the concatenated features of the two views."""

    def __init__(
        self,
        *,
        window: float = 0.1,
        beta: float = 4.0,
        eta: float = 0.1,
        temperature: float = OFFICIAL_TEMPERATURE,
        noise_std: float = 0.1,
        denominator: Denominator = "official",
    ) -> None:
        super().__init__()
        if window < 0 or beta < 0 or eta < 0 or noise_std < 0:
            raise ValueError("window, beta, eta and noise_std must be >= 0")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if denominator not in ("official", "paper"):
            raise ValueError(f"unknown ConR denominator {denominator!r}; choose official or paper")
        self.window, self.beta, self.eta, self.noise_std = window, beta, eta, noise_std
        self.temperature, self.denominator = temperature, denominator

    def make_views(self, signals: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Two Gaussian-noise views of a batch, concatenated along dim 0: shape (2B, ...)."""
        shape = (2, *signals.shape)
        noise = torch.randn(shape, generator=generator, device=signals.device, dtype=signals.dtype)
        return (signals.unsqueeze(0) + self.noise_std * noise).reshape(-1, *signals.shape[1:])

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        preds: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``features`` (N, ...) of both views, ``labels``/``preds``/``weights`` (N,) or (N, 1)."""
        n = features.shape[0]
        device = features.device
        y = labels.detach().reshape(-1).to(device, torch.float64)
        p = preds.detach().reshape(-1).to(device, torch.float64)
        w = torch.ones(n, device=device) if weights is None else weights.detach().reshape(-1).to(device)
        w = w.float()
        if not y.shape[0] == p.shape[0] == w.shape[0] == n:
            raise ValueError(f"features, labels, preds and weights must have {n} rows")
        z = F.normalize(features.reshape(n, -1).float(), dim=1)
        logits = z @ z.T / self.temperature
        label_gap = (y[:, None] - y[None, :]).abs()
        close = label_gap <= self.window + _LABEL_TOLERANCE
        positive = close & ~torch.eye(n, dtype=torch.bool, device=device)
        negative = ~close & ((p[:, None] - p[None, :]).abs() <= self.window)
        log_push = (self.eta * label_gap).float() + w[:, None].log()
        masked = torch.where(positive, logits, torch.where(negative, logits + log_push, _MASKED_LOGIT))
        if self.denominator == "official":  # exp(0) = 1 for each of the row's n - n_positive other entries
            others = (n - positive.sum(dim=1, keepdim=True)).to(masked.dtype)
            masked = torch.cat([masked, torch.where(others > 0, others.log(), _MASKED_LOGIT)], dim=1)
        log_denominator = torch.logsumexp(masked, dim=1, keepdim=True)
        per_anchor = ((log_denominator - logits) * positive).sum(dim=1) / positive.sum(dim=1).clamp_min(1)
        loss = (w * per_anchor * negative.any(dim=1)).mean()
        return self.beta * loss
