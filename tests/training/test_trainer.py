"""Two-stage training on a toy dataset: artefacts, resume, head-only stage 2, every method, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ecg_k.cli import app, load_plugins
from ecg_k.losses import METHODS
from training.config import AUTO_EPOCHS, TrainConfig, auto_batch_size
from training.run_io import load_best_net
from training.trainer import Trainer, TrainingError
from training.trainer.checkpoint import FEATURE_CACHE

TINY = {"model": "tiny", "batch_size": 32, "lr": 3e-3}


def train(dataset: Path, out: Path, **overrides) -> dict:
    config = TrainConfig(data=dataset, out=out, **(TINY | overrides))
    return Trainer(config, progress=False).run()


@pytest.fixture(scope="module")
def stage1(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vanilla"
    train(toy_dataset, out, method="vanilla", epochs=4)
    return out


def test_stage1_writes_run_contract_and_learns(stage1: Path) -> None:
    for name in ("config.json", "checkpoint.pt", "best.pt", "history.json"):
        assert (stage1 / name).is_file()
    history = json.loads((stage1 / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    config = json.loads((stage1 / "config.json").read_text())
    assert config["train"]["method"] == "vanilla" and config["code_version"]["package"]
    assert config["dataset"]["preprocess"]["leads"] == ["I"]
    best = min(history, key=lambda h: h["val_bmae"])
    assert torch.load(stage1 / "best.pt", weights_only=True)["epoch"] == best["epoch"]


def test_resume_after_interruption_equals_uninterrupted(toy_dataset: Path, stage1: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from training.trainer import loop

    out = tmp_path / "run"
    original = loop.save_checkpoint
    calls = {"n": 0}

    def interrupt_after_two(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(toy_dataset, out, method="vanilla", epochs=4)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    with pytest.raises(TrainingError, match="--resume"):
        train(toy_dataset, out, method="vanilla", epochs=4)
    config = TrainConfig(data=toy_dataset, out=out, method="vanilla", epochs=4, **TINY)
    Trainer(config, progress=False).run(resume=True)
    resumed, reference = load_best_net(out).state_dict(), load_best_net(stage1).state_dict()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=0)
    assert json.loads((out / "history.json").read_text())[-1]["val_bmae"] == pytest.approx(
        json.loads((stage1 / "history.json").read_text())[-1]["val_bmae"], abs=0)


def _history(run: Path) -> list[dict]:
    """``history.json`` without the wall-clock seconds."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in json.loads((run / "history.json").read_text())]


