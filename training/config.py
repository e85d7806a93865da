"""Run configuration of ``ecgk train`` (saved as ``RUN/config.json``), and the step budget that sets the batch
size and the epochs a run leaves open."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ecg_k.losses.methods import get_method
from ecg_k.models import NET1D_CONFIGS


class DistLossOptions(BaseModel):
    """Dist Loss settings (method.md section 3); defaults are the paper's headline INV-L2 as the official code
    effectively computes it (inverse weights on the sample term, unweighted distribution term)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dist_weight: float = Field(default=1.0, ge=0, description="lambda of the distribution term.")
    dist_weighting: Literal["pseudo_label", "official", "none"] = Field(
        default="none", description="Weights of the distribution term: none (the paper's effective loss), "
        "official (the misaligned quirk), pseudo_label (inverse density per sorted position, a variant).")
    sort: Literal["auto", "soft", "hard"] = Field(
        default="hard", description="torch.sort; soft (torchsort) is identical at K+ scale (method.md 3.4).")
    regularization_strength: float = Field(default=0.1, gt=0, description="Soft-sort epsilon.")
    bw_method: float = Field(default=0.5, gt=0, description="KDE bandwidth factor.")
    rounding: Literal["official", "quantile"] = "official"


class WeightOptions(BaseModel):
    """Inverse-frequency weighting and LDS (method.md sections 4 and 10)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clip: tuple[float, float] = (5.0, 1000.0)
    lds_kernel: Literal["gaussian", "triang", "laplace"] = "gaussian"
    lds_ks: int = 5
    lds_sigma: float = 2.0


class RegularizerOptions(BaseModel):
    """Hyper-parameters of FDS, RankSim, ConR and Balanced MSE (rescaled for mmol/L, method.md section 10)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fds_ks: int = 5
    fds_sigma: float = 2.0
    fds_momentum: float = 0.9
    fds_start_update: int = 0
    fds_start_smooth: int = 1
    ranksim_gamma: float = 100.0
    ranksim_lambda: float = 2.0
    conr_beta: float = 4.0
    conr_window: float = 0.1
    conr_eta: float = 0.1
    conr_temperature: float = Field(default=0.07, gt=0, description="Official: t = 0.07 hard-coded.")
    conr_denominator: Literal["official", "paper"] = "official"
    conr_noise_std: float = 0.1
    bmse_mode: Literal["bmc", "bni", "gai"] = Field(default="gai", description="Official --imp default.")
    bmse_init_sigma: float | None = Field(
        default=None, gt=0, description="Initial noise sigma (mmol/L); None: from the training labels' std.")
    bmse_sigma_scale: float = Field(default=1.0, gt=0, description="Factor on the data-driven initial sigma.")
    bmse_fix_sigma: bool = Field(default=False, description="Keep sigma fixed (official --fix_noise_sigma).")
    bmse_sigma_lr: float = 1e-2


AUTO_EPOCHS = (10, 200)
"""Fewest and most epochs the step budget may set (the paper's 10; 200 bounds a tiny cohort's run)."""
AUTO_BATCH = {1: (16, 512, 64), 2: (64, 512, 16)}
"""Per stage: smallest and largest automatic batch, and the steps per epoch it aims for at least. Stage 1
costs per sample (backbone forward + backward), so its batch grows with the cohort up to the paper's 512;
stage 2 trains the head on cached features (cheap per sample), and Dist Loss's pseudo-labels need a batch of
at least 64 (they lose both tails below), so its batch starts at 64."""


