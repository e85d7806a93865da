"""``ecgk demo``: the end-to-end run on the embedded defaults, sized for 2 CPU cores.

synth (MIMIC layout) -> ingest -> stage 1 (vanilla Net1D) -> stage 2 (head retrained with Dist Loss) ->
evaluate both -> export the Dist Loss model to ONNX -> the comparison table -> the API on loopback serving
a few test ECGs. Every step is resumable, so a
rerun (or a rerun after Ctrl-C) continues instead of starting over.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ecg_k.cli import console, print_dataset_summary
from ecg_k.data.cohort import CohortConfig
from ecg_k.data.ingest import IngestConfig, Ingestor
from ecg_k.synth import generate_dataset
from training.config import TrainConfig
from training.evaluate import evaluate_run
from training.evaluation_report import comparison_table, write_comparison
from training.demo_api import send_test_ecgs
from training.export import export_run
from training.trainer import Trainer


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and schedules of the demo (defaults: about 10 minutes on 2 CPU cores)."""

    n_ecgs: int = 4000
    seed: int = 0
    workers: int = 2
    model: str = "small"
    stage1_epochs: int = 20
    stage1_batch: int = 64
    stage2_epochs: int = 20
    stage2_batch: int = 256

    @property
    def balanced_cap(self) -> int:
        """Val/test pairs per 0.1 bin: keeps about 70 % of the pairs for training at demo scale."""
        return max(2, self.n_ecgs // 1000)


def _train(config: TrainConfig) -> None:
    Trainer(config, progress=True).run(resume=True)


def prepare_dataset(home: Path, plan: DemoPlan) -> Path:
    """Synthetic MIMIC layout under ``home/synthetic``, ingested into ``home/dataset`` (both reused if done)."""
    console.rule("1/7 synthetic MIMIC-IV-ECG + hosp labs")
    synth = home / "synthetic"
    try:
        summary = generate_dataset(synth, n_ecgs=plan.n_ecgs, seed=plan.seed, workers=plan.workers)
    except FileExistsError:
        if not (synth / "synth_manifest.json").is_file():
            raise
        console.print(f"{home} holds demo artefacts of another size or code version: starting afresh")
        shutil.rmtree(home)
        summary = generate_dataset(synth, n_ecgs=plan.n_ecgs, seed=plan.seed, workers=plan.workers)
    console.print(f"{summary.n_ecgs} ECGs of {summary.n_subjects} subjects in {synth}")

    console.rule("2/7 ingest (pairing, balanced subject-level split, preprocessing)")
    dataset = home / "dataset"
    config = IngestConfig(cohort=CohortConfig(balanced_max_per_bin=plan.balanced_cap))
    manifest = Ingestor(synth / "mimic-iv-ecg", synth / "mimic-iv", dataset, config).run(workers=plan.workers)
    print_dataset_summary(dataset, manifest)
    return dataset


def run_demo(home: Path, plan: DemoPlan) -> Path:
    """Run every step (skipping what is already done) and return the exported run directory."""
    dataset = prepare_dataset(home, plan)
    runs = home / "runs"
    common = {"data": dataset, "model": plan.model, "seed": plan.seed}
    console.rule("3/7 stage 1: vanilla Net1D (L1, end to end)")
    vanilla = runs / "vanilla"
    _train(TrainConfig(out=vanilla, method="vanilla", epochs=plan.stage1_epochs, batch_size=plan.stage1_batch,
                       **common))
    console.rule("4/7 stage 2: head retrained with Dist Loss (INV-L2) on cached features")
    dist = runs / "dist"
    _train(TrainConfig(out=dist, method="dist", stage=2, init=vanilla, epochs=plan.stage2_epochs,
                       batch_size=plan.stage2_batch, **common))

    console.rule("5/7 evaluate (balanced test set; shot regions by the paper's ECG rule)")
    metrics = {f"{name}": evaluate_run(run) for name, run in (("vanilla", vanilla), ("dist", dist))}
    write_comparison(runs / "comparison", metrics)
    console.print(comparison_table(metrics).round(3).to_string(), soft_wrap=True)

    console.rule("6/7 export the Dist Loss model to ONNX")
    card = export_run(dist)
    console.print(f"model {card['version']}: {dist / 'model.onnx'} (parity max |diff| "
                  f"{card['onnx']['parity']['max_abs_diff']:.1e}); card: {dist / 'model_card.json'}")
    console.rule("7/7 the API on loopback: the exported model serves test ECGs")
    send_test_ecgs(dataset, dist / "model.onnx", home)
    console.print(f"reports: {vanilla / 'report.md'}, {dist / 'report.md'}; table: {runs / 'comparison'}")
    return dist
