"""0.1 mmol/L bins, smoothing windows and sample weights (method.md sections 4, 6, 10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d

from ecg_k.losses.weighting import (
    LDSConfig,
    SampleWeights,
    bin_counts,
    bin_index,
    effective_counts,
    kernel_window,
)


def test_bins_round_never_truncate() -> None:
    assert int(4.1 / 0.1) == 40 and int(float(np.float32(4.1)) * 10) == 40  # why int() is wrong
    np.testing.assert_array_equal(bin_index([1.5, 4.1, 4.15 - 1e-9, 10.0]), [0, 26, 26, 85])
    np.testing.assert_array_equal(bin_index(np.float32([4.1, 2.3, 6.7])), [26, 8, 52])
    np.testing.assert_array_equal(bin_index([0.3, 14.0]), [0, 85])  # out of range: edge bins


def test_bin_index_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        bin_index([4.0, float("nan")])


def test_bin_counts() -> None:
    counts = bin_counts([4.1, 4.1, 4.2, 1.5, 20.0])
    assert counts.shape == (86,) and counts.sum() == 5
    assert counts[26] == 2 and counts[27] == 1 and counts[0] == 1 and counts[85] == 1


def test_windows() -> None:
    lds = kernel_window("gaussian", 5, 2.0, "peak")
    delta = np.zeros(5)
    delta[2] = 1
    np.testing.assert_allclose(lds, gaussian_filter1d(delta, 2.0) / gaussian_filter1d(delta, 2.0).max())
    assert lds.max() == 1.0 and lds[2] == 1.0
    np.testing.assert_allclose(kernel_window("triang", 5, 1.0, "peak"), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    laplace = kernel_window("laplace", 5, 2.0, "sum")
    assert laplace.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(laplace / laplace[2], np.exp(-np.abs(np.arange(-2, 3)) / 2.0))
    with pytest.raises(ValueError, match="odd"):
        kernel_window("gaussian", 4, 1.0, "peak")
    with pytest.raises(ValueError, match="unknown kernel"):
        kernel_window("box", 5, 1.0, "peak")  # type: ignore[arg-type]


def test_inverse_weights_clip_and_rescale() -> None:
    labels = np.array([2.0] * 2 + [4.2] * 2000 + [6.0] * 300)
    weights = SampleWeights(labels, "inverse")
    per_sample = weights.for_array(labels)
    assert per_sample.mean() == pytest.approx(1.0)
    # effective counts 5 (clipped up from 2), 1000 (clipped down from 2000) and 300
    scale = labels.size / (2 / 5 + 2000 / 1000 + 300 / 300)
    assert weights.for_array([2.0, 4.2, 6.0]) == pytest.approx([scale / 5, scale / 1000, scale / 300])
    wide = SampleWeights(labels, "inverse", clip=(1, 10_000))
    assert wide.for_array([2.0])[0] / wide.for_array([4.2])[0] == pytest.approx(1000)


def test_sqrt_inverse_and_none() -> None:
    labels = np.array([3.0] * 4 + [4.0] * 100)
    weights = SampleWeights(labels, "sqrt_inv")
    assert weights.for_array([3.0])[0] / weights.for_array([4.0])[0] == pytest.approx(5.0)
    assert weights.for_array(labels).mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(SampleWeights(labels, "none").for_array([3.0, 4.0, 9.0]), [1, 1, 1])


def test_lds_smooths_the_transformed_counts() -> None:
    labels = np.array([3.0] * 4 + [3.1] * 9 + [4.0] * 100)
    lds = LDSConfig(kernel="triang", ks=3, sigma=1.0)  # window [0.5, 1, 0.5]
    counts = effective_counts(bin_counts(labels), "sqrt_inv", lds=lds)
    i30, i31 = bin_index([3.0, 3.1])
    assert counts[i30] == pytest.approx(2 + 0.5 * 3) and counts[i31] == pytest.approx(3 + 0.5 * 2)
    assert counts[i30 - 1] == pytest.approx(0.5 * 2)  # mass spread into an empty neighbour
    weights = SampleWeights(labels, "sqrt_inv", lds=lds)
    assert weights.for_array([3.0])[0] / weights.for_array([3.1])[0] == pytest.approx(4.0 / 3.5)
    assert weights.for_array(labels).mean() == pytest.approx(1.0)


def test_empty_bins_get_the_largest_weight() -> None:
    weights = SampleWeights([4.0, 4.0, 4.1], "sqrt_inv")
    assert weights.for_array([8.0])[0] == pytest.approx(weights.bin_weights.max())
    assert np.isfinite(weights.bin_weights).all()


def test_for_labels_matches_for_array() -> None:
    labels = np.round(np.random.default_rng(0).normal(4.2, 0.6, 1000), 1)
    weights = SampleWeights(labels, "inverse")
    batch = torch.tensor(labels[:64], dtype=torch.float32).reshape(64, 1)
    looked_up = weights.for_labels(batch)
    assert looked_up.shape == (64, 1) and looked_up.dtype == torch.float32
    np.testing.assert_allclose(looked_up.numpy().ravel(), weights.for_array(labels[:64]), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "balanced"}, "unknown weighting scheme"),
        ({"scheme": "none", "lds": LDSConfig()}, "LDS"),
        ({"scheme": "inverse", "clip": (10.0, 5.0)}, "clip"),
    ],
)
def test_bad_weighting_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SampleWeights([4.0, 4.1], **kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    labels=st.lists(st.integers(15, 100), min_size=1, max_size=400),
    scheme=st.sampled_from(["inverse", "sqrt_inv"]),
    lds=st.booleans(),
)
def test_weights_have_mean_one_on_the_training_set(labels: list[int], scheme: str, lds: bool) -> None:
    values = np.asarray(labels) / 10
    weights = SampleWeights(values, scheme, lds=LDSConfig() if lds else None)  # type: ignore[arg-type]
    per_sample = weights.for_array(values)
    assert per_sample.mean() == pytest.approx(1.0)
    assert np.all(per_sample > 0)