def auto_batch_size(n_train: int, stage: int, world: int = 1) -> int:
    """A power of two: ``n_train / world`` over the target steps per epoch, within the stage's bounds, and no
    more than one rank's share of the train split (a cohort below the floor gets what it can hold)."""
    low, high, steps = AUTO_BATCH[stage]
    per_rank = max(n_train // world, 1)
    batch = min(max(_pow2_floor(per_rank // steps), low), high)
    return batch if batch <= per_rank else max(_pow2_floor(per_rank), 2)


def _pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


class FocalOptions(BaseModel):
    """Focal-R (:mod:`ecg_k.losses.focal_r`): beta per mmol/L (the official 0.2 per year, bin-rescaled)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    beta: float = Field(default=2.0, gt=0)
    gamma: float = Field(default=1.0, ge=0)
    activation: Literal["sigmoid", "tanh"] = "sigmoid"


class SRLOptions(BaseModel):
    """SRL (:mod:`ecg_k.losses.srl`): the AgeDB settings rescaled for 0.1 mmol/L bins and an L1 in mmol/L."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contrastive_weight: float = Field(default=1.0, ge=0)
    enveloping_weight: float = Field(default=10.0, ge=0)
    homogeneity_weight: float = Field(default=5e-4, ge=0)
    variance_weight: float = Field(default=0.2, ge=0)
    temperature: float = Field(default=0.3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    projector_dim: int = Field(default=128, ge=2)
    n_points: int = Field(default=2000, ge=1)


class GroupDIROptions(BaseModel):
    """Group-DIR (:mod:`ecg_k.losses.group_dir`): groups, temperature, soft-label beta, loss weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_groups: int = Field(default=10, ge=2, description="Groups over the populated training range.")
    temperature: float = Field(default=2.5, gt=0)
    beta: float = Field(default=1.0, gt=0)
    lambda_reg: float = Field(default=0.5, gt=0)
    lambda_soft: float = Field(default=1.0, ge=0)
    routing: Literal["hard", "soft"] = "hard"


class TrainConfig(BaseModel):
    """Everything a run depends on; ``ecgk train`` flags map onto these fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Path
    out: Path
    method: str = "vanilla"
    stage: Literal[1, 2] = 1
    init: Path | None = Field(default=None, description="Stage-1 run a stage-2 run starts from.")
    model: str = "small"
    epochs: int | None = Field(
        default=None, ge=1,
        description=f"None: enough epochs for min_steps optimiser steps ({AUTO_EPOCHS[0]} to {AUTO_EPOCHS[1]}).")
    batch_size: int | None = Field(default=None, ge=2, description="None: sized to the train split (auto_batch_size).")
    min_steps: int = Field(
        default=1500, ge=1,
        description="Optimiser steps the automatic epochs aim for, so a small cohort still trains (paper: MIMIC "
                    "at batch 512 x 10 epochs is about 8,000 steps).")
    lr: float = Field(default=1e-3, gt=0)
    lr_milestones: tuple[float, ...] = Field(
        default=(0.5, 0.8), description="Epoch fractions where lr is multiplied by lr_gamma (paper: 5, 8 of 10)."
    )
    lr_gamma: float = Field(default=0.1, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0, description="Adam weight decay (paper, ECG).")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=True, description="bf16 autocast on CUDA (ignored on CPU).")
    compile: bool = Field(default=False, description="torch.compile the model (CUDA).")
    in_memory: bool | None = Field(default=None, description="Load signals into RAM (auto: < 4 GiB).")
    eval_batch_size: int = Field(default=1024, ge=1)
    head_bias_init: Literal["label_mean", "zero"] = Field(
        default="label_mean",
        description="Start the head's output bias at the mean training K+ (deviation from the official code, "
        "whose bias starts near 0 and needs thousands of Adam steps at lr 1e-3 to reach ~4.2 mmol/L).",
    )
    dist: DistLossOptions = Field(default_factory=DistLossOptions)
    weights: WeightOptions = Field(default_factory=WeightOptions)
    regularizers: RegularizerOptions = Field(default_factory=RegularizerOptions)
    focal: FocalOptions = Field(default_factory=FocalOptions)
    srl: SRLOptions = Field(default_factory=SRLOptions)
    groupdir: GroupDIROptions = Field(default_factory=GroupDIROptions)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        get_method(value)
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in NET1D_CONFIGS:
            raise ValueError(f"unknown model {value!r}; choose one of {', '.join(NET1D_CONFIGS)}")
        return value

    @model_validator(mode="after")
    def _stage_consistent(self) -> TrainConfig:
        phases = get_method(self.method).phases
        if self.stage == 1 and phases[0].trains != "all":
            raise ValueError(f"method {self.method!r} has no end-to-end stage")
        if self.stage == 2:
            if len(phases) < 2:
                raise ValueError(f"method {self.method!r} has no head-retraining stage; use --stage 1")
            if self.init is None:
                raise ValueError("--stage 2 needs --init RUN (a finished stage-1 run)")
        if any(not 0 < m < 1 for m in self.lr_milestones):
            raise ValueError("lr_milestones are fractions of the epochs, each in (0, 1)")
        return self

    @property
    def resolved_batch_size(self) -> int:
        """The batch size of a resolved config."""
        if self.batch_size is None:
            raise ValueError("the batch size is not resolved yet; call resolve() with the train split's size")
        return self.batch_size

    @property
    def resolved_epochs(self) -> int:
        """The number of epochs of a resolved config."""
        if self.epochs is None:
            raise ValueError("epochs are not resolved yet; call resolve() with the train split's size")
        return self.epochs

    def milestones(self) -> list[int]:
        """Epoch indices (0-based) at which the learning rate decays (of a resolved config)."""
        if self.epochs is None:
            raise ValueError("epochs are not resolved yet; call resolve() with the train split's size")
        return sorted({max(1, round(m * self.epochs)) for m in self.lr_milestones})

    def resolve(self, n_train: int, world: int = 1) -> tuple[TrainConfig, dict[str, Any]]:
        """This config with the batch size and epochs set for ``n_train`` training pairs, and the schedule
        record (values, whether they were set or automatic, steps per epoch, total optimiser steps)."""
        batch = self.batch_size or auto_batch_size(n_train, self.stage, world)
        steps_per_epoch = n_train // (batch * world)
        wanted = math.ceil(self.min_steps / max(steps_per_epoch, 1))
        epochs = self.epochs or min(max(wanted, AUTO_EPOCHS[0]), AUTO_EPOCHS[1])
        schedule = {
            "batch_size": batch, "batch_size_source": "set" if self.batch_size else "auto",
            "epochs": epochs, "epochs_source": "set" if self.epochs else "auto",
            "steps_per_epoch": steps_per_epoch, "total_steps": steps_per_epoch * epochs,
            "min_steps": self.min_steps, "n_train": n_train, "world_size": world,
        }
        return self.model_copy(update={"batch_size": batch, "epochs": epochs}), schedule

    def resume_key(self) -> dict[str, Any]:
        """The fields that must match for ``--resume`` (everything but where and how it runs)."""
        return self.model_dump(mode="json", exclude={"device", "compile", "in_memory", "eval_batch_size"})
