"""The epoch loop of one phase: the optimiser and its schedule, seeded batches per epoch, the loss-explosion
stop, model selection by validation bMAE (the best model so far is kept and restored at the end), a
checkpoint after every epoch, and progress."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ecg_k.evaluation.regression import balanced_mae
from ecg_k.losses import BalancedMSELoss
from training.data import epoch_batches, steps_per_epoch
from training.trainer.checkpoint import RunState, restore_phase, save_checkpoint, state_copy
from training.trainer.errors import TrainingError
from training.trainer.objective import Objective
from training.trainer.phases import PhaseInputs, PhaseParts

LOSS_LIMIT = 1e6  # the official train.py asserts "Loss explosion" above this


def _optimizer(inputs: PhaseInputs, parts: PhaseParts, objective: Objective) -> torch.optim.Optimizer:
    """Adam over the phase's parameters (and Balanced MSE's noise sigma, at its own rate, undecayed)."""
    cfg = inputs.config
    groups: list[dict[str, Any]] = [{"params": parts.params}]
    if objective.criterion is not None:
        objective.criterion.to(inputs.placement.device)
    if isinstance(objective.criterion, BalancedMSELoss):
        groups.append({"params": list(objective.criterion.parameters()), "lr": cfg.regularizers.bmse_sigma_lr,
                       "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)


def train_phase(inputs: PhaseInputs, index: int, objective: Objective, parts: PhaseParts, state: RunState,
                restore: dict[str, Any] | None, progress: bool) -> None:
    """Run phase ``index`` from ``state.next_epoch`` to the configured epochs (from the checkpoint ``restore``
    when resuming inside this phase), updating ``state``; the network ends with the phase's best weights."""
    cfg, rt = inputs.config, inputs.placement
    optimizer = _optimizer(inputs, parts, objective)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones(), gamma=cfg.lr_gamma)
    if restore is not None:
        restore_phase(restore, parts.module, optimizer, scheduler, objective.criterion)
    n_train = len(inputs.train_data)
    val_labels = inputs.val_data.labels
    steps = steps_per_epoch(n_train, cfg.resolved_batch_size, drop_last=True, world=rt.world)
    for epoch in range(state.next_epoch, cfg.resolved_epochs):
        epoch_started = time.perf_counter()
        parts.epoch_start(epoch)
        losses = []
        batches = epoch_batches(n_train, cfg.resolved_batch_size, cfg.seed, index * 1000 + epoch, shuffle=True,
                                drop_last=True, rank=rt.rank, world=rt.world)
        bar = tqdm(batches, total=steps, desc=f"{cfg.method} s{cfg.stage} p{index} e{epoch + 1}/{cfg.epochs}",
                   disable=not (progress and rt.is_main), leave=False, unit="step")
        for indices in bar:
            loss = parts.step(indices, epoch)
            if not math.isfinite(loss) or abs(loss) > LOSS_LIMIT:
                raise TrainingError(f"loss exploded ({loss}) at epoch {epoch + 1}; lower --lr")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4f}")
        scheduler.step()
        val_pred = parts.evaluate(epoch)
        score = balanced_mae(val_labels, val_pred)
        record = {"phase": index, "epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                  "val_bmae": score, "val_mae": float(np.mean(np.abs(val_pred - val_labels))),
                  "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - epoch_started, 2)}
        state.history.append(record)
        if score < state.best_score:
            state.best_score, state.best_epoch, state.best_state = score, epoch + 1, state_copy(inputs.net)
        state.next_epoch = epoch + 1
        if rt.is_main:
            save_checkpoint(cfg.out, cfg.resume_key(), state, parts.module, optimizer, scheduler,
                            objective.criterion, inputs.net)
            if progress:
                tqdm.write(f"[{cfg.method} stage {cfg.stage}] phase {index} epoch {epoch + 1}/{cfg.epochs}: "
                           f"loss {record['train_loss']:.4f}, val bMAE {score:.4f} (best {state.best_score:.4f} "
                           f"@ {state.best_epoch}), {record['seconds']} s")
    if state.best_state is not None:
        inputs.net.load_state_dict(state.best_state)
