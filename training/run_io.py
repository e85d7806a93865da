"""Reading a finished run directory back: its config and its selected (best-epoch) Net1D."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ecg_k.models import Net1D, Net1DConfig
from training.trainer import BEST, CONFIG


class RunError(ValueError):
    """A run directory that is missing, unfinished or foreign."""


def read_run_config(run: Path) -> dict[str, Any]:
    """``RUN/config.json`` with a clear error when ``run`` is not a training run."""
    path = run / CONFIG
    if not path.is_file():
        raise RunError(f"{run} is not a training run (no {CONFIG})")
    return json.loads(path.read_text())


def load_best_net(run: Path) -> Net1D:
    """The model selected by val bMAE (``RUN/best.pt``), in eval mode on CPU."""
    read_run_config(run)
    path = run / BEST
    if not path.is_file():
        raise RunError(f"{run} has no {BEST}: the run has not finished an epoch")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = Net1D(int(saved["in_channels"]), Net1DConfig.model_validate(saved["net1d"]))
    net.load_state_dict(saved["model"])
    return net.eval()
