"""Net1D: the 1-D ResNeXt-style regressor of hsd1503/resnet1d (``net1d.py``), rewritten for ECG -> K+.

Architecture (method.md section 9), kept faithful so that results compare with the literature:

- stem: SAME-padded conv (in -> ``base_filters``, kernel ``kernel_size``, stride **2**) -> BN -> Swish;
- stages: stage i has ``m_blocks_list[i]`` blocks with ``filter_list[i]`` channels; block 0 of every
  stage downsamples by ``stride``; the grouped conv has ``out // groups_width`` groups;
- block: pre-activation bottleneck [BN -> Swish -> Dropout(0.5)] -> 1x1 conv -> [..] -> grouped k-conv
  -> [..] -> 1x1 conv -> squeeze-and-excitation (Swish inside); the shortcut is a SAME max-pool when
  downsampling and a zero channel pad (split evenly) when the width grows; no activation after the sum;
- head (``dense``): global mean over time, then ``Linear(C, C//4) -> Linear(C//4, 1)`` (Ngk03 copy, the
  default ``head="ngk03"``) or one ``Linear(C, 1)`` (hsd1503, ``head="linear"``), or the Group-DIR head
  (``head="groupdir"``: group classifier + one expert per group, :mod:`ecg_k.models.group_head`).

SAME padding is computed from the runtime length, so an ONNX export must fix the length (5000).

Deviations, all without effect on the function computed: the very first block (whose pre-activation is
skipped) and ``use_bn=False`` / ``use_do=False`` create no unused BatchNorm/Dropout modules (an unused
parameter breaks DDP and never trains), so the ECGFounder-like model has 128 fewer parameters than the
original. Parameter names otherwise follow hsd1503 (``first_conv.conv``, ``stage_list.i.block_list.j``,
``se_fc1``, ``dense``) so that published state dicts map onto this module.

``forward`` returns shape ``(B,)`` float32 (one K+ estimate per ECG), not ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ecg_k.models.group_head import GroupHead, Routing, validate_edges

HeadKind = Literal["ngk03", "linear", "groupdir"]
DROPOUT_P = 0.5  # hard-coded in hsd1503 wherever use_do=True
SE_REDUCTION = 2  # squeeze-and-excitation bottleneck ratio in hsd1503
STEM_STRIDE = 2  # the stem always halves the length, whatever ``stride`` is


class Net1DConfig(BaseModel):
    """Hyper-parameters of a Net1D (everything but the number of input leads); frozen and JSON-able."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_filters: int = Field(gt=0, description="Channels of the stem conv.")
    ratio: float = Field(gt=0, description="Bottleneck width as a fraction of the block's output channels.")
    filter_list: tuple[int, ...] = Field(min_length=1, description="Output channels of each stage.")
    m_blocks_list: tuple[int, ...] = Field(min_length=1, description="Number of blocks of each stage.")
    kernel_size: int = Field(gt=0, description="Kernel of the stem conv and of every grouped conv.")
    stride: int = Field(gt=0, description="Downsampling factor of the first block of each stage.")
    groups_width: int = Field(gt=0, description="Channels per group of the grouped conv.")
    use_bn: bool = True
    use_do: bool = True
    head: HeadKind = "ngk03"
    group_edges: tuple[float, ...] = Field(
        default=(), description="Group-DIR head only: label edges of the groups (mmol/L), fitted on train."
    )
    group_routing: Routing = Field(default="hard", description="Group-DIR head only: hard or soft routing.")

    @model_validator(mode="after")
    def _consistent(self) -> Net1DConfig:
        if len(self.filter_list) != len(self.m_blocks_list):
            raise ValueError(
                f"filter_list has {len(self.filter_list)} stages but m_blocks_list has "
                f"{len(self.m_blocks_list)}; they must have the same length"
            )
        if any(m < 1 for m in self.m_blocks_list):
            raise ValueError(f"every stage needs at least one block, got m_blocks_list={self.m_blocks_list}")
        for out in self.filter_list:
            groups = out // self.groups_width
            middle = int(out * self.ratio)
            if groups < 1 or middle < 1 or middle % groups:
                raise ValueError(
                    f"stage width {out} with groups_width={self.groups_width} and ratio={self.ratio} gives "
                    f"{groups} groups for {middle} bottleneck channels; the groups must divide them"
                )
            if out < SE_REDUCTION:
                raise ValueError(f"stage width {out} is too small for the squeeze-and-excitation layer")
        if self.head == "ngk03" and self.filter_list[-1] < 4:
            raise ValueError(f"the ngk03 head needs at least 4 final channels, got {self.filter_list[-1]}")
        if self.head == "groupdir":
            validate_edges(self.group_edges)
        elif self.group_edges:
            raise ValueError(f"group_edges apply to the groupdir head only, not {self.head!r}")
        return self


