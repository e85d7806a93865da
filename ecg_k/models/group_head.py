"""Group-DIR head (Pu et al., AAAI 2025): a group classifier and one expert regressor per label group.

The K+ range seen in training is cut into contiguous groups at ``edges`` (``len(edges) - 1`` groups; group g
holds labels in ``[edges[g], edges[g + 1])``). On the pooled Net1D features the head computes the group
logits (``classifier``) and every expert's estimate (``experts``: one Linear with an output per group, i.e.
|G| linear regressors evaluated side by side). Training routes each sample to the expert of its *true* group
(:meth:`GroupHead.route`); inference routes it to the expert of the *predicted* group:

- ``routing="hard"`` (the paper): the expert of ``argmax(logits)``. Where the classifier's top group changes
  (an ECG whose features sit between two groups, e.g. K+ near a group edge such as 5.5), the estimate jumps
  from one expert to the other by ``|expert_a - expert_b|`` (:meth:`GroupHead.flip_jump`); ``ecgk export``
  measures this on val and states it in the model card.
- ``routing="soft"`` (a named variant): the softmax-weighted mean of the experts, continuous in the features
  (no jump at a group edge), at the price of averaging experts where the classifier hesitates.

Both are plain tensor ops (ArgMax + GatherElements, or Softmax + ReduceSum), so the classifier and the experts
are inside the exported ONNX graph: the model still maps an ECG to one K+ value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Routing = Literal["hard", "soft"]


def validate_edges(edges: Sequence[float]) -> None:
    """Refuse edges that do not define at least two increasing groups."""
    if len(edges) < 3:
        raise ValueError(f"a group head needs at least 2 groups (3 edges), got edges {tuple(edges)}")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"group edges must increase strictly, got {tuple(edges)}")


class GroupHead(nn.Module):
    """``(B, n_features)`` features -> ``(B, 1)`` K+ through the expert of the predicted group."""

    edges: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, n_features: int, edges: Sequence[float], routing: Routing = "hard") -> None:
        super().__init__()
        validate_edges(edges)
        if routing not in ("hard", "soft"):
            raise ValueError(f"unknown routing {routing!r}; choose hard or soft")
        self.routing: Routing = routing
        self.n_groups = len(edges) - 1
        self.register_buffer("edges", torch.tensor(tuple(edges), dtype=torch.float32), persistent=False)
        self.classifier = nn.Linear(n_features, self.n_groups)
        self.experts = nn.Linear(n_features, self.n_groups)
        self.reset_parameters()

    @property
    def centres(self) -> torch.Tensor:
        """Middle of each group's label interval, shape ``(n_groups,)``."""
        return (self.edges[:-1] + self.edges[1:]) / 2

    def reset_parameters(self) -> None:
        """Fresh Linear layers; each expert's bias starts at its group's centre (as the plain head's bias
        starts at the label mean), so an untrained expert already answers inside its group."""
        self.classifier.reset_parameters()
        self.experts.reset_parameters()
        with torch.no_grad():
            self.experts.bias.copy_(self.centres)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Group logits, ``(B, n_groups)``."""
        return self.classifier(features)

    def expert_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """Every expert's estimate, ``(B, n_groups)``."""
        return self.experts(features)

    def route(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Estimate of the expert of ``groups`` (``(B,)`` integer) for each sample, shape ``(B,)``."""
        return self.expert_outputs(features).gather(1, groups.long().reshape(-1, 1)).squeeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        experts = self.expert_outputs(features)
        logits = self.logits(features)
        if self.routing == "soft":
            return (torch.softmax(logits, dim=1) * experts).sum(dim=1, keepdim=True)
        return experts.gather(1, logits.argmax(dim=1, keepdim=True))

    def flip_jump(self, features: torch.Tensor) -> torch.Tensor:
        """``|expert(top group) - expert(runner-up group)|`` per sample, ``(B,)``: how far a hard-routed
        estimate moves if the classifier's top two groups swap (the discontinuity at a group boundary)."""
        top2 = self.logits(features).topk(2, dim=1).indices
        experts = self.expert_outputs(features).gather(1, top2)
        return (experts[:, 0] - experts[:, 1]).abs()
