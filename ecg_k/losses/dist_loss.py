"""Dist Loss (Nie, Tang, Hong, ICLR 2025) as the official code computes it, bugs fixed (method.md section 3).

Pipeline: a KDE of the training labels on the 0.1 mmol/L grid (3.1) -> a fixed ascending vector of M
pseudo-labels (3.2) -> per batch, ``mean_i[lam * v_i * l(sort(pred)_i, q_i) + w_i * l(pred_i, y_i)]`` in
float64 (3.3). M must equal the (global) batch size, so the train loader needs ``drop_last=True``, and M must
be at least :data:`MIN_BATCH` (below it the official rounding drops both tails of the pseudo-labels).

The default is the paper's effective loss: sample weights ``w`` on the sample term, an **unweighted**
distribution term (``v = 1``). The official code multiplies the sorted term by the weight of whichever sample
sits at that batch index; those weights average about 1 per sorted position (0.975-1.037 over 3,000 batches
at M = 512), so in effect the term is unweighted. ``dist_weighting="official"`` reproduces the quirk and
``"pseudo_label"`` (inverse density of each pseudo-label) is a named variant, a different loss.
"""

from __future__ import annotations

import importlib.util
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchsort
from numpy.typing import ArrayLike
from scipy.special import ndtr
from scipy.stats import gaussian_kde

from ecg_k.losses.weighting import label_grid
from ecg_k.potassium import LABEL_STEP, MAX_LABEL, MIN_LABEL

Rounding = Literal["official", "quantile"]
ElementLoss = Literal["l1", "l2"]
DistWeighting = Literal["pseudo_label", "official", "none"]
SortBackend = Literal["auto", "soft", "hard"]

MIN_BATCH = 64
"""Smallest (global) batch Dist Loss accepts: with fewer pseudo-labels the official rounding leaves out every
bin whose expected count is below 0.5, so both K+ tails vanish from the target distribution."""

TORCHSORT_HAS_CUDA: bool = importlib.util.find_spec("torchsort.isotonic_cuda") is not None
"""Whether torchsort has its CUDA kernel (without it, a CUDA tensor raises ImportError at call time)."""


