"""``ecgk train | evaluate | export | compare``: registered into the ``ecgk`` app through the
``ecgk.commands`` entry point, so ``ecg_k`` never imports ``training``. Heavy imports (torch) happen
inside the commands, keeping ``ecgk --help`` fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ecg_k.cli import console, fail, parse_options, validation_message
from ecg_k.settings import get_settings


def train(
    data: Annotated[Path, typer.Option(help="Dataset directory (ecgk ingest --out).")],
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
    method: Annotated[str, typer.Option(help="vanilla, inv, sqrt_inv, lds, fds, ranksim, conr, bmse, dist, X+dist.")],
    stage: Annotated[int, typer.Option(help="1: end to end; 2: head only on cached features (needs --init).")] = 1,
    init: Annotated[Path | None, typer.Option(help="Stage-1 run that stage 2 starts from.")] = None,
    model: Annotated[str, typer.Option(help="Net1D config: small (CPU), ecgfounder (GPU), tiny (tests).")] = "small",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Batch size (Dist Loss pseudo-labels are sized to it).")] = 512,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (CUDA).")] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Method hyper-parameter, e.g. -o dist.loss_weight=1 -o regularizers.conr_beta=2.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train Net1D with a method (stage 1) or retrain its head (stage 2). Resumable."""
    from pydantic import ValidationError

    from training.config import TrainConfig
    from training.trainer import Trainer, TrainingError

    try:
        config = TrainConfig.model_validate({
            "data": data, "out": out, "method": method, "stage": stage, "init": init, "model": model,
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
            "compile": compile_model, **parse_options(option or []),
        })
        summary = Trainer(config, progress=progress).run(resume=resume)
    except ValidationError as err:
        fail(f"invalid option: {validation_message(err)}")
    except (TrainingError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(f"{method} stage {stage}: best epoch {summary['best_epoch']}, val bMAE {summary['val_bmae']:.4f} "
                  f"({summary['elapsed_s']} s) -> {out}")


def evaluate(
    run: Annotated[Path, typer.Option(help="Run directory.")],
    data: Annotated[Path | None, typer.Option(help="Dataset (default: the one the run was trained on).")] = None,
    shot_rule: Annotated[str, typer.Option(help="relative (paper's ECG rule) or count.")] = "relative",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the clinical CIs.")] = 1000,
) -> None:
    """Write predictions.parquet, metrics.json, report.md and plots for a run."""
    from training.evaluate import evaluate_run

    try:
        metrics = evaluate_run(run, data, shot_rule=shot_rule, n_boot=n_boot)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    test = metrics["test"]
    console.print(f"test: MAE {test['overall']['mae']:.3f}, few-shot MAE {_fmt(test['few']['mae'])}, "
                  f"bMAE {test['bmae']:.3f} -> {run / 'report.md'}")


def export(
    run: Annotated[Path, typer.Option(help="Run directory.")],
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 18).")] = 18,
) -> None:
    """Export the run's selected model to ONNX (parity-checked) with its model card."""
    from training.export import export_run
    from training.onnx_export import OnnxParityError

    try:
        card = export_run(run, opset=opset)
    except (OnnxParityError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(f"{card['version']}: {run / 'model.onnx'} (sha256 {card['onnx']['sha256'][:16]}…, "
                  f"parity max |diff| {card['onnx']['parity']['max_abs_diff']:.1e})")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Evaluated run directories.")],
    out: Annotated[Path, typer.Option(help="Directory for comparison.md/.csv.")] = Path("comparison"),
) -> None:
    """Side-by-side table of methods (the paper's Table 8 layout)."""
    from training.evaluate import read_metrics
    from training.evaluation_report import comparison_table, write_comparison

    try:
        metrics = {_run_label(run): read_metrics(run) for run in runs}
        write_comparison(out, metrics)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(comparison_table(metrics).to_string())
    console.print(f"-> {out / 'comparison.md'}")


def demo(
    home: Annotated[Path | None, typer.Option(help="Where the demo writes (default: $ECGK_HOME/demo).")] = None,
    n_ecgs: Annotated[int, typer.Option(help="Synthetic ECGs to generate.")] = 4000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = get_settings().workers,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data and the runs.")] = 0,
    stage1_epochs: Annotated[int, typer.Option(help="Stage-1 epochs.")] = 20,
    stage2_epochs: Annotated[int, typer.Option(help="Stage-2 epochs.")] = 20,
) -> None:
    """End to end on the embedded defaults: synth -> ingest -> stage 1 -> stage 2 (Dist Loss) -> evaluate ->
    export, printing the comparison table. Rerunning continues where it stopped."""
    from training.demo import DemoPlan, run_demo

    plan = DemoPlan(n_ecgs=n_ecgs, seed=seed, workers=workers, stage1_epochs=stage1_epochs,
                    stage2_epochs=stage2_epochs)
    run_demo(home or get_settings().home / "demo", plan)


def _run_label(run: Path) -> str:
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    method = config.get("train", {}).get("method", run.name)
    return f"{method} (stage {config.get('train', {}).get('stage', '?')})"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Entry point of the ``ecgk.commands`` group."""
    for command in (train, evaluate, export, compare, demo):
        app.command()(command)
