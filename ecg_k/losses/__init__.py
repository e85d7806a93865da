"""Losses for K+ regression: Dist Loss, sample weighting and the DIR baselines (shared/reference/method.md).

Training-only (imports torch); the inference path never imports this package.
"""

from ecg_k.losses.balanced_mse import BalancedMSELoss, LabelPrior, fit_label_gmm, histogram_prior
from ecg_k.losses.conr import ConR
from ecg_k.losses.dist_loss import (
    TORCHSORT_HAS_CUDA,
    DistLoss,
    DistLossOutput,
    counts_from_pmf,
    label_density,
    make_pseudo_labels,
    soft_sort_supported,
)
from ecg_k.losses.fds import FDS
from ecg_k.losses.methods import DIST_HEAD, METHODS, VANILLA, MethodSpec, Phase, get_method
from ecg_k.losses.ranksim import RankSim, ranking_regularizer
from ecg_k.losses.weighting import (
    LABEL_STEP,
    MAX_LABEL,
    MIN_LABEL,
    LDSConfig,
    SampleWeights,
    bin_counts,
    bin_index,
    effective_counts,
    kernel_window,
    label_grid,
)

__all__ = [
    "DIST_HEAD",
    "FDS",
    "LABEL_STEP",
    "MAX_LABEL",
    "METHODS",
    "MIN_LABEL",
    "TORCHSORT_HAS_CUDA",
    "VANILLA",
    "BalancedMSELoss",
    "ConR",
    "DistLoss",
    "DistLossOutput",
    "LDSConfig",
    "LabelPrior",
    "MethodSpec",
    "Phase",
    "RankSim",
    "SampleWeights",
    "bin_counts",
    "bin_index",
    "counts_from_pmf",
    "effective_counts",
    "fit_label_gmm",
    "get_method",
    "histogram_prior",
    "kernel_window",
    "label_density",
    "label_grid",
    "make_pseudo_labels",
    "ranking_regularizer",
    "soft_sort_supported",
]