def _positive_int(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_batch(global_batch: int) -> None:
    """ValueError unless ``global_batch`` (batch size x world size) is at least :data:`MIN_BATCH`."""
    if global_batch < MIN_BATCH:
        raise ValueError(
            f"Dist Loss needs a batch of at least {MIN_BATCH} (got {global_batch}): with fewer pseudo-labels "
            "both K+ tails are rounded away; raise --batch-size"
        )


# A KDE bandwidth: the factor on the label std, or scipy's rule by name.
Bandwidth = float | Literal["scott", "silverman"]


def _kde(train_labels: ArrayLike, min_label: float, max_label: float, bw_method: Bandwidth) -> gaussian_kde:
    """``gaussian_kde`` of the training labels inside [min_label, max_label] (3.1: a theoretical range)."""
    labels = np.asarray(train_labels, dtype=np.float64).ravel()
    if not np.all(np.isfinite(labels)):
        raise ValueError("training labels contain NaN or inf")
    labels = labels[(labels >= min_label) & (labels <= max_label)]
    if np.unique(labels).size < 2:
        raise ValueError(
            f"the KDE needs at least two distinct training labels in [{min_label}, {max_label}], "
            f"got {labels.size} label(s)"
        )
    return gaussian_kde(labels, bw_method=bw_method)


def label_density(
    train_labels: ArrayLike,
    min_label: float = MIN_LABEL,
    max_label: float = MAX_LABEL,
    step: float = LABEL_STEP,
    bw_method: Bandwidth = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """KDE of the training labels on the label grid, normalised to a pmf: ``(grid, pmf)`` (method.md 3.1).

    A scalar ``bw_method`` is the factor on the label std (0.5, the code default, gives ~0.3 mmol/L for K+).
    """
    grid = label_grid(min_label, max_label, step)
    density = _kde(train_labels, min_label, max_label, bw_method)(grid)
    return grid, density / density.sum()


def counts_from_pmf(pmf: ArrayLike, batch_size: int, region_adjustment: float = 0.5) -> np.ndarray:
    """Integer count per grid bin summing to ``batch_size``: the official rounding scheme, bug fixed (3.2).

    1. ``n = pmf * M``; the left tail up to the first bin whose cumulative count reaches 1 is lumped into that
       bin (``round(cumsum)``), the right tail likewise; bins in between get ``np.round(n_b)`` (half to even).
    2. The residual ``r = M - sum`` is spread as +-1 over ``|r|`` consecutive bins starting at
       ``argmax - |r|//2`` (if ``|r|`` exceeds ``region_adjustment * len(pmf)`` bins, that many bins get
       ``|r| // width`` each and the mode the remainder).
    Fixes: the residual window is shifted inside the grid (the official slice is empty or truncated when the
    mode is within ``|r|/2`` bins of an edge, so the counts did not sum to M); the large-residual branch keeps
    the sign of ``r``; a count pushed below 0 is set to 0 and the deficit is taken from the largest bins.
    Where the official slice lies inside the grid the result equals the official one. With M = 1 the two
    tails cross and the single count lands near the top of the support (degenerate; use a real batch).
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("pmf must be a non-empty 1-D array of finite, non-negative numbers")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"pmf must sum to 1, sums to {p.sum()}")
    m, n_bins = _positive_int("batch_size", batch_size), p.size
    expected = p * m
    forward = np.cumsum(expected)
    backward = np.cumsum(expected[::-1])[::-1]
    reach = 1.0 - 1e-9  # "cumulative count >= 1", tolerant of the float error of a pmf that sums to 1
    first = min(int(np.searchsorted(forward, reach)), n_bins - 1)
    last = max(n_bins - 1 - int(np.searchsorted(backward[::-1], reach)), 0)

    counts = np.zeros(n_bins, dtype=np.int64)
    counts[first + 1 : last] = np.rint(expected[first + 1 : last])
    counts[first] = np.rint(forward[first])
    counts[last] = np.rint(backward[last])

    residual = m - int(counts.sum())
    if residual:
        sign, size = (1 if residual > 0 else -1), abs(residual)
        width = max(1, int(region_adjustment * n_bins))
        span, per_bin, extra = (size, 1, 0) if size <= width else (width, *divmod(size, width))
        mode = int(np.argmax(counts))
        start = min(max(mode - span // 2, 0), n_bins - span)
        counts[start : start + span] += sign * per_bin
        counts[mode] += sign * extra
    deficit = int(-counts[counts < 0].sum())
    counts[counts < 0] = 0
    for _ in range(deficit):
        counts[np.argmax(counts)] -= 1

    if counts.sum() != m or np.any(counts < 0):
        raise AssertionError(f"pseudo-label counts are invalid: sum {counts.sum()} for M={m}")
    return counts


def _quantile_labels(
    kde: gaussian_kde, batch_size: int, min_label: float, max_label: float, step: float
) -> np.ndarray:
    """``q_i = F^-1((i + 0.5) / M)`` with F the KDE cdf truncated to [min_label, max_label].

    F is evaluated on a grid of step/100 and inverted by linear interpolation. The KDE points are rounded to
    step/100 first (exact for 0.1 mmol/L labels, at most 5e-4 mmol/L otherwise) so that the cost depends on
    the number of distinct values, not on the number of training samples.
    """
    resolution = step / 100.0
    centres, weights = np.unique(np.round(kde.dataset.ravel() / resolution) * resolution, return_counts=True)
    weights = weights / weights.sum()
    bandwidth = float(np.sqrt(kde.covariance[0, 0]))
    x = label_grid(min_label, max_label, resolution)
    cdf = np.concatenate(
        [ndtr((chunk[:, None] - centres[None, :]) / bandwidth) @ weights for chunk in np.array_split(x, 64)]
    )
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return np.clip(np.interp((np.arange(batch_size) + 0.5) / batch_size, cdf, x), min_label, max_label)


def make_pseudo_labels(
    train_labels: ArrayLike,
    batch_size: int,
    min_label: float = MIN_LABEL,
    max_label: float = MAX_LABEL,
    step: float = LABEL_STEP,
    bw_method: Bandwidth = 0.5,
    rounding: Rounding = "official",
) -> np.ndarray:
    """The M = ``batch_size`` ascending pseudo-labels (float64) matched to the sorted predictions (3.2).

    ``rounding="official"``: grid values repeated by :func:`counts_from_pmf` (the released code's scheme, not
    the paper's Eq. 1). ``"quantile"``: KDE quantiles at ``(i + 0.5) / M``. Under DDP pass the global batch
    (``batch_size * world_size``).
    """
    m = _positive_int("batch_size", batch_size)
    if rounding == "official":
        grid, pmf = label_density(train_labels, min_label, max_label, step, bw_method)
        labels = np.repeat(grid, counts_from_pmf(pmf, m))
    elif rounding == "quantile":
        kde = _kde(train_labels, min_label, max_label, bw_method)
        labels = _quantile_labels(kde, m, min_label, max_label, step)
    else:
        raise ValueError(f"unknown rounding {rounding!r}; choose official or quantile")
    if not (
        labels.size == m
        and np.all(np.diff(labels) >= 0)
        and labels[0] >= min_label
        and labels[-1] <= max_label
    ):
        raise AssertionError("pseudo-labels must be M sorted values inside [min_label, max_label]")
    return labels


class DistLossOutput(NamedTuple):
    """Loss plus the two term means (detached, for logging): ``loss = dist_weight * dist + sample``."""

    loss: torch.Tensor
    dist: torch.Tensor
    sample: torch.Tensor


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 that keeps gradients: backward sums the gradient over ranks and returns this
    rank's slice, so every rank's copy of the distribution term reaches every rank's predictions."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), local.shape[0]  # type: ignore[attr-defined]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]  # type: ignore[attr-defined]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation over ranks (rank order), differentiable; the tensor itself outside DDP."""
    # torch leaves autograd.Function.apply untyped.
    return _GatherWithGrad.apply(tensor) if _distributed() else tensor  # type: ignore[no-untyped-call]


def soft_sort_supported(device: torch.device) -> bool:
    """Whether torchsort can sort a float64 tensor on ``device`` (CPU; CUDA only if built with nvcc)."""
    return device.type == "cpu" or (device.type == "cuda" and TORCHSORT_HAS_CUDA)


def _flat(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dim() == 2 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1), got {tuple(tensor.shape)}")
    return tensor.double()


class DistLoss(torch.nn.Module):
    """Dist Loss: ``mean_i[lam * v_i * l(sort(pred)_i, q_i) + w_i * l(pred_i, y_i)]`` in float64 (3.3).

    - ``loss``: the elementwise ``l`` of *both* terms. ``"l2"`` (default) is the paper's headline INV-L2 when
      the caller passes inverse sample weights ``w``; ``"l1"`` is the official code default (with no weights
      the first term is then the 1-D Wasserstein-1 distance between predictions and pseudo-labels).
    - ``dist_weight``: lam (1.0 in the paper; 0 turns the loss into the plain weighted loss).
    - ``dist_weighting``: the weights ``v`` of the distribution term when sample weights are passed
      (without sample weights both terms are unweighted, as in the official code): ``"none"`` (default, the
      paper's effective loss, see the module docstring): unweighted; ``"official"``: reproduces the quirk,
      the weight of batch sample i is applied at sorted position i, which holds an unrelated prediction
      (paper reproduction only); ``"pseudo_label"`` (a named variant): position i gets the inverse KDE density
      of the pseudo-label q_i there, ``1 / pmf(q_i)`` normalised to mean 1 over q (needs ``label_grid`` and
      ``label_pmf``; weights 0.3-55 at K+ scale). The sample term always uses ``w``.
    - ``sort``: ``"hard"`` (default) = ``torch.sort``; ``"soft"`` = ``torchsort.soft_sort`` (l2,
      ``regularization_strength``; the paper's differentiable sort); ``"auto"`` = soft where torchsort
      supports the device (CPU; CUDA only if torchsort was built with nvcc), hard otherwise. At K+ scale with
      eps <= 1 soft sort equals the hard sort (values to ~1e-13, the same gradient) whenever no gap between
      adjacent predictions reaches 1/eps (method.md 3.4), so the default skips the isotonic solver's cost.

    The number of pseudo-labels M must equal the batch size (train loader with ``drop_last=True``). Under
    ``torch.distributed`` with world size > 1 the distribution term uses the predictions of all ranks
    (gathered with gradients) and M must equal the global batch; each rank returns ``D + S_rank``, whose mean
    over ranks equals the single-process loss on the global batch, and DDP's gradient averaging gives exactly
    the single-process gradient.
    """

    pseudo_labels: torch.Tensor
    position_weights: torch.Tensor

    def __init__(
        self,
        pseudo_labels: ArrayLike,
        *,
        loss: ElementLoss = "l2",
        dist_weight: float = 1.0,
        dist_weighting: DistWeighting = "none",
        label_grid: ArrayLike | None = None,
        label_pmf: ArrayLike | None = None,
        sort: SortBackend = "hard",
        regularization_strength: float = 0.1,
    ) -> None:
        super().__init__()
        q = np.asarray(pseudo_labels, dtype=np.float64).ravel()
        if q.size == 0 or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ValueError("pseudo_labels must be a non-empty ascending vector of finite values")
        if loss not in ("l1", "l2"):
            raise ValueError(f"unknown loss {loss!r}; choose l1 or l2")
        if not (np.isfinite(dist_weight) and dist_weight >= 0):
            raise ValueError(f"dist_weight must be finite and >= 0, got {dist_weight}")
        if dist_weighting not in ("pseudo_label", "official", "none"):
            raise ValueError(
                f"unknown dist_weighting {dist_weighting!r}; choose pseudo_label, official or none"
            )
        if sort not in ("auto", "soft", "hard"):
            raise ValueError(f"unknown sort {sort!r}; choose auto, soft or hard")
        if regularization_strength <= 0:
            raise ValueError(f"regularization_strength must be > 0, got {regularization_strength}")
        position_weights = np.ones_like(q)
        if dist_weighting == "pseudo_label":
            if label_grid is None or label_pmf is None:
                raise ValueError("dist_weighting='pseudo_label' needs label_grid and label_pmf")
            grid, pmf = np.asarray(label_grid, dtype=np.float64), np.asarray(label_pmf, dtype=np.float64)
            density = np.interp(q, grid, pmf)
            if np.any(density <= 0):
                raise ValueError("the label pmf is 0 at a pseudo-label; cannot weight it by inverse density")
            position_weights = (1.0 / density) / np.mean(1.0 / density)
        self.element_loss, self.dist_weight, self.dist_weighting = loss, float(dist_weight), dist_weighting
        self.sort, self.regularization_strength = sort, float(regularization_strength)
        self.register_buffer("pseudo_labels", torch.as_tensor(q))
        self.register_buffer("position_weights", torch.as_tensor(position_weights))

    @classmethod
    def from_train_labels(
        cls,
        train_labels: ArrayLike,
        batch_size: int,
        *,
        world_size: int = 1,
        min_label: float = MIN_LABEL,
        max_label: float = MAX_LABEL,
        step: float = LABEL_STEP,
        bw_method: Bandwidth = 0.5,
        rounding: Rounding = "official",
        **options: object,
    ) -> DistLoss:
        """Density and pseudo-labels for the global batch ``batch_size * world_size`` in one go; ``options``
        are the constructor's keyword arguments (loss, dist_weight, dist_weighting, sort, ...). A global
        batch below :data:`MIN_BATCH` is refused (:func:`check_batch`)."""
        global_batch = batch_size * world_size
        check_batch(global_batch)
        grid, pmf = label_density(train_labels, min_label, max_label, step, bw_method)
        q = make_pseudo_labels(train_labels, global_batch, min_label, max_label, step, bw_method, rounding)
        return cls(q, label_grid=grid, label_pmf=pmf, **options)  # type: ignore[arg-type]

    def _term(self, a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """``mean(v * l(a, b))``; unweighted as one fused op (``mse_loss``/``l1_loss``, forward and backward)."""
        if weights is None:
            return F.l1_loss(a, b) if self.element_loss == "l1" else F.mse_loss(a, b)
        diff = a - b
        return ((diff.abs() if self.element_loss == "l1" else diff.square()) * weights).mean()

    def _sorted(self, values: torch.Tensor) -> torch.Tensor:
        use_soft = self.sort == "soft" or (self.sort == "auto" and soft_sort_supported(values.device))
        if not use_soft:
            return torch.sort(values).values
        if not soft_sort_supported(values.device):
            raise ValueError(
                f"sort='soft' is not available on {values.device}: torchsort was built without CUDA; "
                "use sort='auto' or 'hard' (identical at K+ scale, method.md 3.4)"
            )
        return torchsort.soft_sort(
            values[None, :], regularization="l2", regularization_strength=self.regularization_strength
        )[0]

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor | None = None,
        return_terms: bool = False,
    ) -> torch.Tensor | DistLossOutput:
        """Scalar float64 loss of a batch; with ``return_terms`` a :class:`DistLossOutput`.

        A non-finite loss is returned as is: the trainer refuses it (and any loss above its explosion limit)
        in one place, which keeps a host sync out of this hot path."""
        pred64, target64 = _flat("pred", pred), _flat("target", target)
        if target64.shape != pred64.shape:
            raise ValueError(f"pred and target sizes differ: {pred64.shape[0]} vs {target64.shape[0]}")
        weights64 = None if weights is None else _flat("weights", weights)
        if weights64 is not None and weights64.shape != pred64.shape:
            raise ValueError(f"weights must have one entry per prediction, got {weights64.shape[0]}")

        gathered = _gather(pred64)
        if gathered.shape[0] != self.pseudo_labels.shape[0]:
            ranks = dist.get_world_size() if _distributed() else 1
            raise ValueError(
                f"batch of {gathered.shape[0]} predictions ({ranks} rank(s)) but "
                f"{self.pseudo_labels.shape[0]} pseudo-labels: the train loader must use drop_last=True, and "
                "the pseudo-labels must be built for batch_size * world_size"
            )
        position_weights = None
        if weights64 is not None and self.dist_weighting == "pseudo_label":
            position_weights = self.position_weights
        elif weights64 is not None and self.dist_weighting == "official":
            position_weights = _gather(weights64.detach())
        dist_term = self._term(self._sorted(gathered), self.pseudo_labels, position_weights)
        sample_term = self._term(pred64, target64, weights64)
        loss = dist_term + sample_term if self.dist_weight == 1.0 else self.dist_weight * dist_term + sample_term
        if return_terms:
            return DistLossOutput(loss, dist_term.detach(), sample_term.detach())
        return loss
