"""Feature distribution smoothing (FDS, Yang et al. 2021; ``YyzHarry/imbalanced-regression``; method.md 10).

Per 0.1 mmol/L bucket the module keeps a running mean and variance of the pooled features (EMA, momentum
0.9; the first update at ``start_update`` replaces). The schedule is the official one:

- at the **end** of epoch e (after its optimiser steps) the trainer runs the whole training set through the
  model **in train mode** without gradients (as ``train()`` in the official ``train.py`` does: BN uses batch
  statistics, dropout is on), collects the features the head would see, and calls
  ``update_last_epoch_stats(e)`` then ``update_running_stats(features, labels, e)``;
- ``update_last_epoch_stats(e)`` (from e = start_update + 1 on) smooths the running statistics as they stand
  (those of epochs <= e-1) along the buckets (kernel normalised to sum 1, reflect padding);
- in the training forward of epoch e >= ``start_smooth``:
  ``z' = (z - mu_b) * sqrt(clamp(var~_b / var_b, 0.1, 10)) + mu~_b`` with mu_b/var_b the *current* running
  statistics (the official ``running_mean_last_epoch`` is the same tensor as ``running_mean``, so it already
  holds epoch e-1) and mu~_b/var~_b the smoothed ones (epoch e-2). Until the first smoothing the
  calibration is the identity, as the official initial buffers make it.

Named deviations (both in README "Deviations"):

- **populated range**: the buckets span the training labels' bins only (``min_label``/``max_label`` are set
  from the training labels by the trainer); labels outside are pooled into the edge buckets, as the official
  edge buckets pool. The official range is fixed (0-100 years), and at K+ scale 41 of 86 buckets over
  1.5-10.0 are empty.
- **empty buckets never smooth into populated ones**: the smoothing kernel is renormalised over the buckets
  that have held training samples. The official code smooths the default statistics (mean 0, var 1) of
  empty buckets into their neighbours, which shifted the few-shot feature means by -0.7 to -1.8.

Defaults rescaled for K+ (bin equivalence): gaussian ks 5, sigma 2 bins (README; train.py uses 9/1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ecg_k.losses.weighting import Kernel, kernel_window, label_grid
from ecg_k.potassium import LABEL_STEP, MAX_LABEL, MIN_LABEL


class FDS(torch.nn.Module):
    """Feature statistics per label bucket and their smoothed calibration (see the module docstring)."""

    window: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor
    smoothed_mean: torch.Tensor
    smoothed_var: torch.Tensor
    samples_tracked: torch.Tensor
    epoch: torch.Tensor

    def __init__(
        self,
        feature_dim: int,
        *,
        start_update: int = 0,
        start_smooth: int = 1,
        kernel: Kernel = "gaussian",
        ks: int = 5,
        sigma: float = 2.0,
        momentum: float = 0.9,
        calibration_clip: tuple[float, float] = (0.1, 10.0),
        min_label: float = MIN_LABEL,
        max_label: float = MAX_LABEL,
        step: float = LABEL_STEP,
    ) -> None:
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if start_smooth <= start_update:
            raise ValueError(f"start_smooth ({start_smooth}) must come after start_update ({start_update})")
        self.feature_dim, self.momentum = feature_dim, momentum
        self.start_update, self.start_smooth = start_update, start_smooth
        self.calibration_clip = calibration_clip
        self.offset, self.step = int(round(min_label / step)), step
        self.n_buckets = len(label_grid(min_label, max_label, step))
        self.half_ks = (ks - 1) // 2
        window = torch.as_tensor(kernel_window(kernel, ks, sigma, "sum"), dtype=torch.float32)
        self.register_buffer("window", window.view(1, 1, -1))
        shape = (self.n_buckets, feature_dim)
        for prefix in ("running", "smoothed"):
            self.register_buffer(f"{prefix}_mean", torch.zeros(shape))
            self.register_buffer(f"{prefix}_var", torch.ones(shape))
        self.register_buffer("samples_tracked", torch.zeros(self.n_buckets))
        self.register_buffer("epoch", torch.tensor(start_update))

    def buckets(self, labels: torch.Tensor) -> torch.Tensor:
        """Bucket index of each label (0.1 mmol/L bins, edges pooled), same device, long."""
        index = torch.round(labels.reshape(-1).double() / self.step).long() - self.offset
        return index.clamp(0, self.n_buckets - 1)

    def _smoothed(self, stats: torch.Tensor) -> torch.Tensor:
        """Kernel smoothing along the buckets over the populated buckets only (reflect padding); a bucket
        with no populated neighbour within the kernel keeps its value."""
        populated = (self.samples_tracked > 0).to(stats.dtype)[:, None].expand_as(stats)
        if self.half_ks == 0 or self.n_buckets == 1:
            return stats.clone()
        pad = min(self.half_ks, self.n_buckets - 1)

        def convolve(values: torch.Tensor) -> torch.Tensor:
            padded = F.pad(values.T.unsqueeze(1), (pad, pad), mode="reflect")
            if pad < self.half_ks:  # fewer buckets than the kernel is wide: zero beyond the reflection
                padded = F.pad(padded, (self.half_ks - pad, self.half_ks - pad))
            return F.conv1d(padded, self.window.to(values.dtype)).squeeze(1).T

        weight = convolve(populated)
        smoothed = convolve(stats * populated) / weight.clamp_min(1e-12)
        return torch.where(weight > 0, smoothed, stats)

    @torch.no_grad()
    def update_last_epoch_stats(self, epoch: int) -> None:
        """End of ``epoch``, before :meth:`update_running_stats`: smooth the running statistics as they stand
        (official: only when ``epoch`` is the stored epoch + 1)."""
        if epoch != int(self.epoch) + 1:
            return
        self.epoch.fill_(epoch)
        self.smoothed_mean.copy_(self._smoothed(self.running_mean))
        self.smoothed_var.copy_(self._smoothed(self.running_var))

    @torch.no_grad()
    def update_running_stats(self, features: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
        """End of ``epoch``: EMA of each bucket's feature mean and unbiased variance (the first replaces)."""
        if epoch < int(self.epoch):
            return
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must have shape (N, {self.feature_dim}), got {tuple(features.shape)}")
        buckets = self.buckets(labels).to(features.device)
        if buckets.shape[0] != features.shape[0]:
            raise ValueError(f"{features.shape[0]} feature rows but {buckets.shape[0]} labels")
        factor = 0.0 if epoch == self.start_update else self.momentum
        for bucket in torch.unique(buckets).tolist():
            rows = features[buckets == bucket].to(self.running_mean.dtype)
            var = rows.var(dim=0, unbiased=rows.shape[0] > 1)
            self.samples_tracked[bucket] += rows.shape[0]
            self.running_mean[bucket] = (1 - factor) * rows.mean(dim=0) + factor * self.running_mean[bucket]
            self.running_var[bucket] = (1 - factor) * var + factor * self.running_var[bucket]

    def smooth(self, features: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """Recalibrated training features (a new tensor; gradients flow through the affine map).

        Identity in eval mode, before ``start_smooth`` and before the first smoothing. Feature dimensions
        whose variance is 0 are left unchanged, as in the official ``calibrate_mean_var``.
        """
        if not self.training or epoch < self.start_smooth or int(self.epoch) <= self.start_update:
            return features
        buckets = self.buckets(labels).to(features.device)
        mean, var = self.running_mean[buckets], self.running_var[buckets]
        factor = (self.smoothed_var[buckets] / var.clamp_min(1e-30)).clamp(*self.calibration_clip)
        calibrated = (features - mean) * factor.sqrt() + self.smoothed_mean[buckets]
        return torch.where(var > 0, calibrated.to(features.dtype), features)
