"""SRL: surrogate-driven representation learning with geometric constraints (Dong, Wu et al., CVPR 2025,
"Improve Representation for Imbalanced Regression through Geometric Constraints"; official code
``yilei-wu/imbalanced-regression``, ``dfr.py``).

A training-only projector maps the pooled Net1D features to ``projector_dim`` dimensions, L2-normalised
(``z``; the official ResNet's ``projector``, dropped at export). Per batch, the centroid of the ``z`` of each
0.1 mmol/L bin present is taken; bins missing from the batch are filled from a *surrogate* of every bin
(a momentum average of the epoch's centroids, updated at epoch end), so the losses always see the whole
*trace* (the centroids in label order). Bins run over the populated training range only (lowest to highest
training bin); a bin inside it that has never held a sample is left out of the trace, which is why the
homogeneity term divides by the label gap.

- enveloping (``uniformity_loss`` in the code): ``1 - mean_p max_k cos(p, t_k)`` over fixed random unit
  vectors ``p`` (the softened share of the sphere the trace's tube covers);
- homogeneity: ``sum_k ||t_{k+1} - t_k||^2 / gap_k`` (gap in bins) plus ``variance_weight * var(cos(t_{k+1},
  t_k))``, the variance term of the official ``smooth_loss``;
- contrastive (``regression_contrastive_loss``): cross-entropy of ``cos(z_i, t_k) / temperature`` over the
  trace with the sample's own bin as the target (the trace detached, as in the code).

The total is ``L1 + w_con * con + w_env * env + w_homo * homo``; the first epoch is plain regression (the
paper: the surrogate does not exist yet), so the three terms start at epoch 1.

Where the official code and the paper disagree (followed choice first):

- the sign of the homogeneity term: the paper minimises the trace's length, as the AgeDB ``smooth_loss``
  (``alpha = -1``: maximise adjacent cosines) does; the STS-B and IMDB-WIKI copies use ``alpha = +1``, which
  *lengthens* the trace. We follow the paper and AgeDB. Since ``||a - b||^2 = 2 - 2 cos(a, b)`` for unit
  vectors, ``homogeneity_weight = w3 / 2`` reproduces the code's gradient for its weight ``w3``, and
  ``variance_weight = 0.2`` its ``beta = 0.1`` on the variance;
- the first epoch: the STS-B code computes the terms from epoch 0 with a zero surrogate; the paper (and we)
  train plain regression first;
- the surrogate: the STS-B code reuses FDS's running mean of a no-grad pass over the training set at epoch
  end (momentum 0.9); we average the ``z`` the epoch's own training steps produced (no extra pass) and apply
  the paper's momentum update ``S <- alpha * S + (1 - alpha) * S_epoch`` (alpha 0.9); a bin's first value is
  its epoch mean. Under DDP the surrogate and its accumulators are buffers, which DDP broadcasts from rank 0
  at every forward, so the surrogate follows rank 0's share of the epoch.

K+ defaults (AgeDB's ``evaluate.py`` defaults, rescaled): the geometric terms are unit-free while an L1 error
in mmol/L is a tenth of the same error counted in 0.1 mmol/L bins (1 year <-> one bin, method.md section
10), so the AgeDB weights ``w1 = 10`` (contrastive), ``w2 = 100`` (uniformity), ``w3 = 0.01`` (smooth)
become ``1.0``, ``10.0`` and ``0.01 / 10 / 2 = 5e-4``; temperature 0.3 and 2000 points as AgeDB; projector
dimension 128. (The STS-B setting, also 0.1 bins, has ``w = 1e-4, 1e-2, 1e-4`` and temperature 0.1 for an MSE
on labels divided by 5: a different loss scale, so it is not transplanted.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from ecg_k.potassium import LABEL_STEP


def random_unit_vectors(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``n`` points drawn uniformly on the unit sphere of ``R^dim`` (normalised Gaussians), reproducibly."""
    if n < 1 or dim < 2:
        raise ValueError(f"need n >= 1 points in dim >= 2, got n={n}, dim={dim}")
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def enveloping_loss(trace: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``1 - mean over points of the best cosine to the trace`` (rows of both are normalised here)."""
    cosine = F.normalize(points, dim=1) @ F.normalize(trace, dim=1).T
    return 1 - cosine.max(dim=1).values.mean()


def homogeneity_loss(trace: torch.Tensor, gaps: torch.Tensor, variance_weight: float = 0.2) -> torch.Tensor:
    """``sum_k ||t_{k+1} - t_k||^2 / gap_k + variance_weight * var_k cos(t_{k+1}, t_k)`` of a trace in label
    order (``gaps``: label distance of consecutive rows, ``(K - 1,)``)."""
    if trace.shape[0] < 2:
        return trace.sum() * 0
    if gaps.shape != (trace.shape[0] - 1,) or bool((gaps <= 0).any()):
        raise ValueError(f"need {trace.shape[0] - 1} positive gaps, got {gaps.tolist()}")
    step = trace[1:] - trace[:-1]
    length = (step.square().sum(dim=1) / gaps.to(trace.dtype)).sum()
    if trace.shape[0] < 3 or variance_weight == 0:
        return length
    unit = F.normalize(trace, dim=1)
    return length + variance_weight * (unit[1:] * unit[:-1]).sum(dim=1).var()


def centroid_contrastive_loss(
    z: torch.Tensor, positions: torch.Tensor, trace: torch.Tensor, temperature: float = 0.3
) -> torch.Tensor:
    """Cross-entropy of ``cos(z_i, t_k) / temperature`` over the trace rows, target ``positions[i]``."""
    logits = F.normalize(z, dim=1) @ F.normalize(trace, dim=1).T / temperature
    return F.cross_entropy(logits, positions.long())


class SRL(nn.Module):
    """Projector, surrogate and the weighted geometric terms of SRL (see the module docstring)."""

    surrogate: torch.Tensor
    filled: torch.Tensor
    epoch_sum: torch.Tensor
    epoch_count: torch.Tensor
    points: torch.Tensor

    def __init__(
        self,
        n_features: int,
        train_labels: ArrayLike,
        *,
        projector_dim: int = 128,
        n_points: int = 2000,
        temperature: float = 0.3,
        contrastive_weight: float = 1.0,
        enveloping_weight: float = 10.0,
        homogeneity_weight: float = 5e-4,
        variance_weight: float = 0.2,
        momentum: float = 0.9,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if temperature <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"need temperature > 0 and 0 <= momentum < 1, got {temperature}, {momentum}")
        if min(contrastive_weight, enveloping_weight, homogeneity_weight, variance_weight) < 0:
            raise ValueError("SRL weights must be >= 0")
        bins = np.rint(np.asarray(train_labels, dtype=np.float64).ravel() / LABEL_STEP).astype(np.int64)
        if bins.size == 0:
            raise ValueError("SRL needs training labels to fix its bins")
        self.first_bin = int(bins.min())
        self.n_bins = int(bins.max()) - self.first_bin + 1
        self.temperature, self.momentum = temperature, momentum
        self.weights = (contrastive_weight, enveloping_weight, homogeneity_weight)
        self.variance_weight = variance_weight
        self.projector = nn.Linear(n_features, projector_dim)
        self.register_buffer("points", random_unit_vectors(n_points, projector_dim, seed), persistent=False)
        self.register_buffer("surrogate", torch.zeros(self.n_bins, projector_dim))
        self.register_buffer("filled", torch.zeros(self.n_bins, dtype=torch.bool))
        self.register_buffer("epoch_sum", torch.zeros(self.n_bins, projector_dim))
        self.register_buffer("epoch_count", torch.zeros(self.n_bins))

    def bins_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Index of each label's bin in the populated range (labels outside it go to the edge bins)."""
        index = torch.round(labels.detach().double() / LABEL_STEP).long() - self.first_bin
        return index.clamp(0, self.n_bins - 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The normalised projection ``z`` of pooled features, float32."""
        return F.normalize(self.projector(features.float()), dim=1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, head: nn.Module,
                epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(head estimate, weighted geometric terms)`` for a batch; the head sees the features unchanged."""
        return head(features.float()).squeeze(-1), self.geometric(features, labels, epoch)

    def geometric(self, features: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """The weighted geometric terms for a batch (zero, with a graph, in the first epoch); in training mode
        the batch's projections are added to the epoch's per-bin sums."""
        z = self.project(features)
        bins = self.bins_of(labels.reshape(-1))
        ones = torch.ones_like(bins, dtype=z.dtype)
        counts = torch.zeros(self.n_bins, device=z.device).index_add_(0, bins, ones)
        sums = torch.zeros(self.n_bins, z.shape[1], device=z.device, dtype=z.dtype).index_add_(0, bins, z)
        if self.training:
            self.epoch_sum += sums.detach()
            self.epoch_count += counts
        if epoch == 0:
            return z.sum() * 0
        present = counts > 0
        centroids = sums / counts.clamp_min(1)[:, None]
        known = present | self.filled
        trace_all = torch.where(present[:, None], centroids, self.surrogate.to(z.dtype))
        trace = F.normalize(trace_all[known], dim=1)
        trace_bins = known.nonzero().squeeze(1)
        positions = torch.cumsum(known.long(), dim=0)[bins] - 1
        w_con, w_env, w_homo = self.weights
        gaps = (trace_bins[1:] - trace_bins[:-1]).to(z.dtype)
        return (w_con * centroid_contrastive_loss(z, positions, trace.detach(), self.temperature)
                + w_env * enveloping_loss(trace, self.points)
                + w_homo * homogeneity_loss(trace, gaps, self.variance_weight))

    @torch.no_grad()
    def update_surrogate(self) -> None:
        """Fold the finished epoch's centroids into the surrogate (momentum) and start a new epoch."""
        seen = self.epoch_count > 0
        if seen.any():
            mean = F.normalize(self.epoch_sum[seen] / self.epoch_count[seen, None], dim=1)
            old = self.surrogate[seen]
            momentum = self.momentum * old + (1 - self.momentum) * mean
            blended = torch.where(self.filled[seen, None], momentum, mean)
            self.surrogate[seen] = blended
            self.filled |= seen
        self.epoch_sum.zero_()
        self.epoch_count.zero_()
