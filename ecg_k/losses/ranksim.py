"""RankSim (Gong et al., ICML 2022; ``BorealisAI/ranksim-imbalanced-regression``; method.md section 10).

For a batch, keep one random sample per 0.1 mmol/L label bin, take the cosine-similarity matrix S of their
features and, for each anchor i, the MSE between the ranks of S_i and the ranks of ``-|y_i - y|``. Feature
ranks are differentiated with blackbox differentiation (Vlastelica et al. 2020): the backward pass re-ranks
the input perturbed by ``lambda * grad`` and returns the rank difference divided by lambda. The per-anchor
losses are summed and the total is ``gamma * reg``. Defaults of the RankSim README runs: gamma 100,
lambda 2 (rank-based, so no rescaling for K+; labels are binned to 0.1 before the uniqueness step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ecg_k.potassium import LABEL_STEP


def normalised_ranks(values: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks of a (n, m) tensor, largest value first, as ``(rank + 1) / m`` in (0, 1]."""
    order = torch.argsort(values, dim=1, descending=True)
    return (torch.argsort(order, dim=1) + 1).to(values.dtype) / values.shape[1]


class _BlackboxRanks(torch.autograd.Function):
    """Row-wise normalised ranks with the blackbox-differentiation gradient (interpolation lambda)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, values: torch.Tensor, strength: float
    ) -> torch.Tensor:
        ranks = normalised_ranks(values)
        ctx.strength = strength  # type: ignore[attr-defined]
        ctx.save_for_backward(values, ranks)
        return ranks

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        values, ranks = ctx.saved_tensors  # type: ignore[attr-defined]
        strength: float = ctx.strength  # type: ignore[attr-defined]
        perturbed = normalised_ranks(values + strength * grad)
        return -(ranks - perturbed) / (strength + 1e-8), None


def one_per_bin(
    labels: torch.Tensor, step: float = LABEL_STEP, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices of one randomly chosen sample per label bin (``round(label / step)``), ordered by bin.

    ``generator`` (a CPU generator) makes the choice reproducible."""
    bins = torch.round(labels.reshape(-1).double() / step).long()
    order = torch.randperm(bins.shape[0], generator=generator, device="cpu").to(bins.device)
    unique, slot = torch.unique(bins[order], return_inverse=True)
    first = torch.full((unique.shape[0],), bins.shape[0], dtype=torch.long, device=bins.device)
    first = first.scatter_reduce(0, slot, torch.arange(bins.shape[0], device=bins.device), reduce="amin")
    return order[first]


def ranking_regularizer(
    features: torch.Tensor,
    labels: torch.Tensor,
    interpolation_lambda: float = 2.0,
    step: float = LABEL_STEP,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unweighted RankSim: the sum over anchors of MSE(rank(S_i), rank(-|y_i - y|)), one sample per bin."""
    if features.dim() < 2 or features.shape[0] != labels.reshape(-1).shape[0]:
        raise ValueError(
            f"features (B, ...) and labels (B,) must align: {tuple(features.shape)}, {tuple(labels.shape)}"
        )
    keep = one_per_bin(labels, step, generator)
    x = F.normalize(features[keep].reshape(keep.shape[0], -1), dim=1)
    bins = torch.round(labels.reshape(-1)[keep].double() / step)  # integer bins: equal distances tie exactly
    label_ranks = normalised_ranks(-(bins[:, None] - bins[None, :]).abs()).to(x.dtype)
    # torch leaves autograd.Function.apply untyped.
    feature_ranks = _BlackboxRanks.apply(x @ x.T, interpolation_lambda)  # type: ignore[no-untyped-call]
    return (feature_ranks - label_ranks).square().mean(dim=1).sum()


class RankSim(torch.nn.Module):
    """``gamma * ranking_regularizer(features, labels)``, added to the head loss (pooled features)."""

    def __init__(
        self, gamma: float = 100.0, interpolation_lambda: float = 2.0, step: float = LABEL_STEP
    ) -> None:
        super().__init__()
        if gamma < 0 or interpolation_lambda <= 0:
            raise ValueError(f"need gamma >= 0 and interpolation_lambda > 0: {gamma}, {interpolation_lambda}")
        self.gamma, self.interpolation_lambda, self.step = gamma, interpolation_lambda, step

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        reg = ranking_regularizer(features, labels, self.interpolation_lambda, self.step, generator)
        return self.gamma * reg
