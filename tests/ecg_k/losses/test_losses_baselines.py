"""Baselines: FDS, Balanced MSE, RankSim, ConR (method.md section 10); each runs a forward+backward step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecg_k.losses import FDS, BalancedMSELoss, ConR, RankSim, fit_label_gmm, histogram_prior
from ecg_k.losses.ranksim import normalised_ranks, one_per_bin, ranking_regularizer
from ecg_k.losses.weighting import LDSConfig

N, D = 96, 16


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (requires grad) and K+ labels on the 0.1 grid."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(N, D, generator=gen).requires_grad_()
    labels = torch.round(10 * (4.2 + 0.8 * torch.randn(N, generator=gen))).clamp(15, 100) / 10
    return features, labels


def _assert_grad(tensor: torch.Tensor) -> None:
    assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


# FDS


def test_fds_forward_backward_and_official_epoch_cycle(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    fds = FDS(D).train()
    assert fds.smooth(features, labels, epoch=0) is features  # before start_smooth
    fds.update_last_epoch_stats(0)  # end of epoch 0: nothing smoothed yet (official: only from epoch 1)
    fds.update_running_stats(features.detach(), labels, epoch=0)
    assert fds.smooth(features, labels, epoch=1) is features  # epoch 1: identity, as the official buffers give
    fds.update_last_epoch_stats(1)  # end of epoch 1: smooth the stats of epoch 0
    fds.update_running_stats(features.detach() + 1.0, labels, epoch=1)
    head = torch.nn.Linear(D, 1)
    smoothed = fds.smooth(features, labels, epoch=2)
    assert not torch.equal(smoothed, features)
    (head(smoothed).squeeze(1) - labels).abs().mean().backward()
    _assert_grad(features)
    assert fds.eval().smooth(features, labels, epoch=2) is features


def test_fds_statistics_and_calibration(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    x = features.detach()
    fds = FDS(D, ks=5, sigma=2.0)
    assert fds.window.sum().item() == pytest.approx(1.0)
    assert fds.n_buckets == 86
    fds.samples_tracked.fill_(1)
    ramp = torch.arange(86.0)[:, None].repeat(1, D)
    torch.testing.assert_close(fds._smoothed(ramp)[10:-10], ramp[10:-10])  # symmetric, sum 1: keeps a ramp
    flat = torch.full((86, D), 3.0)
    torch.testing.assert_close(fds._smoothed(flat), flat)  # reflect padding: edges keep a constant
    fds.samples_tracked.zero_()
    fds.update_running_stats(x, labels, epoch=0)  # first update replaces the initial stats
    bucket = int(fds.buckets(labels[:1]))
    rows = x[fds.buckets(labels) == bucket]
    torch.testing.assert_close(fds.running_mean[bucket], rows.mean(0))
    assert fds.samples_tracked[bucket].item() == rows.shape[0]
    fds.update_running_stats(x + 1.0, labels, epoch=1)  # EMA with momentum 0.9
    torch.testing.assert_close(fds.running_mean[bucket], rows.mean(0) + 0.1)
    fds.update_last_epoch_stats(2)  # not epoch + 1 of the stored epoch 0: ignored
    assert int(fds.epoch) == 0
    fds.update_last_epoch_stats(1)
    assert int(fds.epoch) == 1
    # equal running and smoothed statistics: the calibration is the identity
    for name, value in (("running_mean", 0.5), ("smoothed_mean", 0.5), ("running_var", 2.0), ("smoothed_var", 2.0)):
        getattr(fds, name).fill_(value)
    torch.testing.assert_close(fds.train().smooth(x, labels, epoch=2), x)
    fds.smoothed_var.fill_(2000.0)  # ratio clamped to 10
    out = fds.smooth(x, labels, epoch=2)
    torch.testing.assert_close(out, (x - 0.5) * math.sqrt(10) + 0.5)


def test_fds_never_smooths_an_empty_bucket_into_a_populated_one() -> None:
    """Issue 11: populated buckets 3.0 and 3.3 with empty 3.1-3.2 between them (default stats 0/1 there)."""
    fds = FDS(2, ks=5, sigma=2.0, min_label=3.0, max_label=3.3)
    assert fds.n_buckets == 4
    labels = torch.tensor([3.0, 3.0, 3.3, 3.3])
    features = torch.tensor([[5.0, 5.0], [7.0, 7.0], [9.0, 9.0], [11.0, 11.0]])
    fds.update_running_stats(features, labels, epoch=0)
    fds.update_last_epoch_stats(1)
    torch.testing.assert_close(fds.running_mean[1:3], torch.zeros(2, 2))  # empty: defaults never updated
    window = fds.window.ravel()  # weights at distance 0..2: window[2], window[3] (= window[1]), window[4]
    own, far = float(window[2]), float(window[4])  # 3.0 and 3.3 are 3 buckets apart: the reflection at 3.0
    # holds 3.0 itself at distance 0 and nothing else populated within 2 buckets, so only its own stats count
    torch.testing.assert_close(fds.smoothed_mean[0], torch.full((2,), 6.0))
    torch.testing.assert_close(fds.smoothed_mean[3], torch.full((2,), 10.0))
    torch.testing.assert_close(fds.smoothed_var[0], torch.full((2,), 2.0))
    assert own > far > 0
    # a populated neighbour does count
    neighbour = FDS(2, ks=5, sigma=2.0, min_label=3.0, max_label=3.3)
    neighbour.update_running_stats(torch.cat([features, torch.tensor([[8.0, 8.0]])]),
                                   torch.cat([labels, torch.tensor([3.1])]), epoch=0)
    neighbour.update_last_epoch_stats(1)
    assert 6.0 < float(neighbour.smoothed_mean[0, 0]) < 8.0


def test_fds_edge_buckets_pool_out_of_range_labels() -> None:
    fds = FDS(4)
    buckets = fds.buckets(torch.tensor([0.5, 1.5, 4.1, 10.0, 12.0]))
    np.testing.assert_array_equal(buckets.tolist(), [0, 0, 26, 85, 85])
    populated = FDS(4, min_label=2.5, max_label=7.5)
    assert populated.n_buckets == 51
    np.testing.assert_array_equal(populated.buckets(torch.tensor([1.5, 2.5, 4.1, 7.5, 9.0])).tolist(),
                                  [0, 0, 16, 50, 50])


# Balanced MSE


@pytest.mark.parametrize("mode", ["bmc", "bni", "gai"])
def test_balanced_mse_forward_backward(batch: tuple[torch.Tensor, torch.Tensor], mode: str) -> None:
    _, labels = batch
    prior = None
    if mode == "bni":
        prior = histogram_prior(labels.numpy(), LDSConfig())
    elif mode == "gai":
        prior = fit_label_gmm(labels.numpy())
    loss_fn = BalancedMSELoss(mode, init_noise_sigma=1.0, prior=prior)  # type: ignore[arg-type]
    pred = (labels + 0.3 * torch.randn(N)).reshape(N, 1).requires_grad_()
    loss = loss_fn(pred, labels.reshape(N, 1))
    loss.backward()
    assert torch.isfinite(loss)
    _assert_grad(pred)
    assert loss_fn.noise_sigma.grad is not None and torch.isfinite(loss_fn.noise_sigma.grad)


def test_bmc_matches_the_formula() -> None:
    pred, target, sigma = torch.tensor([4.0, 5.5]), torch.tensor([4.2, 5.0]), 0.5
    loss = BalancedMSELoss("bmc", init_noise_sigma=sigma)(pred, target)
    logits = -((pred[:, None] - target[None, :]) ** 2) / (2 * sigma**2)
    expected = -(logits.diagonal() - logits.logsumexp(dim=1)).mean() * 2 * sigma**2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bni_with_a_point_prior_is_gai_without_the_log_terms() -> None:
    prior = histogram_prior([4.0, 4.0, 5.0])
    assert prior.means.tolist() == [4.0, 5.0] and prior.weights.tolist() == pytest.approx([2 / 3, 1 / 3])
    pred, target = torch.tensor([4.4]), torch.tensor([4.2])
    loss = BalancedMSELoss("bni", init_noise_sigma=1.0, prior=prior)(pred, target)
    balancing = math.log(2 / 3 * math.exp(-0.5 * 0.4**2) + 1 / 3 * math.exp(-0.5 * 0.6**2))
    assert loss.item() == pytest.approx(2 * (0.5 * 0.2**2 + balancing), rel=1e-5)


def test_balanced_mse_options() -> None:
    assert not BalancedMSELoss("bmc", fix_noise_sigma=True).noise_sigma.requires_grad
    with pytest.raises(ValueError, match="prior"):
        BalancedMSELoss("gai")
    with pytest.raises(ValueError, match="batch of at least 2"):
        BalancedMSELoss("bmc")(torch.tensor([4.0]), torch.tensor([4.0]))


# RankSim


def test_ranksim_forward_backward(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    loss = RankSim()(features, labels, generator=torch.Generator().manual_seed(0))
    assert loss.item() > 0
    loss.backward()
    _assert_grad(features)


def test_one_per_bin_keeps_one_random_sample_per_bin() -> None:
    labels = torch.tensor([4.1, 4.1, 4.2, 3.0, 4.1, 3.0, 4.2 + 1e-7])
    generators = [torch.Generator().manual_seed(seed) for seed in range(20)]
    picks = {tuple(one_per_bin(labels, generator=gen).tolist()) for gen in generators}
    for keep in picks:
        assert sorted(torch.round(labels[list(keep)] * 10).tolist()) == [30, 41, 42]
    assert len(picks) > 1


def test_ranks_and_a_perfectly_ranked_embedding() -> None:
    ranks = normalised_ranks(torch.tensor([[0.2, 0.9, 0.5]]))
    torch.testing.assert_close(ranks, torch.tensor([[1.0, 1 / 3, 2 / 3]]))
    bins = torch.tensor([17.0, 18, 20, 24, 32, 48])  # distances from any anchor are distinct: no ties
    angle = 0.02 * bins
    features = torch.stack([angle.cos(), angle.sin()], dim=1).requires_grad_()
    reg = ranking_regularizer(features, bins / 10)
    assert reg.item() == 0.0
    reg.backward()  # blackbox gradient: zero when the ranks already agree
    assert features.grad is not None and features.grad.abs().max().item() == 0.0


# ConR


def _conr_by_loops(z: torch.Tensor, y: list[float], p: list[float], w: float, e: float, t: float,
                   official: bool = False) -> float:
    """The ConR formula with explicit loops (paper denominator: positives + pushed negatives; the official
    code adds exp(0) = 1 for every entry of the row that is not a positive, self included)."""
    n, total = len(y), 0.0
    sim = (torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(z, dim=1).T / t).tolist()
    for i in range(n):
        pos = [j for j in range(n) if j != i and abs(y[i] - y[j]) <= w + 1e-6]
        neg = [j for j in range(n) if abs(y[i] - y[j]) > w + 1e-6 and abs(p[i] - p[j]) <= w]
        if not neg or not pos:
            continue
        denom = sum(math.exp(sim[i][j]) for j in pos)
        denom += sum(math.exp(e * abs(y[i] - y[j]) + sim[i][j]) for j in neg)
        denom += (n - len(pos)) if official else 0
        total += sum(-math.log(math.exp(sim[i][j]) / denom) for j in pos) / len(pos)
    return total / n


def test_conr_matches_the_formula() -> None:
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = [4.1, 4.2, 4.5, 4.1, 4.2, 4.5]
    p = [4.15, 4.2, 4.25, 4.1, 4.3, 4.9]
    conr = ConR(beta=1.0, eta=0.1, temperature=0.2, denominator="paper")
    value = conr(z, torch.tensor(y), torch.tensor(p)).item()
    assert value == pytest.approx(_conr_by_loops(z, y, p, 0.1, 0.1, 0.2), rel=1e-5)
    assert value > 0
    official = ConR(beta=1.0, eta=0.1)
    assert (official.temperature, official.denominator) == (0.07, "official")
    value = official(z, torch.tensor(y), torch.tensor(p)).item()
    assert value == pytest.approx(_conr_by_loops(z, y, p, 0.1, 0.1, 0.07, official=True), rel=1e-5)


def test_conr_forward_backward_on_noise_views(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = batch
    conr = ConR(noise_std=0.1)
    signals = torch.randn(N // 2, 1, 500)
    views = conr.make_views(signals, generator=torch.Generator().manual_seed(2))
    assert views.shape == (N, 1, 500)
    assert (views[: N // 2] - signals).std().item() == pytest.approx(0.1, rel=0.05)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(500, D))
    features = encoder(views)
    view_labels = labels[: N // 2].repeat(2)
    preds = view_labels + 0.05 * torch.randn(N)
    loss = conr(features, view_labels, preds, weights=torch.ones(N))
    assert loss.item() > 0
    loss.backward()
    _assert_grad(encoder[1].weight)


def test_conr_without_negatives_is_zero() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    far = torch.tensor([3.0, 4.0, 5.0, 6.0])
    loss = ConR()(z, far, far)  # predictions 1 mmol/L apart: no negatives
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
