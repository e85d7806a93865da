"""One ``ecgk train`` run: the stage's phases of a method, trained in turn on the run's data and network."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm import tqdm

from ecg_k.losses.dist_loss import check_batch
from ecg_k.losses.methods import get_method
from ecg_k.records.dataset import read_manifest
from ecg_k.records.run import RunRecord
from ecg_k.version import code_version
from training.config import TrainConfig
from training.data import SplitData
from training.trainer.checkpoint import RunState, resumable_checkpoint, start_run_dir
from training.trainer.errors import TrainingError
from training.trainer.loop import train_phase
from training.trainer.network import build_net
from training.trainer.objective import build_objective
from training.trainer.phases import PhaseInputs, phase_parts
from training.trainer.placement import place_run


class Trainer:
    """One ``ecgk train`` run (see :mod:`training.trainer`)."""

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.placement = place_run(config)
        self.method = get_method(config.method)
        self.phases = self.method.phases[:1] if config.stage == 1 else self.method.phases[1:]
        manifest = read_manifest(config.data)
        preprocess = manifest.preprocess
        size = sum(manifest.counts.values()) * len(preprocess.leads) * preprocess.n_samples * 2  # float16
        in_memory = config.in_memory if config.in_memory is not None else size < 4 << 30
        self.train_data = SplitData.load(config.data, "train", in_memory)
        self.val_data = SplitData.load(config.data, "val", in_memory)
        if len(self.val_data) == 0:
            raise TrainingError(f"the val split of {config.data} is empty: model selection needs val pairs")
        self.request = config
        self.config, self.schedule = config.resolve(len(self.train_data), self.placement.world)
        batch = self.schedule["batch_size"] * self.placement.world
        if len(self.train_data) < batch:
            raise TrainingError(
                f"the train split has {len(self.train_data)} samples, fewer than one batch of {batch}: lower "
                "--batch-size"
            )
        self._announce_schedule()
        self.dataset_manifest = manifest
        net = build_net(self.config, self.method, self.phases, self.train_data, self.placement.device)
        self.inputs = PhaseInputs(self.config, self.placement, net, self.train_data, self.val_data)
        if any(phase.dist_loss for phase in self.phases):
            try:
                check_batch(batch)
            except ValueError as error:
                raise TrainingError(str(error)) from None

    def _announce_schedule(self) -> None:
        """Print the optimiser steps this run will take; loudly when below ``min_steps`` (underfitting)."""
        if not self.placement.is_main:
            return
        s = self.schedule
        line = (f"{self.config.method} stage {self.config.stage}: {s['total_steps']} optimiser steps = {s['epochs']} "
                f"epochs ({s['epochs_source']}) x {s['steps_per_epoch']} steps of batch {s['batch_size']} "
                f"({s['batch_size_source']}) on {s['n_train']} training pairs")
        tqdm.write(line)
        if s["total_steps"] < s["min_steps"]:
            tqdm.write(f"WARNING: {s['total_steps']} optimiser steps is below min_steps {s['min_steps']}: the model "
                       "may underfit; raise --epochs or lower --batch-size")

    def _run_record(self) -> RunRecord:
        """``RUN/config.json``: the config as asked (a recipe: automatic batch size and epochs stay automatic),
        the schedule it resolved to, the method's phases, the dataset it saw, where it ran (with torch's CPU thread
        count, which changes the trained bytes: a CPU kernel sums in a per-thread order), the code."""
        return RunRecord.model_validate({
            "train": self.request.model_dump(mode="json"),
            "schedule": self.schedule,
            "method_phases": [p.__dict__ for p in self.method.phases],
            "stage_phases": [p.__dict__ for p in self.phases],
            "dataset": {
                "path": str(self.config.data),
                "counts": self.dataset_manifest.counts,
                "preprocess": self.dataset_manifest.preprocess,
                "checksums": self.dataset_manifest.checksums,
            },
            "runtime": {"device": str(self.placement.device), "world_size": self.placement.world,
                        "amp_bf16": self.placement.amp, "torch": torch.__version__,
                        "torch_threads": torch.get_num_threads()},
            "code_version": code_version(),
        })

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train every phase of this stage; returns a summary (best epoch, val bMAE, timings)."""
        restore = resumable_checkpoint(self.config.out, self.config.resume_key()) if resume else None
        if restore is not None:
            state: RunState = restore["state"]
        else:
            if self.placement.is_main:
                start_run_dir(self.config.out, self._run_record(), resume)
            self.placement.barrier()
            state = RunState()
        started = time.perf_counter()
        net = self.inputs.net
        for index in range(state.phase_index, len(self.phases)):
            phase = self.phases[index]
            objective = build_objective(phase, self.config, self.train_data.labels, self.placement.world)
            parts = phase_parts(self.inputs, phase, objective)
            train_phase(self.inputs, index, objective, parts, state, restore, self.progress)
            restore = None  # a checkpoint resumes the phase it was written in (the first one run here) only
            state.phase_index, state.next_epoch = index + 1, 0
            if state.best_state is not None and index < len(self.phases) - 1:
                net.load_state_dict(state.best_state)
                state.best_score, state.best_epoch, state.best_state = math.inf, -1, None
        self.placement.barrier()
        return {"best_epoch": state.best_epoch, "val_bmae": state.best_score,
                "elapsed_s": round(time.perf_counter() - started, 2), "epochs": len(state.history)}
