"""``ecgk train | evaluate | export | compare | demo | retrain``: registered into the ``ecgk`` app through the
``ecgk.commands`` entry point, so ``ecg_k`` never imports ``training``. Heavy imports (torch) happen
inside the commands, keeping ``ecgk --help`` fast."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal, NoReturn

import typer
from pydantic import ValidationError

from ecg_k.cli import console, fail, parse_options, validation_message
from ecg_k.cli.database import UrlOption
from ecg_k.evaluation.regions import ShotRuleName
from ecg_k.settings import get_settings

# Listed here, not imported, so that `ecgk --help` never imports torch; a test checks them against
# TrainConfig.device and ecg_k.models.NET1D_CONFIGS. As Literal types, `--help` lists them and a wrong value
# is refused naming its option.
Device = Literal["auto", "cpu", "cuda"]
Net1dModel = Literal["small", "ecgfounder", "tiny"]


def train(
    data: Annotated[Path, typer.Option(help="Dataset directory (ecgk ingest --out).")],
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
    method: Annotated[str, typer.Option(
        help="vanilla, inv, sqrt_inv, lds, fds, ranksim, conr, bmse, dist, focal, srl, groupdir, X+dist.")],
    stage: Annotated[int, typer.Option(
        min=1, max=2, help="1: end to end; 2: head only on cached features (needs --init).")] = 1,
    init: Annotated[Path | None, typer.Option(help="Stage-1 run that stage 2 starts from.")] = None,
    model: Annotated[Net1dModel, typer.Option(help="Net1D config: small (CPU), ecgfounder (GPU), tiny (tests).")
                     ] = "small",
    epochs: Annotated[int | None, typer.Option(
        help="Epochs (default: enough for --min-steps optimiser steps, 10 to 200).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Batch size (default: sized to the train split, 16-512 in stage 1, 64-512 in stage 2; Dist Loss "
             "pseudo-labels are sized to it).")] = None,
    min_steps: Annotated[int, typer.Option(help="Optimiser steps the automatic epochs aim for.")] = 1500,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[Device, typer.Option(help="Where to train.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (CUDA).")] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o",
        help="Method hyper-parameter, e.g. -o dist.loss_weight=1 -o regularizers.conr_beta=2.")] = None,
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
            "epochs": epochs, "batch_size": batch_size, "min_steps": min_steps, "lr": lr, "seed": seed,
            "device": device,
            "compile": compile_model, **parse_options(option or []),
        })
        summary = Trainer(config, progress=progress).run(resume=resume)
    except ValidationError as err:
        fail(validation_message(err, train))
    except (TrainingError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(f"{method} stage {stage}: best epoch {summary['best_epoch']}, val bMAE {summary['val_bmae']:.4f} "
                  f"({summary['elapsed_s']} s) -> {out}")


def evaluate(
    run: Annotated[Path, typer.Option(help="Run directory.")],
    data: Annotated[Path | None, typer.Option(help="Dataset (default: the one the run was trained on).")] = None,
    shot_rule: Annotated[ShotRuleName, typer.Option(help="relative (the paper's ECG rule) or count.")] = "relative",
    shot_many: Annotated[float | None, typer.Option(
        help="Many-shot cut-off: n_b > this (a fraction of n_max for relative, a count for count; default 0.5 "
             "or 100).")] = None,
    shot_few: Annotated[float | None, typer.Option(
        help="Few-shot cut-off: n_b < this (default 0.15 or 20).")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the clinical CIs.")] = 1000,
) -> None:
    """Write predictions.parquet, metrics.json (with the run's shot regions), report.md and plots for a run."""
    from ecg_k.evaluation.regions import ShotRule
    from training.evaluate import evaluate_run

    try:
        rule = ShotRule(name=shot_rule, many=shot_many, few=shot_few)
    except ValidationError as err:
        fail(_shot_rule_message(err))
    try:
        metrics = evaluate_run(run, data, shot_rule=rule, n_boot=n_boot).splits
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    for split in (s for s in ("val", "test", "test_natural") if s in metrics):
        values = metrics[split]
        console.print(f"{split}: MAE {values['overall']['mae']:.3f}, few-shot MAE {_fmt(values['few']['mae'])}, "
                      f"bMAE {values['bmae']:.3f} (n = {values['overall']['n']})")
    console.print(f"-> {run / 'report.md'}")


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
    parity = f", parity max |diff| {card.onnx.parity.max_abs_diff:.1e}" if card.onnx.parity else ""
    console.print(f"{card.version}: {run / 'model.onnx'} (sha256 {card.onnx.sha256[:16]}…{parity})")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Evaluated run directories.")],
    out: Annotated[Path, typer.Option(help="Directory for comparison.md/.csv.")] = Path("comparison"),
) -> None:
    """Side-by-side table of methods (the paper's Table 8 layout)."""
    from ecg_k.records.run import read_run_metrics
    from training.evaluation_report import ci_table, comparison_table, write_comparison

    try:
        metrics = {_run_label(run): read_run_metrics(run).as_dict() for run in runs}
        write_comparison(out, metrics)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(comparison_table(metrics).to_string())
    console.print(ci_table(metrics).to_string())
    console.print(f"-> {out / 'comparison.md'}")


def _interrupt(_signum: int, _frame: FrameType | None) -> NoReturn:
    """A termination signal as Ctrl-C: the demo's servers are stopped on the way out."""
    raise KeyboardInterrupt


