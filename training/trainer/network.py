"""The network a run trains: Net1D built for stage 1 or loaded from the stage-1 run for stage 2, the training
forward (:class:`Regressor`: backbone, FDS, head and the feature objective in one module), and estimates and
pooled features of a whole split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ecg_k.losses import FDS
from ecg_k.losses.group_dir import group_edges
from ecg_k.losses.methods import MethodSpec, Phase, get_method
from ecg_k.models import Net1D, Net1DConfig, build_net1d
from ecg_k.models.group_head import GroupHead
from ecg_k.records.run import read_run_record
from training.config import TrainConfig
from training.data import SplitData
from training.trainer.checkpoint import BEST
from training.trainer.errors import TrainingError
from training.trainer.objective import FeatureObjective
from training.trainer.placement import backbone_autocast, head_fp32


class Regressor(nn.Module):
    """Net1D plus the training-only feature parts (FDS; SRL or Group-DIR): one DDP-wrapped forward does all.

    Autocast (bf16, when ``amp``) covers the backbone only; FDS, the head, the feature objective and what
    follows run in float32. Returns ``(pred, features, extra)``: ``features`` as the head saw them (after FDS),
    ``extra`` the feature objective's added loss (``None`` if there is none); with Group-DIR ``pred`` is the
    true group's expert, as its training loss needs."""

    def __init__(self, net: Net1D, fds: FDS | None, feature_objective: FeatureObjective | None = None,
                 amp: bool = False) -> None:
        super().__init__()
        self.net, self.fds, self.feature_objective, self.amp = net, fds, feature_objective, amp

    def forward(self, ecg: torch.Tensor, labels: torch.Tensor,
                epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        with backbone_autocast(ecg.device, self.amp):
            features = self.net.backbone_features(ecg)
        features = features.float()
        if self.fds is not None:
            features = self.fds.smooth(features, labels, epoch)
        if self.feature_objective is not None:
            with torch.autocast(features.device.type, enabled=False):
                pred, extra = self.feature_objective(features, labels, self.net.head, epoch)
            return pred, features, extra
        return head_fp32(self.net.head, features), features, None


def init_head_bias(net: Net1D, value: float) -> None:
    """Set the output bias of the head's last Linear (see ``TrainConfig.head_bias_init``)."""
    if isinstance(net.head, GroupHead):
        return  # each expert's bias starts at its group's centre (GroupHead.reset_parameters)
    last = [m for m in net.head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(value)


def apply_head_bias_init(net: Net1D, config: TrainConfig, train_labels: np.ndarray) -> None:
    """The head's output bias at the training label mean when the config asks for it."""
    if config.head_bias_init == "label_mean":
        init_head_bias(net, float(np.mean(train_labels)))


def build_net(config: TrainConfig, method: MethodSpec, phases: tuple[Phase, ...], train_data: SplitData,
              device: torch.device) -> Net1D:
    """Stage 1: a new Net1D seeded with ``config.seed`` (a Group-DIR head when the phase needs one). Stage 2:
    the best model of the stage-1 run in ``config.init``, refused unless that run trained the same first
    phase and the same model."""
    torch.manual_seed(config.seed)
    n_leads = train_data.signals.shape[1]
    if config.stage == 1:
        overrides: dict[str, Any] = {}
        if phases[0].regularizer == "groupdir":
            g = config.groupdir
            overrides = {"head": "groupdir", "group_routing": g.routing,
                         "group_edges": group_edges(train_data.labels, g.n_groups)}
        net = build_net1d(config.model, in_channels=n_leads, **overrides)
        apply_head_bias_init(net, config, train_data.labels)
        return net.to(device)
    init_dir = config.init
    assert init_dir is not None
    init_record = read_run_record(init_dir)
    init_method = get_method(init_record.method)
    if init_record.stage != 1 or init_method.phases[0] != method.phases[0]:
        raise TrainingError(
            f"--init {init_dir} was trained as {init_record.method} stage {init_record.stage}; {config.method} "
            f"stage 2 needs the stage-1 run of a method whose first phase is {method.phases[0]}"
        )
    if init_record.train["model"] != config.model:
        raise TrainingError(f"--init {init_dir} is a {init_record.train['model']} model, not {config.model}")
    saved = torch.load(init_dir / BEST, map_location="cpu", weights_only=True)
    net = Net1D(n_leads, Net1DConfig.model_validate(saved["net1d"]))  # the init's head kind (Group-DIR)
    net.load_state_dict(saved["model"])
    return net.to(device)


@torch.no_grad()
def predict(net: Net1D, data: SplitData, batch_size: int, device: torch.device, amp: bool = False) -> np.ndarray:
    """K+ estimates of a whole split in eval mode (no dropout, BN running stats), float64; with ``amp`` only
    the backbone runs under bf16 autocast, the head in float32."""
    features = backbone_features(net, data, batch_size, device, amp)
    return head_fp32(net.head, features).cpu().numpy().astype(np.float64)


@torch.no_grad()
def backbone_features(net: Net1D, data: SplitData, batch_size: int, device: torch.device, amp: bool = False,
                      train_mode: bool = False) -> torch.Tensor:
    """Pooled features of a whole split, float32 on ``device`` (the stage-2 cache); eval mode unless
    ``train_mode`` (the official FDS statistics pass)."""
    net.train(train_mode)
    outputs = []
    for start in range(0, len(data), batch_size):
        x, _ = data.batch(np.arange(start, min(start + batch_size, len(data))))
        with backbone_autocast(device, amp):
            outputs.append(net.backbone_features(x.to(device, non_blocking=True)).float())
    return torch.cat(outputs) if outputs else torch.zeros(0, net.n_features, device=device)
