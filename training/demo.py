"""``ecgk demo``: the end-to-end run on the embedded defaults, sized for 2 CPU cores.

synth (MIMIC layout) -> ingest -> stage 1 (vanilla Net1D) -> stage 2 (head retrained with Dist Loss) ->
evaluate both -> export both to ONNX -> the comparison table -> register (Dist Loss champion) -> the API and
the dashboard on loopback -> test ECGs and new patients whose labs a reviewer confirms -> a retraining run
and its gate decision (the API hot-swaps if it promotes) -> where to look, serving until Ctrl-C. The
training steps are resumable, so a rerun (or a rerun after Ctrl-C) continues instead of starting over.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from ecg_k.cli import console, print_dataset_summary
from ecg_k.data.ingest import Ingestor
from ecg_k.db.registry import get_champion
from ecg_k.db.session import session_scope
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.dataset import IngestConfig
from ecg_k.synth import generate_dataset
from training.config import TrainConfig
from training.demo_serving import (
    DemoServices,
    demo_database_url,
    register_demo_models,
    run_retraining,
    running_services,
    send_confirmed_patients,
    send_test_ecgs,
    wait_for_champion,
)
from training.evaluate import evaluate_run
from training.evaluation_report import comparison_table, write_comparison
from training.export import export_run
from training.retrain import RetrainOutcome
from training.trainer import Trainer


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and schedules of the demo (defaults: about 10 minutes on 2 CPU cores). Epochs and batch sizes
    left at None follow ``ecgk train``'s step budget, and the split follows ``ecgk ingest``'s defaults."""

    n_ecgs: int = 4000
    seed: int = 0
    workers: int = 2
    model: str = "small"
    stage1_epochs: int | None = None
    stage1_batch: int | None = None
    stage2_epochs: int | None = None
    stage2_batch: int | None = None
    new_patients: int = 24
    leads: str = "all"
    """The leads ingested and modelled (``ecgk ingest --leads``): all 12 by default, ``I`` for a wearable."""


STEPS = 10


def _step(number: int, title: str) -> None:
    console.rule(f"{number}/{STEPS} {title}")


def _train(config: TrainConfig) -> None:
    Trainer(config, progress=True).run(resume=True)


def prepare_dataset(home: Path, plan: DemoPlan, replace_stale: bool = True) -> Path:
    """Synthetic MIMIC layout under ``home/synthetic``, ingested into ``home/dataset`` (both reused if done).

    When ``home`` holds artefacts of another size or generator version, ``replace_stale`` deletes the whole
    home and starts afresh (the demo's own scratch directory); otherwise FileExistsError says so and nothing
    is deleted (a benchmark's runs are worth keeping)."""
    _step(1, "synthetic MIMIC-IV-ECG + hosp labs")
    synth = home / "synthetic"
    try:
        summary = generate_dataset(synth, n_ecgs=plan.n_ecgs, seed=plan.seed, workers=plan.workers)
    except FileExistsError:
        if not replace_stale or not (synth / "synth_manifest.json").is_file():
            raise
        console.print(f"{home} holds demo artefacts of another size or code version: starting afresh")
        shutil.rmtree(home)
        summary = generate_dataset(synth, n_ecgs=plan.n_ecgs, seed=plan.seed, workers=plan.workers)
    console.print(f"{summary.n_ecgs} ECGs of {summary.n_subjects} subjects in {synth}")

    _step(2, f"ingest (pairing, subject-level split, preprocessing of leads: {plan.leads})")
    dataset = home / "dataset"
    config = IngestConfig(preprocess=PreprocessConfig(leads=plan.leads))
    manifest = Ingestor(synth / "mimic-iv-ecg", synth / "mimic-iv", dataset, config).run(workers=plan.workers)
    print_dataset_summary(dataset, manifest)
    return dataset


