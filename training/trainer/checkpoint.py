"""The run directory of a training run: its file names, the state a checkpoint restores, starting or resuming
the directory, and what every epoch writes (the checkpoint, the best model so far, the history).

Files are written to a temporary name and renamed, so an interrupted write leaves the previous file intact.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ecg_k.models import Net1D
from ecg_k.records.run import RUN_CONFIG, RunRecord, write_run_record
from training.trainer.errors import TrainingError

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
HISTORY = "history.json"
FEATURE_CACHE = "stage2_features.pt"


@dataclass
class RunState:
    """What a checkpoint restores: position, best model so far, history."""

    phase_index: int = 0
    next_epoch: int = 0
    best_score: float = math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary name, then rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module``'s weights (the best model so far)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def resumable_checkpoint(out: Path, resume_key: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint in ``out`` to resume from (None when there is none); a TrainingError when it was
    written by a run of another configuration."""
    checkpoint = out / CHECKPOINT
    if not checkpoint.is_file():
        return None
    saved: dict[str, Any] = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if saved["resume_key"] != resume_key:
        raise TrainingError(f"{out} was started with another configuration; cannot resume it")
    return saved


def start_run_dir(out: Path, record: RunRecord, resume: bool) -> None:
    """Create ``out`` and write its run record (``config.json``); a TrainingError when ``out`` already holds
    a run and ``resume`` is off."""
    if (out / RUN_CONFIG).exists() and not resume:
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_run_record(out, record)


def restore_phase(saved: dict[str, Any], module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                  criterion: nn.Module | None) -> None:
    """Put the trained module, the optimiser, the schedule, the loss's own state and the torch RNG back to
    where the checkpoint ``saved`` left them."""
    module.load_state_dict(saved["module"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if criterion is not None:
        criterion.load_state_dict(saved["criterion"])
    torch.set_rng_state(saved["torch_rng"])


def save_checkpoint(out: Path, resume_key: dict[str, Any], state: RunState, module: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, criterion: nn.Module | None,
                    net: Net1D) -> None:
    """After an epoch: the checkpoint (everything :func:`restore_phase` needs), the best model so far with
    what rebuilds it (``best.pt``), and the history."""
    atomic_save({
        "resume_key": resume_key, "state": state, "module": module.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "criterion": criterion.state_dict() if criterion is not None else {},
        "torch_rng": torch.get_rng_state(),
    }, out / CHECKPOINT)
    if state.best_state is not None:
        atomic_save({"model": state.best_state, "epoch": state.best_epoch, "val_bmae": state.best_score,
                     "net1d": net.config.model_dump(mode="json"), "in_channels": net.in_channels},
                    out / BEST)
    (out / HISTORY).write_text(json.dumps(state.history, indent=2) + "\n")
