"""What one phase trains and how a step of it runs: end to end (the whole Net1D, with FDS, SRL, Group-DIR,
RankSim or ConR as the phase names) or head only on the frozen backbone's cached features (stage 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ecg_k.losses import FDS
from ecg_k.losses.methods import Phase
from ecg_k.losses.srl import SRL
from ecg_k.models import Net1D
from training.config import TrainConfig
from training.data import SplitData
from training.trainer.checkpoint import BEST, FEATURE_CACHE, atomic_save
from training.trainer.network import Regressor, apply_head_bias_init, backbone_features, predict
from training.trainer.objective import Objective, build_fds, build_feature_objective
from training.trainer.placement import DevicePlacement, head_fp32


@dataclass(frozen=True)
class PhaseParts:
    """What the epoch loop needs from a phase: a training step (forward + backward, returns the loss),
    the parameters to optimise, the module to checkpoint, the end-of-epoch evaluation (val estimates), and a
    hook run at the start of each epoch."""

    step: Callable[[np.ndarray, int], float]
    params: list[nn.Parameter]
    module: nn.Module
    evaluate: Callable[[int], np.ndarray]
    epoch_start: Callable[[int], None] = lambda epoch: None


@dataclass
class PhaseInputs:
    """What every phase of a run trains with: the resolved config, the placement, the network and the data,
    and the stage-2 feature cache once computed."""

    config: TrainConfig
    placement: DevicePlacement
    net: Net1D
    train_data: SplitData
    val_data: SplitData
    features: tuple[torch.Tensor, torch.Tensor] | None = None


def phase_parts(inputs: PhaseInputs, phase: Phase, objective: Objective) -> PhaseParts:
    """The parts of ``phase``: head only when it trains the head, else end to end."""
    return head_phase(inputs, phase, objective) if phase.trains == "head" else full_phase(inputs, phase, objective)


def full_phase(inputs: PhaseInputs, phase: Phase, objective: Objective) -> PhaseParts:
    """End-to-end phase: the whole Net1D (plus FDS) trains."""
    cfg, rt, net = inputs.config, inputs.placement, inputs.net
    train_labels = inputs.train_data.labels
    fds = build_fds(phase, cfg, net.n_features, train_labels)
    feature_objective = build_feature_objective(phase, cfg, net.n_features, train_labels)
    regressor = Regressor(net, fds, feature_objective, rt.amp).to(rt.device)
    model = rt.wrap(regressor)
    forward = torch.compile(model) if cfg.compile else model
    pin = rt.device.type == "cuda"

    def step(indices: np.ndarray, epoch: int) -> float:
        regressor.train()
        x, y = inputs.train_data.batch(indices)
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
        n = y.shape[0]
        if objective.conr is not None:  # clean batch + two noisy views in one forward (see README)
            x, y = torch.cat([x, objective.conr.make_views(x)]), torch.cat([y, y, y])
        pred, features, extra = forward(x, y, epoch)
        loss = objective.head_loss(pred[:n], y[:n])
        if extra is not None:
            loss = loss + extra
        if objective.ranksim is not None:
            loss = loss + objective.ranksim(features, y)
        if objective.conr is not None:
            loss = loss + objective.conr(features[n:], y[n:], pred[n:])
        loss.backward()
        return float(loss.detach())

    def evaluate(epoch: int) -> np.ndarray:
        if fds is not None and epoch >= fds.start_update:
            update_fds(inputs, regressor, fds, epoch)
        return predict(net, inputs.val_data, cfg.eval_batch_size, rt.device, rt.amp)

    srl = regressor.feature_objective if isinstance(regressor.feature_objective, SRL) else None

    def epoch_start(epoch: int) -> None:
        if srl is not None:
            srl.update_surrogate()  # folds the finished epoch's centroids in

    return PhaseParts(step, list(regressor.parameters()), regressor, evaluate, epoch_start)


@torch.no_grad()
def update_fds(inputs: PhaseInputs, regressor: Regressor, fds: FDS, epoch: int) -> None:
    """The official end-of-epoch FDS pass: the training set through the model in train mode (BN batch
    statistics, dropout on, FDS calibration as in training), then ``update_last_epoch_stats`` and
    ``update_running_stats`` with those features."""
    cfg, rt, data = inputs.config, inputs.placement, inputs.train_data
    labels = torch.as_tensor(data.labels, device=rt.device)
    regressor.train()
    chunks = []
    for start in range(0, len(data), cfg.resolved_batch_size):
        index = np.arange(start, min(start + cfg.resolved_batch_size, len(data)))
        x, y = data.batch(index)
        chunks.append(regressor(x.to(rt.device), y.to(rt.device), epoch)[1])
    fds.update_last_epoch_stats(epoch)
    fds.update_running_stats(torch.cat(chunks), labels, epoch)


def stage2_features(inputs: PhaseInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val features of the frozen backbone (eval mode, float32), computed once per run and kept
    beside the stage-1 run (``FEATURE_CACHE``, keyed by its ``best.pt`` checksum and the autocast
    setting), so every stage-2 method started from that run reuses them."""
    if inputs.features is not None:
        return inputs.features
    cfg, rt, net = inputs.config, inputs.placement, inputs.net
    assert cfg.init is not None
    key = {"best_sha256": hashlib.sha256((cfg.init / BEST).read_bytes()).hexdigest(), "amp": rt.amp,
           "n": [len(inputs.train_data), len(inputs.val_data)]}
    path = cfg.init / FEATURE_CACHE
    saved = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    if saved is not None and saved.get("key") == json.dumps(key):
        train, val = saved["train"], saved["val"]
    else:
        train = backbone_features(net, inputs.train_data, cfg.eval_batch_size, rt.device, rt.amp).cpu()
        val = backbone_features(net, inputs.val_data, cfg.eval_batch_size, rt.device, rt.amp).cpu()
        if rt.is_main:
            atomic_save({"key": json.dumps(key), "train": train, "val": val}, path)
    inputs.features = (train.to(rt.device), val.to(rt.device))
    return inputs.features


def head_phase(inputs: PhaseInputs, phase: Phase, objective: Objective) -> PhaseParts:
    """Head-only phase on cached features (RRT)."""
    cfg, rt, net = inputs.config, inputs.placement, inputs.net
    train_features, val_features = stage2_features(inputs)
    train_labels = torch.as_tensor(inputs.train_data.labels, device=rt.device)
    if phase.head_init == "reinit":
        torch.manual_seed(cfg.seed)
        net.reset_head()
        apply_head_bias_init(net, cfg, inputs.train_data.labels)
    params = net.freeze_backbone()
    head = rt.wrap(net.head)

    def step(indices: np.ndarray, epoch: int) -> float:
        head.train()
        index = torch.as_tensor(indices, device=rt.device)
        pred = head_fp32(head, train_features[index])
        loss = objective.head_loss(pred, train_labels[index])
        loss.backward()
        return float(loss.detach())

    def evaluate(epoch: int) -> np.ndarray:
        with torch.no_grad():
            return head_fp32(net.head, val_features).double().cpu().numpy()

    return PhaseParts(step, params, net.head, evaluate)
