"""Shared fixtures of the loss tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def k_train_labels() -> np.ndarray:
    """20,300 K+-like training labels on the 0.1 grid: lognormal around 4.2 (std ~0.55) plus uniform tails."""
    rng = np.random.default_rng(0)
    bulk = np.exp(rng.normal(np.log(4.2), 0.13, 20000))
    return np.concatenate([bulk, rng.uniform(2, 8, 300)]).round(1)
