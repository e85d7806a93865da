"""Reading a finished run directory back: its selected (best-epoch) Net1D (its records:
:mod:`ecg_k.records.run`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ecg_k.models import Net1D, Net1DConfig
from ecg_k.records.run import RunError, read_run_record
from training.trainer import BEST


def load_best_net(run: Path) -> Net1D:
    """The model selected by val bMAE (``RUN/best.pt``), in eval mode on CPU."""
    read_run_record(run)
    path = run / BEST
    if not path.is_file():
        raise RunError(f"{run} has no {BEST}: the run has not finished an epoch")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = Net1D(int(saved["in_channels"]), Net1DConfig.model_validate(saved["net1d"]))
    net.load_state_dict(saved["model"])
    return net.eval()