def test_resume_inside_a_later_phase_equals_uninterrupted(toy_dataset: Path, stage1: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """bmse+dist stage 2 has two head phases; stopped in the second one's first epoch, the resumed run
    restores that phase (not the first again) and ends with the uninterrupted run's weights and history."""
    from training.trainer import loop

    stage2 = {"method": "bmse+dist", "stage": 2, "init": stage1, "epochs": 2, "batch_size": 64}
    train(toy_dataset, tmp_path / "whole", **stage2)
    original = loop.save_checkpoint
    calls = {"n": 0}

    def interrupt_after_three(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        train(toy_dataset, tmp_path / "cut", **stage2)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    cut = _history(tmp_path / "cut")
    assert [(h["phase"], h["epoch"]) for h in cut] == [(0, 1), (0, 2), (1, 1)]
    Trainer(TrainConfig(data=toy_dataset, out=tmp_path / "cut", **(TINY | stage2)), progress=False).run(resume=True)
    resumed, whole = load_best_net(tmp_path / "cut").state_dict(), load_best_net(tmp_path / "whole").state_dict()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=0)
    assert _history(tmp_path / "cut") == _history(tmp_path / "whole")
    assert _history(tmp_path / "cut")[:3] == cut

def test_stage2_trains_only_the_head_on_cached_features(toy_dataset: Path, stage1: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ecg_k.models import Net1D

    calls = {"n": 0}
    original = Net1D.backbone_features

    def counting(self, ecg):
        calls["n"] += 1
        return original(self, ecg)

    monkeypatch.setattr(Net1D, "backbone_features", counting)
    init = tmp_path / "stage1"  # a copy without the feature cache other tests' stage-2 runs left beside stage1
    shutil.copytree(stage1, init, ignore=shutil.ignore_patterns(FEATURE_CACHE))
    out = tmp_path / "dist"
    train(toy_dataset, out, method="dist", stage=2, init=init, epochs=5, batch_size=64)
    # one pass over train (256 rows) and val (64 rows) in eval batches of 1024: 2 calls, whatever the epochs
    assert calls["n"] == 2
    train(toy_dataset, tmp_path / "bmse", method="bmse", stage=2, init=init, epochs=1, batch_size=64)
    assert calls["n"] == 2  # the next stage-2 run from the same stage-1 run reuses the cached features
    before, after = load_best_net(init).state_dict(), load_best_net(out).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("dense.") for k in changed)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_an_epoch(method: str, toy_dataset: Path, stage1: Path, tmp_path: Path) -> None:
    spec = METHODS[method]
    if spec.phases[0].trains == "all" and spec.phases[0] != METHODS["vanilla"].phases[0]:
        summary = train(toy_dataset, tmp_path / "s1", method=method, epochs=1)
        assert np.isfinite(summary["val_bmae"])
        init = tmp_path / "s1"
    else:
        init = stage1
    if len(spec.phases) > 1:
        summary = train(toy_dataset, tmp_path / "s2", method=method, stage=2, init=init, epochs=1, batch_size=64)
        assert np.isfinite(summary["val_bmae"])


def test_stage2_refuses_an_init_of_another_method(toy_dataset: Path, stage1: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="stage-1 run"):
        train(toy_dataset, tmp_path / "x", method="ranksim+dist", stage=2, init=stage1, epochs=1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"method": "dist", "stage": 2}, "--init"), ({"method": "nope"}, "unknown method"),
     ({"model": "huge"}, "unknown model"), ({"method": "vanilla", "stage": 2, "init": "x"}, "no head")],
)
def test_invalid_configs(toy_dataset: Path, tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(data=toy_dataset, out=tmp_path, **overrides)


def test_batch_larger_than_train_split(toy_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="fewer than one batch"):
        train(toy_dataset, tmp_path / "x", method="vanilla", batch_size=512)


@pytest.mark.parametrize(("n_train", "stage", "batch"), [
    (220, 1, 16), (3000, 1, 32), (4851, 1, 64), (400_000, 1, 512), (10, 1, 8),
    (220, 2, 64), (3000, 2, 128), (4851, 2, 256), (400_000, 2, 512), (40, 2, 32),
])
def test_automatic_batch_fits_the_cohort(n_train: int, stage: int, batch: int) -> None:
    assert auto_batch_size(n_train, stage) == batch


def test_stage2_batch_is_at_least_64_whenever_the_train_split_holds_64() -> None:
    for n_train in range(64, 20_000, 7):
        assert 64 <= auto_batch_size(n_train, 2) <= n_train


@pytest.mark.parametrize(("n_train", "stage", "epochs", "steps"), [
    (220, 1, 116, 116 * 13), (4851, 1, 20, 20 * 75), (400_000, 1, AUTO_EPOCHS[0], 10 * 781),
    (20, 1, AUTO_EPOCHS[1], 200), (4851, 2, 84, 84 * 18),
])
def test_step_budget_sets_the_epochs(toy_dataset: Path, n_train: int, stage: int, epochs: int, steps: int) -> None:
    extra = {"method": "dist", "init": "x"} if stage == 2 else {}
    config = TrainConfig(data=toy_dataset, out=Path("r"), stage=stage, **extra)
    resolved, schedule = config.resolve(n_train)
    assert (resolved.epochs, schedule["total_steps"]) == (epochs, steps)
    assert schedule["total_steps"] >= config.min_steps or epochs == AUTO_EPOCHS[1]
    assert (schedule["batch_size_source"], schedule["epochs_source"]) == ("auto", "auto")
    fixed, fixed_schedule = config.model_copy(update={"epochs": 3, "batch_size": 64}).resolve(n_train)
    assert (fixed.epochs, fixed.batch_size, fixed_schedule["epochs_source"]) == (3, 64, "set")


def test_run_records_the_schedule_and_warns_below_the_step_budget(toy_dataset: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainConfig(data=toy_dataset, out=tmp_path / "r", model="tiny", method="vanilla", epochs=1)
    Trainer(config, progress=False).run()
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["train"]["batch_size"] is None and saved["train"]["epochs"] == 1  # the recipe, as asked
    assert (saved["schedule"]["batch_size"], saved["schedule"]["batch_size_source"]) == (16, "auto")
    assert saved["schedule"]["total_steps"] == 256 // 16
    assert saved["runtime"]["torch_threads"] == torch.get_num_threads()  # it decides the trained bytes on CPU
    out = capsys.readouterr().out
    assert "16 optimiser steps" in out and "below min_steps 1500" in out


def test_cli_train_bad_method_exits_2(toy_dataset: Path, tmp_path: Path) -> None:
    load_plugins()
    result = CliRunner().invoke(app, ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "r"),
                                      "--method", "bogus", "--no-progress"])
    assert result.exit_code == 2 and "unknown method" in result.output


