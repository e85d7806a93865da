"""DistLoss forward/backward, sort backends and weighting options (method.md 3.3, 3.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from ecg_k.losses.dist_loss import (
    DistLoss,
    DistLossOutput,
    label_density,
    make_pseudo_labels,
    soft_sort_supported,
)

B = 256


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tie-free float64 predictions ~ N(4.2, 0.6), targets, and positive weights."""
    gen = torch.Generator().manual_seed(3)
    pred = (4.2 + 0.6 * torch.randn(B, generator=gen, dtype=torch.float64)).requires_grad_()
    target = torch.round(10 * (4.2 + 0.6 * torch.randn(B, generator=gen, dtype=torch.float64))) / 10
    weights = 0.2 + torch.rand(B, generator=gen, dtype=torch.float64) * 3
    assert torch.unique(pred).numel() == B
    return pred, target, weights


def _loss(labels: np.ndarray, **options: object) -> DistLoss:
    return DistLoss.from_train_labels(labels, B, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("dist_weighting", ["none", "pseudo_label", "official"])
def test_l1_without_weights_is_wasserstein_plus_sample_term(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...], dist_weighting: str
) -> None:
    pred, target, _ = batch
    loss_fn = _loss(k_train_labels, loss="l1", dist_weighting=dist_weighting)
    out = loss_fn(pred, target, return_terms=True)
    assert isinstance(out, DistLossOutput)
    w1 = wasserstein_distance(pred.detach().numpy(), loss_fn.pseudo_labels.numpy())
    sample = (pred - target).abs().mean().item()
    assert out.dist.item() == pytest.approx(w1, abs=1e-12)
    assert out.sample.item() == pytest.approx(sample, abs=1e-12)
    assert out.loss.item() == pytest.approx(w1 + sample, abs=1e-12)
    assert out.loss.dtype == torch.float64


def test_l2_and_dist_weight(k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...]) -> None:
    pred, target, _ = batch
    loss_fn = _loss(k_train_labels, loss="l2", dist_weight=0.5, dist_weighting="none")
    q = loss_fn.pseudo_labels
    expected = 0.5 * (torch.sort(pred).values - q).square().mean() + (pred - target).square().mean()
    assert loss_fn(pred, target).item() == pytest.approx(expected.item(), abs=1e-12)
    vanilla = _loss(k_train_labels, loss="l2", dist_weight=0.0, dist_weighting="none")
    assert vanilla(pred, target).item() == pytest.approx((pred - target).square().mean().item(), abs=1e-12)


@pytest.mark.parametrize("regularization_strength", [0.01, 0.1])
def test_soft_and_hard_sort_agree_at_k_scale(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...], regularization_strength: float
) -> None:
    pred, target, weights = batch
    upstream = torch.randn(B, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    results = []
    for sort in ("soft", "hard"):
        x = pred.detach().clone().requires_grad_()
        loss_fn = _loss(k_train_labels, sort=sort, regularization_strength=regularization_strength)
        loss = loss_fn(x, target, weights)
        loss.backward()
        sorted_x = loss_fn._sorted(x)
        (grad_of_sort,) = torch.autograd.grad(sorted_x, x, upstream)
        results.append((loss.detach(), x.grad, sorted_x.detach(), grad_of_sort))
    (loss_s, grad_s, sort_s, jac_s), (loss_h, grad_h, sort_h, jac_h) = results
    assert abs(loss_s - loss_h).item() <= 1e-9
    assert (grad_s - grad_h).abs().max().item() <= 1e-9
    assert (sort_s - sort_h).abs().max().item() <= 1e-9
    assert (jac_s - jac_h).abs().max().item() <= 1e-9


def test_auto_sort_uses_torchsort_on_cpu(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    pred, target, _ = batch
    calls: list[tuple[int, ...]] = []
    import torchsort

    original = torchsort.soft_sort

    def spy(values: torch.Tensor, **kwargs: object) -> torch.Tensor:
        calls.append(tuple(values.shape))
        assert kwargs == {"regularization": "l2", "regularization_strength": 0.1}
        return original(values, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torchsort, "soft_sort", spy)
    _loss(k_train_labels)(pred, target)
    assert calls == []  # the default is the hard sort
    _loss(k_train_labels, sort="auto")(pred, target)
    assert calls == [(1, B)]
    _loss(k_train_labels, sort="hard")(pred, target)
    assert len(calls) == 1
    assert soft_sort_supported(torch.device("cpu"))


def test_gradients_reach_every_prediction(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...]
) -> None:
    pred, target, weights = batch
    x32 = pred.detach().float().reshape(B, 1).requires_grad_()
    _loss(k_train_labels)(x32, target.reshape(B, 1), weights).backward()
    assert x32.grad is not None and x32.grad.dtype == torch.float32
    assert torch.isfinite(x32.grad).all() and (x32.grad != 0).all()
    # the distribution term alone also moves every prediction (its sorted position's pseudo-label pulls it)
    x = pred.detach().clone().requires_grad_()
    loss_fn = _loss(k_train_labels, dist_weighting="none")
    loss_fn(x, x.detach()).backward()  # sample term has zero gradient at pred == target
    assert x.grad is not None and (x.grad != 0).sum() > 0.95 * B


def test_official_weighting_reproduces_the_misalignment(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...]
) -> None:
    pred, target, weights = batch
    loss_fn = _loss(k_train_labels, loss="l1", dist_weighting="official")
    out = loss_fn(pred, target, weights, return_terms=True)
    q = loss_fn.pseudo_labels
    # weight of batch sample i applied at sorted position i
    misaligned = (weights * (torch.sort(pred).values - q).abs()).mean()
    assert out.dist.item() == pytest.approx(misaligned.item(), abs=1e-12)
    assert out.sample.item() == pytest.approx((weights * (pred - target).abs()).mean().item(), abs=1e-12)


