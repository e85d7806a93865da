"""Feature distribution smoothing (FDS, Yang et al. 2021; method.md section 10).

Per 0.1 mmol/L bucket the module keeps a running mean and variance of the pooled features (EMA, momentum
0.9), updated at the end of each epoch >= ``start_update`` from a no-grad pass over the training set. At the
start of the next epoch the statistics are frozen and smoothed along the buckets (kernel normalised to sum 1,
reflect padding). From epoch ``start_smooth`` on, training features are recalibrated before the head:
``z' = (z - mu_b) * sqrt(clamp(var~_b / var_b, 0.1, 10)) + mu~_b``.

Defaults rescaled for K+ (bin equivalence): 86 buckets over 1.5-10.0 (``bucket_start`` 0; the edge buckets
pool labels outside the range), gaussian ks 5, sigma 2 bins (README; train.py uses 9/1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ecg_k.losses.weighting import LABEL_STEP, MAX_LABEL, MIN_LABEL, Kernel, kernel_window, label_grid


class FDS(torch.nn.Module):
    """Feature statistics per label bucket and their smoothed calibration (see the module docstring).

    Call order per epoch ``e``: ``update_last_epoch_stats(e)`` at the start, ``smooth(features, labels, e)``
    in the training forward (identity in eval mode or before ``start_smooth``), then
    ``update_running_stats(all_features, all_labels, e)`` at the end, with the whole training set's features.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    smoothed_mean: torch.Tensor
    smoothed_var: torch.Tensor
    frozen_mean: torch.Tensor
    frozen_var: torch.Tensor
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
        if self.half_ks >= self.n_buckets:
            raise ValueError(f"a kernel of {ks} bins is too wide for {self.n_buckets} buckets (reflect pad)")
        window = torch.as_tensor(kernel_window(kernel, ks, sigma, "sum"), dtype=torch.float32)
        self.register_buffer("window", window.view(1, 1, -1))
        shape = (self.n_buckets, feature_dim)
        for prefix in ("running", "frozen", "smoothed"):
            self.register_buffer(f"{prefix}_mean", torch.zeros(shape))
            self.register_buffer(f"{prefix}_var", torch.ones(shape))
        self.register_buffer("epoch", torch.tensor(start_update))

    def buckets(self, labels: torch.Tensor) -> torch.Tensor:
        """Bucket index of each label (0.1 mmol/L bins, edges pooled), same device, long."""
        index = torch.round(labels.reshape(-1).double() / self.step).long() - self.offset
        return index.clamp(0, self.n_buckets - 1)

    def _smoothed(self, stats: torch.Tensor) -> torch.Tensor:
        padded = F.pad(stats.T.unsqueeze(1), (self.half_ks, self.half_ks), mode="reflect")
        return F.conv1d(padded, self.window.to(stats.dtype)).squeeze(1).T

    @torch.no_grad()
    def update_last_epoch_stats(self, epoch: int) -> None:
        """Start of ``epoch``: freeze last epoch's running statistics and smooth them along the buckets."""
        if epoch != int(self.epoch) + 1:
            return
        self.epoch.fill_(epoch)
        self.frozen_mean.copy_(self.running_mean)
        self.frozen_var.copy_(self.running_var)
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
            self.running_mean[bucket] = (1 - factor) * rows.mean(dim=0) + factor * self.running_mean[bucket]
            self.running_var[bucket] = (1 - factor) * var + factor * self.running_var[bucket]

    def smooth(self, features: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """Recalibrated training features (a new tensor; gradients flow through the affine map).

        Feature dimensions whose frozen variance is 0 are left unchanged, as in ``calibrate_mean_var``.
        """
        if not self.training or epoch < self.start_smooth:
            return features
        buckets = self.buckets(labels).to(features.device)
        mean, var = self.frozen_mean[buckets], self.frozen_var[buckets]
        factor = (self.smoothed_var[buckets] / var.clamp_min(1e-30)).clamp(*self.calibration_clip)
        calibrated = (features - mean) * factor.sqrt() + self.smoothed_mean[buckets]
        return torch.where(var > 0, calibrated.to(features.dtype), features)