def test_torchrun_two_cpu_ranks_train_both_stages(toy_dataset: Path, tmp_path: Path) -> None:
    """DDP on CPU (gloo): stage 1 with striped batches, stage 2 with Dist Loss over the gathered global batch."""
    import subprocess
    import sys

    from ecgk_demo.loopback import free_port

    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "ecg_k", "train", "--data", str(toy_dataset), "--model", "tiny", "--device", "cpu",
            "--epochs", "1", "--no-progress"]
    first = subprocess.run([*base, "--out", str(tmp_path / "s1"), "--method", "vanilla", "--batch-size", "16"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run([*base, "--out", str(tmp_path / "s2"), "--method", "dist", "--stage", "2", "--init",
                             str(tmp_path / "s1"), "--batch-size", "32"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    config = json.loads((tmp_path / "s2" / "config.json").read_text())
    assert config["runtime"]["world_size"] == 2
    history = json.loads((tmp_path / "s2" / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["val_bmae"])


def test_dist_loss_refuses_a_batch_below_64(toy_dataset: Path, stage1: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="at least 64"):
        train(toy_dataset, tmp_path / "s2", method="dist", stage=2, init=stage1, epochs=1, batch_size=32)
    assert not (tmp_path / "s2").exists()


def test_dist_loss_with_the_automatic_batch_trains(toy_dataset: Path, stage1: Path, tmp_path: Path) -> None:
    train(toy_dataset, tmp_path / "s2", method="dist", stage=2, init=stage1, epochs=1, batch_size=None)
    schedule = json.loads((tmp_path / "s2" / "config.json").read_text())["schedule"]
    assert (schedule["batch_size"], schedule["batch_size_source"]) == (64, "auto")


def test_no_bf16_reaches_the_head_a_loss_or_a_metric(toy_dataset: Path, stage1: Path) -> None:
    """bf16 autocast (CPU here, CUDA in production) wraps the backbone only: estimates, features and the
    stage-2 cache are float32 and not rounded to bf16's 1/32 mmol/L grid near 4 mmol/L."""
    from training.data import SplitData
    from training.trainer import Regressor, backbone_features, predict

    net = load_best_net(stage1)
    data = SplitData.load(toy_dataset, "val")
    x, y = data.batch(np.arange(16))
    pred, features, extra = Regressor(net, None, amp=True).eval()(x, y, 0)
    assert pred.dtype == torch.float32 and features.dtype == torch.float32 and extra is None
    cpu = torch.device("cpu")
    estimates = predict(net, data, 64, cpu, amp=True)
    cache = backbone_features(net, data, 64, cpu, amp=True)
    assert estimates.dtype == np.float64 and cache.dtype == torch.float32
    off_grid = np.abs(estimates * 32 - np.round(estimates * 32)) > 1e-3
    assert off_grid.mean() > 0.9  # bf16 estimates near 4 mmol/L all sit on multiples of 1/32
    assert len(np.unique(estimates)) == len(estimates)
    np.testing.assert_allclose(estimates, predict(net, data, 64, cpu), atol=0.2)


def test_conr_regression_term_sees_the_clean_batch(toy_dataset: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Official ConR training: L1 on the clean batch (B rows), ConR on the two noisy views (2B rows)."""
    from ecg_k.losses import ConR
    from training.trainer.objective import Objective

    seen: dict[str, list[tuple[int, ...]]] = {"head": [], "conr": []}
    head_loss, conr_forward = Objective.head_loss, ConR.forward

    def spy_head(self, pred, target):  # type: ignore[no-untyped-def]
        seen["head"].append((pred.shape[0], target.shape[0]))
        return head_loss(self, pred, target)

    def spy_conr(self, features, labels, preds, weights=None):  # type: ignore[no-untyped-def]
        seen["conr"].append((features.shape[0], labels.shape[0]))
        assert torch.equal(labels[: labels.shape[0] // 2], labels[labels.shape[0] // 2:])
        return conr_forward(self, features, labels, preds, weights)

    monkeypatch.setattr(Objective, "head_loss", spy_head)
    monkeypatch.setattr(ConR, "forward", spy_conr)
    train(toy_dataset, tmp_path / "conr", method="conr", epochs=1)
    assert seen["head"] and all(shape == (32, 32) for shape in seen["head"])
    assert len(seen["conr"]) == len(seen["head"]) and all(shape == (64, 64) for shape in seen["conr"])
