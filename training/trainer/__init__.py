"""Two-stage training of Net1D (method.md section 5) for every method of :data:`ecg_k.losses.METHODS`.

Stage 1 runs the method's end-to-end phase. Stage 2 starts from a finished stage-1 run, freezes the backbone,
runs Net1D once over the data to cache the pooled features (backbone in eval mode: a documented deviation
from the official ``model.train()``), and trains only the head on them, so an epoch costs only the head.
Model selection is by validation bMAE; a checkpoint is written after every epoch and ``resume=True``
continues an interrupted run exactly (data order is seeded per phase and epoch).

The CUDA path uses bf16 autocast, pinned memory and optionally ``torch.compile``; under ``torchrun`` the
model (or head) is wrapped in DDP and Dist Loss gathers the predictions of every rank.

One module per concern, imported in this order:

- :mod:`~training.trainer.placement`: where the run executes (device, DDP rank and world, bf16 policy);
- :mod:`~training.trainer.checkpoint`: the run directory (file names, start or resume, per-epoch saves);
- :mod:`~training.trainer.objective`: a phase's loss and regularisers, assembled from the method;
- :mod:`~training.trainer.network`: Net1D for the stage, the training forward, whole-split estimates;
- :mod:`~training.trainer.phases`: what a phase trains and its step (end to end, or head on cached features);
- :mod:`~training.trainer.loop`: the epochs of a phase (optimiser, schedule, model selection, checkpoints);
- :mod:`~training.trainer.run`: :class:`Trainer`, which runs a stage's phases in turn.
"""

from training.trainer.checkpoint import BEST, CHECKPOINT, HISTORY, RunState
from training.trainer.errors import TrainingError
from training.trainer.network import Regressor, backbone_features, predict
from training.trainer.placement import resolve_device
from training.trainer.run import Trainer

__all__ = ["BEST", "CHECKPOINT", "HISTORY", "Regressor", "RunState", "Trainer", "TrainingError",
           "backbone_features", "predict", "resolve_device"]
