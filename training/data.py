"""Batches from an ECG-K-DIR dataset directory for training and inference.

Signals stay float16 memmaps on disk; a batch is gathered with one sorted fancy-index read and cast to
float32 (``torch`` tensors). Shuffling is seeded per epoch (``seed``, ``epoch``) so a resumed run sees the
same batches as an uninterrupted one; under DDP each rank takes its own stripe of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecg_k.data.store import load_split


@dataclass(frozen=True)
class SplitData:
    """One split: signals ``(n, leads, samples)`` float16 (memmap or array) and float32 labels."""

    signals: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def load(cls, dataset: Path, split: str, in_memory: bool = False) -> SplitData:
        """Open a split; ``in_memory`` copies the memmap into RAM (small datasets, CPU training)."""
        signals, labels = load_split(dataset, split)
        return cls(np.ascontiguousarray(signals) if in_memory else signals, labels)

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x float32 (B, leads, samples), y float32 (B,))`` for ``indices`` (any order)."""
        order = np.argsort(indices, kind="stable")
        rows = np.asarray(self.signals[indices[order]], dtype=np.float32)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return torch.from_numpy(rows[inverse]), torch.from_numpy(self.labels[indices])


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, shuffle: bool, drop_last: bool, rank: int = 0, world: int = 1
) -> Iterator[np.ndarray]:
    """Index arrays of one epoch. Training uses ``drop_last`` (Dist Loss needs full batches).

    With ``world > 1`` the global batch (``batch_size * world``) is split in ``world`` stripes and this
    rank gets stripe ``rank``, so every rank sees batches of exactly ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    global_size = batch_size * world
    stop = n - n % global_size if drop_last else n
    for start in range(0, stop, global_size):
        chunk = order[start : start + global_size]
        yield chunk[rank::world] if world > 1 else chunk


def steps_per_epoch(n: int, batch_size: int, drop_last: bool, world: int = 1) -> int:
    """Number of batches :func:`epoch_batches` yields."""
    global_size = batch_size * world
    return n // global_size if drop_last else -(-n // global_size)
