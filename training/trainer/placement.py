"""Where and how a training run executes: the device, its rank in a ``torchrun`` process group, and the
mixed-precision policy (bf16 autocast on the backbone only)."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.config import TrainConfig
from training.trainer.errors import TrainingError


@dataclass(frozen=True)
class DevicePlacement:
    """The run's device, DDP rank and world size, and whether the backbone runs under bf16 autocast."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DDP when the run has several processes, else itself."""
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return module

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.world > 1:
            dist.barrier()


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error, not a silent CPU run."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def place_run(config: TrainConfig) -> DevicePlacement:
    """Device and, under ``torchrun`` (``WORLD_SIZE`` > 1), the process group (nccl on CUDA, gloo on CPU)."""
    device = resolve_device(config.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return DevicePlacement(device=device, rank=rank, world=world, amp=config.amp and device.type == "cuda")


def backbone_autocast(device: torch.device, amp: bool) -> Any:
    """bf16 autocast on ``device`` when ``amp``, else nothing. Wraps the backbone's convolutions only: the
    head, the losses, the metrics and the stage-2 feature cache stay float32 (bf16 rounds K+ to 1/32 mmol/L)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def head_fp32(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The head on float32 features with autocast off: float32 estimates ``(B,)``."""
    with torch.autocast(features.device.type, enabled=False):
        return head(features.float()).squeeze(-1)
