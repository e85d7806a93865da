"""Two-stage training of Net1D (method.md section 5) for every method of :data:`ecg_k.losses.METHODS`.

Stage 1 runs the method's end-to-end phase. Stage 2 starts from a finished stage-1 run, freezes the backbone,
runs Net1D once over the data to cache the pooled features (backbone in eval mode: a documented deviation
from the official ``model.train()``), and trains only the head on them, so an epoch costs only the head.
Model selection is by validation bMAE; a checkpoint is written after every epoch and ``resume=True``
continues an interrupted run exactly (data order is seeded per phase and epoch).

The CUDA path uses bf16 autocast, pinned memory and optionally ``torch.compile``; under ``torchrun`` the
model (or head) is wrapped in DDP and Dist Loss gathers the predictions of every rank.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ecg_k.data.store import read_manifest
from ecg_k.evaluation.regression import balanced_mae
from ecg_k.losses import FDS, BalancedMSELoss, ConR, DistLoss, LDSConfig, RankSim, SampleWeights
from ecg_k.losses.balanced_mse import fit_label_gmm, histogram_prior, sigma_from_labels
from ecg_k.losses.dist_loss import check_batch
from ecg_k.losses.focal_r import focal_r
from ecg_k.losses.group_dir import GroupDIRLoss, group_edges
from ecg_k.losses.methods import Phase, get_method
from ecg_k.losses.srl import SRL
from ecg_k.models import Net1D, Net1DConfig, build_net1d
from ecg_k.models.group_head import GroupHead
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.version import code_version
from training.config import TrainConfig
from training.data import SplitData, epoch_batches, steps_per_epoch

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
CONFIG = "config.json"
HISTORY = "history.json"
FEATURE_CACHE = "stage2_features.pt"
LOSS_LIMIT = 1e6  # the official train.py asserts "Loss explosion" above this


class TrainingError(RuntimeError):
    """Training cannot go on (diverged loss, unusable run directory, inconsistent init)."""


@dataclass(frozen=True)
class Runtime:
    """Where the run executes: device, DDP rank/world, autocast."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backbone_autocast(device: torch.device, amp: bool) -> Any:
    """bf16 autocast on ``device`` when ``amp``, else nothing. Wraps the backbone's convolutions only: the
    head, the losses, the metrics and the stage-2 feature cache stay float32 (bf16 rounds K+ to 1/32 mmol/L)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def head_fp32(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The head on float32 features with autocast off: float32 estimates ``(B,)``."""
    with torch.autocast(features.device.type, enabled=False):
        return head(features.float()).squeeze(-1)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error, not a silent CPU run."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup_runtime(config: TrainConfig) -> Runtime:
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
    return Runtime(device=device, rank=rank, world=world, amp=config.amp and device.type == "cuda")


FeatureObjective = SRL | GroupDIRLoss
"""Training-only parts that need the features and the head inside the forward: ``(pred, extra loss)``."""


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


@dataclass
class Objective:
    """The loss of a phase: sample weights, head loss (plain, Balanced MSE or Dist Loss), regulariser."""

    phase: Phase
    weights: SampleWeights
    criterion: nn.Module | None
    ranksim: RankSim | None = None
    conr: ConR | None = None
    focal: dict[str, Any] = field(default_factory=dict)

    def head_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = None if self.phase.sample_weights == "none" else self.weights.for_labels(target)
        if isinstance(self.criterion, DistLoss):
            return self.criterion(pred, target, weights)
        if self.criterion is not None:
            return self.criterion(pred.float(), target)
        diff = pred.double() - target.double()
        if self.phase.loss == "focal":
            elementwise = focal_r(pred.double(), target.double(), **self.focal)
        else:
            elementwise = diff.abs() if self.phase.loss == "l1" else diff.square()
        return (elementwise if weights is None else elementwise * weights.double()).mean()


