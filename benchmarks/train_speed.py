"""Training speed, as ratios measured in one run.

- Dist Loss head step vs a plain L1 head step (batch 512, the head of the ``small`` Net1D, inverse sample
  weights as training passes them): the default (hard sort, unweighted distribution term; target <= 1.10x),
  the soft sort, and the previous default (soft sort, pseudo-label weighting);
- a stage-2 epoch on cached features vs the same epoch running the frozen backbone every step;
- stage-1 samples/s (forward + backward + Adam step) of ``small`` and ``ecgfounder`` on this device;
- on CUDA, ``ecgfounder`` samples/s with bf16 autocast vs fp32.

Usage: ``.venv/bin/python benchmarks/train_speed.py [--n 2048] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from ecg_k.losses import DistLoss, SampleWeights
from ecg_k.models import build_net1d

N_SAMPLES = 5000


def best_time(fn: Callable[[], object], repeats: int, sync: bool) -> float:
    """Best wall time of ``repeats`` calls after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


DIST_STEP_TARGET = 1.10
"""Issue 16: the default Dist Loss head step costs at most 1.10x a plain L1 head step."""


def head_steps(repeats: int, rounds: int = 3) -> dict[str, object]:
    """Best step time of each loss over ``rounds`` interleaved rounds (so load changes hit every loss alike)."""
    net = build_net1d("small", 1)
    head = net.head
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    features = torch.randn(512, net.n_features)
    labels = torch.as_tensor(np.round(np.random.default_rng(0).normal(4.2, 0.6, 512), 1), dtype=torch.float32)
    train_labels = np.round(np.random.default_rng(1).normal(4.2, 0.6, 20_000), 1)
    weights = SampleWeights(train_labels, "inverse").for_labels(labels)

    def dist(**options: object) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        loss = DistLoss.from_train_labels(train_labels, 512, **options)  # type: ignore[arg-type]
        return lambda pred, target: loss(pred, target, weights)

    losses: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "l1": lambda pred, target: (pred - target).abs().mean(),
        "dist_default": dist(),
        "dist_soft": dist(sort="soft"),
        "dist_previous_default": dist(sort="soft", dist_weighting="pseudo_label"),
    }
    times = dict.fromkeys(losses, float("inf"))
    for _ in range(rounds):
        for name, loss_fn in losses.items():
            def step(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = loss_fn) -> None:
                optimizer.zero_grad()
                pred = head(features).squeeze(-1) + 4.2
                loss_fn(pred, labels).backward()
                optimizer.step()
            times[name] = min(times[name], best_time(step, repeats * 20, sync=False))
    out: dict[str, object] = {f"head_step_ms_{name}": round(t * 1e3, 3) for name, t in times.items()}
    ratio = times["dist_default"] / times["l1"]
    out |= {
        "ratio_dist_default_vs_l1": round(ratio, 3),
        "ratio_dist_default_target": f"<= {DIST_STEP_TARGET:.2f} ({'met' if ratio <= DIST_STEP_TARGET else 'MISSED'})",
        "ratio_dist_soft_vs_l1": round(times["dist_soft"] / times["l1"], 3),
        "ratio_dist_previous_default_vs_l1": round(times["dist_previous_default"] / times["l1"], 3),
    }
    return out


def stage2_epoch(n: int, repeats: int) -> dict[str, float]:
    net = build_net1d("small", 1).eval()
    net.freeze_backbone()
    signals = torch.randn(n, 1, N_SAMPLES)
    labels = torch.full((n,), 4.2)
    optimizer = torch.optim.Adam(net.head.parameters(), lr=1e-3)
    batch = 256

    def cache() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net.backbone_features(signals[i : i + batch]) for i in range(0, n, batch)])

    start = time.perf_counter()
    cached = cache()
    cache_seconds = time.perf_counter() - start

    def epoch(source: Callable[[slice], torch.Tensor]) -> None:
        for i in range(0, n - n % batch, batch):
            optimizer.zero_grad()
            (net.head(source(slice(i, i + batch))).squeeze(-1) - labels[i : i + batch]).abs().mean().backward()
            optimizer.step()

    def through_backbone(rows: slice) -> torch.Tensor:
        with torch.no_grad():
            return net.backbone_features(signals[rows])

    cached_epoch = best_time(lambda: epoch(lambda rows: cached[rows]), repeats, sync=False)
    live_epoch = best_time(lambda: epoch(through_backbone), max(1, repeats // 2), sync=False)
    return {
        "stage2_samples": n,
        "stage2_feature_cache_s": round(cache_seconds, 3),
        "stage2_epoch_s_cached": round(cached_epoch, 4),
        "stage2_epoch_s_backbone_each_step": round(live_epoch, 3),
        "ratio_backbone_vs_cached_epoch": round(live_epoch / cached_epoch, 1),
    }


def stage1_throughput(name: str, batch: int, device: torch.device, amp: bool, repeats: int) -> float:
    net = build_net1d(name, 1).to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    x = torch.randn(batch, 1, N_SAMPLES, device=device)
    y = torch.full((batch,), 4.2, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            pred = net(x)
        (pred.float() - y).abs().mean().backward()
        optimizer.step()

    return batch / best_time(step, repeats, sync=device.type == "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="samples of the stage-2 epoch comparison")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head-only", action="store_true", help="only the Dist Loss head-step comparison")
    args = parser.parse_args()
    results: dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    results |= head_steps(args.repeats)
    if args.head_only:
        print(json.dumps(results, indent=2))
        return
    results |= stage2_epoch(args.n, args.repeats)
    cpu = torch.device("cpu")
    results["stage1_samples_per_s_cpu_small_b64"] = round(stage1_throughput("small", 64, cpu, False, args.repeats), 1)
    results["stage1_samples_per_s_cpu_ecgfounder_b8"] = round(
        stage1_throughput("ecgfounder", 8, cpu, False, max(1, args.repeats // 2)), 2)
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        fp32 = stage1_throughput("ecgfounder", 256, cuda, False, args.repeats)
        bf16 = stage1_throughput("ecgfounder", 256, cuda, True, args.repeats)
        results |= {"gpu": torch.cuda.get_device_name(), "stage1_samples_per_s_cuda_ecgfounder_b256_fp32": round(fp32),
                    "stage1_samples_per_s_cuda_ecgfounder_b256_bf16": round(bf16),
                    "ratio_bf16_vs_fp32": round(bf16 / fp32, 2)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