NET1D_CONFIGS: Mapping[str, Net1DConfig] = {
    # The lab's standard Net1D (ECGFounder, AnyPPG); 30.92 M parameters with the Ngk03 head at 1 lead.
    "ecgfounder": Net1DConfig(
        base_filters=64,
        ratio=1.0,
        filter_list=(64, 160, 160, 400, 400, 1024, 1024),
        m_blocks_list=(2, 2, 2, 3, 3, 4, 4),
        kernel_size=16,
        stride=2,
        groups_width=16,
    ),
    # CPU-trainable: 5000 -> 2500 (stem) -> 500 -> 100 -> 20; 0.48 M parameters; forward+backward of
    # 64 x 1 x 5000 takes about 0.2 s on 2 CPU cores. No dropout (as AnyPPG's ECGFounderConfig): with p = 0.5
    # after every layer this narrow net stayed at the label mean for 12 epochs on the synthetic demo data,
    # without it val MAE fell from 0.96 to 0.58 in 6 epochs.
    "small": Net1DConfig(
        base_filters=16,
        ratio=1.0,
        filter_list=(16, 64, 256),
        m_blocks_list=(1, 1, 2),
        kernel_size=11,
        stride=5,
        groups_width=16,
        use_do=False,
    ),
    # Unit tests: a few thousand parameters.
    "tiny": Net1DConfig(
        base_filters=8,
        ratio=1.0,
        filter_list=(8, 16),
        m_blocks_list=(1, 1),
        kernel_size=5,
        stride=4,
        groups_width=8,
    ),
}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding so that a conv gives ``ceil(length / stride)`` outputs (TF "SAME")."""
    out_length = _ceil_div(length, stride)
    total = max(0, (out_length - 1) * stride + kernel_size - length)
    return total // 2, total - total // 2


class SamePadConv1d(nn.Module):
    """Conv1d with SAME padding computed from the runtime length (``conv`` keeps hsd1503's name)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kernel_size,), (stride,) = self.conv.kernel_size, self.conv.stride
        return self.conv(F.pad(x, same_padding(x.shape[-1], kernel_size, stride)))


class SamePadMaxPool1d(nn.Module):
    """Max-pool (kernel = stride) after padding ``kernel - 1`` zeros, as hsd1503 does: ceil(L / k) outputs.

    The padding is zeros, not -inf, so an edge window can take the value 0; kept for fidelity. The zeros
    are concatenated rather than added with ``F.pad``: ONNX Runtime's PadFusion (ORT >= 1.17, still in
    1.31) folds a zero ``Pad`` into the next ``MaxPool``, whose own padding acts as -inf, which changes
    the output of an exported model (measured: 0.2 on a stage output, 1e-4 on K+).
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size - 1
        widths = (pad // 2, pad - pad // 2)
        zeros = [x.new_zeros(*x.shape[:-1], width) for width in widths]
        return F.max_pool1d(torch.cat((zeros[0], x, zeros[1]), dim=-1), self.kernel_size)


def _batch_norm(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm1d(channels) if use_bn else nn.Identity()


class BasicBlock(nn.Module):
    """Pre-activation bottleneck: 1x1 conv -> grouped k-conv -> 1x1 conv -> SE, plus the shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: Net1DConfig,
        downsample: bool,
        is_first_block: bool,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        middle = int(out_channels * config.ratio)
        stride = config.stride if downsample else 1
        # The very first block follows the stem's BN -> Swish, so it has no pre-activation of its own.
        self.bn1 = None if is_first_block else _batch_norm(in_channels, config.use_bn)
        self.conv1 = SamePadConv1d(in_channels, middle, 1)
        self.bn2 = _batch_norm(middle, config.use_bn)
        self.conv2 = SamePadConv1d(
            middle, middle, config.kernel_size, stride, groups=out_channels // config.groups_width
        )
        self.bn3 = _batch_norm(middle, config.use_bn)
        self.conv3 = SamePadConv1d(middle, out_channels, 1)
        self.se_fc1 = nn.Linear(out_channels, out_channels // SE_REDUCTION)
        self.se_fc2 = nn.Linear(out_channels // SE_REDUCTION, out_channels)
        self.activation = nn.SiLU()  # Swish: x * sigmoid(x)
        self.dropout = nn.Dropout(DROPOUT_P) if config.use_do else nn.Identity()
        self.max_pool = SamePadMaxPool1d(stride) if downsample else None

    def _pre_activation(self, x: torch.Tensor, bn: nn.Module) -> torch.Tensor:
        return self.dropout(self.activation(bn(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.bn1 is None else self._pre_activation(x, self.bn1)
        out = self.conv1(out)
        out = self.conv2(self._pre_activation(out, self.bn2))
        out = self.conv3(self._pre_activation(out, self.bn3))
        scale = torch.sigmoid(self.se_fc2(self.activation(self.se_fc1(out.mean(-1)))))
        out = out * scale.unsqueeze(-1)
        identity = x if self.max_pool is None else self.max_pool(x)
        extra = self.out_channels - self.in_channels
        if extra:
            identity = F.pad(identity, (0, 0, extra // 2, extra - extra // 2))
        return out + identity


class BasicStage(nn.Module):
    """``m_blocks`` blocks of one width; the first one downsamples and widens (``block_list`` as hsd1503)."""

    def __init__(self, in_channels: int, out_channels: int, m_blocks: int, config: Net1DConfig, first: bool):
        super().__init__()
        self.block_list = nn.ModuleList(
            BasicBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                config,
                downsample=i == 0,
                is_first_block=first and i == 0,
            )
            for i in range(m_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class Net1D(nn.Module):
    """Net1D regressor: ``(B, in_channels, L)`` ECG -> ``(B,)`` K+ estimate (mmol/L once trained)."""

    def __init__(self, in_channels: int, config: Net1DConfig):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        self.in_channels = in_channels
        self.config = config
        self.first_conv = SamePadConv1d(in_channels, config.base_filters, config.kernel_size, STEM_STRIDE)
        self.first_bn = _batch_norm(config.base_filters, config.use_bn)
        self.first_activation = nn.SiLU()
        widths = (config.base_filters, *config.filter_list)
        self.stage_list = nn.ModuleList(
            BasicStage(widths[i], widths[i + 1], m_blocks, config, first=i == 0)
            for i, m_blocks in enumerate(config.m_blocks_list)
        )
        features = config.filter_list[-1]
        self.dense: nn.Module
        if config.head == "groupdir":
            self.dense = GroupHead(features, config.group_edges, config.group_routing)
        elif config.head == "ngk03":
            self.dense = nn.Sequential(nn.Linear(features, features // 4), nn.Linear(features // 4, 1))
        else:
            self.dense = nn.Linear(features, 1)

    @property
    def head(self) -> nn.Module:
        """The regression head (``dense``): the only part trained in stage 2."""
        return self.dense

    @property
    def n_features(self) -> int:
        """Width of :meth:`backbone_features` (the head's input)."""
        return self.config.filter_list[-1]

    def time_lengths(self, n_samples: int) -> list[int]:
        """Time length after the stem and after each stage for an input of ``n_samples``."""
        lengths = [_ceil_div(n_samples, STEM_STRIDE)]
        for _ in self.config.filter_list:
            lengths.append(_ceil_div(lengths[-1], self.config.stride))
        return lengths

    def backbone_features(self, ecg: torch.Tensor) -> torch.Tensor:
        """Time-averaged features before the head, ``(B, n_features)`` float32 (pooled in float32 even when the
        convolutions ran under bf16 autocast); cached for stage 2."""
        if ecg.dim() != 3 or ecg.shape[1] != self.in_channels:
            raise ValueError(
                f"expected ECG of shape (batch, {self.in_channels}, samples), got {tuple(ecg.shape)}"
            )
        out = self.first_activation(self.first_bn(self.first_conv(ecg)))
        for stage in self.stage_list:
            out = stage(out)
        return out.float().mean(-1)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        """K+ estimate per ECG, shape ``(B,)``."""
        return self.dense(self.backbone_features(ecg)).squeeze(-1)

    def freeze_backbone(self) -> list[nn.Parameter]:
        """Freeze everything but the head (by module reference, not by name) and return the head params.

        The backbone's mode (BN statistics, dropout) is left to the caller: ``eval()`` for cached features.
        """
        self.requires_grad_(False)
        self.dense.requires_grad_(True)
        return list(self.dense.parameters())

    def reset_head(self) -> None:
        """Re-initialise the head's Linear layers (stage 2 starts from a fresh head, as the official code)."""
        if isinstance(self.dense, GroupHead):
            self.dense.reset_parameters()
            return
        for module in self.dense.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()


def build_net1d(name: str, in_channels: int, **overrides: Any) -> Net1D:
    """Net1D from a named config in :data:`NET1D_CONFIGS`, with optional field overrides (validated)."""
    if name not in NET1D_CONFIGS:
        raise ValueError(f"unknown Net1D config {name!r}; known: {', '.join(sorted(NET1D_CONFIGS))}")
    config = Net1DConfig.model_validate({**NET1D_CONFIGS[name].model_dump(), **overrides})
    return Net1D(in_channels, config)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
