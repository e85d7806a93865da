"""Focal-R, SRL and Group-DIR on tiny inputs whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecg_k.losses import (
    SRL,
    GroupDIRLoss,
    centroid_contrastive_loss,
    enveloping_loss,
    focal_r,
    group_edges,
    group_of,
    homogeneity_loss,
    ordinal_group_contrastive_loss,
    soft_group_labels,
)
from ecg_k.models.group_head import GroupHead

E1, E2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


# -- Focal-R ------------------------------------------------------------------------------------------------
def test_focal_r_against_the_direct_formula() -> None:
    pred, target = torch.tensor([4.0, 4.5, 6.0, 2.0]), torch.tensor([4.0, 4.0, 4.0, 4.0])
    expected = [0.0, 0.5 * (2 / (1 + math.exp(-1.0)) - 1), 2 * (2 / (1 + math.exp(-4.0)) - 1),
                2 * (2 / (1 + math.exp(-4.0)) - 1)]
    assert focal_r(pred, target).tolist() == pytest.approx(expected, rel=1e-6)
    assert expected[1] == pytest.approx(0.5 * math.tanh(0.5))  # 2 sigmoid(x) - 1 = tanh(x / 2)
    squared = focal_r(pred, target, beta=1.0, gamma=2.0, activation="tanh", base="l2")
    assert squared.tolist() == pytest.approx([0.0, 0.25 * math.tanh(0.5) ** 2, 4 * math.tanh(2) ** 2,
                                              4 * math.tanh(2) ** 2], rel=1e-6)


def test_focal_r_down_weights_small_errors_relative_to_l1() -> None:
    error = torch.tensor([0.05, 0.2, 1.0, 3.0])
    ratio = focal_r(error, torch.zeros(4)) / error
    assert bool((ratio[1:] > ratio[:-1]).all()) and float(ratio.max()) < 1.0
    with pytest.raises(ValueError, match="beta > 0"):
        focal_r(error, torch.zeros(4), beta=0)


# -- SRL ------------------------------------------------------------------------------------------
def test_enveloping_counts_the_best_cosine_of_each_point() -> None:
    points = torch.stack([E1, -E1, E2, -E2])
    # Best cosines to the trace {e1, e2}: 1, 0, 1, 0 -> mean 0.5.
    assert float(enveloping_loss(torch.stack([E1, E2]), points)) == pytest.approx(0.5)
    assert float(enveloping_loss(torch.stack([E1, E2, -E1, -E2]), points)) == pytest.approx(0.0)
    assert float(enveloping_loss(torch.stack([E1, E1]), points)) == pytest.approx(1.0)  # 1, -1, 0, 0


def test_homogeneity_is_squared_steps_over_label_gaps() -> None:
    trace = torch.stack([E1, E2, -E1])  # steps of squared length 2 and 2, adjacent cosines 0 and 0
    assert float(homogeneity_loss(trace, torch.tensor([1.0, 1.0]))) == pytest.approx(4.0)
    assert float(homogeneity_loss(trace, torch.tensor([1.0, 2.0]))) == pytest.approx(3.0)
    uneven = torch.stack([E1, E1, E2])  # steps 0 and 2; cosines 1 and 0, unbiased variance 0.5
    assert float(homogeneity_loss(uneven, torch.ones(2), variance_weight=0.2)) == pytest.approx(2.1)
    # The paper's sign: a shorter trace through the same ends scores lower.
    diagonal = torch.nn.functional.normalize(E1 + E2, dim=0)
    short = torch.stack([E1, diagonal, E2])
    assert float(homogeneity_loss(short, torch.ones(2), 0)) < float(homogeneity_loss(trace, torch.ones(2), 0))
    with pytest.raises(ValueError, match="positive gaps"):
        homogeneity_loss(trace, torch.tensor([1.0, 0.0]))


def test_centroid_contrast_is_cross_entropy_over_the_trace() -> None:
    loss = centroid_contrastive_loss(E1[None], torch.tensor([0]), torch.stack([E1, E2]), temperature=1.0)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)))
    wrong = centroid_contrastive_loss(E1[None], torch.tensor([1]), torch.stack([E1, E2]), temperature=1.0)
    assert float(wrong) == pytest.approx(math.log(1 + math.exp(1)))


def _identity_srl(labels: list[float], **kwargs: float) -> SRL:
    srl = SRL(2, labels, projector_dim=2, n_points=8, **kwargs)
    with torch.no_grad():
        srl.projector.weight.copy_(torch.eye(2))
        srl.projector.bias.zero_()
    return srl


def test_srl_surrogate_fills_once_then_moves_with_momentum() -> None:
    srl = _identity_srl([4.0, 4.1, 4.3], momentum=0.9)  # bins 4.0..4.3 (4.2 never populated)
    assert (srl.first_bin, srl.n_bins) == (40, 4)
    head = torch.nn.Linear(2, 1)
    _, first_epoch = srl(torch.stack([E1, E2]), torch.tensor([4.0, 4.1]), head, epoch=0)
    assert float(first_epoch.detach()) == 0.0  # the first epoch is plain regression
    srl.update_surrogate()
    assert srl.filled.tolist() == [True, True, False, False]
    assert torch.allclose(srl.surrogate[:2], torch.stack([E1, E2]))
    srl.geometric(torch.stack([E2, E1]), torch.tensor([4.0, 4.3]), epoch=1)
    srl.update_surrogate()
    assert torch.allclose(srl.surrogate[0], 0.9 * E1 + 0.1 * E2)  # momentum on a filled bin
    assert torch.allclose(srl.surrogate[1], E2)  # not seen this epoch: unchanged
    assert torch.allclose(srl.surrogate[3], E1)  # first value: the epoch mean
    assert srl.filled.tolist() == [True, True, False, True]


def test_srl_fills_missing_bins_from_the_surrogate() -> None:
    srl = _identity_srl([4.0, 4.1, 4.3], contrastive_weight=1.0, enveloping_weight=1.0,
                        homogeneity_weight=1.0, variance_weight=0.0)
    srl.geometric(torch.stack([E1, E2, -E1]), torch.tensor([4.0, 4.1, 4.3]), epoch=0)
    srl.update_surrogate()
    srl.eval()
    features = torch.stack([E2, E2])
    value = srl.geometric(features, torch.tensor([4.0, 4.0]), epoch=1)
    # Trace: bin 4.0 from the batch (e2), 4.1 and 4.3 from the surrogate (e2, -e1); 4.2 is left out (gap 2).
    trace = torch.stack([E2, E2, -E1])
    expected = (centroid_contrastive_loss(features, torch.tensor([0, 0]), trace, 0.3)
                + enveloping_loss(trace, srl.points) + homogeneity_loss(trace, torch.tensor([1.0, 2.0]), 0.0))
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert float(srl.epoch_count.sum()) == 0  # eval mode adds nothing to the epoch's sums


# -- Group-DIR ------------------------------------------------------------------------------------
def test_group_edges_split_the_populated_range_in_equal_bins() -> None:
    labels = np.round(np.arange(20, 76) * 0.1, 1)  # 2.0 .. 7.5: 56 bins
    edges = group_edges(labels, 4)
    assert edges == pytest.approx((1.95, 3.35, 4.75, 6.15, 7.55))
    groups = group_of(torch.tensor([1.0, 2.0, 3.3, 3.4, 4.8, 7.5, 9.0]), torch.tensor(edges))
    assert groups.tolist() == [0, 0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="between 2 and the 56"):
        group_edges(labels, 57)


def test_soft_labels_sum_to_one_peak_at_the_group_and_descend_symmetrically() -> None:
    soft = soft_group_labels(torch.tensor([0, 3, 5]), 6, beta=1.0)
    assert torch.allclose(soft.sum(dim=1), torch.ones(3))
    assert soft.argmax(dim=1).tolist() == [0, 3, 5]
    assert float(soft[1, 2]) == pytest.approx(float(soft[1, 4]))
    assert float(soft[1, 3] / soft[1, 4]) == pytest.approx(math.e)  # one group further: e^-beta
    assert float(soft[0, 0] / soft[0, 2]) == pytest.approx(math.e**2)
    assert float(soft_group_labels(torch.tensor([3]), 6, beta=2.0)[0, 3]) > float(soft[1, 3])


def test_group_contrast_by_hand() -> None:
    features = torch.stack([E1, E1, E2])
    loss = ordinal_group_contrastive_loss(features, torch.tensor([0, 0, 1]), temperature=1.0)
    # Anchors 0 and 1: their same-group pair has all k != i in the denominator (e + 1), the cross-group pair
    # only itself; anchor 2: both pairs at distance 1 share the denominator 1 + 1.
    expected = (2 * math.log(1 + math.exp(-1)) + 2 * math.log(2)) / 6
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    pair = ordinal_group_contrastive_loss(features[:2], torch.tensor([0, 3]), 1.0)
    assert float(pair) == pytest.approx(0.0)  # each pair is its own denominator


def test_group_contrast_prefers_features_ordered_like_the_groups() -> None:
    angles = torch.tensor([0.0, 0.5, 1.0, 1.5])
    ordered = torch.stack([angles.cos(), angles.sin()], dim=1)
    shuffled = ordered[torch.tensor([0, 3, 1, 2])]
    groups = torch.tensor([0, 1, 2, 3])
    good = ordinal_group_contrastive_loss(ordered, groups, temperature=0.5)
    bad = ordinal_group_contrastive_loss(shuffled, groups, temperature=0.5)
    assert float(good) < float(bad)


def test_group_dir_loss_routes_by_the_true_group() -> None:
    head = GroupHead(2, (3.95, 4.05, 4.15))
    with torch.no_grad():
        head.experts.weight.zero_()
        head.experts.bias.copy_(torch.tensor([1.0, 2.0]))
    loss = GroupDIRLoss(n_groups=2, lambda_reg=0.5, lambda_soft=1.0)
    pred, extra = loss(torch.stack([E1, E2]), torch.tensor([4.0, 4.1]), head, epoch=0)
    assert pred.detach().tolist() == [1.0, 2.0]
    soft = soft_group_labels(torch.tensor([0, 1]), 2)
    soft_ce = -(soft * torch.log_softmax(head.logits(torch.stack([E1, E2])), dim=1)).sum(dim=1).mean()
    contrast = ordinal_group_contrastive_loss(torch.stack([E1, E2]), torch.tensor([0, 1]), 2.5)
    assert float(extra.detach()) == pytest.approx(float((contrast + soft_ce).detach() / 0.5), rel=1e-6)
    with pytest.raises(ValueError, match="3-group head"):
        GroupDIRLoss(n_groups=3)(torch.stack([E1, E2]), torch.tensor([4.0, 4.1]), head, epoch=0)