def build_objective(phase: Phase, config: TrainConfig, train_labels: np.ndarray, world: int) -> Objective:
    """Instantiate the parts a phase names, with the run's (documented) hyper-parameters."""
    w, r = config.weights, config.regularizers
    lds = LDSConfig(kernel=w.lds_kernel, ks=w.lds_ks, sigma=w.lds_sigma) if phase.lds else None
    weights = SampleWeights(train_labels, phase.sample_weights, clip=w.clip, lds=lds)
    criterion: nn.Module | None = None
    if phase.dist_loss:
        criterion = DistLoss.from_train_labels(
            train_labels, config.batch_size, world_size=world, loss=phase.loss, bw_method=config.dist.bw_method,
            rounding=config.dist.rounding, dist_weight=config.dist.dist_weight,
            dist_weighting=config.dist.dist_weighting, sort=config.dist.sort,
            regularization_strength=config.dist.regularization_strength,
        )
    elif phase.loss == "bmse":
        fit_prior = {"bni": histogram_prior, "gai": fit_label_gmm}.get(r.bmse_mode)
        sigma = r.bmse_init_sigma if r.bmse_init_sigma is not None \
            else sigma_from_labels(train_labels, r.bmse_sigma_scale)
        criterion = BalancedMSELoss(r.bmse_mode, init_noise_sigma=sigma, fix_noise_sigma=r.bmse_fix_sigma,
                                    prior=fit_prior(train_labels) if fit_prior else None)
    ranksim = RankSim(gamma=r.ranksim_gamma, interpolation_lambda=r.ranksim_lambda) \
        if phase.regularizer == "ranksim" else None
    conr = ConR(window=r.conr_window, beta=r.conr_beta, eta=r.conr_eta, temperature=r.conr_temperature,
                noise_std=r.conr_noise_std, denominator=r.conr_denominator) if phase.regularizer == "conr" else None
    return Objective(phase, weights, criterion, ranksim, conr, config.focal.model_dump())


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
class RunState:
    """What a checkpoint restores: position, best model so far, history."""

    phase_index: int = 0
    next_epoch: int = 0
    best_score: float = math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def init_head_bias(net: Net1D, value: float) -> None:
    """Set the output bias of the head's last Linear (see ``TrainConfig.head_bias_init``)."""
    if isinstance(net.head, GroupHead):
        return  # each expert's bias starts at its group's centre (GroupHead.reset_parameters)
    last = [m for m in net.head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(value)


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


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


class Trainer:
    """One ``ecgk train`` run (see the module docstring)."""

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.runtime = setup_runtime(config)
        self.method = get_method(config.method)
        self.phases = self.method.phases[:1] if config.stage == 1 else self.method.phases[1:]
        manifest = read_manifest(config.data)
        preprocess = PreprocessConfig.model_validate(manifest["config"]["preprocess"])
        size = sum(manifest["counts"].values()) * len(preprocess.leads) * preprocess.n_samples * 2  # float16
        in_memory = config.in_memory if config.in_memory is not None else size < 4 << 30
        self.train_data = SplitData.load(config.data, "train", in_memory)
        self.val_data = SplitData.load(config.data, "val", in_memory)
        if len(self.val_data) == 0:
            raise TrainingError(f"the val split of {config.data} is empty: model selection needs val pairs")
        self.request = config
        self.config, self.schedule = config.resolve(len(self.train_data), self.runtime.world)
        batch = self.schedule["batch_size"] * self.runtime.world
        if len(self.train_data) < batch:
            raise TrainingError(
                f"the train split has {len(self.train_data)} samples, fewer than one batch of {batch}: lower "
                "--batch-size"
            )
        self._announce_schedule()
        self.dataset_manifest = manifest
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None
        self.net = self._build_net()
        if any(phase.dist_loss for phase in self.phases):
            try:
                check_batch(batch)
            except ValueError as error:
                raise TrainingError(str(error)) from None

    def _announce_schedule(self) -> None:
        """Print the optimiser steps this run will take; loudly when below ``min_steps`` (underfitting)."""
        if not self.runtime.is_main:
            return
        s = self.schedule
        line = (f"{self.config.method} stage {self.config.stage}: {s['total_steps']} optimiser steps = {s['epochs']} "
                f"epochs ({s['epochs_source']}) x {s['steps_per_epoch']} steps of batch {s['batch_size']} "
                f"({s['batch_size_source']}) on {s['n_train']} training pairs")
        tqdm.write(line)
        if s["total_steps"] < s["min_steps"]:
            tqdm.write(f"WARNING: {s['total_steps']} optimiser steps is below min_steps {s['min_steps']}: the model "
                       "may underfit; raise --epochs or lower --batch-size")

    def _build_net(self) -> Net1D:
        torch.manual_seed(self.config.seed)
        n_leads = self.train_data.signals.shape[1]
        if self.config.stage == 1:
            overrides: dict[str, Any] = {}
            if self.phases[0].regularizer == "groupdir":
                g = self.config.groupdir
                overrides = {"head": "groupdir", "group_routing": g.routing,
                             "group_edges": group_edges(self.train_data.labels, g.n_groups)}
            net = build_net1d(self.config.model, in_channels=n_leads, **overrides)
            self._init_head_bias(net)
            return net.to(self.runtime.device)
        init_dir = self.config.init
        assert init_dir is not None
        init_config = json.loads((init_dir / CONFIG).read_text())
        init_method = get_method(init_config["train"]["method"])
        if init_config["train"]["stage"] != 1 or init_method.phases[0] != self.method.phases[0]:
            raise TrainingError(
                f"--init {init_dir} was trained as {init_config['train']['method']} stage "
                f"{init_config['train']['stage']}; {self.config.method} stage 2 needs the stage-1 run of "
                f"a method whose first phase is {self.method.phases[0]}"
            )
        if init_config["train"]["model"] != self.config.model:
            raise TrainingError(f"--init {init_dir} is a {init_config['train']['model']} model, "
                                f"not {self.config.model}")
        saved = torch.load(init_dir / BEST, map_location="cpu", weights_only=True)
        net = Net1D(n_leads, Net1DConfig.model_validate(saved["net1d"]))  # the init's head kind (Group-DIR)
        net.load_state_dict(saved["model"])
        return net.to(self.runtime.device)

    def _init_head_bias(self, net: Net1D) -> None:
        if self.config.head_bias_init == "label_mean":
            init_head_bias(net, float(np.mean(self.train_data.labels)))

    # -- run directory -------------------------------------------------------------------------------------
    def _prepare_out(self, resume: bool) -> RunState:
        out = self.config.out
        checkpoint = out / CHECKPOINT
        if resume and checkpoint.is_file():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
            if saved["resume_key"] != self.config.resume_key():
                raise TrainingError(f"{out} was started with another configuration; cannot resume it")
            self._restore = saved
            return saved["state"]
        self._restore = None
        if self.runtime.is_main:
            if (out / CONFIG).exists() and not resume:
                raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
            out.mkdir(parents=True, exist_ok=True)
            (out / CONFIG).write_text(json.dumps(self._run_record(), indent=2) + "\n")
        if self.runtime.world > 1:
            dist.barrier()
        return RunState()

    def _run_record(self) -> dict[str, Any]:
        """``RUN/config.json``: the config as asked (a recipe: automatic batch size and epochs stay automatic),
        the schedule it resolved to, the method's phases, the dataset it saw, where it ran, the code."""
        return {
            "train": self.request.model_dump(mode="json"),
            "schedule": self.schedule,
            "method_phases": [p.__dict__ for p in self.method.phases],
            "stage_phases": [p.__dict__ for p in self.phases],
            "dataset": {
                "path": str(self.config.data),
                "counts": self.dataset_manifest["counts"],
                "preprocess": self.dataset_manifest["config"]["preprocess"],
                "checksums": self.dataset_manifest.get("checksums", {}),
            },
            "runtime": {"device": str(self.runtime.device), "world_size": self.runtime.world,
                        "amp_bf16": self.runtime.amp, "torch": torch.__version__},
            "code_version": code_version(),
        }

    # -- main loop -----------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train every phase of this stage; returns a summary (best epoch, val bMAE, timings)."""
        state = self._prepare_out(resume)
        started = time.perf_counter()
        for index in range(state.phase_index, len(self.phases)):
            self._run_phase(index, state)
            state.phase_index, state.next_epoch = index + 1, 0
            if state.best_state is not None and index < len(self.phases) - 1:
                self.net.load_state_dict(state.best_state)
                state.best_score, state.best_epoch, state.best_state = math.inf, -1, None
        if self.runtime.world > 1:
            dist.barrier()
        summary = {"best_epoch": state.best_epoch, "val_bmae": state.best_score,
                   "elapsed_s": round(time.perf_counter() - started, 2), "epochs": len(state.history)}
        return summary

    def _run_phase(self, index: int, state: RunState) -> None:
        phase = self.phases[index]
        cfg = self.config
        train_labels = self.train_data.labels
        objective = build_objective(phase, cfg, train_labels, self.runtime.world)
        parts = self._head_phase(phase, objective) if phase.trains == "head" else self._full_phase(phase, objective)
        groups: list[dict[str, Any]] = [{"params": parts.params}]
        if objective.criterion is not None:
            objective.criterion.to(self.runtime.device)
        if isinstance(objective.criterion, BalancedMSELoss):
            groups.append({"params": list(objective.criterion.parameters()), "lr": cfg.regularizers.bmse_sigma_lr,
                           "weight_decay": 0.0})
        optimizer = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones(), gamma=cfg.lr_gamma)
        if self._restore is not None and self._restore["state"].phase_index == index:
            parts.module.load_state_dict(self._restore["module"])
            optimizer.load_state_dict(self._restore["optimizer"])
            scheduler.load_state_dict(self._restore["scheduler"])
            if objective.criterion is not None:
                objective.criterion.load_state_dict(self._restore["criterion"])
            torch.set_rng_state(self._restore["torch_rng"])
            self._restore = None
        n_train = len(self.train_data)
        steps = steps_per_epoch(n_train, cfg.batch_size, drop_last=True, world=self.runtime.world)
        for epoch in range(state.next_epoch, cfg.epochs):
            epoch_started = time.perf_counter()
            parts.epoch_start(epoch)
            losses = []
            batches = epoch_batches(n_train, cfg.batch_size, cfg.seed, index * 1000 + epoch, shuffle=True,
                                    drop_last=True, rank=self.runtime.rank, world=self.runtime.world)
            bar = tqdm(batches, total=steps, desc=f"{cfg.method} s{cfg.stage} p{index} e{epoch + 1}/{cfg.epochs}",
                       disable=not (self.progress and self.runtime.is_main), leave=False, unit="step")
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
            score = balanced_mae(self.val_data.labels, val_pred)
            record = {"phase": index, "epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                      "val_bmae": score, "val_mae": float(np.mean(np.abs(val_pred - self.val_data.labels))),
                      "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - epoch_started, 2)}
            state.history.append(record)
            if score < state.best_score:
                state.best_score, state.best_epoch, state.best_state = score, epoch + 1, _state_copy(self.net)
            state.next_epoch = epoch + 1
            if self.runtime.is_main:
                self._checkpoint(state, parts.module, optimizer, scheduler, objective)
                if self.progress:
                    tqdm.write(f"[{cfg.method} stage {cfg.stage}] phase {index} epoch {epoch + 1}/{cfg.epochs}: "
                               f"loss {record['train_loss']:.4f}, val bMAE {score:.4f} (best {state.best_score:.4f} "
                               f"@ {state.best_epoch}), {record['seconds']} s")
        if state.best_state is not None:
            self.net.load_state_dict(state.best_state)

    def _checkpoint(self, state: RunState, module: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, objective: Objective) -> None:
        out = self.config.out
        _atomic_save({
            "resume_key": self.config.resume_key(), "state": state, "module": module.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "criterion": objective.criterion.state_dict() if objective.criterion is not None else {},
            "torch_rng": torch.get_rng_state(),
        }, out / CHECKPOINT)
        if state.best_state is not None:
            _atomic_save({"model": state.best_state, "epoch": state.best_epoch, "val_bmae": state.best_score,
                          "net1d": self.net.config.model_dump(mode="json"), "in_channels": self.net.in_channels},
                         out / BEST)
        (out / HISTORY).write_text(json.dumps(state.history, indent=2) + "\n")

    # -- phases --------------------------------------------------------------------------------------------
    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.runtime.world > 1:
            ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return module

    def _full_phase(self, phase: Phase, objective: Objective) -> PhaseParts:
        """End-to-end phase: the whole Net1D (plus FDS) trains."""
        cfg, rt = self.config, self.runtime
        r = cfg.regularizers
        fds = None
        if phase.regularizer == "fds":  # buckets over the populated training range only (see ecg_k.losses.fds)
            labels = self.train_data.labels
            fds = FDS(self.net.n_features, start_update=r.fds_start_update, start_smooth=r.fds_start_smooth,
                      ks=r.fds_ks, sigma=r.fds_sigma, momentum=r.fds_momentum,
                      min_label=round(float(labels.min()), 1), max_label=round(float(labels.max()), 1))
        regressor = Regressor(self.net, fds, self._feature_objective(phase), rt.amp).to(rt.device)
        model = self._wrap(regressor)
        forward = torch.compile(model) if cfg.compile else model
        pin = rt.device.type == "cuda"

        def step(indices: np.ndarray, epoch: int) -> float:
            regressor.train()
            x, y = self.train_data.batch(indices)
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
                self._update_fds(regressor, fds, epoch)
            return predict(self.net, self.val_data, cfg.eval_batch_size, rt.device, rt.amp)

        srl = regressor.feature_objective if isinstance(regressor.feature_objective, SRL) else None

        def epoch_start(epoch: int) -> None:
            if srl is not None:
                srl.update_surrogate()  # folds the finished epoch's centroids in

        return PhaseParts(step, list(regressor.parameters()), regressor, evaluate, epoch_start)

    @torch.no_grad()
    def _update_fds(self, regressor: Regressor, fds: FDS, epoch: int) -> None:
        """The official end-of-epoch FDS pass: the training set through the model in train mode (BN batch
        statistics, dropout on, FDS calibration as in training), then ``update_last_epoch_stats`` and
        ``update_running_stats`` with those features."""
        cfg, rt = self.config, self.runtime
        labels = torch.as_tensor(self.train_data.labels, device=rt.device)
        regressor.train()
        chunks = []
        for start in range(0, len(self.train_data), cfg.batch_size):
            index = np.arange(start, min(start + cfg.batch_size, len(self.train_data)))
            x, y = self.train_data.batch(index)
            chunks.append(regressor(x.to(rt.device), y.to(rt.device), epoch)[1])
        fds.update_last_epoch_stats(epoch)
        fds.update_running_stats(torch.cat(chunks), labels, epoch)

    def _stage2_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Train and val features of the frozen backbone (eval mode, float32), computed once per run and kept
        beside the stage-1 run (``FEATURE_CACHE``, keyed by its ``best.pt`` checksum and the autocast
        setting), so every stage-2 method started from that run reuses them."""
        if self._features is not None:
            return self._features
        cfg, rt = self.config, self.runtime
        assert cfg.init is not None
        key = {"best_sha256": hashlib.sha256((cfg.init / BEST).read_bytes()).hexdigest(), "amp": rt.amp,
               "n": [len(self.train_data), len(self.val_data)]}
        path = cfg.init / FEATURE_CACHE
        saved = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
        if saved is not None and saved.get("key") == json.dumps(key):
            train, val = saved["train"], saved["val"]
        else:
            train = backbone_features(self.net, self.train_data, cfg.eval_batch_size, rt.device, rt.amp).cpu()
            val = backbone_features(self.net, self.val_data, cfg.eval_batch_size, rt.device, rt.amp).cpu()
            if rt.is_main:
                _atomic_save({"key": json.dumps(key), "train": train, "val": val}, path)
        self._features = (train.to(rt.device), val.to(rt.device))
        return self._features

    def _feature_objective(self, phase: Phase) -> FeatureObjective | None:
        """SRL (projector + surrogate, training-only) or the Group-DIR loss, as the phase names."""
        cfg = self.config
        if phase.regularizer == "srl":
            s = cfg.srl
            return SRL(self.net.n_features, self.train_data.labels, projector_dim=s.projector_dim,
                       n_points=s.n_points, temperature=s.temperature, contrastive_weight=s.contrastive_weight,
                       enveloping_weight=s.enveloping_weight, homogeneity_weight=s.homogeneity_weight,
                       variance_weight=s.variance_weight, momentum=s.momentum, seed=cfg.seed)
        if phase.regularizer == "groupdir":
            g = cfg.groupdir
            return GroupDIRLoss(n_groups=g.n_groups, temperature=g.temperature, beta=g.beta,
                                lambda_reg=g.lambda_reg, lambda_soft=g.lambda_soft)
        return None

    def _head_phase(self, phase: Phase, objective: Objective) -> PhaseParts:
        """Head-only phase on cached features (RRT)."""
        cfg, rt = self.config, self.runtime
        train_features, val_features = self._stage2_features()
        train_labels = torch.as_tensor(self.train_data.labels, device=rt.device)
        if phase.head_init == "reinit":
            torch.manual_seed(cfg.seed)
            self.net.reset_head()
            self._init_head_bias(self.net)
        params = self.net.freeze_backbone()
        head = self._wrap(self.net.head)

        def step(indices: np.ndarray, epoch: int) -> float:
            head.train()
            index = torch.as_tensor(indices, device=rt.device)
            pred = head_fp32(head, train_features[index])
            loss = objective.head_loss(pred, train_labels[index])
            loss.backward()
            return float(loss.detach())

        def evaluate(epoch: int) -> np.ndarray:
            with torch.no_grad():
                return head_fp32(self.net.head, val_features).double().cpu().numpy()

        return PhaseParts(step, params, self.net.head, evaluate)
