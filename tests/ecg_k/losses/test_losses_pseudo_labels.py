"""Label grid, KDE density and pseudo-labels (method.md 3.1, 3.2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg_k.losses import dist_loss
from ecg_k.losses.dist_loss import counts_from_pmf, label_density, make_pseudo_labels
from ecg_k.losses.weighting import label_grid


def _pmf(expected_counts: list[float], m: int) -> np.ndarray:
    """pmf whose expected counts ``pmf * m`` are exactly ``expected_counts`` (m a power of two)."""
    counts = np.asarray(expected_counts, dtype=np.float64)
    assert counts.sum() == m
    return counts / m


def test_default_grid_has_86_exact_points() -> None:
    grid = label_grid()
    assert len(grid) == 86
    assert grid[0] == 1.5 and grid[-1] == 10.0
    assert grid[11] == 2.6  # no accumulation drift (the official loop gives 2.6000000000000014)
    np.testing.assert_array_equal(grid, np.round(1.5 + 0.1 * np.arange(86), 9))


def test_grid_rejects_a_step_that_does_not_divide_the_range() -> None:
    with pytest.raises(ValueError, match="integer"):
        label_grid(1.5, 10.0, 0.3)


@pytest.mark.parametrize(
    ("expected_counts", "m", "counts"),
    [
        ([1, 2, 4, 2, 1], 10, [1, 2, 4, 2, 1]),  # already integers
        ([0.5, 0.5, 5, 6, 3, 1], 16, [0, 1, 5, 6, 3, 1]),  # left tail lumped where the cumsum reaches 1
        ([1, 2.5, 4.5, 4.5, 2.5, 1], 16, [1, 3, 5, 4, 2, 1]),  # half to even: r = +2 on bins argmax-1, argmax
        ([1, 3.5, 3.5, 3.5, 3.5, 1], 16, [0, 3, 4, 4, 4, 1]),  # r = -2 around the first maximum
        ([5, 2.5, 2.5, 2.5, 2.5, 1], 16, [6, 3, 2, 2, 2, 1]),  # mode at the left edge: official slice [-1:1]
        ([1, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 16], 32, [1, 2, 2, 2, 2, 3, 3, 17]),  # right edge, r = 3: [6:9]
        ([1, 0.25, 3.5, 3.5, 3.5, 1.5, 2.75], 16, [1, 0, 3, 3, 4, 2, 3]),  # r = -2 would make bin 1 negative
    ],
)
def test_counts_from_pmf_hand_computed(expected_counts: list[float], m: int, counts: list[int]) -> None:
    np.testing.assert_array_equal(counts_from_pmf(_pmf(expected_counts, m), m), counts)


def test_large_residual_branch_keeps_the_sign() -> None:
    pmf = _pmf([1, 3.5, 3.5, 3.5, 3.5, 1], 16)  # rounds to 18: r = -2 > width int(0.2 * 6) = 1
    np.testing.assert_array_equal(counts_from_pmf(pmf, 16, region_adjustment=0.2), [1, 2, 4, 4, 4, 1])
    pmf = _pmf([1, 2.5, 2.5, 2.5, 2.5, 2.5, 1.5, 1], 16)  # rounds to 14: r = +2, two units into the mode
    np.testing.assert_array_equal(counts_from_pmf(pmf, 16, region_adjustment=0.2), [1, 4, 2, 2, 2, 2, 2, 1])


@pytest.mark.parametrize(
    ("pmf", "m"), [([1.0], 1), ([0.5, 0.5], 1), ([1.0, 0.0, 0.0], 7), ([0.0, 0.0, 1.0], 5)]
)
def test_degenerate_pmfs_still_sum_to_m(pmf: list[float], m: int) -> None:
    counts = counts_from_pmf(pmf, m)
    assert counts.sum() == m and counts.min() >= 0


@pytest.mark.parametrize(
    ("pmf", "m", "message"),
    [
        ([0.5, 0.6], 4, "sum to 1"),
        ([1.5, -0.5], 4, "non-negative"),
        ([1.0], 0, "positive integer"),
        ([], 3, "non-empty"),
    ],
)
def test_counts_from_pmf_rejects_bad_input(pmf: list[float], m: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        counts_from_pmf(pmf, m)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=90).filter(lambda xs: sum(xs) > 1e-3),
    m=st.integers(1, 2048),
    mode_at_start=st.booleans(),
)
def test_counts_from_pmf_random(raw: list[float], m: int, mode_at_start: bool) -> None:
    pmf = np.asarray(raw)
    if mode_at_start:  # the position that breaks the official residual slice
        pmf[0] = pmf.max() * 2 + 0.1
    pmf = pmf / pmf.sum()
    counts = counts_from_pmf(pmf, m)
    assert counts.sum() == m
    assert counts.min() >= 0


def test_make_pseudo_labels_repeats_grid_values_by_the_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = label_grid(1.5, 2.0, 0.1)
    pmf = _pmf([0.5, 0.5, 5, 6, 3, 1], 16)
    monkeypatch.setattr(dist_loss, "label_density", lambda *args, **kwargs: (grid, pmf))
    labels = make_pseudo_labels(np.zeros(3), 16, min_label=1.5, max_label=2.0)
    expected = [1.6] + [1.7] * 5 + [1.8] * 6 + [1.9] * 3 + [2.0]
    np.testing.assert_array_equal(labels, expected)


def test_label_density_is_a_pmf_on_the_grid_and_drops_out_of_range_labels() -> None:
    rng = np.random.default_rng(0)
    labels = np.round(rng.normal(4.2, 0.6, 5000), 1)
    grid, pmf = label_density(labels)
    assert len(grid) == len(pmf) == 86
    assert pmf.sum() == pytest.approx(1.0) and pmf.min() >= 0
    assert abs(grid[np.argmax(pmf)] - 4.2) <= 0.2
    _, with_outliers = label_density(np.concatenate([labels, [0.5, 25.0]]))
    np.testing.assert_allclose(with_outliers, pmf)


def test_label_density_needs_two_distinct_labels() -> None:
    with pytest.raises(ValueError, match="two distinct"):
        label_density([4.0, 4.0, 12.0])


@pytest.mark.parametrize("rounding", ["official", "quantile"])
@pytest.mark.parametrize("m", [2, 64, 512])
def test_pseudo_labels_on_k_like_labels(k_train_labels: np.ndarray, rounding: str, m: int) -> None:
    labels = k_train_labels
    q = make_pseudo_labels(labels, m, rounding=rounding)  # type: ignore[arg-type]
    assert q.shape == (m,) and q.dtype == np.float64
    assert np.all(np.diff(q) >= 0) and q[0] >= 1.5 and q[-1] <= 10.0
    assert abs(np.median(q) - np.median(labels)) < 0.15
    if rounding == "official":
        assert set(np.round(q, 9)) <= set(label_grid())


def test_quantile_pseudo_labels_are_the_kde_quantiles() -> None:
    rng = np.random.default_rng(2)
    labels = np.round(rng.normal(4.2, 0.5, 3000), 1)
    q = make_pseudo_labels(labels, 100, rounding="quantile")
    kde = dist_loss._kde(labels, 1.5, 10.0, 0.5)
    low = kde.integrate_box_1d(-np.inf, 1.5)
    mass = kde.integrate_box_1d(1.5, 10.0)
    cdf = np.array([(kde.integrate_box_1d(-np.inf, x) - low) / mass for x in q])
    np.testing.assert_allclose(cdf, (np.arange(100) + 0.5) / 100, atol=2e-4)


def test_unknown_rounding_is_rejected() -> None:
    with pytest.raises(ValueError, match="rounding"):
        make_pseudo_labels([4.0, 4.1], 4, rounding="paper")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(15, 100), min_size=2, max_size=300).filter(lambda xs: len(set(xs)) > 1),
    m=st.integers(1, 1024),
    rounding=st.sampled_from(["official", "quantile"]),
    bw=st.sampled_from([0.2, 0.5, 1.0]),
)
def test_pseudo_labels_random(labels: list[int], m: int, rounding: str, bw: float) -> None:
    values = np.asarray(labels) / 10
    q = make_pseudo_labels(values, m, bw_method=bw, rounding=rounding)  # type: ignore[arg-type]
    assert q.shape == (m,)
    assert np.all(np.diff(q) >= 0)
    assert q[0] >= 1.5 and q[-1] <= 10.0