def test_pseudo_label_weighting_uses_inverse_density_of_each_position(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...]
) -> None:
    pred, target, weights = batch
    grid, pmf = label_density(k_train_labels)
    q = make_pseudo_labels(k_train_labels, B)
    inverse = 1.0 / pmf[np.rint((q - 1.5) / 0.1).astype(int)]
    v = torch.as_tensor(inverse / inverse.mean())
    loss_fn = DistLoss(q, loss="l1", dist_weighting="pseudo_label", label_grid=grid, label_pmf=pmf)
    assert loss_fn.position_weights.mean().item() == pytest.approx(1.0)
    out = loss_fn(pred, target, weights, return_terms=True)
    expected = (v * (torch.sort(pred).values - torch.as_tensor(q)).abs()).mean()
    assert out.dist.item() == pytest.approx(expected.item(), abs=1e-12)
    assert out.sample.item() == pytest.approx((weights * (pred - target).abs()).mean().item(), abs=1e-12)
    none = _loss(k_train_labels, loss="l1", dist_weighting="none")(pred, target, weights, return_terms=True)
    assert none.dist.item() == pytest.approx(wasserstein_distance(pred.detach().numpy(), q), abs=1e-12)
    assert none.sample.item() == pytest.approx(out.sample.item(), abs=1e-12)


def test_pseudo_label_weighting_needs_the_density() -> None:
    with pytest.raises(ValueError, match="label_grid and label_pmf"):
        DistLoss([4.0, 4.1], dist_weighting="pseudo_label")


def test_batch_size_mismatch_explains_drop_last(k_train_labels: np.ndarray) -> None:
    loss_fn = _loss(k_train_labels)
    short = torch.full((B - 3,), 4.2)
    with pytest.raises(ValueError, match="drop_last=True"):
        loss_fn(short, short)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss": "huber"}, "unknown loss"),
        ({"dist_weighting": "sample"}, "unknown dist_weighting"),
        ({"sort": "fast"}, "unknown sort"),
        ({"dist_weight": -1.0}, "dist_weight"),
        ({"regularization_strength": 0.0}, "regularization_strength"),
    ],
)
def test_bad_options_are_rejected(
    k_train_labels: np.ndarray, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _loss(k_train_labels, **options)


def test_shape_checks_and_unsorted_pseudo_labels(k_train_labels: np.ndarray) -> None:
    loss_fn = _loss(k_train_labels)
    x = torch.full((B,), 4.0)
    with pytest.raises(ValueError, match="shape"):
        loss_fn(x.reshape(B // 2, 2), x)
    with pytest.raises(ValueError, match="sizes differ"):
        loss_fn(x, x[:-1])
    with pytest.raises(ValueError, match="one entry per prediction"):
        loss_fn(x, x, torch.ones(B - 1))
    with pytest.raises(ValueError, match="ascending"):
        DistLoss([4.2, 4.1], dist_weighting="none")


def test_state_dict_round_trip(k_train_labels: np.ndarray) -> None:
    loss_fn = _loss(k_train_labels)
    clone = DistLoss(np.zeros(B), dist_weighting="none")
    clone.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(clone.pseudo_labels, loss_fn.pseudo_labels)


def test_default_is_the_official_loss_with_unit_weights_on_the_distribution_term(
    k_train_labels: np.ndarray, batch: tuple[torch.Tensor, ...]
) -> None:
    """Issue 11: the default equals the official ``DistLoss.forward`` (L2, float64) with the sample weights on
    the sample term and weight 1 at every sorted position; soft sort gives the same loss and gradient."""
    pred, target, weights = batch
    default = _loss(k_train_labels)
    assert (default.element_loss, default.dist_weighting, default.sort) == ("l2", "none", "hard")
    q = torch.as_tensor(make_pseudo_labels(k_train_labels, B), dtype=torch.float64)
    sorted_pred = torch.sort(pred.double()).values
    unit = torch.ones(B, dtype=torch.float64)
    official = (1.0 * unit * (sorted_pred - q) ** 2 + weights * (pred - target) ** 2).mean()
    loss = default(pred, target, weights)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(official.item(), rel=1e-14)
    grad_default = torch.autograd.grad(loss, pred)[0]
    soft = _loss(k_train_labels, sort="soft")(pred, target, weights)
    torch.testing.assert_close(soft, loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(soft, pred)[0], grad_default, rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 32, 63])
def test_a_batch_below_64_is_refused(k_train_labels: np.ndarray, batch_size: int) -> None:
    with pytest.raises(ValueError, match="at least 64"):
        DistLoss.from_train_labels(k_train_labels, batch_size)
    with pytest.raises(ValueError, match="at least 64"):
        DistLoss.from_train_labels(k_train_labels, 32, world_size=batch_size // 32 or 1)
    assert DistLoss.from_train_labels(k_train_labels, 32, world_size=2).pseudo_labels.shape == (64,)