def demo(
    home: Annotated[Path | None, typer.Option(help="Where the demo writes (default: $ECGK_HOME/demo).")] = None,
    n_ecgs: Annotated[int, typer.Option(help="Synthetic ECGs to generate.")] = 4000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = get_settings().workers,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data and the runs.")] = 0,
    stage1_epochs: Annotated[int | None, typer.Option(help="Stage-1 epochs (default: the step budget's).")] = None,
    stage2_epochs: Annotated[int | None, typer.Option(help="Stage-2 epochs (default: the step budget's).")] = None,
    new_patients: Annotated[int, typer.Option(min=1, help="New patients sent to the API, labs confirmed.")] = 24,
    serve: Annotated[bool, typer.Option(help="Keep the API and the dashboard running until Ctrl-C.")] = True,
) -> None:
    """End to end on the embedded defaults: synth -> ingest -> stage 1 -> stage 2 (Dist Loss) -> evaluate ->
    export -> register -> API and dashboard on loopback -> predictions and confirmed labs -> a retraining run
    with its gate decision; prints where to look and serves until Ctrl-C. Rerunning continues where it stopped."""
    from training.demo import DemoPlan, run_demo

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` or `docker stop` then stops the servers as Ctrl-C does
    plan = DemoPlan(n_ecgs=n_ecgs, seed=seed, workers=workers, stage1_epochs=stage1_epochs,
                    stage2_epochs=stage2_epochs, new_patients=new_patients)
    run_demo(home or get_settings().home / "demo", plan, serve_until_interrupted=serve)


def retrain(
    data: Annotated[Path | None, typer.Option(
        help="Base dataset (default: the champion's training dataset, or the base dataset behind it).")] = None,
    out: Annotated[Path | None, typer.Option(help="Root of the run directories (default: $ECGK_HOME/retrain).")] = None,
    champion_run: Annotated[Path | None, typer.Option(
        help="The champion's training run (default: the directory of its registered ONNX file).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Retrain end to end, not only the head (stage 2).")] = False,
    delta: Annotated[float, typer.Option(
        help="Gate: the paired bootstrap 95 % lower bound of the few-shot MAE improvement must exceed this (mmol/L)."
    )] = 0.0,
    epsilon: Annotated[float, typer.Option(help="Gate: overall MAE may worsen by at most this fraction.")] = 0.05,
    holdout_fraction: Annotated[float, typer.Option(
        help="Fraction of confirmed subjects kept out of training, for evaluation.")] = 0.2,
    window_min: Annotated[float | None, typer.Option(
        help="Pairing window ECG <-> lab, minutes either side (default: the base dataset's).")] = None,
    min_cases: Annotated[int, typer.Option(help="Fewest trainable confirmed cases worth a run.")] = 1,
    force_promote: Annotated[bool, typer.Option(
        "--force-promote", help="Promote the challenger even if the gate refuses it (audited).")] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="Run even if this data was already tried.")] = False,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the clinical CIs.")] = 200,
    device: Annotated[Device, typer.Option(help="Where to train.")] = "auto",
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Challenger training setting over the champion's recipe, e.g. -o epochs=5.")] = None,
    url: UrlOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Retrain a challenger on the lab-confirmed predictions, gate it against the champion and promote it
    if it passes (a one-shot batch job, safe to schedule: exit 0 also when there is nothing to do, 3 when
    another run holds the lock)."""
    from pydantic import ValidationError

    from ecg_k.cli.database import clear_errors, cli_actor, require_head
    from ecg_k.data.errors import DataInputError
    from ecg_k.db.ecg_store import EcgStore
    from ecg_k.inference import ModelIntegrityError
    from training.onnx_export import OnnxParityError
    from training.retrain import RetrainConfig, Retraining
    from training.retrain_lock import RetrainBusyError
    from training.trainer import TrainingError

    settings = get_settings()
    with clear_errors():  # bad input exits 2, an unreachable database 1
        require_head(url)
        try:
            config = RetrainConfig.model_validate({
                "out": out or settings.home / "retrain", "data": data, "champion_run": champion_run, "full": full,
                "gate": {"delta": delta, "epsilon": epsilon}, "holdout_fraction": holdout_fraction,
                "window_min": window_min, "min_cases": min_cases, "force_promote": force_promote, "rerun": rerun,
                "n_boot": n_boot, "device": device, "overrides": parse_options(option or []), "progress": progress,
            })
            outcome = Retraining(config, url or settings.database_url, EcgStore(settings.ecg_store), settings.home,
                                 cli_actor()).run()
        except ValidationError as err:
            fail(validation_message(err, retrain))
        except RetrainBusyError as err:
            fail(str(err), code=3)
        except (TrainingError, OnnxParityError, ModelIntegrityError, DataInputError, FileNotFoundError) as err:
            fail(str(err))
    console.print(f"{outcome.status}: {outcome.message}", soft_wrap=True)
    if outcome.run_dir is not None:
        console.print(f"run record: {outcome.run_dir / 'retrain.json'}", soft_wrap=True)


def _run_label(run: Path) -> str:
    from ecg_k.records.run import RunError, read_run_record

    try:
        record = read_run_record(run)
    except RunError:
        return f"{run.name} (stage ?)"
    return f"{record.method} (stage {record.stage})"


def _shot_rule_message(err: ValidationError) -> str:
    """A shot-rule problem as a CLI error line naming the option (--shot-many, --shot-few, or both)."""
    first = err.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    field = {"many": "--shot-many", "few": "--shot-few"}.get(str(first["loc"][0]) if first["loc"] else "")
    return f"invalid option {field or '--shot-many/--shot-few'}: {message}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    """Entry point of the ``ecgk.commands`` group."""
    for command in (train, evaluate, export, compare, demo, retrain):
        app.command()(command)
