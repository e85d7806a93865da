"""The training methods the trainer accepts, described as data (method.md sections 5, 10 and 11).

A method is a sequence of phases. Phase 1 trains the whole Net1D; a later phase retrains only the head on
the frozen backbone (RRT, "fine-tuning the linear layer based on pre-trained model parameters", paper A.2).
Each phase names its sample weights, its feature regulariser, its elementwise head loss and whether Dist Loss
wraps that loss. Hyperparameters are not here: they are the documented defaults of the classes that implement
each part (``SampleWeights``/``LDSConfig``, ``FDS``, ``RankSim``, ``ConR``, ``BalancedMSELoss``,
``DistLoss``), overridable by the run config.

Table-2 combinations "X+dist" start from the parameters method X produced and add the Dist Loss head phase
(paper A.2: "using their model parameters as the starting point for fine-tuning").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

Trains = Literal["all", "head"]
HeadInit = Literal["keep", "reinit"]
HeadLoss = Literal["l1", "l2", "bmse", "focal"]
WeightScheme = Literal["none", "inverse", "sqrt_inv"]
Regularizer = Literal["none", "fds", "ranksim", "conr", "srl", "groupdir"]


@dataclass(frozen=True)
class Phase:
    """One training phase.

    - ``trains``: ``"all"`` (whole model) or ``"head"`` (backbone frozen, only the head trains).
    - ``head_init``: for head phases, ``"reinit"`` (the official loader drops the head weights) or ``"keep"``.
    - ``loss``: elementwise loss ``l1``/``l2``/``focal`` (Focal-R, :func:`focal_r`), or ``bmse``
      (:class:`BalancedMSELoss`, which replaces it).
    - ``sample_weights``: per-sample weights of the loss (:class:`SampleWeights` scheme); ``lds`` smooths the
      counts behind them (:class:`LDSConfig`).
    - ``regularizer``: feature-level method acting on the pooled features (FDS recalibrates them before the
      head; RankSim and ConR add a weighted term to the loss; ``srl`` adds SRL's geometric terms on a
      training-only projector; ``groupdir`` needs the Group-DIR head: the loss sees the expert of the true
      group and adds the group contrastive and soft-label terms).
    - ``dist_loss``: the loss is ``DistLoss`` with ``loss`` as its elementwise ``l`` and the sample weights as
      ``w`` (pseudo-labels built for the global batch; train loader with ``drop_last=True``).
    """

    trains: Trains
    head_init: HeadInit = "keep"
    loss: HeadLoss = "l1"
    sample_weights: WeightScheme = "none"
    lds: bool = False
    regularizer: Regularizer = "none"
    dist_loss: bool = False

    def __post_init__(self) -> None:
        if self.lds and self.sample_weights == "none":
            raise ValueError("LDS needs sample_weights inverse or sqrt_inv")
        if self.dist_loss and self.loss not in ("l1", "l2"):
            name = {"bmse": "Balanced MSE", "focal": "Focal-R"}[self.loss]
            raise ValueError(f"Dist Loss wraps an elementwise loss (l1 or l2), not {name}")
        if self.trains == "all" and self.head_init != "keep":
            raise ValueError("head_init applies to head-only phases")
        if self.trains == "head" and self.regularizer in ("srl", "groupdir"):
            raise ValueError(f"{self.regularizer} shapes the backbone features: it needs trains='all'")


@dataclass(frozen=True)
class MethodSpec:
    """A named method: its phases in order and a one-line summary."""

    name: str
    phases: tuple[Phase, ...]
    summary: str


VANILLA = Phase(trains="all")
"""Stage 1: unweighted L1 on the whole model (project rule, method.md section 5)."""
DIST_HEAD = Phase(trains="head", head_init="reinit", loss="l2", sample_weights="inverse", dist_loss=True)
"""Stage 2 of the paper's headline: head re-initialised, Dist Loss with inverse-weighted MSE (INV-L2)."""

_BASELINES: tuple[MethodSpec, ...] = (
    MethodSpec("vanilla", (VANILLA,), "plain L1, no re-balancing"),
    MethodSpec("inv", (Phase("all", sample_weights="inverse"),), "L1, inverse-count weights, clip (5, 1000)"),
    MethodSpec("sqrt_inv", (Phase("all", sample_weights="sqrt_inv"),), "L1 with 1/sqrt(count) weights"),
    MethodSpec(
        "lds", (Phase("all", sample_weights="sqrt_inv", lds=True),), "L1, sqrt-inverse of LDS-smoothed counts"
    ),
    MethodSpec("fds", (Phase("all", regularizer="fds"),), "L1 with feature distribution smoothing"),
    MethodSpec(
        "bmse",
        (VANILLA, Phase("head", head_init="reinit", loss="bmse")),
        "vanilla backbone, head retrained with Balanced MSE (RRT, as the BalancedMSE README runs)",
    ),
    MethodSpec("ranksim", (Phase("all", regularizer="ranksim"),), "L1 + gamma * RankSim"),
    MethodSpec("conr", (Phase("all", regularizer="conr"),), "L1 + beta * ConR on Gaussian-noise views"),
    MethodSpec("dist", (VANILLA, DIST_HEAD), "vanilla backbone, head retrained with Dist Loss (INV-L2)"),
    MethodSpec("focal", (Phase("all", loss="focal"),), "Focal-R: L1 times 2*sigmoid(beta*|e|)-1 (DIR paper)"),
    MethodSpec("srl", (Phase("all", regularizer="srl"),),
               "L1 + SRL geometric constraints (enveloping, homogeneity, centroid contrast; CVPR 2025)"),
    MethodSpec("groupdir", (Phase("all", regularizer="groupdir"),),
               "Group-DIR: group classifier with descending soft labels, one expert per group (AAAI 2025)"),
)


def _with_dist(base: MethodSpec) -> MethodSpec:
    """X+dist: X's phases, then the Dist Loss head phase. After a head phase (bmse) the head is kept:
    re-initialising it would discard X's head and give plain ``dist`` on the same backbone. The Group-DIR head
    is kept too: Dist Loss fine-tunes the experts through the routing, which it cannot retrain (argmax)."""
    keep = base.phases[-1].trains == "head" or base.phases[-1].regularizer == "groupdir"
    head_init: HeadInit = "keep" if keep else "reinit"
    return MethodSpec(
        f"{base.name}+dist",
        (*base.phases, replace(DIST_HEAD, head_init=head_init)),
        f"{base.summary}; then the head fine-tuned with Dist Loss (INV-L2)",
    )


_BY_NAME = {spec.name: spec for spec in _BASELINES}
_BY_NAME.update({f"{b}+dist": _with_dist(_BY_NAME[b]) for b in ("lds", "fds", "ranksim", "conr", "bmse")})
_BY_NAME.update({f"{b}+dist": _with_dist(_BY_NAME[b]) for b in ("focal", "srl", "groupdir")})
METHODS: Mapping[str, MethodSpec] = MappingProxyType(_BY_NAME)
"""Every method name the trainer accepts, mapped to its phases (Table-2 combos included); read-only."""


def get_method(name: str) -> MethodSpec:
    """The spec of a method name, or a ValueError listing the accepted names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
