"""The Group-DIR head: routing, the jump at a group boundary (hard) and its absence (soft), Net1D config."""

from __future__ import annotations

import pytest
import torch

from ecg_k.models import build_net1d
from ecg_k.models.group_head import GroupHead


def _two_group_head(routing: str) -> GroupHead:
    """Group 1 wins when feature 0 > 0 (logits -4 x0, 4 x0); experts 3.5 + 0.1 x1 and 4.5 - 0.2 x1."""
    head = GroupHead(2, (3.0, 4.0, 5.0), routing=routing)  # type: ignore[arg-type]
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
        head.classifier.bias.zero_()
        head.experts.weight.copy_(torch.tensor([[0.0, 0.1], [0.0, -0.2]]))
        head.experts.bias.copy_(torch.tensor([3.5, 4.5]))
    return head


def _sweep(n: int = 2001) -> torch.Tensor:
    """Features crossing the boundary x0 = 0 along a line, x1 = 0.5 everywhere."""
    x0 = torch.linspace(-1, 1, n)
    return torch.stack([x0, torch.full_like(x0, 0.5)], dim=1)


def test_untrained_experts_answer_at_their_group_centre() -> None:
    head = GroupHead(8, (2.0, 3.0, 4.5, 6.0))
    assert head.experts.bias.tolist() == pytest.approx([2.5, 3.75, 5.25])
    assert head.n_groups == 3


def test_hard_routing_jumps_at_a_boundary_by_at_most_the_flip_jump() -> None:
    head = _two_group_head("hard")
    features = _sweep()
    with torch.no_grad():
        estimates = head(features).squeeze(1)
        steps = estimates.diff().abs()
        bound = float(head.flip_jump(features).max())
    assert estimates[0].item() == pytest.approx(3.55) and estimates[-1].item() == pytest.approx(4.4)
    # One discontinuity, where the predicted group flips: |expert 0 - expert 1| = |3.55 - 4.4| = 0.85 ...
    assert int((steps > 1e-6).sum()) == 1
    assert float(steps.max()) == pytest.approx(0.85, abs=1e-5)
    # ... never larger than the stated bound (the flip jump measured over the same features).
    assert float(steps.max()) <= bound + 1e-6
    assert bound == pytest.approx(0.85, abs=1e-5)


def test_soft_routing_has_no_jump_at_the_boundary() -> None:
    head = _two_group_head("soft")
    features = _sweep()
    with torch.no_grad():
        estimates = head(features).squeeze(1)
    # Lipschitz along the sweep: d/dx0 of the mixture is at most 8 * 0.85 / 4 = 1.7 per unit; step 0.001.
    assert float(estimates.diff().abs().max()) < 2e-3
    assert estimates[1000].item() == pytest.approx((3.55 + 4.4) / 2, abs=1e-5)  # both groups equally likely


def test_route_picks_the_given_group() -> None:
    head = _two_group_head("hard")
    features = torch.tensor([[-1.0, 0.0], [-1.0, 0.0]])
    assert head.route(features, torch.tensor([0, 1])).tolist() == pytest.approx([3.5, 4.5])


def test_net1d_groupdir_config() -> None:
    net = build_net1d("tiny", 1, head="groupdir", group_edges=(2.0, 4.0, 6.0), group_routing="soft")
    assert isinstance(net.head, GroupHead) and net.head.routing == "soft"
    assert tuple(net(torch.zeros(3, 1, 500)).shape) == (3,)
    net.reset_head()
    assert net.head.experts.bias.tolist() == pytest.approx([3.0, 5.0])
    with pytest.raises(ValueError, match="at least 2 groups"):
        build_net1d("tiny", 1, head="groupdir", group_edges=(2.0, 4.0))
    with pytest.raises(ValueError, match="increase strictly"):
        build_net1d("tiny", 1, head="groupdir", group_edges=(2.0, 4.0, 4.0))
    with pytest.raises(ValueError, match="groupdir head only"):
        build_net1d("tiny", 1, group_edges=(2.0, 4.0, 6.0))