def run_demo(home: Path, plan: DemoPlan, serve_until_interrupted: bool = False) -> Path:
    """Run every step (skipping what is already done) and return the run directory of the served champion.

    With ``serve_until_interrupted`` the API and the dashboard keep running after the last step until Ctrl-C.
    """
    dataset = prepare_dataset(home, plan)
    runs = home / "runs"
    common = {"data": dataset, "model": plan.model, "seed": plan.seed}
    _step(3, "stage 1: vanilla Net1D (L1, end to end)")
    vanilla = runs / "vanilla"
    _train(TrainConfig(out=vanilla, method="vanilla", epochs=plan.stage1_epochs, batch_size=plan.stage1_batch,
                       **common))
    _step(4, "stage 2: head retrained with Dist Loss (INV-L2) on cached features")
    dist = runs / "dist"
    _train(TrainConfig(out=dist, method="dist", stage=2, init=vanilla, epochs=plan.stage2_epochs,
                       batch_size=plan.stage2_batch, **common))

    _step(5, "evaluate (balanced test set; shot regions by the paper's ECG rule)")
    metrics = {f"{name}": evaluate_run(run).as_dict() for name, run in (("vanilla", vanilla), ("dist", dist))}
    write_comparison(runs / "comparison", metrics)
    console.print(comparison_table(metrics).round(3).to_string(), soft_wrap=True)

    _step(6, "export both models to ONNX (parity-checked) with their model cards")
    for run in (vanilla, dist):
        card = export_run(run)
        parity = f" (parity max |diff| {card.onnx.parity.max_abs_diff:.1e})" if card.onnx.parity else ""
        console.print(f"{card.version}: {run / 'model.onnx'}{parity}")

    print_coverage("dist (served as champion)", metrics["dist"])

    _step(7, "register: vanilla, then Dist Loss promoted to champion")
    database_url = demo_database_url(home)
    console.print(f"champion {register_demo_models(database_url, vanilla, dist)} in {home / 'ecgk.db'}")

    _step(8, "the API and the dashboard on loopback; test ECGs and new patients with confirmed labs")
    with running_services(home, database_url) as services:
        console.print(f"API {services.api_url} (docs: {services.api_url}/docs); dashboard {services.dashboard_url}")
        send_test_ecgs(services, dataset)
        flagged, refused = send_confirmed_patients(services, plan.new_patients, plan.seed)
        console.print(f"{plan.new_patients} new patients: {refused} refused as low_quality, {flagged} flagged by "
                      "the API; a reviewer confirmed each scored one with its lab K+")

        _step(9, "retraining run: challenger from the champion, gated on the locked test set")
        outcome = run_retraining(home, database_url)
        console.print(f"gate: {outcome.status}: {outcome.message}", soft_wrap=True)
        console.print(f"the API serves {wait_for_champion(services, database_url)}")

        _step(10, "where to look")
        _print_where_to_look(home, runs, services, outcome)
        if serve_until_interrupted:
            _serve_until_interrupted()
    return _champion_run(database_url)


def print_coverage(name: str, metrics: Mapping[str, Any]) -> None:
    """Coverage of a model's prediction sets per true-K+ region (and shot region) on each reported split."""
    intervals = metrics["intervals"]
    calibration = intervals["calibration"]
    for split in (key for key in ("test", "test_natural") if key in intervals):
        coverage = intervals[split]["coverage"]
        table = Table(title=f"{name}: {calibration['coverage']:.0%} prediction sets on `{split}`, by the region of "
                            f"the true K+ (calibrated on `{calibration['split']}`)")
        for column in ("region", "n", "coverage", "95 % CI", "mean set size (mmol/L)"):
            table.add_column(column, justify="right")
        for region, values in coverage.items():
            ci = values["coverage_ci95"]
            table.add_row(region, str(values["n"]),
                          "-" if values["coverage"] is None else f"{values['coverage']:.1%}",
                          "-" if ci is None else f"{ci[0]:.1%}-{ci[1]:.1%}",
                          "-" if values["mean_set_size"] is None else f"{values['mean_set_size']:.2f}")
        console.print(table)
    if calibration["note"]:
        console.print(f"note: {calibration['note']}", soft_wrap=True)


def _print_where_to_look(home: Path, runs: Path, services: DemoServices, outcome: RetrainOutcome) -> None:
    lines = [
        f"dashboard      {services.dashboard_url}  (sign in to review with the reviewer key below)",
        f"API            {services.api_url}/docs",
        f"client key     {services.client_key}",
        f"reviewer key   {services.reviewer_key}",
        f"reports        {runs / 'vanilla' / 'report.md'}, {runs / 'dist' / 'report.md'}",
        f"comparison     {runs / 'comparison' / 'comparison.md'}",
        f"database       {home / 'ecgk.db'} (ECGs in {home / 'ecg-store'})",
        f"logs           {home / 'api.log'}, {home / 'dashboard.log'}",
    ]
    if outcome.run_dir is not None:
        lines.append(f"retraining     {outcome.run_dir / 'retrain.json'}")
    console.print("\n".join(lines), soft_wrap=True)


def _serve_until_interrupted() -> None:
    console.print("serving until Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping the API and the dashboard")


def _champion_run(database_url: str) -> Path:
    with session_scope(database_url) as session:
        champion = get_champion(session)
        assert champion is not None
        return Path(champion.path).parent
