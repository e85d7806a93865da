"""Training speed, as ratios measured in one run.

- Dist Loss head step vs a plain L1 head step (batch 512, the head of the ``small`` Net1D, inverse sample
  weights as training passes them): the default (hard sort, unweighted distribution term; target <= 1.10x),
  the soft sort, and the previous default (soft sort, pseudo-label weighting);
- a stage-2 epoch on cached features vs the same epoch running the frozen backbone every step;
- stage-1 samples/s (forward + backward + Adam step) of ``small`` and ``ecgfounder`` on the CPU;
- on CUDA (under ``"cuda"``): the Dist Loss head steps again (the soft sort with torchsort's CUDA kernel where
  it was built, against ``torch.sort``), and a 12-lead ``ecgfounder`` stage-1 step in fp32 and with bf16
  autocast, each eager and ``torch.compile``'d: samples/s, peak memory, achieved TFLOP/s (three times the
  forward FLOPs that torch's FLOP counter counts) and its share of the card's dense bf16 peak.

Usage: ``.venv/bin/python benchmarks/train_speed.py [--n 2048] [--repeats 5] [--gpu-batch 128]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ecg_k.losses import DistLoss, SampleWeights
from ecg_k.losses.dist_loss import soft_sort_supported
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

BF16_DENSE_TFLOPS = {"H200 NVL": 835.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.0, "H100": 989.0,
                     "A100": 312.0, "L4": 121.0}
"""Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by device name, most specific name first: the roofline
that a training step's achieved rate is set against (``--peak-tflops`` for another card)."""


def head_steps(repeats: int, device: torch.device, rounds: int = 3) -> dict[str, object]:
    """Best step time of each loss over ``rounds`` interleaved rounds (so load changes hit every loss alike).
    The soft sort runs where torchsort supports the device (on CUDA only if it was built with its kernel)."""
    net = build_net1d("small", 1)
    head = net.head.to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    features = torch.randn(512, net.n_features, device=device)
    labels = torch.as_tensor(np.round(np.random.default_rng(0).normal(4.2, 0.6, 512), 1), dtype=torch.float32,
                             device=device)
    train_labels = np.round(np.random.default_rng(1).normal(4.2, 0.6, 20_000), 1)
    weights = SampleWeights(train_labels, "inverse").for_labels(labels)

    def dist(**options: object) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        loss = DistLoss.from_train_labels(train_labels, 512, **options).to(device)  # type: ignore[arg-type]
        return lambda pred, target: loss(pred, target, weights)

    losses: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "l1": lambda pred, target: (pred - target).abs().mean(),
        "dist_default": dist(),
    }
    soft = soft_sort_supported(device)
    if soft:
        losses |= {"dist_soft": dist(sort="soft"),
                   "dist_previous_default": dist(sort="soft", dist_weighting="pseudo_label")}
    times = dict.fromkeys(losses, float("inf"))
    for _ in range(rounds):
        for name, loss_fn in losses.items():
            def step(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = loss_fn) -> None:
                optimizer.zero_grad()
                pred = head(features).squeeze(-1) + 4.2
                loss_fn(pred, labels).backward()
                optimizer.step()
            times[name] = min(times[name], best_time(step, repeats * 20, sync=device.type == "cuda"))
    out: dict[str, object] = {f"head_step_ms_{name}": round(t * 1e3, 3) for name, t in times.items()}
    ratio = times["dist_default"] / times["l1"]
    out |= {
        "ratio_dist_default_vs_l1": round(ratio, 3),
        "ratio_dist_default_target": f"<= {DIST_STEP_TARGET:.2f} ({'met' if ratio <= DIST_STEP_TARGET else 'MISSED'})",
    }
    if soft:
        out |= {"ratio_dist_soft_vs_l1": round(times["dist_soft"] / times["l1"], 3),
                "ratio_dist_previous_default_vs_l1": round(times["dist_previous_default"] / times["l1"], 3)}
    else:
        out["dist_soft"] = f"not measured: torchsort has no kernel for {device.type} here"
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


