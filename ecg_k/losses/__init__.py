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
from ecg_k.losses.focal_r import focal_r
from ecg_k.losses.group_dir import (
    GroupDIRLoss,
    group_edges,
    group_of,
    ordinal_group_contrastive_loss,
    soft_group_labels,
)
from ecg_k.losses.methods import DIST_HEAD, METHODS, VANILLA, MethodSpec, Phase, get_method
from ecg_k.losses.ranksim import RankSim, ranking_regularizer
from ecg_k.losses.srl import SRL, centroid_contrastive_loss, enveloping_loss, homogeneity_loss
from ecg_k.losses.weighting import (
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
    "METHODS",
    "SRL",
    "TORCHSORT_HAS_CUDA",
    "VANILLA",
    "BalancedMSELoss",
    "ConR",
    "DistLoss",
    "DistLossOutput",
    "GroupDIRLoss",
    "LDSConfig",
    "LabelPrior",
    "MethodSpec",
    "Phase",
    "RankSim",
    "SampleWeights",
    "bin_counts",
    "bin_index",
    "centroid_contrastive_loss",
    "counts_from_pmf",
    "effective_counts",
    "enveloping_loss",
    "fit_label_gmm",
    "focal_r",
    "get_method",
    "group_edges",
    "group_of",
    "histogram_prior",
    "homogeneity_loss",
    "kernel_window",
    "label_density",
    "label_grid",
    "make_pseudo_labels",
    "ordinal_group_contrastive_loss",
    "ranking_regularizer",
    "soft_group_labels",
    "soft_sort_supported",
]
