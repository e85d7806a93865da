"""What a phase of a method minimises, assembled from its :class:`ecg_k.losses.methods.Phase`: sample weights,
the head loss (plain, focal, Balanced MSE or Dist Loss), a regulariser on the features (RankSim, ConR), and the
training-only parts that act inside the forward (FDS smoothing; SRL or Group-DIR)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_k.losses import FDS, BalancedMSELoss, ConR, DistLoss, LDSConfig, RankSim, SampleWeights
from ecg_k.losses.balanced_mse import LabelPrior, fit_label_gmm, histogram_prior, sigma_from_labels
from ecg_k.losses.focal_r import focal_r
from ecg_k.losses.group_dir import GroupDIRLoss
from ecg_k.losses.methods import Phase
from ecg_k.losses.srl import SRL
from training.config import TrainConfig

FeatureObjective = SRL | GroupDIRLoss
"""Training-only parts that need the features and the head inside the forward: ``(pred, extra loss)``."""


@dataclass
class Objective:
    """The loss of a phase: sample weights, head loss (plain, Balanced MSE or Dist Loss), regulariser."""

    phase: Phase
    weights: SampleWeights
    criterion: nn.Module | None
    ranksim: RankSim | None = None
    conr: ConR | None = None
    focal: dict[str, Any] = field(default_factory=dict)

    def head_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = None if self.phase.sample_weights == "none" else self.weights.for_labels(target)
        if isinstance(self.criterion, DistLoss):
            return self.criterion(pred, target, weights)
        if self.criterion is not None:
            return self.criterion(pred.float(), target)
        diff = pred.double() - target.double()
        if self.phase.loss == "focal":
            elementwise = focal_r(pred.double(), target.double(), **self.focal)
        else:
            elementwise = diff.abs() if self.phase.loss == "l1" else diff.square()
        return (elementwise if weights is None else elementwise * weights.double()).mean()


def build_objective(phase: Phase, config: TrainConfig, train_labels: np.ndarray, world: int) -> Objective:
    """Instantiate the parts a phase names, with the run's (documented) hyper-parameters."""
    w, r = config.weights, config.regularizers
    lds = LDSConfig(kernel=w.lds_kernel, ks=w.lds_ks, sigma=w.lds_sigma) if phase.lds else None
    weights = SampleWeights(train_labels, phase.sample_weights, clip=w.clip, lds=lds)
    criterion: nn.Module | None = None
    if phase.dist_loss:
        criterion = DistLoss.from_train_labels(
            train_labels, config.resolved_batch_size, world_size=world, loss=phase.loss,
            bw_method=config.dist.bw_method, rounding=config.dist.rounding, dist_weight=config.dist.dist_weight,
            dist_weighting=config.dist.dist_weighting, sort=config.dist.sort,
            regularization_strength=config.dist.regularization_strength,
        )
    elif phase.loss == "bmse":
        priors: dict[str, Callable[[np.ndarray], LabelPrior]] = {"bni": histogram_prior, "gai": fit_label_gmm}
        fit_prior = priors.get(r.bmse_mode)
        sigma = r.bmse_init_sigma if r.bmse_init_sigma is not None \
            else sigma_from_labels(train_labels, r.bmse_sigma_scale)
        criterion = BalancedMSELoss(r.bmse_mode, init_noise_sigma=sigma, fix_noise_sigma=r.bmse_fix_sigma,
                                    prior=fit_prior(train_labels) if fit_prior else None)
    ranksim = RankSim(gamma=r.ranksim_gamma, interpolation_lambda=r.ranksim_lambda) \
        if phase.regularizer == "ranksim" else None
    conr = ConR(window=r.conr_window, beta=r.conr_beta, eta=r.conr_eta, temperature=r.conr_temperature,
                noise_std=r.conr_noise_std, denominator=r.conr_denominator) if phase.regularizer == "conr" else None
    return Objective(phase, weights, criterion, ranksim, conr, config.focal.model_dump())


def build_fds(phase: Phase, config: TrainConfig, n_features: int, train_labels: np.ndarray) -> FDS | None:
    """FDS when the phase names it, its buckets over the populated training range only (see
    ``ecg_k.losses.fds``)."""
    if phase.regularizer != "fds":
        return None
    r = config.regularizers
    return FDS(n_features, start_update=r.fds_start_update, start_smooth=r.fds_start_smooth, ks=r.fds_ks,
               sigma=r.fds_sigma, momentum=r.fds_momentum, min_label=round(float(train_labels.min()), 1),
               max_label=round(float(train_labels.max()), 1))


def build_feature_objective(phase: Phase, config: TrainConfig, n_features: int,
                            train_labels: np.ndarray) -> FeatureObjective | None:
    """SRL (projector + surrogate, training-only) or the Group-DIR loss, as the phase names."""
    if phase.regularizer == "srl":
        s = config.srl
        return SRL(n_features, train_labels, projector_dim=s.projector_dim, n_points=s.n_points,
                   temperature=s.temperature, contrastive_weight=s.contrastive_weight,
                   enveloping_weight=s.enveloping_weight, homogeneity_weight=s.homogeneity_weight,
                   variance_weight=s.variance_weight, momentum=s.momentum, seed=config.seed)
    if phase.regularizer == "groupdir":
        g = config.groupdir
        return GroupDIRLoss(n_groups=g.n_groups, temperature=g.temperature, beta=g.beta,
                            lambda_reg=g.lambda_reg, lambda_soft=g.lambda_soft)
    return None
