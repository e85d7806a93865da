"""``ecgk export``: a single-file ONNX model, a parity check that fails the export, and ``model_card.json``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ecg_k.conformal import calibrate_predictions
from ecg_k.data.store import sha256_file
from ecg_k.model_card import GroupRouting, ModelCard, RetrainProvenance, write_model_card
from ecg_k.models import Net1D
from ecg_k.models.group_head import GroupHead
from ecg_k.potassium import Thresholds
from ecg_k.records.dataset import read_manifest
from ecg_k.records.run import RunError, read_run_metrics, read_run_record
from ecg_k.version import code_version
from training.data import SplitData
from training.evaluate import PREDICTIONS
from training.onnx_export import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, export_onnx, verify_onnx_parity
from training.run_io import load_best_net

MODEL_FILE = "model.onnx"
MODEL_CARD = "model_card.json"


def group_routing_card(net: Net1D, val: SplitData, thresholds: Thresholds) -> GroupRouting:
    """What a Group-DIR model card says about its routing: the groups, the edge nearest each clinical
    threshold and, on val, how far a hard-routed estimate moves if the top two groups swap (the jump at an
    edge; soft routing has none)."""
    head = net.head
    assert isinstance(head, GroupHead)
    jumps = []
    with torch.no_grad():
        for start in range(0, len(val), 256):
            x, _ = val.batch(np.arange(start, min(start + 256, len(val))))
            jumps.append(head.flip_jump(net.eval().backbone_features(x.float())).double().numpy())
    jump = np.concatenate(jumps) if jumps else np.zeros(1)
    if head.routing == "soft":
        jump = np.zeros(1)
    edges = [float(e) for e in head.edges]
    nearest = {name: min(edges[1:-1], key=lambda e: abs(e - value))
               for name, value in thresholds.model_dump().items()}
    return GroupRouting.model_validate({
        "routing": head.routing,
        "edges_mmol_l": edges,
        "edge_nearest_threshold": nearest,
        "flip_jump_val_mmol_l": {"q0.5": float(np.quantile(jump, 0.5)),
                                 "q0.95": float(np.quantile(jump, 0.95)), "max": float(jump.max())},
        "note": (f"Each estimate comes from the expert of the group the classifier picks. An ECG near a "
                 f"group edge (the edge at {nearest['hyperkalemia']:.2f} mmol/L is the nearest to the "
                 "hyperkalaemia threshold) can be routed to either neighbouring group; with hard routing its "
                 "estimate then moves by the gap between the two experts (flip_jump_val_mmol_l, on val). "
                 "Soft routing (-o groupdir.routing=soft) has no such jump."),
    })


def export_run(run: Path, opset: int = 18, rtol: float = 1e-4, retrain: RetrainProvenance | None = None) -> ModelCard:
    """Export the selected model of an evaluated ``run``; the ONNX file appears only once parity holds. The card
    carries the shot regions ``ecgk evaluate`` saved (never recomputed here) and, for a retraining run's
    challenger, ``retrain`` (which run made it).

    The model and its card are both written to temporary files before either replaces the previous pair, so a
    failed write (a full disk) leaves the previous export as it was. A crash between the two renames leaves a
    new model beside the old card, which the card's sha256 then refuses at load; exporting again mends it.
    """
    record = read_run_record(run)
    dataset = record.data
    metrics = read_run_metrics(run)
    if not (run / PREDICTIONS).is_file():
        raise RunError(f"{run} has no {PREDICTIONS}; run `ecgk evaluate --run {run}` first")
    predictions = pd.read_parquet(run / PREDICTIONS)
    preprocess = record.dataset.preprocess
    net = load_best_net(run)
    val = SplitData.load(dataset, "val")
    train_labels = SplitData.load(dataset, "train").labels

    tmp = run / f".{MODEL_FILE}.tmp.onnx"
    card_tmp = run / f".{MODEL_CARD}.tmp"
    try:
        export_onnx(net, tmp, n_leads=len(preprocess.leads), n_samples=preprocess.n_samples, opset=opset)
        real = torch.from_numpy(np.asarray(val.signals[: min(5, len(val))], dtype=np.float32))
        noise = torch.randn(3, len(preprocess.leads), preprocess.n_samples,
                            generator=torch.Generator().manual_seed(0))
        max_diff = max(verify_onnx_parity(net, tmp, batch, rtol=rtol) for batch in (real, noise) if len(batch))
        digest = sha256_file(tmp)
        manifest = read_manifest(dataset)
        regions = metrics.regions
        thresholds = Thresholds()
        card = ModelCard.model_validate({
            "name": "ecg-k-net1d",
            "version": f"{record.method}-s{record.stage}-{digest[:12]}",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "method": record.method,
            "stage": record.stage,
            "architecture": {"net1d": net.config.model_dump(mode="json"), "in_channels": net.in_channels},
            "input": {"name": ONNX_INPUT_NAME, "shape": ["batch", len(preprocess.leads), preprocess.n_samples],
                      "dtype": "float32", "leads": list(preprocess.leads)},
            "output": {"name": ONNX_OUTPUT_NAME, "shape": ["batch"], "unit": "mmol/L"},
            "preprocessing": preprocess.model_dump(mode="json"),
            "preprocessing_digest": preprocess.digest(),
            "thresholds": thresholds,
            "shot_regions": regions,
            "metrics": {split: metrics.splits[split] for split in ("test", "val")},
            "shot_rule": metrics.shot_rule,
            "prediction_intervals": calibrate_predictions(predictions, train_labels, regions, thresholds),
            "signal_quality": manifest.config.signal_quality,
            "onnx": {"file": MODEL_FILE, "sha256": digest, "bytes": tmp.stat().st_size, "opset": opset,
                     "parity": {"max_abs_diff": max_diff, "rtol": rtol, "atol": 0.0}},
            "training_data": {"path": str(dataset), "counts": manifest.counts,
                              "label_histogram_train": manifest.label_histogram["train"],
                              "checksums": manifest.checksums, "config": manifest.config},
            "train_config": record.train,
            "train_schedule": record.schedule,
            "group_routing": group_routing_card(net, val, Thresholds()) if isinstance(net.head, GroupHead) else None,
            "retrain": retrain,
            "code_version": code_version(),
        })
        write_model_card(card_tmp, card)
        os.replace(tmp, run / MODEL_FILE)
        os.replace(card_tmp, run / MODEL_CARD)
    finally:
        tmp.unlink(missing_ok=True)
        card_tmp.unlink(missing_ok=True)
    return card
