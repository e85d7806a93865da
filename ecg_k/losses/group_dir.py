"""Group-DIR (Pu et al., AAAI 2025, "Leveraging Group Classification with Descending Soft Labeling for Deep
Imbalanced Regression"), written from the paper (no official code was used).

The label range is cut into |G| contiguous groups (:func:`group_edges`); the model (:class:`GroupHead`) has a
group classifier and one expert regressor per group. Training loss (the paper's Eq. 5,
``L_grc + lambda_1 L_reg + lambda_2 L_soft``), divided by ``lambda_1`` so that the regression term keeps the
project's form (elementwise L1 through the phase, like every other method; Adam is insensitive to the scale):

- ``L_reg``: the error of the expert of each sample's *true* group (Eq. 3; L1 in mmol/L here, the paper's
  Eq. 3 is MSE, and its appendix uses MSE and MAE);
- ``L_grc`` (:func:`ordinal_group_contrastive_loss`, Eq. 2): for anchor i and every j != i,
  ``-log(s_ij / sum_{k != i, d(g_i, g_k) >= d(g_i, g_j)} s_ik)`` with ``s = exp(cos / t)`` on the pooled
  backbone features, averaged over the ``B (B - 1)`` pairs; temperature ``t = 2.5`` (the paper's grid search);
- ``L_soft`` (:func:`soft_group_labels`, Eq. 4): cross-entropy of the group logits against the symmetric
  descending soft label ``softmax(|G| - beta |j - g|)`` (``beta = 1``), averaged over the batch (Eq. 4 sums).

Defaults ``lambda_1 = 0.5``, ``lambda_2 = 1`` are the best of the paper's Table 6 (AgeDB, 25 groups). An L1
error in mmol/L gives the backbone a gradient of the same order as the paper's ``0.5 * MSE`` in years at its
error scale, so the weights carry over without rescaling. Groups: the paper uses 20 (ablation 2-50); the
default here is chosen on val bMAE (README, benchmark).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from ecg_k.models.group_head import GroupHead
from ecg_k.potassium import LABEL_STEP


def group_edges(train_labels: ArrayLike, n_groups: int, step: float = LABEL_STEP) -> tuple[float, ...]:
    """Edges of ``n_groups`` contiguous groups of (nearly) equal width in bins over the populated training
    range; edges sit half a bin between label values, so a label on the 0.1 grid never lies on an edge."""
    bins = np.rint(np.asarray(train_labels, dtype=np.float64).ravel() / step).astype(np.int64)
    if bins.size == 0:
        raise ValueError("no training labels to place the groups on")
    first, n_bins = int(bins.min()), int(bins.max() - bins.min()) + 1
    if not 2 <= n_groups <= n_bins:
        raise ValueError(f"n_groups must be between 2 and the {n_bins} populated 0.1 bins, got {n_groups}")
    splits = np.rint(np.arange(n_groups + 1) * n_bins / n_groups).astype(np.int64)
    return tuple(round((first - 0.5 + s) * step, 6) for s in splits)


def group_of(labels: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Group index of each label (labels beyond the outer edges go to the edge groups), ``long``."""
    inner = edges[1:-1].to(labels.device, torch.float64).contiguous()
    return torch.bucketize(labels.detach().double().contiguous(), inner, right=True)


def soft_group_labels(groups: torch.Tensor, n_groups: int, beta: float = 1.0) -> torch.Tensor:
    """Symmetric descending soft labels ``softmax(|G| - beta * |j - g|)`` over j, shape ``(B, n_groups)``."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    j = torch.arange(n_groups, device=groups.device)
    return torch.softmax(n_groups - beta * (j[None, :] - groups.long()[:, None]).abs().float(), dim=1)


def ordinal_group_contrastive_loss(
    features: torch.Tensor, groups: torch.Tensor, temperature: float = 2.5
) -> torch.Tensor:
    """The paper's Eq. 2 (L1 distance between group indices, cosine similarity), mean over ordered pairs.

    The denominator of pair (i, j) sums ``s_ik`` over every ``k != i`` at least as far from i's group as j is;
    it is computed per anchor from the sums per group distance, reverse-cumulated (O(B^2 + B |G|) memory)."""
    n = features.shape[0]
    if n < 2:
        return features.sum() * 0
    z = F.normalize(features.reshape(n, -1).float(), dim=1)
    logits = z @ z.T / temperature
    distance = (groups.long()[:, None] - groups.long()[None, :]).abs()
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=z.device)
    exp = torch.exp(logits) * off_diagonal
    per_distance = torch.zeros(n, int(distance.max()) + 1, device=z.device).scatter_add_(1, distance, exp)
    at_least = per_distance.flip(1).cumsum(1).flip(1)
    log_ratio = logits - torch.log(at_least.gather(1, distance))
    return -(log_ratio * off_diagonal).sum() / (n * (n - 1))


class GroupDIRLoss(nn.Module):
    """The non-regression terms of Group-DIR divided by ``lambda_1``, and the true-group routing."""

    def __init__(self, *, n_groups: int, temperature: float = 2.5, beta: float = 1.0,
                 lambda_reg: float = 0.5, lambda_soft: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0 or lambda_reg <= 0 or lambda_soft < 0:
            raise ValueError("need temperature > 0, lambda_reg > 0 and lambda_soft >= 0")
        self.n_groups, self.temperature, self.beta = n_groups, temperature, beta
        self.lambda_reg, self.lambda_soft = lambda_reg, lambda_soft

    def forward(self, features: torch.Tensor, labels: torch.Tensor, head: nn.Module,
                epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(estimate of the true group's expert, (L_grc + lambda_2 L_soft) / lambda_1)`` for a batch."""
        if not isinstance(head, GroupHead) or head.n_groups != self.n_groups:
            raise ValueError(f"Group-DIR needs a Net1D with a {self.n_groups}-group head (head='groupdir')")
        features = features.float()
        groups = group_of(labels.reshape(-1), head.edges)
        soft = soft_group_labels(groups, self.n_groups, self.beta)
        soft_ce = -(soft * torch.log_softmax(head.logits(features), dim=1)).sum(dim=1).mean()
        contrastive = ordinal_group_contrastive_loss(features, groups, self.temperature)
        return head.route(features, groups), (contrastive + self.lambda_soft * soft_ce) / self.lambda_reg
