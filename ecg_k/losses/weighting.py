"""K+ label bins, smoothing windows and per-sample loss weights (method.md sections 4, 6 and 10).

Bins are 0.1 mmol/L wide and indexed with ``round(label / 0.1)`` (never ``int``: ``4.1 / 0.1`` is
``40.999...``). The official DIR code counts per *integer* label, which would put every K+ value into about
five bins; by the bin-equivalence rule of method.md section 10 (1 year <-> one 0.1 mmol/L bin) the
count-based options below carry over unchanged: ``inverse`` clips counts to (5, 1000), ``sqrt_inv`` takes
the square root, LDS kernel sizes and sigmas are in bins (ks 5, sigma 2 = 0.2 mmol/L).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.ndimage import convolve1d, gaussian_filter1d
from scipy.signal.windows import triang

from ecg_k.potassium import LABEL_STEP, MAX_LABEL, MIN_LABEL

Kernel = Literal["gaussian", "triang", "laplace"]
Scheme = Literal["none", "inverse", "sqrt_inv"]
WindowNorm = Literal["peak", "sum"]


def label_grid(
    min_label: float = MIN_LABEL, max_label: float = MAX_LABEL, step: float = LABEL_STEP
) -> np.ndarray:
    """Bin centres ``min + i*step`` (rounded to 1e-9, no accumulation drift); 86 points for the defaults.

    ``np.arange(min, max + step, step)`` (the official code) can gain a point from float error; building from
    integer indices cannot. ``(max - min) / step`` must be an integer.
    """
    if not (np.isfinite(min_label) and np.isfinite(max_label) and step > 0 and max_label > min_label):
        raise ValueError(f"need finite min_label < max_label and step > 0: {min_label}, {max_label}, {step}")
    span = (max_label - min_label) / step
    n_steps = int(round(span))
    if abs(span - n_steps) > 1e-6:
        raise ValueError(f"(max_label - min_label) / step must be an integer, got {span}")
    return np.round(min_label + np.arange(n_steps + 1) * step, 9)


def bin_index(
    labels: ArrayLike, min_label: float = MIN_LABEL, max_label: float = MAX_LABEL, step: float = LABEL_STEP
) -> np.ndarray:
    """Grid bin ``round(label/step) - round(min_label/step)`` of each label; out-of-range labels: edge bins.

    Pooling out-of-range labels in the edge bins matches the official ``min(max_target - 1, int(label))`` and
    the FDS edge buckets.
    """
    values = np.asarray(labels, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("labels contain NaN or inf")
    n_bins = len(label_grid(min_label, max_label, step))
    index = np.rint(values / step).astype(np.int64) - int(round(min_label / step))
    return np.clip(index, 0, n_bins - 1)


def bin_counts(
    labels: ArrayLike, min_label: float = MIN_LABEL, max_label: float = MAX_LABEL, step: float = LABEL_STEP
) -> np.ndarray:
    """Number of labels per grid bin (float64, one entry per grid point)."""
    n_bins = len(label_grid(min_label, max_label, step))
    return np.bincount(bin_index(labels, min_label, max_label, step), minlength=n_bins).astype(np.float64)


def kernel_window(kernel: Kernel, ks: int, sigma: float, norm: WindowNorm) -> np.ndarray:
    """Symmetric smoothing window of odd size ``ks`` (in bins), as in the LDS/FDS code.

    ``norm="peak"`` scales the maximum to 1 (LDS, ``get_lds_kernel_window``); ``norm="sum"`` scales the sum
    to 1 (FDS). The gaussian window is ``gaussian_filter1d`` of a centred delta, as in the official code.
    """
    if ks < 1 or ks % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number of bins, got {ks}")
    if sigma <= 0:
        raise ValueError(f"kernel sigma must be > 0, got {sigma}")
    half = (ks - 1) // 2
    if kernel == "gaussian":
        delta = np.zeros(ks)
        delta[half] = 1.0
        window = gaussian_filter1d(delta, sigma=sigma)
    elif kernel == "triang":
        window = triang(ks)
    elif kernel == "laplace":
        window = np.exp(-np.abs(np.arange(-half, half + 1)) / sigma) / (2.0 * sigma)
    else:
        raise ValueError(f"unknown kernel {kernel!r}; choose gaussian, triang or laplace")
    normalised: np.ndarray
    if norm == "peak":
        normalised = window / window.max()
        return normalised
    if norm == "sum":
        normalised = window / window.sum()
        return normalised
    raise ValueError(f"unknown window normalisation {norm!r}; choose peak or sum")


@dataclass(frozen=True)
class LDSConfig:
    """Label distribution smoothing (method.md section 10); sizes in 0.1 mmol/L bins.

    Defaults are the DIR README recipe (gaussian, ks 5, sigma 2 = 0.2 mmol/L), which carries over unchanged by
    bin equivalence; the official train.py default is ks 9, sigma 1.
    """

    kernel: Kernel = "gaussian"
    ks: int = 5
    sigma: float = 2.0


def effective_counts(
    counts: ArrayLike,
    scheme: Scheme,
    clip: tuple[float, float] = (5.0, 1000.0),
    lds: LDSConfig | None = None,
) -> np.ndarray:
    """Per-bin count the weight is the inverse of: clipped (``inverse``) or square-rooted (``sqrt_inv``), then
    optionally LDS-smoothed (``convolve1d``, peak-1 window, ``mode="constant"``), in that order (section 4).
    """
    values = np.asarray(counts, dtype=np.float64)
    if scheme == "inverse":
        low, high = clip
        if not 0 <= low <= high:
            raise ValueError(f"clip bounds must satisfy 0 <= low <= high, got {clip}")
        values = np.clip(values, low, high)
    elif scheme == "sqrt_inv":
        values = np.sqrt(values)
    else:
        raise ValueError(f"effective counts need scheme inverse or sqrt_inv, got {scheme!r}")
    if lds is not None:
        window = kernel_window(lds.kernel, lds.ks, lds.sigma, "peak")
        values = convolve1d(values, weights=window, mode="constant")
    return values


class SampleWeights:
    """Per-bin loss weights fitted on the training labels, looked up per sample during training (section 4).

    ``w_b = c / n_eff(b)`` with ``n_eff`` from :func:`effective_counts` and ``c`` chosen so that the mean
    weight over the training samples is 1 (official rescaling). ``scheme="none"`` gives 1 everywhere (LDS
    then is an error, as in the official code). A bin with no effective count (no training sample, no LDS
    mass) never occurs for a training sample; it gets the largest weight of the other bins so that lookups
    stay finite.

    Defaults: ``clip=(5, 1000)`` is the official ``inverse`` clip, kept for reproduction. At MIMIC scale
    dozens of bins exceed 1000 samples, so this clip flattens the weights over the whole many-shot region;
    both bounds are configurable.
    """

    def __init__(
        self,
        train_labels: ArrayLike,
        scheme: Scheme = "inverse",
        *,
        clip: tuple[float, float] = (5.0, 1000.0),
        lds: LDSConfig | None = None,
        min_label: float = MIN_LABEL,
        max_label: float = MAX_LABEL,
        step: float = LABEL_STEP,
    ) -> None:
        if scheme not in ("none", "inverse", "sqrt_inv"):
            raise ValueError(f"unknown weighting scheme {scheme!r}; choose none, inverse or sqrt_inv")
        if scheme == "none" and lds is not None:
            raise ValueError("LDS smooths the counts behind inverse weights: use scheme inverse or sqrt_inv")
        self.scheme = scheme
        self.min_label, self.max_label, self.step = min_label, max_label, step
        bins = bin_index(train_labels, min_label, max_label, step)
        if bins.size == 0:
            raise ValueError("no training labels to fit sample weights on")
        n_bins = len(label_grid(min_label, max_label, step))
        if scheme == "none":
            weights = np.ones(n_bins)
        else:
            counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
            n_eff = effective_counts(counts, scheme, clip, lds)
            weights = np.zeros(n_bins)
            filled = n_eff > 0
            weights[filled] = 1.0 / n_eff[filled]
            weights[~filled] = weights[filled].max()
            weights *= bins.size / weights[bins].sum()
        self.bin_weights: np.ndarray = weights
        """Weight of each grid bin (float64, mean 1 over the training samples)."""
        self._table = torch.as_tensor(weights, dtype=torch.float32)

    def for_array(self, labels: ArrayLike) -> np.ndarray:
        """Weights of ``labels`` as a float64 array of the same number of elements (flattened)."""
        weights: np.ndarray = self.bin_weights[bin_index(labels, self.min_label, self.max_label, self.step)]
        return weights

    def for_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Weights of a label tensor: same shape and device, float32 (looked up on the tensor's device)."""
        if not torch.isfinite(labels).all():
            raise ValueError("labels contain NaN or inf")
        offset = int(round(self.min_label / self.step))
        index = torch.round(labels.double() / self.step).long() - offset
        index = index.clamp(0, len(self.bin_weights) - 1)
        return self._table.to(labels.device)[index]