def stage1_step(name: str, leads: int, batch: int, device: torch.device, repeats: int, *, amp: bool = False,
                compiled: bool = False) -> tuple[float, int]:
    """Samples/s of a stage-1 step (forward, L1 backward, Adam step; ``amp``: the forward under bf16 autocast,
    head included, which training keeps in float32 at a negligible share of the work; ``compiled``:
    ``torch.compile``, its compilation in the warm-up) and the peak memory it allocated on CUDA."""
    net = build_net1d(name, leads).to(device).train()
    model = torch.compile(net) if compiled else net
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    x = torch.randn(batch, leads, N_SAMPLES, device=device)
    y = torch.full((batch,), 4.2, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            pred = model(x)
        (pred.float() - y).abs().mean().backward()
        optimizer.step()

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rate = batch / best_time(step, repeats, sync=cuda)
    return rate, torch.cuda.max_memory_allocated(device) if cuda else 0


def forward_flops_per_sample(name: str, leads: int, device: torch.device, batch: int = 2) -> float:
    """FLOPs of one sample's forward pass, counted by torch's FLOP counter. A training step is taken as three
    times that (the backward of a convolution or a matrix product costs twice its forward): the counter's own
    backward count is wrong for grouped convolutions (``groups + 1`` times the forward, torch 2.13)."""
    net = build_net1d(name, leads).to(device).train()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(batch, leads, N_SAMPLES, device=device))
    return counter.get_total_flops() / batch


def bf16_peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak from :data:`BF16_DENSE_TFLOPS`; None for a card not listed."""
    return next((peak for name, peak in BF16_DENSE_TFLOPS.items() if name in device_name), None)


def gpu_training(device: torch.device, name: str, leads: int, batch: int, repeats: int,
                 peak_tflops: float | None) -> dict[str, object]:
    """``name`` on ``leads`` leads: samples/s, peak memory and the share of the bf16 roofline, in fp32 and with
    bf16 autocast, each eager and compiled. A configuration that fails is recorded, and the others still run."""
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops if peak_tflops is not None else bf16_peak_tflops(device_name)
    forward_flops = forward_flops_per_sample(name, leads, device)
    train_flops = 3 * forward_flops
    out: dict[str, object] = {"device_name": device_name, "bf16_peak_tflops": peak,
                              f"{name}_forward_gflop_per_sample": round(forward_flops / 1e9, 3),
                              f"{name}_train_step_gflop_per_sample_3x_forward": round(train_flops / 1e9, 3)}
    rates: dict[str, float] = {}
    for amp in (False, True):
        for compiled in (False, True):
            key = f"{name}_{leads}lead_b{batch}_{'bf16' if amp else 'fp32'}{'_compiled' if compiled else ''}"
            try:
                rate, peak_bytes = stage1_step(name, leads, batch, device, repeats, amp=amp, compiled=compiled)
            except Exception as err:  # a backend that fails on this card must not cost the other figures
                out[key] = f"failed: {type(err).__name__}: {str(err)[:300]}"
                continue
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rates[key] = rate
            tflops = rate * train_flops / 1e12
            out |= {f"{key}_samples_per_s": round(rate, 1), f"{key}_peak_memory_gib": round(peak_bytes / 2**30, 2),
                    f"{key}_tflops": round(tflops, 1),
                    f"{key}_share_of_bf16_peak": None if peak is None else round(tflops / peak, 4)}
    base = f"{name}_{leads}lead_b{batch}_fp32"
    for variant in ("bf16", "fp32_compiled", "bf16_compiled"):
        key = f"{name}_{leads}lead_b{batch}_{variant}"
        if key in rates and base in rates:
            out[f"ratio_{variant}_vs_fp32"] = round(rates[key] / rates[base], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="samples of the stage-2 epoch comparison")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head-only", action="store_true", help="only the Dist Loss head-step comparison")
    parser.add_argument("--gpu-batch", type=int, default=128, help="batch of the CUDA training-step figures")
    parser.add_argument("--gpu-model", choices=("ecgfounder", "small", "tiny"), default="ecgfounder",
                        help="Net1D of the CUDA training-step figures (12 leads)")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, where its name is not "
                                                           "in BF16_DENSE_TFLOPS")
    args = parser.parse_args()
    if args.repeats < 1 or args.n < 256 or args.gpu_batch < 1:
        parser.error("--repeats and --gpu-batch must be at least 1, --n at least 256")
    cpu = torch.device("cpu")
    results: dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    results |= head_steps(args.repeats, cpu)
    if args.head_only:
        print(json.dumps(results, indent=2))
        return
    results |= stage2_epoch(args.n, args.repeats)
    results["stage1_samples_per_s_cpu_small_b64"] = round(stage1_step("small", 1, 64, cpu, args.repeats)[0], 1)
    results["stage1_samples_per_s_cpu_ecgfounder_b8"] = round(
        stage1_step("ecgfounder", 1, 8, cpu, max(1, args.repeats // 2))[0], 2)
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        results["cuda"] = {"dist_loss_head_step": head_steps(args.repeats, cuda),
                           "training_step": gpu_training(cuda, args.gpu_model, 12, args.gpu_batch, args.repeats,
                                                         args.peak_tflops)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
