"""Dist Loss under torch.distributed: 2 CPU processes, gloo backend (method.md 3.3 "Under DDP")."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ecg_k.losses.dist_loss import DistLoss, label_density, make_pseudo_labels

WORLD = 2
LOCAL = 64


def _data() -> dict[str, torch.Tensor | np.ndarray]:
    """The same global batch and density in every process."""
    rng = np.random.default_rng(5)
    labels = np.round(np.exp(rng.normal(np.log(4.2), 0.13, 5000)), 1)
    grid, pmf = label_density(labels)
    gen = torch.Generator().manual_seed(6)
    return {
        "grid": grid,
        "pmf": pmf,
        "q": make_pseudo_labels(labels, LOCAL * WORLD),
        "pred": 4.2 + 0.6 * torch.randn(LOCAL * WORLD, generator=gen, dtype=torch.float64),
        "target": torch.round(42 + 6 * torch.randn(LOCAL * WORLD, generator=gen, dtype=torch.float64)) / 10,
        "weights": 0.2 + 3 * torch.rand(LOCAL * WORLD, generator=gen, dtype=torch.float64),
    }


def _losses(data: dict[str, torch.Tensor | np.ndarray]) -> dict[str, DistLoss]:
    return {
        mode: DistLoss(data["q"], dist_weighting=mode, label_grid=data["grid"], label_pmf=data["pmf"])
        for mode in ("pseudo_label", "official", "none")
    }


def _worker(rank: int, tmp: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        data = _data()
        part = slice(rank * LOCAL, (rank + 1) * LOCAL)
        results = {}
        for name, loss_fn in _losses(data).items():
            pred = data["pred"][part].clone().requires_grad_()  # type: ignore[union-attr]
            loss = loss_fn(pred, data["target"][part], data["weights"][part])  # type: ignore[index]
            loss.backward()
            results[name] = (loss.detach(), pred.grad)
        local_q = DistLoss(np.asarray(data["q"])[:LOCAL], dist_weighting="none")
        try:
            local_q(data["pred"][part], data["target"][part])  # type: ignore[index]
            results["mismatch_error"] = ""
        except ValueError as error:
            results["mismatch_error"] = str(error)
        torch.save(results, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_loss_matches_single_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    data = _data()
    for name, loss_fn in _losses(data).items():
        pred = data["pred"].clone().requires_grad_()  # type: ignore[union-attr]
        single = loss_fn(pred, data["target"], data["weights"])
        single.backward()
        assert pred.grad is not None
        # rank r returns D + S_r: the mean over ranks is the single-process loss on the global batch
        mean_loss = sum(r[name][0] for r in ranks) / WORLD
        assert mean_loss.item() == pytest.approx(single.item(), abs=1e-12)
        for rank, result in enumerate(ranks):
            grad = result[name][1]
            assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all()
            # DDP averages parameter gradients over ranks: grad / WORLD is the single-process gradient
            expected = pred.grad[rank * LOCAL : (rank + 1) * LOCAL]
            torch.testing.assert_close(grad / WORLD, expected, rtol=0, atol=1e-12)
    for result in ranks:
        assert "drop_last=True" in result["mismatch_error"] and "2 rank(s)" in result["mismatch_error"]
